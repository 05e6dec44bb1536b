//! Trace: a bounded, seed-scoped record of what happened in one simulated run, for post-mortems.
//!
//! The harness pushes [`EventKind`]s (client calls and replies, protocol steps, network and disk
//! faults, crashes, checker verdicts) with the simulated time they happened at; the
//! [`TraceCollector`] numbers them, keeps the last `capacity_max` of them in a ring buffer and
//! folds **every** pushed event — kept, filtered out or evicted — into a running 64-bit xxh3
//! hash, so two runs of one seed can be compared without keeping either trace
//! ([`TraceCollector::event_hash`]); [`first_difference`] names the first divergent event of two
//! kept traces.
//!
//! Invariants (stated as absences): the collector never reads a clock (time comes in with each
//! event), never allocates beyond `capacity_max` kept events, and never lets the filter change
//! the hash or the sequence numbers — a `Minimal` and a `Verbose` run of one seed number the
//! same event the same way and end with the same hash.

use kmb_node::entry::View;
use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3Default;

/// Default ring capacity: the last 10,000 events are kept.
pub const TRACE_CAPACITY_DEFAULT: usize = 10_000;

/// The kind of a client operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Write,
    Read,
    Rmw,
    Scan,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Write => "write",
            OpKind::Read => "read",
            OpKind::Rmw => "rmw",
            OpKind::Scan => "scan",
        }
    }
}

/// What a client learned about its operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A reply: the op committed (and, for reads, returned a value).
    Ok,
    /// A definite failure: the op did not take effect.
    Failed,
    /// Timed out / connection lost: the op may or may not have taken effect.
    Unknown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
        }
    }
}

/// One thing that happened. Field names are the JSON field names; the variant is the `type`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    // --- clients ---
    ClientInvoke {
        client: u64,
        request: u64,
        op: OpKind,
        key: String,
    },
    ClientComplete {
        client: u64,
        request: u64,
        op: OpKind,
        outcome: Outcome,
        /// The op number the reply carried (committed ops only).
        op_number: Option<u64>,
        /// A read served without a log entry: `op_number` names the state it read.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        read: bool,
    },
    // --- protocol ---
    Commit {
        replica: u8,
        op: u64,
        /// Hex checksum of the committed entry (or of the state after applying it).
        checksum: String,
    },
    ViewChangeStarted {
        replica: u8,
        view: View,
    },
    ViewInstalled {
        replica: u8,
        view: View,
        primary: u8,
    },
    StateTransfer {
        replica: u8,
        from_op: u64,
        to_op: u64,
    },
    // --- network ---
    NetDrop {
        link: String,
    },
    NetDuplicate {
        link: String,
    },
    Partition {
        link: String,
    },
    Heal {
        link: String,
    },
    // --- faults ---
    /// An entry of the simulator's fault log: `kind` like `disk.bit_rot`, `disk.crash_torn`,
    /// `net.corrupt`, `node.kill`.
    FaultInjected {
        kind: String,
        replica: Option<u8>,
        detail: String,
    },
    // --- nodes ---
    Crash {
        replica: u8,
    },
    Restart {
        replica: u8,
    },
    // --- checkers ---
    InvariantChecked {
        name: String,
    },
    InvariantViolated {
        name: String,
        detail: String,
    },
}

/// `"a->b"`, the link name used by network events.
pub fn link_name(from: u8, to: u8) -> String {
    format!("{from}->{to}")
}

/// The two ends of a link name made by [`link_name`].
pub fn link_ends(link: &str) -> Option<(u8, u8)> {
    let (a, b) = link.split_once("->")?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

impl EventKind {
    /// The variant's JSON `type` name.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::ClientInvoke { .. } => "client_invoke",
            EventKind::ClientComplete { .. } => "client_complete",
            EventKind::Commit { .. } => "commit",
            EventKind::ViewChangeStarted { .. } => "view_change_started",
            EventKind::ViewInstalled { .. } => "view_installed",
            EventKind::StateTransfer { .. } => "state_transfer",
            EventKind::NetDrop { .. } => "net_drop",
            EventKind::NetDuplicate { .. } => "net_duplicate",
            EventKind::Partition { .. } => "partition",
            EventKind::Heal { .. } => "heal",
            EventKind::FaultInjected { .. } => "fault_injected",
            EventKind::Crash { .. } => "crash",
            EventKind::Restart { .. } => "restart",
            EventKind::InvariantChecked { .. } => "invariant_checked",
            EventKind::InvariantViolated { .. } => "invariant_violated",
        }
    }

    /// The replica the event happened on, if it names exactly one.
    pub fn replica(&self) -> Option<u8> {
        match self {
            EventKind::Commit { replica, .. }
            | EventKind::ViewChangeStarted { replica, .. }
            | EventKind::ViewInstalled { replica, .. }
            | EventKind::StateTransfer { replica, .. }
            | EventKind::Crash { replica }
            | EventKind::Restart { replica } => Some(*replica),
            EventKind::FaultInjected { replica, .. } => *replica,
            _ => None,
        }
    }

    /// Whether the event concerns `replica` (as its replica, or as an end of its link).
    pub fn involves_replica(&self, replica: u8) -> bool {
        if self.replica() == Some(replica) {
            return true;
        }
        match self {
            EventKind::ViewInstalled { primary, .. } => *primary == replica,
            EventKind::NetDrop { link }
            | EventKind::NetDuplicate { link }
            | EventKind::Partition { link }
            | EventKind::Heal { link } => {
                link_ends(link).is_some_and(|(a, b)| a == replica || b == replica)
            }
            _ => false,
        }
    }

    pub fn client(&self) -> Option<u64> {
        match self {
            EventKind::ClientInvoke { client, .. } | EventKind::ClientComplete { client, .. } => {
                Some(*client)
            }
            _ => None,
        }
    }

    /// The log op number the event is about.
    pub fn op(&self) -> Option<u64> {
        match self {
            EventKind::Commit { op, .. } => Some(*op),
            EventKind::ClientComplete { op_number, .. } => *op_number,
            _ => None,
        }
    }

    pub fn view(&self) -> Option<View> {
        match self {
            EventKind::ViewChangeStarted { view, .. } | EventKind::ViewInstalled { view, .. } => {
                Some(*view)
            }
            _ => None,
        }
    }

    pub fn key(&self) -> Option<&str> {
        match self {
            EventKind::ClientInvoke { key, .. } => Some(key),
            _ => None,
        }
    }

    /// A fault (injected by the simulator, or a crash/partition): what post-mortems look for.
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            EventKind::FaultInjected { .. }
                | EventKind::NetDrop { .. }
                | EventKind::NetDuplicate { .. }
                | EventKind::Partition { .. }
                | EventKind::Crash { .. }
        )
    }

    /// The fault's kind name for counting: the fault-log kind, or `net.drop`, `net.duplicate`,
    /// `net.partition`, `node.crash`.
    pub fn fault_kind(&self) -> Option<&str> {
        match self {
            EventKind::FaultInjected { kind, .. } => Some(kind),
            EventKind::NetDrop { .. } => Some("net.drop"),
            EventKind::NetDuplicate { .. } => Some("net.duplicate"),
            EventKind::Partition { .. } => Some("net.partition"),
            EventKind::Crash { .. } => Some("node.crash"),
            _ => None,
        }
    }

    /// Per-message or per-op events, dropped by [`TraceFilter::Minimal`].
    pub fn is_high_volume(&self) -> bool {
        matches!(
            self,
            EventKind::NetDrop { .. }
                | EventKind::NetDuplicate { .. }
                | EventKind::Commit { .. }
                | EventKind::InvariantChecked { .. }
        )
    }

    /// The canonical byte encoding hashed by [`TraceCollector::event_hash`]: a tag byte per
    /// variant, integers little-endian, strings length-prefixed, options as 0 / 1+value. It is
    /// independent of serde, so a change of JSON layout never changes a recorded hash. Tags 3,
    /// 8, 9 and 14 are free (they named kinds the VOPR never recorded).
    pub fn encode_canonical(&self, out: &mut Vec<u8>) {
        fn u(out: &mut Vec<u8>, v: u64) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        fn s(out: &mut Vec<u8>, v: &str) {
            u(out, v.len() as u64);
            out.extend_from_slice(v.as_bytes());
        }
        fn o(out: &mut Vec<u8>, v: Option<u64>) {
            match v {
                None => out.push(0),
                Some(v) => {
                    out.push(1);
                    u(out, v);
                }
            }
        }
        match self {
            EventKind::ClientInvoke {
                client,
                request,
                op,
                key,
            } => {
                out.push(1);
                u(out, *client);
                u(out, *request);
                out.push(*op as u8);
                s(out, key);
            }
            EventKind::ClientComplete {
                client,
                request,
                op,
                outcome,
                op_number,
                read,
            } => {
                out.push(2);
                u(out, *client);
                u(out, *request);
                out.push(*op as u8);
                out.push(*outcome as u8);
                o(out, *op_number);
                out.push(u8::from(*read));
            }
            EventKind::Commit {
                replica,
                op,
                checksum,
            } => {
                out.extend_from_slice(&[4, *replica]);
                u(out, *op);
                s(out, checksum);
            }
            EventKind::ViewChangeStarted { replica, view } => {
                out.extend_from_slice(&[5, *replica]);
                u(out, *view);
            }
            EventKind::ViewInstalled {
                replica,
                view,
                primary,
            } => {
                out.extend_from_slice(&[6, *replica, *primary]);
                u(out, *view);
            }
            EventKind::StateTransfer {
                replica,
                from_op,
                to_op,
            } => {
                out.extend_from_slice(&[7, *replica]);
                u(out, *from_op);
                u(out, *to_op);
            }
            EventKind::NetDrop { link } => {
                out.push(10);
                s(out, link);
            }
            EventKind::NetDuplicate { link } => {
                out.push(11);
                s(out, link);
            }
            EventKind::Partition { link } => {
                out.push(12);
                s(out, link);
            }
            EventKind::Heal { link } => {
                out.push(13);
                s(out, link);
            }
            EventKind::FaultInjected {
                kind,
                replica,
                detail,
            } => {
                out.push(15);
                s(out, kind);
                o(out, replica.map(u64::from));
                s(out, detail);
            }
            EventKind::Crash { replica } => out.extend_from_slice(&[16, *replica]),
            EventKind::Restart { replica } => out.extend_from_slice(&[17, *replica]),
            EventKind::InvariantChecked { name } => {
                out.push(18);
                s(out, name);
            }
            EventKind::InvariantViolated { name, detail } => {
                out.push(19);
                s(out, name);
                s(out, detail);
            }
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::ClientInvoke {
                client,
                request,
                op,
                key,
            } => write!(
                f,
                "client {client} invokes request {request}: {} {key}",
                op.as_str()
            ),
            EventKind::ClientComplete {
                client,
                request,
                op,
                outcome,
                op_number,
                read,
            } => {
                write!(
                    f,
                    "client {client} request {request} ({}) completes {}",
                    op.as_str(),
                    outcome.as_str()
                )?;
                match (op_number, read) {
                    (Some(n), true) => write!(f, ", read at op {n}")?,
                    (Some(n), false) => write!(f, " at op {n}")?,
                    (None, _) => {}
                }
                Ok(())
            }
            EventKind::Commit {
                replica,
                op,
                checksum,
            } => write!(f, "replica {replica} commits op {op} (checksum {checksum})"),
            EventKind::ViewChangeStarted { replica, view } => {
                write!(f, "replica {replica} starts view change to view {view}")
            }
            EventKind::ViewInstalled {
                replica,
                view,
                primary,
            } => write!(
                f,
                "replica {replica} installs view {view} (primary {primary})"
            ),
            EventKind::StateTransfer {
                replica,
                from_op,
                to_op,
            } => write!(
                f,
                "replica {replica} state transfer op {from_op} -> op {to_op}"
            ),
            EventKind::NetDrop { link } => write!(f, "net drop on {link}"),
            EventKind::NetDuplicate { link } => write!(f, "net duplicate on {link}"),
            EventKind::Partition { link } => write!(f, "partition {link}"),
            EventKind::Heal { link } => write!(f, "heal {link}"),
            EventKind::FaultInjected {
                kind,
                replica,
                detail,
            } => {
                write!(f, "fault {kind}")?;
                if let Some(r) = replica {
                    write!(f, " on replica {r}")?;
                }
                if !detail.is_empty() {
                    write!(f, ": {detail}")?;
                }
                Ok(())
            }
            EventKind::Crash { replica } => write!(f, "replica {replica} crashes"),
            EventKind::Restart { replica } => write!(f, "replica {replica} restarts"),
            EventKind::InvariantChecked { name } => write!(f, "invariant {name} checked"),
            EventKind::InvariantViolated { name, detail } => {
                write!(f, "INVARIANT VIOLATED {name}: {detail}")
            }
        }
    }
}

/// One numbered, timestamped event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// Position among all events pushed in this run (filtered-out events take numbers too).
    pub seq: u64,
    /// Simulated time, microseconds since the start of the run.
    pub at_us: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {} {}", self.seq, format_us(self.at_us), self.kind)
    }
}

/// `3.210457s`: simulated microseconds as seconds.
pub fn format_us(at_us: u64) -> String {
    format!("{}.{:06}s", at_us / 1_000_000, at_us % 1_000_000)
}

/// Which events a collector keeps, and when its trace is written out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceFilter {
    /// Keep everything in memory; write only if the seed fails.
    #[default]
    FailuresOnly,
    /// Keep client ops, view changes, state transfers, crashes/restarts, partitions, fault-log
    /// entries and violations (no per-message or per-op events: drops, duplicates, commits,
    /// checker passes); always
    /// written when tracing is enabled.
    Minimal,
    /// Keep everything; always written when tracing is enabled.
    Verbose,
}

impl TraceFilter {
    /// Whether an event of this kind is kept in the ring.
    pub fn admits(self, kind: &EventKind) -> bool {
        match self {
            TraceFilter::Verbose | TraceFilter::FailuresOnly => true,
            TraceFilter::Minimal => !kind.is_high_volume(),
        }
    }

    /// Whether the trace of a seed is written out, given whether the seed failed.
    pub fn writes(self, failed: bool) -> bool {
        match self {
            TraceFilter::FailuresOnly => failed,
            TraceFilter::Minimal | TraceFilter::Verbose => true,
        }
    }
}

impl std::str::FromStr for TraceFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "failures-only" | "failures_only" | "failures" => Ok(TraceFilter::FailuresOnly),
            "minimal" => Ok(TraceFilter::Minimal),
            "verbose" => Ok(TraceFilter::Verbose),
            other => Err(format!(
                "unknown trace filter {other:?} (expected failures-only, minimal or verbose)"
            )),
        }
    }
}

/// The JSON document written by [`TraceCollector::to_json`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceDocument {
    pub seed: u64,
    pub filter: TraceFilter,
    /// Hex [`TraceCollector::event_hash`] over every pushed event.
    pub event_hash: String,
    pub pushed_count: u64,
    pub evicted_count: u64,
    pub events: Vec<TraceEvent>,
}

/// The ring buffer of one seed's events. See the module docs.
#[derive(Clone)]
pub struct TraceCollector {
    seed: u64,
    filter: TraceFilter,
    capacity_max: usize,
    events: VecDeque<TraceEvent>,
    pushed_count: u64,
    evicted_count: u64,
    at_us_last: u64,
    hasher: Xxh3Default,
    scratch: Vec<u8>,
}

impl fmt::Debug for TraceCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceCollector")
            .field("seed", &self.seed)
            .field("filter", &self.filter)
            .field("capacity_max", &self.capacity_max)
            .field("kept", &self.events.len())
            .field("pushed_count", &self.pushed_count)
            .field("evicted_count", &self.evicted_count)
            .finish()
    }
}

impl TraceCollector {
    /// A `FailuresOnly` collector of [`TRACE_CAPACITY_DEFAULT`] events.
    pub fn new(seed: u64) -> TraceCollector {
        TraceCollector::with_options(seed, TraceFilter::default(), TRACE_CAPACITY_DEFAULT)
    }

    pub fn with_options(seed: u64, filter: TraceFilter, capacity_max: usize) -> TraceCollector {
        assert!(capacity_max > 0, "a trace must keep at least one event");
        TraceCollector {
            seed,
            filter,
            capacity_max,
            events: VecDeque::with_capacity(capacity_max.min(1024)),
            pushed_count: 0,
            evicted_count: 0,
            at_us_last: 0,
            hasher: Xxh3Default::new(),
            scratch: Vec::with_capacity(64),
        }
    }

    /// Record an event at simulated time `at_us`; returns its sequence number. Time must not go
    /// backwards (events arrive in simulated-time order).
    pub fn push(&mut self, at_us: u64, kind: EventKind) -> u64 {
        assert!(
            at_us >= self.at_us_last,
            "trace time went backwards: {at_us} < {}",
            self.at_us_last
        );
        let seq = self.pushed_count;
        self.pushed_count += 1;
        self.at_us_last = at_us;

        self.scratch.clear();
        self.scratch.extend_from_slice(&seq.to_le_bytes());
        self.scratch.extend_from_slice(&at_us.to_le_bytes());
        kind.encode_canonical(&mut self.scratch);
        self.hasher.update(&self.scratch);

        if self.filter.admits(&kind) {
            if self.events.len() == self.capacity_max {
                self.events.pop_front();
                self.evicted_count += 1;
            }
            self.events.push_back(TraceEvent { seq, at_us, kind });
            assert!(self.events.len() <= self.capacity_max);
        }
        seq
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }
    pub fn filter(&self) -> TraceFilter {
        self.filter
    }
    pub fn capacity_max(&self) -> usize {
        self.capacity_max
    }
    /// Events kept now.
    pub fn len(&self) -> usize {
        self.events.len()
    }
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
    /// Events ever pushed (kept, filtered out or evicted).
    pub fn pushed_count(&self) -> u64 {
        self.pushed_count
    }
    /// Events pushed out of the ring by newer ones.
    pub fn evicted_count(&self) -> u64 {
        self.evicted_count
    }
    /// The kept events, oldest first.
    pub fn events(&self) -> impl ExactSizeIterator<Item = &TraceEvent> + '_ {
        self.events.iter()
    }
    /// A copy of the kept events, oldest first (for [`crate::analyzer::TraceAnalyzer`]).
    pub fn snapshot(&self) -> Vec<TraceEvent> {
        self.events.iter().cloned().collect()
    }

    /// xxh3-64 over the canonical encoding of every event pushed so far (see the module docs).
    pub fn event_hash(&self) -> u64 {
        self.hasher.digest()
    }
    /// [`Self::event_hash`] as 16 hex digits, as in the vopr's NDJSON records.
    pub fn event_hash_hex(&self) -> String {
        format!("{:016x}", self.event_hash())
    }

    pub fn document(&self) -> TraceDocument {
        TraceDocument {
            seed: self.seed,
            filter: self.filter,
            event_hash: self.event_hash_hex(),
            pushed_count: self.pushed_count,
            evicted_count: self.evicted_count,
            events: self.snapshot(),
        }
    }

    /// One JSON document: `{seed, filter, event_hash, pushed_count, evicted_count, events}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.document()).expect("trace events serialize")
    }

    /// One JSON object per kept event per line.
    pub fn to_ndjson(&self) -> String {
        let mut out = String::new();
        for event in &self.events {
            out.push_str(&serde_json::to_string(event).expect("trace events serialize"));
            out.push('\n');
        }
        out
    }

    /// Whether this seed's trace should be written out.
    pub fn should_write(&self, failed: bool) -> bool {
        self.filter.writes(failed)
    }

    /// Write `seed-<S>.trace.json` into `dir` if [`Self::should_write`]; returns the path.
    pub fn write_if_wanted(&self, dir: &Path, failed: bool) -> std::io::Result<Option<PathBuf>> {
        if !self.should_write(failed) {
            return Ok(None);
        }
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("seed-{}.trace.json", self.seed));
        std::fs::write(&path, self.to_json())?;
        Ok(Some(path))
    }
}

/// Parse the output of [`TraceCollector::to_ndjson`] (blank lines skipped).
pub fn parse_ndjson(text: &str) -> Result<Vec<TraceEvent>, serde_json::Error> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(serde_json::from_str)
        .collect()
}

/// Parse the output of [`TraceCollector::to_json`].
pub fn parse_json(text: &str) -> Result<TraceDocument, serde_json::Error> {
    serde_json::from_str(text)
}

/// The first index at which two traces differ, with the event of each side there (`None` on
/// the side that ended). `None` if the traces are identical.
pub fn first_difference<'a>(
    a: &'a [TraceEvent],
    b: &'a [TraceEvent],
) -> Option<(usize, Option<&'a TraceEvent>, Option<&'a TraceEvent>)> {
    let common = a.len().min(b.len());
    if let Some(i) = (0..common).find(|&i| a[i] != b[i]) {
        return Some((i, Some(&a[i]), Some(&b[i])));
    }
    if a.len() == b.len() {
        None
    } else {
        Some((common, a.get(common), b.get(common)))
    }
}

/// A collector shared by the harness's tasks (clients, fault injector, checkers).
#[derive(Clone, Debug)]
pub struct TraceHandle(Arc<Mutex<TraceCollector>>);

impl TraceHandle {
    pub fn new(collector: TraceCollector) -> TraceHandle {
        TraceHandle(Arc::new(Mutex::new(collector)))
    }
    pub fn push(&self, at_us: u64, kind: EventKind) -> u64 {
        self.lock().push(at_us, kind)
    }
    /// Lock the collector (for reads and exports).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, TraceCollector> {
        // A panic while holding the lock poisons it; the trace is still what we want to read.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: u64) -> EventKind {
        match i % 5 {
            0 => EventKind::ClientInvoke {
                client: 1,
                request: i,
                op: OpKind::Write,
                key: format!("k{i}"),
            },
            1 => EventKind::NetDrop {
                link: link_name(0, 1),
            },
            2 => EventKind::Commit {
                replica: 0,
                op: i,
                checksum: "ab".into(),
            },
            3 => EventKind::ViewInstalled {
                replica: 1,
                view: 2,
                primary: 2,
            },
            _ => EventKind::FaultInjected {
                kind: "disk.bit_rot".into(),
                replica: Some(2),
                detail: "sector 7".into(),
            },
        }
    }

    #[test]
    fn push_beyond_capacity_keeps_newest_and_counts_evictions() {
        let mut trace = TraceCollector::with_options(7, TraceFilter::Verbose, 3);
        for i in 0..10 {
            assert_eq!(trace.push(i * 10, sample(i)), i);
        }
        assert_eq!(trace.len(), 3);
        assert_eq!(trace.pushed_count(), 10);
        assert_eq!(trace.evicted_count(), 7);
        let seqs: Vec<u64> = trace.events().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![7, 8, 9]);
    }

    #[test]
    fn default_collector_has_documented_capacity_and_filter() {
        let trace = TraceCollector::new(1);
        assert_eq!(trace.capacity_max(), TRACE_CAPACITY_DEFAULT);
        assert_eq!(trace.filter(), TraceFilter::FailuresOnly);
        assert!(!trace.should_write(false));
        assert!(trace.should_write(true));
    }

    #[test]
    fn event_hash_covers_evicted_and_filtered_events_but_not_filter() {
        let mut verbose = TraceCollector::with_options(1, TraceFilter::Verbose, 2);
        let mut minimal = TraceCollector::with_options(1, TraceFilter::Minimal, 10_000);
        let mut other = TraceCollector::with_options(1, TraceFilter::Verbose, 2);
        for i in 0..50 {
            verbose.push(i, sample(i));
            minimal.push(i, sample(i));
            // Differs only in an early event that `other` will have evicted long ago.
            let kind = if i == 1 {
                EventKind::NetDrop {
                    link: link_name(0, 2),
                }
            } else {
                sample(i)
            };
            other.push(i, kind);
        }
        assert_eq!(verbose.event_hash(), minimal.event_hash());
        assert_ne!(verbose.event_hash(), other.event_hash());
        assert_eq!(verbose.snapshot(), other.snapshot());
        assert_eq!(verbose.event_hash_hex().len(), 16);
        // Minimal drops net drops and commits but numbers like verbose.
        assert!(minimal.events().all(|e| !e.kind.is_high_volume()));
        assert_eq!(minimal.events().last().map(|e| e.seq), Some(49));
    }

    #[test]
    fn failures_only_keeps_everything() {
        let mut trace = TraceCollector::new(3);
        for i in 0..10 {
            trace.push(i, sample(i));
        }
        assert_eq!(trace.len(), 10);
    }

    #[test]
    fn json_and_ndjson_round_trip() {
        let mut trace = TraceCollector::with_options(42, TraceFilter::Verbose, 100);
        for i in 0..10 {
            trace.push(i * 1000, sample(i));
        }
        trace.push(
            20_000,
            EventKind::ClientComplete {
                client: 1,
                request: 3,
                op: OpKind::Read,
                outcome: Outcome::Unknown,
                op_number: None,
                read: false,
            },
        );
        let doc = parse_json(&trace.to_json()).unwrap();
        assert_eq!(doc.seed, 42);
        assert_eq!(doc.event_hash, trace.event_hash_hex());
        assert_eq!(doc.events, trace.snapshot());
        let ndjson = trace.to_ndjson();
        assert_eq!(ndjson.lines().count(), 11);
        assert!(ndjson
            .lines()
            .next()
            .unwrap()
            .contains(r#""type":"client_invoke""#));
        assert_eq!(parse_ndjson(&ndjson).unwrap(), trace.snapshot());
    }

    #[test]
    fn first_difference_names_divergent_event_or_end() {
        let mk = |kinds: &[u64]| -> Vec<TraceEvent> {
            let mut t = TraceCollector::with_options(0, TraceFilter::Verbose, 100);
            for &k in kinds {
                t.push(k, sample(k));
            }
            t.snapshot()
        };
        let a = mk(&[0, 1, 2, 3]);
        assert_eq!(first_difference(&a, &a), None);
        let b = mk(&[0, 1, 3, 4]);
        let (i, x, y) = first_difference(&a, &b).unwrap();
        assert_eq!(i, 2);
        assert_eq!(x.unwrap().at_us, 2);
        assert_eq!(y.unwrap().at_us, 3);
        let c = mk(&[0, 1]);
        assert_eq!(first_difference(&a, &c), Some((2, Some(&a[2]), None)));
        assert_eq!(first_difference(&c, &a), Some((2, None, Some(&a[2]))));
    }

    #[test]
    #[should_panic(expected = "trace time went backwards")]
    fn push_with_earlier_time_panics() {
        let mut t = TraceCollector::new(0);
        t.push(10, sample(0));
        t.push(9, sample(0));
    }

    #[test]
    fn link_names_round_trip_and_involve_both_ends() {
        assert_eq!(link_ends(&link_name(2, 0)), Some((2, 0)));
        let p = EventKind::Partition {
            link: link_name(2, 0),
        };
        assert!(p.involves_replica(0) && p.involves_replica(2) && !p.involves_replica(1));
        assert_eq!(p.fault_kind(), Some("net.partition"));
    }

    #[test]
    fn trace_handle_pushes_from_clones() {
        let handle = TraceHandle::new(TraceCollector::new(5));
        let other = handle.clone();
        handle.push(1, sample(0));
        other.push(2, sample(2));
        assert_eq!(handle.lock().len(), 2);
    }
}
