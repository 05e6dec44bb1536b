//! Root-cause suggestions drawn from the trace: each names the replica, op, view and faults
//! involved, for the failure's classification. Fixed advice only fills in when the trace says
//! too little.

use std::collections::{BTreeMap, BTreeSet};

use super::{failing_op, key_matches, Classification, Failure, FAULT_WINDOW_US};
use crate::analyzer::{ClientOp, TraceAnalyzer};
use crate::trace::{format_us, EventKind, Outcome, TraceEvent};

/// Fixed advice, used only when the trace says too little.
pub(super) fn fallback_suggestions(c: Classification) -> &'static [&'static str] {
    match c {
        Classification::DataCorruption => &[
            "check the state machine's apply for the op kind that returned the wrong value (INCRBY overflow, CAS compare, DEL then SET)",
            "check the model is replayed from the node's committed log in op-number order, not from the harness's own bookkeeping",
            "check every read verifies header and body checksums before the value is returned",
            "check a retried request is applied exactly once (client table keyed by client id and request number)",
        ],
        Classification::Linearizability => &[
            "rerun with --enable-trace --trace-dir DIR and run lincheck on the recorded history to see the minimal conflicting ops",
            "check replies are sent only for committed ops, and reads go through the log (or a lease of the current view)",
            "check a deposed primary stops answering once a newer view exists",
            "check retries carry the same (client, request) and the client table returns the first result",
        ],
        Classification::ReplicaDivergence => &[
            "check apply is deterministic: no HashMap iteration order, clock or randomness in the state machine",
            "check the state hash covers the client table as well as the key space",
            "check do_view_change picks the log with the highest log_view, then the highest op",
            "check state transfer installs the checkpoint's state and client table together",
        ],
        Classification::HashChainBreak => &[
            "check the primary computes each prepare's parent checksum from its own log head",
            "check a repaired entry is verified against the hash chain before it is written",
            "check recovery walks the chain back from the head and treats a mismatch as corruption, not as 'never written'",
            "check the suffix installed by a view change re-links to the retained prefix",
        ],
        Classification::CommitGapOrRewrite => &[
            "check commit_min is persisted monotonically (superblock) and never moves backwards on restart",
            "check PREPARE_OK is sent only after the prepare is synced",
            "check do_view_change log selection (log_view) never drops a committed op",
            "check commits are applied strictly in op order, waiting for missing prepares to be repaired",
        ],
        Classification::Liveness => &[
            "check the liveness phase healed every link and restarted every replica",
            "check view-change timeouts back off so a DVC quorum can form",
            "check clients resend to the new primary after a view change",
            "check the primary's commit heartbeat keeps followers' commit numbers moving",
        ],
        Classification::RecoveryFailure => &[
            "check the superblock quorum picks the newest valid copy",
            "check recovery tells a torn tail (never acknowledged) from mid-log corruption (repair from a peer)",
            "check a replica recovering from a crash waits for a recovery response before acting in a view",
            "check the checkpoint the superblock points at was synced before the superblock",
        ],
        Classification::NonDeterminism => &[
            "check for HashMap/HashSet iteration before random draws, thread_rng/getrandom, and clock reads outside sim_runtime",
            "check every tokio::select! is biased",
            "check for statics or thread-locals that survive between seeds in one process",
            "rerun the seed twice alone (`vopr --seed S -n 1`) to rule out leakage between seeds",
        ],
        Classification::CheckpointMismatch => &[
            "check the checkpoint is taken at exactly its op (state after applying op N, not N±1)",
            "check the checkpoint includes the client table",
            "check log space is reused only after the checkpoint and superblock are synced",
            "check state transfer verifies the checkpoint's checksum before installing it",
        ],
        Classification::StorageNondeterminism => &[
            "check padding and unused bytes of on-disk headers are zeroed",
            "check nothing written to disk depends on a HashMap's iteration order or the wall clock",
            "check the WAL slot of an op is a function of the op number only",
            "check the checkpoint serializes keys in sorted order",
        ],
    }
}

/// What the suggestions are built from.
pub(super) struct Ctx<'a> {
    a: TraceAnalyzer<'a>,
    failure: &'a Failure,
    at_us: u64,
    /// The failure's replica, or one inferred from the trace.
    replica: Option<u8>,
    /// The failure's op, or one inferred (first divergent commit / the failing client op).
    op: Option<u64>,
    failing: Option<ClientOp>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(a: TraceAnalyzer<'a>, failure: &'a Failure, at_us: u64) -> Ctx<'a> {
        let failing = failing_op(a.events(), failure);
        let divergent = first_divergent_commit(&a, at_us);
        let op = failure
            .op
            .or_else(|| divergent.as_ref().map(|d| d.0))
            .or_else(|| failing.as_ref().and_then(|f| f.op_number));
        let replica = failure
            .replica
            .or_else(|| divergent.as_ref().map(|d| d.1))
            .or_else(|| most_faulted_replica(&a, at_us));
        Ctx {
            a,
            failure,
            at_us,
            replica,
            op,
            failing,
        }
    }

    pub(super) fn is_relevant(&self, e: &TraceEvent) -> bool {
        if !e.kind.is_high_volume() {
            return true;
        }
        if self.op.is_some() && e.kind.op() == self.op {
            return true;
        }
        matches!(e.kind, EventKind::Commit { .. })
            && self.replica.is_some()
            && e.kind.replica() == self.replica
    }

    fn op_suffix(&self) -> String {
        self.op
            .map(|op| format!(" for op {op}"))
            .unwrap_or_default()
    }

    fn window(&self) -> String {
        format_us(FAULT_WINDOW_US)
    }

    pub(super) fn suggestions(&self) -> Vec<String> {
        let s: Vec<Option<String>> = match self.failure.classification {
            Classification::DataCorruption => vec![
                self.key_history(),
                self.disk_corruption("check every read verifies header and body checksums and the entry's own op/replica/cluster ids, so a rotted or misdirected entry is repaired from a peer, never served"),
                self.crash_restart("check WAL recovery's torn-tail rule: only a never-acknowledged tail may be truncated"),
                self.net_corruption("check the frame checksum covers header and body, so a corrupted value is rejected rather than applied"),
                self.state_transfer("check the checkpoint restores state and client table together, at exactly its op"),
                self.unknown_outcomes("a retried write must be applied exactly once (client table keyed by client id and request number)"),
            ],
            Classification::Linearizability => vec![
                self.failing_and_concurrent(),
                self.reply_before_commit(),
                self.view_change_during_op(),
                self.partitions("a primary cut off from a majority can no longer commit and must stop answering reads"),
                self.unknown_outcomes("these may take effect late; check retries carry the same (client, request) and the client table returns the first result"),
                self.crash_during_op(),
            ],
            Classification::ReplicaDivergence => vec![
                self.divergent_checksums(),
                self.state_transfer("check the transferred checkpoint's state hash matches the op it claims"),
                self.crash_restart("check WAL recovery's torn-tail rule and that a recovering replica does not apply ops it has not re-verified"),
                self.view_change("check do_view_change log selection (highest log_view, then highest op) and that replicas truncate their uncommitted suffix before installing the new one"),
                self.disk_corruption("check reads verify checksums so the replica never applies a corrupt body"),
            ],
            Classification::HashChainBreak => vec![
                self.disk_corruption("a misdirected write puts a valid entry in the wrong slot: check each entry's own op number is compared with its slot"),
                self.crash_restart("check WAL recovery's torn-tail rule and that the head is re-linked after truncation"),
                self.view_change("after a view change replaces a suffix, the next op's parent must be the new entry's checksum"),
                self.state_transfer("after state transfer the chain must resume from the checkpoint's anchor checksum"),
            ],
            Classification::CommitGapOrRewrite => vec![
                self.commit_gap_or_rewrite(),
                self.lost_writes(),
                self.view_change("check do_view_change log selection (log_view): a new primary must never drop a committed op"),
                self.state_transfer("check commit_min jumps to the checkpoint's op only after the checkpoint is installed and synced"),
                self.crash_restart("check commit_min is persisted monotonically and the torn-tail rule never truncates a committed op"),
            ],
            Classification::Liveness => vec![
                self.last_commit(),
                self.still_broken(),
                self.view_churn(),
                self.outstanding(),
                self.sync_errors(),
                self.partitions("check every link was healed at the start of the liveness phase"),
            ],
            Classification::RecoveryFailure => vec![
                self.crash_restart("check WAL recovery's torn-tail rule: a torn tail is truncated only if it was never acknowledged; mid-log corruption is repaired from a peer"),
                self.disk_corruption("check recovery reads several superblock copies and repairs corrupt WAL entries from a peer instead of halting or truncating"),
                self.state_transfer("check a replica that fell behind the checkpoint installs it before replaying the WAL"),
                self.fault_bound(),
            ],
            Classification::NonDeterminism => vec![
                self.divergence_point(),
                self.divergence_subsystem(),
                self.replica_select(),
            ],
            Classification::CheckpointMismatch => vec![
                self.state_transfer("check the checkpoint is taken at exactly its op and includes the client table"),
                self.crash_restart("check the superblock points at a checkpoint only after the checkpoint is synced"),
                self.disk_corruption("check the checkpoint's checksum is verified on load and a corrupt one is fetched from a peer"),
                self.lost_writes(),
            ],
            Classification::StorageNondeterminism => vec![
                self.disk_corruption("faults must not leak into the bytes of healthy writes: check the storage determinism checker compares only replicas without faults in this window"),
                self.crash_restart("check recovery rewrites the tail identically on every replica (zeroed padding, same slot layout)"),
                self.state_transfer("check the checkpoint is serialized in a canonical (sorted) order"),
            ],
        };
        let mut out: Vec<String> = s.into_iter().flatten().collect();
        let mut seen = BTreeSet::new();
        out.retain(|s| seen.insert(s.clone()));
        out
    }

    // --- facts drawn from the trace, each with the advice that follows from it ---

    fn disk_faults_of(&self, replica: Option<u8>, kinds: &[&str]) -> BTreeMap<String, usize> {
        self.a
            .fault_counts_before(self.at_us, FAULT_WINDOW_US, replica)
            .into_iter()
            .filter(|(k, _)| kinds.iter().any(|x| k == x))
            .collect()
    }

    fn counts_text(counts: &BTreeMap<String, usize>) -> String {
        counts
            .iter()
            .map(|(k, n)| format!("{n} x {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn disk_corruption(&self, advice: &str) -> Option<String> {
        const KINDS: &[&str] = &["disk.bit_rot", "disk.misdirect", "disk.latent_error"];
        // Prefer the failing replica; else every replica that had such faults.
        if let Some(r) = self.replica {
            let counts = self.disk_faults_of(Some(r), KINDS);
            if !counts.is_empty() {
                return Some(format!(
                    "replica {r} had {} in the {} before the failure — {advice}{}",
                    Self::counts_text(&counts),
                    self.window(),
                    self.op_suffix()
                ));
            }
        }
        let mut per_replica: BTreeMap<u8, BTreeMap<String, usize>> = BTreeMap::new();
        for e in self.a.faults_before(self.at_us, FAULT_WINDOW_US) {
            if let (Some(kind), Some(r)) = (e.kind.fault_kind(), e.kind.replica()) {
                if KINDS.contains(&kind) {
                    *per_replica
                        .entry(r)
                        .or_default()
                        .entry(kind.to_string())
                        .or_insert(0) += 1;
                }
            }
        }
        if per_replica.is_empty() {
            return None;
        }
        let parts: Vec<String> = per_replica
            .iter()
            .map(|(r, c)| format!("replica {r}: {}", Self::counts_text(c)))
            .collect();
        Some(format!(
            "storage faults before the failure ({}) — {advice}{}",
            parts.join("; "),
            self.op_suffix()
        ))
    }

    fn net_corruption(&self, advice: &str) -> Option<String> {
        let counts = self.disk_faults_of(None, &["net.corrupt", "net.duplicate"]);
        (!counts.is_empty()).then(|| {
            format!(
                "the network injected {} in the {} before the failure — {advice}",
                Self::counts_text(&counts),
                self.window()
            )
        })
    }

    /// The crash/restart of the failing replica (or the last one of any replica) before the
    /// failure, with the crash faults (torn / lost writes) that came with it.
    fn crash_restart(&self, advice: &str) -> Option<String> {
        let downs = self.a.downtimes(None);
        let before: Vec<_> = downs.iter().filter(|d| d.crash_us <= self.at_us).collect();
        let d = self
            .replica
            .and_then(|r| before.iter().rev().find(|d| d.replica == r))
            .or_else(|| before.last())?;
        let until = d.restart_us.unwrap_or(self.at_us);
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for e in self
            .a
            .between(d.crash_us.saturating_sub(FAULT_WINDOW_US), until)
        {
            if let EventKind::FaultInjected { kind, replica, .. } = &e.kind {
                if *replica == Some(d.replica) && kind.starts_with("disk.crash") {
                    *counts.entry(kind.clone()).or_insert(0) += 1;
                }
            }
        }
        let faults = if counts.is_empty() {
            String::from("no torn or lost writes traced")
        } else {
            let parts: Vec<String> = counts
                .iter()
                .map(|(k, n)| {
                    let what = match k.as_str() {
                        "disk.crash_torn" => "torn writes",
                        "disk.crash_lost" => "lost unsynced writes",
                        _ => "crash faults",
                    };
                    format!("{n} {what} ({k})")
                })
                .collect();
            parts.join(" and ")
        };
        let when = match d.restart_us {
            Some(t) => format!(
                "restarted at {} after a crash at {} with {faults}",
                format_us(t),
                format_us(d.crash_us)
            ),
            None => format!(
                "crashed at {} with {faults} and was still down at the failure",
                format_us(d.crash_us)
            ),
        };
        Some(format!(
            "replica {} {when} — {advice}{}",
            d.replica,
            self.op_suffix()
        ))
    }

    fn lost_writes(&self) -> Option<String> {
        let counts = self.disk_faults_of(self.replica, &["disk.crash_lost"]);
        let n = counts.get("disk.crash_lost")?;
        let who = self
            .replica
            .map(|r| format!("replica {r}"))
            .unwrap_or_else(|| "the cluster".into());
        Some(format!(
            "{who} lost {n} unsynced writes on crash (disk.crash_lost) in the {} before the failure — a PREPARE_OK sent before its prepare was synced lets a committed op vanish: check sync-before-PREPARE_OK{}",
            self.window(),
            self.op_suffix()
        ))
    }

    fn view_change(&self, advice: &str) -> Option<String> {
        let e = self.a.last_view_installed_before(self.at_us)?;
        let EventKind::ViewInstalled {
            replica,
            view,
            primary,
        } = e.kind
        else {
            return None;
        };
        let started = self.a.last_before(
            self.at_us,
            |k| matches!(k, EventKind::ViewChangeStarted { view: v, .. } if *v == view),
        );
        let started = started
            .map(|s| {
                format!(
                    " (view change started by replica {} at {})",
                    s.kind.replica().unwrap_or(replica),
                    format_us(s.at_us)
                )
            })
            .unwrap_or_default();
        Some(format!(
            "the last view change before the failure installed view {view} on replica {replica} (primary {primary}) at {}{started} — {advice}{}",
            format_us(e.at_us),
            self.op_suffix()
        ))
    }

    fn state_transfer(&self, advice: &str) -> Option<String> {
        let e = self.a.last_before(self.at_us, |k| match k {
            EventKind::StateTransfer { replica, .. } => {
                self.replica.is_none() || Some(*replica) == self.replica
            }
            _ => false,
        })?;
        let EventKind::StateTransfer {
            replica,
            from_op,
            to_op,
        } = e.kind
        else {
            return None;
        };
        Some(format!(
            "replica {replica} state-transferred from op {from_op} to op {to_op} at {} — {advice}",
            format_us(e.at_us)
        ))
    }

    fn partitions(&self, advice: &str) -> Option<String> {
        let open = self.a.open_partitions(self.at_us);
        let recent: Vec<&TraceEvent> = self
            .a
            .faults_before(self.at_us, FAULT_WINDOW_US)
            .into_iter()
            .filter(|e| matches!(e.kind, EventKind::Partition { .. }))
            .collect();
        if open.is_empty() && recent.is_empty() {
            return None;
        }
        let mut parts: Vec<String> = open
            .iter()
            .map(|(link, t)| format!("{link} since {} (never healed)", format_us(*t)))
            .collect();
        for e in &recent {
            if let EventKind::Partition { link } = &e.kind {
                if !open.iter().any(|(l, _)| l == link) {
                    parts.push(format!("{link} at {} (healed)", format_us(e.at_us)));
                }
            }
        }
        parts.truncate(4);
        Some(format!(
            "partitions before the failure: {} — {advice}",
            parts.join(", ")
        ))
    }

    fn unknown_outcomes(&self, advice: &str) -> Option<String> {
        let ops: Vec<ClientOp> = self
            .a
            .client_ops()
            .into_iter()
            .filter(|op| op.outcome == Some(Outcome::Unknown))
            .filter(|op| key_matches(self.failure.key.as_deref(), &op.key))
            .filter(|op| op.invoke_us <= self.at_us)
            .collect();
        if ops.is_empty() {
            return None;
        }
        let list: Vec<String> = ops.iter().take(3).map(ClientOp::describe).collect();
        let on = self
            .failure
            .key
            .as_deref()
            .map(|k| format!(" on key {k}"))
            .unwrap_or_default();
        Some(format!(
            "{} operation(s){on} ended with an unknown outcome: {} — {advice}",
            ops.len(),
            list.join("; ")
        ))
    }

    fn key_history(&self) -> Option<String> {
        let key = self.failure.key.as_deref()?;
        let ops = self.a.ops_on_key(key);
        let last_write = ops
            .iter()
            .rev()
            .filter(|op| op.invoke_us <= self.at_us)
            .find(|op| op.op != crate::trace::OpKind::Read && op.outcome == Some(Outcome::Ok))?;
        let upto = last_write
            .op_number
            .map(|n| format!(" up to op {n}"))
            .unwrap_or_default();
        Some(format!(
            "key {key}: the last acknowledged write before the failure was {} — replay the committed log{upto} and compare the model's value with what the failing read returned{}",
            last_write.describe(),
            self.replica.map(|r| format!(" on replica {r}")).unwrap_or_default()
        ))
    }

    fn failing_and_concurrent(&self) -> Option<String> {
        let f = self.failing.as_ref()?;
        let end = self.a.end_us();
        let concurrent: Vec<ClientOp> = self
            .a
            .ops_on_key(&f.key)
            .into_iter()
            .filter(|op| op.invoke_seq != f.invoke_seq && op.overlaps(f, end))
            .collect();
        let list: Vec<String> = concurrent.iter().take(3).map(ClientOp::describe).collect();
        Some(if concurrent.is_empty() {
            format!(
                "the operation that cannot be placed is {}; no other operation on key {} overlaps it, so it contradicts an earlier completed one — compare with the previous write's op number",
                f.describe(),
                f.key
            )
        } else {
            format!(
                "the operation that cannot be placed is {}; {} operation(s) on key {} overlap it: {}",
                f.describe(),
                concurrent.len(),
                f.key,
                list.join("; ")
            )
        })
    }

    fn reply_before_commit(&self) -> Option<String> {
        let f = self.failing.as_ref()?;
        let n = f.op_number?;
        let complete_us = f.complete_us?;
        let commits = self.a.commits_of_op(n);
        match commits.iter().map(|c| c.2).min() {
            Some(first) if first > complete_us => Some(format!(
                "client {} saw the reply for op {n} at {} but the first commit of op {n} is at {} (replica {}) — a reply was sent before commit",
                f.client,
                format_us(complete_us),
                format_us(first),
                commits[0].0
            )),
            Some(first) => Some(format!(
                "op {n} (the failing reply) first committed at {} on replica {} and was acknowledged at {} — check the value returned is the state after exactly op {n} (reads in op-number order)",
                format_us(first),
                commits[0].0,
                format_us(complete_us)
            )),
            None => None,
        }
    }

    fn view_change_during_op(&self) -> Option<String> {
        let f = self.failing.as_ref();
        let (from, to) = match f {
            Some(f) => (f.invoke_us, f.end_us(self.at_us)),
            None => (self.at_us.saturating_sub(FAULT_WINDOW_US), self.at_us),
        };
        let during: Vec<&TraceEvent> = self
            .a
            .between(from, to)
            .iter()
            .filter(|e| matches!(e.kind, EventKind::ViewInstalled { .. }))
            .collect();
        if let Some(e) = during.last() {
            let EventKind::ViewInstalled {
                replica,
                view,
                primary,
            } = e.kind
            else {
                return None;
            };
            return Some(format!(
                "view {view} was installed on replica {replica} (primary {primary}) at {}, while the operation was in flight — a read answered by the old primary after the new view began is stale: reads must go through the log or hold a lease of the current view",
                format_us(e.at_us)
            ));
        }
        self.view_change("check that a replica answers only in the view it has installed")
    }

    fn crash_during_op(&self) -> Option<String> {
        let f = self.failing.as_ref()?;
        let end = f.end_us(self.at_us);
        let d = self
            .a
            .downtimes(None)
            .into_iter()
            .find(|d| d.crash_us >= f.invoke_us && d.crash_us <= end)?;
        Some(format!(
            "replica {} crashed at {} while client {} request {} was in flight — check the reply is not sent from state that the crash rolled back (sync before PREPARE_OK)",
            d.replica,
            format_us(d.crash_us),
            f.client,
            f.request
        ))
    }

    fn divergent_checksums(&self) -> Option<String> {
        let op = self.op?;
        let commits = self.a.commits_of_op(op);
        let mut by_sum: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
        for (r, sum, _) in &commits {
            let list = by_sum.entry(sum).or_default();
            if !list.contains(r) {
                list.push(*r);
            }
        }
        if by_sum.len() < 2 {
            return None;
        }
        let parts: Vec<String> = by_sum
            .iter()
            .map(|(sum, rs)| {
                let rs: Vec<String> = rs.iter().map(u8::to_string).collect();
                format!("checksum {sum} on replica(s) {}", rs.join(", "))
            })
            .collect();
        Some(format!(
            "op {op} was committed with {} — the first op where replicas disagree; look at what the odd replica did just before",
            parts.join(" but ")
        ))
    }

    fn commit_gap_or_rewrite(&self) -> Option<String> {
        let transfers: Vec<(u8, u64)> = self
            .a
            .events()
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::StateTransfer { replica, to_op, .. } => Some((replica, to_op)),
                _ => None,
            })
            .collect();
        let replicas: Vec<u8> = match self.replica {
            Some(r) => vec![r],
            None => self.a.replicas().into_iter().collect(),
        };
        for r in replicas {
            let mut last: BTreeMap<u64, (&str, u64)> = BTreeMap::new();
            let mut prev: Option<u64> = None;
            for e in self.a.between(0, self.at_us) {
                let EventKind::Commit {
                    replica,
                    op,
                    checksum,
                } = &e.kind
                else {
                    continue;
                };
                if *replica != r {
                    continue;
                }
                if let Some((sum, t)) = last.get(op) {
                    if *sum != checksum {
                        return Some(format!(
                            "replica {r} committed op {op} twice: checksum {sum} at {} and {checksum} at {} — a committed op was rewritten",
                            format_us(*t),
                            format_us(e.at_us)
                        ));
                    }
                }
                if let Some(p) = prev {
                    let explained = transfers.iter().any(|&(tr, to)| tr == r && to + 1 >= *op);
                    if *op > p + 1 && !explained {
                        return Some(format!(
                            "replica {r} committed op {p} then op {op} at {} — ops {}..{} were skipped (commit gap)",
                            format_us(e.at_us),
                            p + 1,
                            op - 1
                        ));
                    }
                    if *op <= p {
                        return Some(format!(
                            "replica {r} committed op {op} at {} after op {p} — the commit number went backwards",
                            format_us(e.at_us)
                        ));
                    }
                }
                last.insert(*op, (checksum.as_str(), e.at_us));
                prev = Some(*op);
            }
        }
        None
    }

    fn last_commit(&self) -> Option<String> {
        let e = self.a.last_commit_before(self.at_us)?;
        let EventKind::Commit { replica, op, .. } = e.kind else {
            return None;
        };
        Some(format!(
            "the last commit in the trace is op {op} on replica {replica} at {}; nothing committed in the {} before the failure at {} — find what the primary of the last view was waiting for",
            format_us(e.at_us),
            format_us(self.at_us - e.at_us),
            format_us(self.at_us)
        ))
    }

    fn still_broken(&self) -> Option<String> {
        let mut parts: Vec<String> = self
            .a
            .downtimes(None)
            .into_iter()
            .filter(|d| d.restart_us.is_none() && d.crash_us <= self.at_us)
            .map(|d| format!("replica {} down since {}", d.replica, format_us(d.crash_us)))
            .collect();
        parts.extend(
            self.a
                .open_partitions(self.at_us)
                .into_iter()
                .map(|(l, t)| format!("link {l} partitioned since {}", format_us(t))),
        );
        (!parts.is_empty()).then(|| {
            format!(
                "still faulty at the failure: {} — the liveness phase must heal every link and restart every replica; if it did, the trace is missing the Heal/Restart",
                parts.join(", ")
            )
        })
    }

    fn view_churn(&self) -> Option<String> {
        let starts: Vec<u64> = self
            .a
            .between(self.at_us.saturating_sub(FAULT_WINDOW_US * 5), self.at_us)
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::ViewChangeStarted { view, .. } => Some(view),
                _ => None,
            })
            .collect();
        if starts.is_empty() {
            return self.view_change(
                "check the new primary finishes the view change (start_view sent, log_view synced)",
            );
        }
        let lo = starts.iter().min().copied().unwrap_or(0);
        let hi = starts.iter().max().copied().unwrap_or(0);
        Some(format!(
            "{} view change(s) started in the {} before the failure (views {lo}..{hi}) — check view-change timeouts back off and that a replica does not start a newer view change while a DVC quorum for the current one can still form",
            starts.len(),
            format_us(FAULT_WINDOW_US * 5)
        ))
    }

    fn outstanding(&self) -> Option<String> {
        let ops: Vec<ClientOp> = self
            .a
            .outstanding_ops()
            .into_iter()
            .filter(|op| op.invoke_us <= self.at_us)
            .collect();
        let first = ops.first()?;
        Some(format!(
            "{} request(s) never completed, the oldest {} — check clients resend to the new primary after a view change and duplicates are answered from the client table",
            ops.len(),
            first.describe()
        ))
    }

    fn sync_errors(&self) -> Option<String> {
        let counts = self.disk_faults_of(None, &["disk.sync_error", "disk.full"]);
        if counts.is_empty() {
            return None;
        }
        let replicas: BTreeSet<u8> = self
            .a
            .faults_before(self.at_us, FAULT_WINDOW_US)
            .iter()
            .filter(|e| matches!(e.kind.fault_kind(), Some("disk.sync_error" | "disk.full")))
            .filter_map(|e| e.kind.replica())
            .collect();
        let rs: Vec<String> = replicas.iter().map(u8::to_string).collect();
        Some(format!(
            "{} on replica(s) {} — an fsync error stops the node by design; if more than f replicas stopped, the cluster is outside the fault bound and the harness should not have injected it",
            Self::counts_text(&counts),
            rs.join(", ")
        ))
    }

    fn fault_bound(&self) -> Option<String> {
        let faulty: BTreeSet<u8> = self
            .a
            .faults_before(self.at_us, FAULT_WINDOW_US)
            .iter()
            .filter(|e| e.kind.fault_kind().is_some_and(|k| k.starts_with("disk.")))
            .filter_map(|e| e.kind.replica())
            .collect();
        if faulty.is_empty() {
            return None;
        }
        let n = self.a.replicas().len().max(1);
        let f = (n - 1) / 2;
        let rs: Vec<String> = faulty.iter().map(u8::to_string).collect();
        let verdict = if faulty.len() > f {
            "more than f: halting is correct, and the harness broke the bound"
        } else {
            "within f: the cluster must recover, repairing from the healthy replicas"
        };
        Some(format!(
            "{} of {n} replicas (replica(s) {}) had storage faults in the {} before the failure — {verdict}",
            faulty.len(),
            rs.join(", "),
            self.window()
        ))
    }

    fn divergence_point(&self) -> Option<String> {
        let e = self
            .a
            .first_violation()
            .or_else(|| self.a.events().last())?;
        Some(format!(
            "the runs diverge at or just before event #{} at {} ({}) — the message names the first divergent event; compare the two runs' traces (--enable-trace --trace-dir) with first_difference",
            e.seq,
            format_us(e.at_us),
            e.kind
        ))
    }

    fn divergence_subsystem(&self) -> Option<String> {
        let e = self.a.last_before(self.at_us, |k| {
            !matches!(
                k,
                EventKind::InvariantViolated { .. } | EventKind::InvariantChecked { .. }
            )
        })?;
        let hint = match &e.kind {
            EventKind::NetDrop { .. }
            | EventKind::NetDuplicate { .. }
            | EventKind::Partition { .. }
            | EventKind::Heal { .. } => {
                "the network interposer: its draws must come from sim_runtime::rand in a fixed order"
            }
            EventKind::FaultInjected { .. } => {
                "the simulated disk / fault injector: iterate pending writes in a fixed order (no HashMap) before drawing"
            }
            EventKind::Commit { .. } => {
                "the replica's core: message handling order (unbiased select!) or HashMap iteration in the state machine"
            }
            EventKind::ClientInvoke { .. } | EventKind::ClientComplete { .. } => {
                "the workload generator: every choice must come from the seed's generator"
            }
            _ => "the task scheduling around it: unbiased select!, OS threads, or clock reads",
        };
        Some(format!(
            "the last event before the divergence is #{} at {} ({}) — suspect {hint}",
            e.seq,
            format_us(e.at_us),
            e.kind
        ))
    }

    fn replica_select(&self) -> Option<String> {
        let r = self.replica?;
        Some(format!(
            "replica {r} is involved — check its driver loop uses `biased;` in every tokio::select! and never reads std::time or thread_rng"
        ))
    }
}

/// The first op (at or before `at_us`) whose commits carry different checksums, with the
/// replica in the minority.
fn first_divergent_commit(a: &TraceAnalyzer<'_>, at_us: u64) -> Option<(u64, u8)> {
    let mut sums: BTreeMap<u64, Vec<(u8, &str)>> = BTreeMap::new();
    for e in a.between(0, at_us) {
        if let EventKind::Commit {
            replica,
            op,
            checksum,
        } = &e.kind
        {
            sums.entry(*op).or_default().push((*replica, checksum));
        }
    }
    for (op, list) in sums {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, s) in &list {
            *counts.entry(s).or_insert(0) += 1;
        }
        if counts.len() > 1 {
            let (minority, _) = counts.iter().min_by_key(|(_, n)| **n)?;
            let replica = list.iter().find(|(_, s)| s == minority)?.0;
            return Some((op, replica));
        }
    }
    None
}

/// The replica with the most faults in the window before `at_us`.
fn most_faulted_replica(a: &TraceAnalyzer<'_>, at_us: u64) -> Option<u8> {
    let mut counts: BTreeMap<u8, usize> = BTreeMap::new();
    for e in a.faults_before(at_us, FAULT_WINDOW_US) {
        if let Some(r) = e.kind.replica() {
            *counts.entry(r).or_insert(0) += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|&(r, n)| (n, std::cmp::Reverse(r)))
        .map(|(r, _)| r)
}
