//! Queries over a trace, for post-mortems: what happened around a violation, on one replica, to
//! one client, before a point in time. Read-only over a slice of [`TraceEvent`]s in push order
//! (sequence numbers increasing, simulated time non-decreasing); never allocates more than the
//! answer.

use kmb_node::entry::View;
use std::collections::{BTreeMap, BTreeSet};

use crate::trace::{EventKind, OpKind, Outcome, TraceEvent};

/// Where to centre [`TraceAnalyzer::around`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    /// An event's sequence number; the window counts events on each side.
    Seq(u64),
    /// A simulated time in microseconds; the window is microseconds on each side.
    TimeUs(u64),
}

/// One client operation, its invocation paired with its completion (if any was traced).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOp {
    pub client: u64,
    pub request: u64,
    pub op: OpKind,
    pub key: String,
    pub invoke_seq: u64,
    pub invoke_us: u64,
    pub complete_seq: Option<u64>,
    pub complete_us: Option<u64>,
    /// `None` when the trace ends before the completion.
    pub outcome: Option<Outcome>,
    pub op_number: Option<u64>,
    /// A read served without a log entry: `op_number` names the state it read.
    pub read: bool,
}

impl ClientOp {
    /// End of the operation's interval: its completion, or `end_us` if it never completed.
    pub fn end_us(&self, end_us: u64) -> u64 {
        self.complete_us.unwrap_or(end_us)
    }

    /// Whether the intervals of two operations overlap (open ends reach `end_us`).
    pub fn overlaps(&self, other: &ClientOp, end_us: u64) -> bool {
        self.invoke_us <= other.end_us(end_us) && other.invoke_us <= self.end_us(end_us)
    }

    /// `client 3 request 17 (write k12, ok at op 57, 1.2s..1.3s)`
    pub fn describe(&self) -> String {
        let outcome = match (self.outcome, self.op_number) {
            (Some(o), Some(n)) if self.read => format!("{}, read at op {n}", o.as_str()),
            (Some(o), Some(n)) => format!("{} at op {n}", o.as_str()),
            (Some(o), None) => o.as_str().to_string(),
            (None, _) => "never completed".to_string(),
        };
        let end = self
            .complete_us
            .map(crate::trace::format_us)
            .unwrap_or_else(|| "…".into());
        format!(
            "client {} request {} ({} {}, {}, {}..{})",
            self.client,
            self.request,
            self.op.as_str(),
            self.key,
            outcome,
            crate::trace::format_us(self.invoke_us),
            end
        )
    }
}

/// A crash of a replica and its restart, if one was traced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Downtime {
    pub replica: u8,
    pub crash_us: u64,
    pub restart_us: Option<u64>,
}

/// Read-only queries over a trace. See the module docs.
#[derive(Clone, Copy, Debug)]
pub struct TraceAnalyzer<'a> {
    events: &'a [TraceEvent],
}

impl<'a> TraceAnalyzer<'a> {
    pub fn new(events: &'a [TraceEvent]) -> TraceAnalyzer<'a> {
        debug_assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
        debug_assert!(events.windows(2).all(|w| w[0].at_us <= w[1].at_us));
        TraceAnalyzer { events }
    }

    pub fn events(&self) -> &'a [TraceEvent] {
        self.events
    }

    /// Time of the last event (0 for an empty trace).
    pub fn end_us(&self) -> u64 {
        self.events.last().map_or(0, |e| e.at_us)
    }

    /// Time of the first event (0 for an empty trace).
    pub fn start_us(&self) -> u64 {
        self.events.first().map_or(0, |e| e.at_us)
    }

    /// Events around an anchor: `window` events on each side of `Seq(s)` (the event with that
    /// sequence number, or where it would be), or those within `window` µs of `TimeUs(t)`.
    pub fn around(&self, anchor: Anchor, window: u64) -> &'a [TraceEvent] {
        match anchor {
            Anchor::Seq(seq) => {
                let at = self.events.partition_point(|e| e.seq < seq);
                let window = usize::try_from(window).unwrap_or(usize::MAX);
                let start = at.saturating_sub(window);
                let end = at
                    .saturating_add(window)
                    .saturating_add(1)
                    .min(self.events.len());
                &self.events[start..end]
            }
            Anchor::TimeUs(at_us) => self.between(at_us.saturating_sub(window), at_us + window),
        }
    }

    /// Events with `from_us <= at_us <= to_us`.
    pub fn between(&self, from_us: u64, to_us: u64) -> &'a [TraceEvent] {
        let start = self.events.partition_point(|e| e.at_us < from_us);
        let end = self.events.partition_point(|e| e.at_us <= to_us);
        &self.events[start..end.max(start)]
    }

    /// Events that happened on, or concern, `replica`.
    pub fn replica_timeline(&self, replica: u8) -> Vec<&'a TraceEvent> {
        self.events
            .iter()
            .filter(|e| e.kind.involves_replica(replica))
            .collect()
    }

    /// The replicas named anywhere in the trace.
    pub fn replicas(&self) -> BTreeSet<u8> {
        let mut out = BTreeSet::new();
        for e in self.events {
            if let Some(r) = e.kind.replica() {
                out.insert(r);
            }
            if let EventKind::ViewInstalled { primary, .. } = e.kind {
                out.insert(primary);
            }
        }
        out
    }

    /// The clients named anywhere in the trace.
    pub fn clients(&self) -> BTreeSet<u64> {
        self.events.iter().filter_map(|e| e.kind.client()).collect()
    }

    /// The last `ViewChangeStarted` or `ViewInstalled` at or before `at_us`.
    pub fn last_view_change_before(&self, at_us: u64) -> Option<&'a TraceEvent> {
        self.last_before(at_us, |k| {
            matches!(
                k,
                EventKind::ViewChangeStarted { .. } | EventKind::ViewInstalled { .. }
            )
        })
    }

    /// The last `ViewInstalled` at or before `at_us`.
    pub fn last_view_installed_before(&self, at_us: u64) -> Option<&'a TraceEvent> {
        self.last_before(at_us, |k| matches!(k, EventKind::ViewInstalled { .. }))
    }

    /// The last event at or before `at_us` matching `pred`.
    pub fn last_before(
        &self,
        at_us: u64,
        pred: impl Fn(&EventKind) -> bool,
    ) -> Option<&'a TraceEvent> {
        let end = self.events.partition_point(|e| e.at_us <= at_us);
        self.events[..end].iter().rev().find(|e| pred(&e.kind))
    }

    /// Faults (see [`EventKind::is_fault`]) in `[at_us - window_us, at_us]`.
    pub fn faults_before(&self, at_us: u64, window_us: u64) -> Vec<&'a TraceEvent> {
        self.between(at_us.saturating_sub(window_us), at_us)
            .iter()
            .filter(|e| e.kind.is_fault())
            .collect()
    }

    /// Fault counts by kind (see [`EventKind::fault_kind`]) in the window before `at_us`,
    /// restricted to `replica` if given (faults naming no replica count for all).
    pub fn fault_counts_before(
        &self,
        at_us: u64,
        window_us: u64,
        replica: Option<u8>,
    ) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for e in self.faults_before(at_us, window_us) {
            if let Some(r) = replica {
                let names_other = e.kind.replica().is_some_and(|x| x != r)
                    || matches!(&e.kind, EventKind::Partition { .. } | EventKind::NetDrop { .. } | EventKind::NetDuplicate { .. } if !e.kind.involves_replica(r));
                if names_other {
                    continue;
                }
            }
            if let Some(kind) = e.kind.fault_kind() {
                *counts.entry(kind.to_string()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// The first `InvariantViolated` event.
    pub fn first_violation(&self) -> Option<&'a TraceEvent> {
        self.events
            .iter()
            .find(|e| matches!(e.kind, EventKind::InvariantViolated { .. }))
    }

    /// The invocations and completions of one client.
    pub fn ops_of_client(&self, client: u64) -> Vec<&'a TraceEvent> {
        self.events
            .iter()
            .filter(|e| e.kind.client() == Some(client))
            .collect()
    }

    /// Every client operation, invocation paired with completion by (client, request), in
    /// invocation order. A completion without a traced invocation (evicted) is skipped.
    pub fn client_ops(&self) -> Vec<ClientOp> {
        let mut ops: Vec<ClientOp> = Vec::new();
        let mut open: BTreeMap<(u64, u64), usize> = BTreeMap::new();
        for e in self.events {
            match &e.kind {
                EventKind::ClientInvoke {
                    client,
                    request,
                    op,
                    key,
                } => {
                    open.insert((*client, *request), ops.len());
                    ops.push(ClientOp {
                        client: *client,
                        request: *request,
                        op: *op,
                        key: key.clone(),
                        invoke_seq: e.seq,
                        invoke_us: e.at_us,
                        complete_seq: None,
                        complete_us: None,
                        outcome: None,
                        op_number: None,
                        read: false,
                    });
                }
                EventKind::ClientComplete {
                    client,
                    request,
                    outcome,
                    op_number,
                    read,
                    ..
                } => {
                    if let Some(i) = open.remove(&(*client, *request)) {
                        let op = &mut ops[i];
                        op.complete_seq = Some(e.seq);
                        op.complete_us = Some(e.at_us);
                        op.outcome = Some(*outcome);
                        op.op_number = *op_number;
                        op.read = *read;
                    }
                }
                _ => {}
            }
        }
        ops
    }

    /// The client operations on `key`, in invocation order.
    pub fn ops_on_key(&self, key: &str) -> Vec<ClientOp> {
        self.client_ops()
            .into_iter()
            .filter(|op| op.key == key)
            .collect()
    }

    /// Client operations invoked but never completed.
    pub fn outstanding_ops(&self) -> Vec<ClientOp> {
        self.client_ops()
            .into_iter()
            .filter(|op| op.complete_us.is_none())
            .collect()
    }

    /// Events naming log op `op` (commits, replies carrying it).
    pub fn events_for_op(&self, op: u64) -> Vec<&'a TraceEvent> {
        self.events
            .iter()
            .filter(|e| e.kind.op() == Some(op))
            .collect()
    }

    /// `(replica, checksum, at_us)` of every commit of `op`, in trace order.
    pub fn commits_of_op(&self, op: u64) -> Vec<(u8, &'a str, u64)> {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Commit {
                    replica,
                    op: o,
                    checksum,
                } if *o == op => Some((*replica, checksum.as_str(), e.at_us)),
                _ => None,
            })
            .collect()
    }

    /// The ops `replica` committed, in trace order.
    pub fn commit_ops_of(&self, replica: u8) -> Vec<u64> {
        self.events
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::Commit { replica: r, op, .. } if r == replica => Some(op),
                _ => None,
            })
            .collect()
    }

    /// The last commit (on any replica) at or before `at_us`.
    pub fn last_commit_before(&self, at_us: u64) -> Option<&'a TraceEvent> {
        self.last_before(at_us, |k| matches!(k, EventKind::Commit { .. }))
    }

    /// Crash → restart spans of `replica` (or all replicas).
    pub fn downtimes(&self, replica: Option<u8>) -> Vec<Downtime> {
        let mut out: Vec<Downtime> = Vec::new();
        for e in self.events {
            match e.kind {
                EventKind::Crash { replica: r } if replica.is_none_or(|x| x == r) => {
                    out.push(Downtime {
                        replica: r,
                        crash_us: e.at_us,
                        restart_us: None,
                    });
                }
                EventKind::Restart { replica: r } if replica.is_none_or(|x| x == r) => {
                    if let Some(d) = out
                        .iter_mut()
                        .rev()
                        .find(|d| d.replica == r && d.restart_us.is_none())
                    {
                        d.restart_us = Some(e.at_us);
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Partitions not healed by `at_us`: `(link, partitioned_at_us)`.
    pub fn open_partitions(&self, at_us: u64) -> Vec<(&'a str, u64)> {
        let mut open: BTreeMap<&'a str, u64> = BTreeMap::new();
        for e in self.between(0, at_us) {
            match &e.kind {
                EventKind::Partition { link } => {
                    open.entry(link.as_str()).or_insert(e.at_us);
                }
                EventKind::Heal { link } => {
                    open.remove(link.as_str());
                }
                _ => {}
            }
        }
        open.into_iter().collect()
    }

    /// Views installed, per replica, as `(from_us, view, primary)` in order.
    pub fn views_of(&self, replica: u8) -> Vec<(u64, View, u8)> {
        self.events
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::ViewInstalled {
                    replica: r,
                    view,
                    primary,
                } if r == replica => Some((e.at_us, view, primary)),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::trace::{link_name, TraceCollector, TraceFilter};

    /// A small 3-replica story: writes, a crash of replica 2 with torn writes, a view change,
    /// a partition, and a violation on key "k7".
    pub(crate) fn story() -> Vec<TraceEvent> {
        let mut t = TraceCollector::with_options(9, TraceFilter::Verbose, 1000);
        let ms = 1000;
        t.push(
            0,
            EventKind::ViewInstalled {
                replica: 0,
                view: 1,
                primary: 0,
            },
        );
        t.push(
            0,
            EventKind::ViewInstalled {
                replica: 1,
                view: 1,
                primary: 0,
            },
        );
        t.push(
            0,
            EventKind::ViewInstalled {
                replica: 2,
                view: 1,
                primary: 0,
            },
        );
        t.push(
            10 * ms,
            EventKind::ClientInvoke {
                client: 1,
                request: 1,
                op: OpKind::Write,
                key: "k7".into(),
            },
        );
        for r in 0..3 {
            t.push(
                14 * ms,
                EventKind::Commit {
                    replica: r,
                    op: 57,
                    checksum: if r == 2 { "bad0".into() } else { "c0de".into() },
                },
            );
        }
        t.push(
            15 * ms,
            EventKind::ClientComplete {
                client: 1,
                request: 1,
                op: OpKind::Write,
                outcome: Outcome::Ok,
                op_number: Some(57),
                read: false,
            },
        );
        t.push(
            20 * ms,
            EventKind::ClientInvoke {
                client: 2,
                request: 1,
                op: OpKind::Read,
                key: "k7".into(),
            },
        );
        t.push(
            21 * ms,
            EventKind::ClientInvoke {
                client: 1,
                request: 2,
                op: OpKind::Rmw,
                key: "k7".into(),
            },
        );
        t.push(
            22 * ms,
            EventKind::FaultInjected {
                kind: "disk.crash_torn".into(),
                replica: Some(2),
                detail: "sector 12".into(),
            },
        );
        t.push(
            22 * ms,
            EventKind::FaultInjected {
                kind: "disk.crash_torn".into(),
                replica: Some(2),
                detail: "sector 13".into(),
            },
        );
        t.push(
            22 * ms,
            EventKind::FaultInjected {
                kind: "disk.crash_torn".into(),
                replica: Some(2),
                detail: "sector 14".into(),
            },
        );
        t.push(23 * ms, EventKind::Crash { replica: 2 });
        t.push(
            24 * ms,
            EventKind::Partition {
                link: link_name(0, 1),
            },
        );
        t.push(
            25 * ms,
            EventKind::ViewChangeStarted {
                replica: 1,
                view: 2,
            },
        );
        t.push(
            26 * ms,
            EventKind::ViewInstalled {
                replica: 1,
                view: 2,
                primary: 1,
            },
        );
        t.push(
            27 * ms,
            EventKind::ClientComplete {
                client: 1,
                request: 2,
                op: OpKind::Rmw,
                outcome: Outcome::Unknown,
                op_number: None,
                read: false,
            },
        );
        t.push(30 * ms, EventKind::Restart { replica: 2 });
        t.push(
            31 * ms,
            EventKind::StateTransfer {
                replica: 2,
                from_op: 40,
                to_op: 57,
            },
        );
        t.push(
            33 * ms,
            EventKind::FaultInjected {
                kind: "disk.bit_rot".into(),
                replica: Some(0),
                detail: "op 57 body".into(),
            },
        );
        t.push(
            34 * ms,
            EventKind::ClientComplete {
                client: 2,
                request: 1,
                op: OpKind::Read,
                outcome: Outcome::Ok,
                op_number: Some(58),
                read: false,
            },
        );
        t.push(
            35 * ms,
            EventKind::InvariantViolated {
                name: "linearizability".into(),
                detail: "read of k7 cannot be placed".into(),
            },
        );
        t.push(
            36 * ms,
            EventKind::ClientInvoke {
                client: 3,
                request: 1,
                op: OpKind::Scan,
                key: "k1".into(),
            },
        );
        t.snapshot()
    }

    #[test]
    fn around_seq_and_time_return_windows() {
        let events = story();
        let a = TraceAnalyzer::new(&events);
        let v = a.first_violation().unwrap();
        let w = a.around(Anchor::Seq(v.seq), 2);
        assert_eq!(w.len(), 4); // two before, the violation, one after (trace ends)
        assert_eq!(w[2].seq, v.seq);
        let t = a.around(Anchor::TimeUs(30_000), 1_000);
        assert!(t.iter().all(|e| (29_000..=31_000).contains(&e.at_us)));
        assert_eq!(t.len(), 2);
        assert!(a.around(Anchor::Seq(0), 0).len() == 1);
    }

    #[test]
    fn replica_timeline_includes_links_and_primary() {
        let events = story();
        let a = TraceAnalyzer::new(&events);
        let tl = a.replica_timeline(2);
        assert!(tl.iter().any(|e| matches!(e.kind, EventKind::Crash { .. })));
        assert!(tl
            .iter()
            .all(|e| e.kind.involves_replica(2) && e.kind.client().is_none()));
        let tl0 = a.replica_timeline(0);
        assert!(tl0
            .iter()
            .any(|e| matches!(e.kind, EventKind::Partition { .. })));
        assert_eq!(a.replicas(), [0, 1, 2].into_iter().collect());
        assert_eq!(a.clients(), [1, 2, 3].into_iter().collect());
    }

    #[test]
    fn last_view_change_and_faults_before_a_time() {
        let events = story();
        let a = TraceAnalyzer::new(&events);
        let vc = a.last_view_change_before(35_000).unwrap();
        assert!(matches!(
            vc.kind,
            EventKind::ViewInstalled {
                replica: 1,
                view: 2,
                primary: 1
            }
        ));
        let started = a.last_view_change_before(25_500).unwrap();
        assert!(matches!(started.kind, EventKind::ViewChangeStarted { .. }));
        let faults = a.faults_before(35_000, 13_000);
        assert_eq!(faults.len(), 6); // 3 torn, crash, partition, bit rot
        let counts = a.fault_counts_before(35_000, 13_000, Some(2));
        assert_eq!(counts.get("disk.crash_torn"), Some(&3));
        assert_eq!(counts.get("disk.bit_rot"), None);
        assert_eq!(counts.get("net.partition"), None);
    }

    #[test]
    fn client_ops_pair_invocations_with_completions() {
        let events = story();
        let a = TraceAnalyzer::new(&events);
        let ops = a.client_ops();
        assert_eq!(ops.len(), 4);
        assert_eq!(ops[0].op_number, Some(57));
        assert_eq!(ops[2].outcome, Some(Outcome::Unknown));
        assert_eq!(a.ops_on_key("k7").len(), 3);
        assert_eq!(a.outstanding_ops().len(), 1);
        assert_eq!(a.ops_of_client(1).len(), 4);
        assert!(ops[1].overlaps(&ops[2], a.end_us()));
        assert!(!ops[0].overlaps(&ops[1], a.end_us()));
    }

    #[test]
    fn commits_downtimes_and_partitions() {
        let events = story();
        let a = TraceAnalyzer::new(&events);
        let c = a.commits_of_op(57);
        assert_eq!(c.len(), 3);
        assert_eq!(c[2], (2, "bad0", 14_000));
        assert_eq!(a.commit_ops_of(1), vec![57]);
        assert_eq!(
            a.downtimes(Some(2)),
            vec![Downtime {
                replica: 2,
                crash_us: 23_000,
                restart_us: Some(30_000)
            }]
        );
        assert_eq!(a.open_partitions(40_000), vec![("0->1", 24_000)]);
        assert_eq!(a.views_of(1), vec![(0, 1, 0), (26_000, 2, 1)]);
        assert_eq!(a.events_for_op(57).len(), 4); // 3 commits, the reply
    }
}
