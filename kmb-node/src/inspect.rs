//! Simulator-only inspection hook: what each replica of the current simulation holds, published
//! by the real node after every batch, for the VOPR's checkers. Compiled only under
//! `cfg(madsim)`. Each seed runs on its own thread (`sim_runtime::sim::run`), so a thread-local
//! registry is per simulation.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::core::{Replica, Status};
use crate::entry::{Checksum, Entry, View};
pub use crate::storage::RecoveryReport;
use sim_runtime::time::Instant;

/// Something a replica did, with the simulated instant it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Happening {
    Started,
    ViewChangeStarted {
        view: View,
    },
    ViewInstalled {
        view: View,
        primary: u8,
    },
    Recovering {
        view: View,
    },
    Commit {
        op: u64,
        checksum: Checksum,
    },
    StateTransfer {
        from_op: u64,
        to_op: u64,
    },
    Halted {
        reason: String,
    },
    /// A simulated buggy peer rewrote the view of a message it sent ([`BuggyViews`]).
    BuggyView {
        from: View,
        to: View,
    },
}

/// One replica's published state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaState {
    pub view: View,
    pub log_view: View,
    pub status: String,
    pub primary: bool,
    pub op: u64,
    pub commit: u64,
    pub checkpoint_op: u64,
    /// Hash of the key-value state after applying every op up to `commit`.
    pub state_hash: u128,
    /// (checksum, parent) of the log entries the replica holds, by op.
    pub log: BTreeMap<u64, (Checksum, Checksum)>,
    /// Times this replica started (incarnations).
    pub starts: u64,
    /// (op, view, log_view, checkpoint_op, commit) when `log` was last rebuilt.
    pub log_shape: Option<(u64, View, View, u64, u64)>,
}

/// Everything published in this simulation.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    pub replicas: BTreeMap<u8, ReplicaState>,
    /// PrepareOks sent for an op above storage's durable, chained head: (replica, op, durable).
    pub early_acks: Vec<(u8, u64, u64)>,
    /// DoViewChanges sent before what they claim was durable (the view and `log_view` in the
    /// superblock, the bodies they vouch for), as storage's completions reported it:
    /// (replica, view, what was not durable).
    pub early_votes: Vec<(u8, View, String)>,
    /// What each replica last said it waits for ([`Replica::blocker`]), sampled on ticks.
    pub blockers: BTreeMap<u8, Option<String>>,
    /// Every (op, checksum) each replica ever committed, in commit order.
    pub commits: BTreeMap<u8, Vec<(u64, Checksum)>>,
    /// State transfers: (replica, op, checksum).
    pub transfers: Vec<(u8, u64, Checksum)>,
    /// Why replicas stopped: (replica, reason, kind).
    pub halts: Vec<(u8, String, HaltKind)>,
    /// Everything replicas did, in simulation order.
    pub happenings: Vec<(Instant, u8, Happening)>,
    /// The committed log as first committed by any replica: op → entry (body included).
    pub committed: BTreeMap<u64, Entry>,
    /// Per replica: commit number → state hash, at every point the replica published.
    pub state_hashes: BTreeMap<u8, BTreeMap<u64, u128>>,
    /// Per replica: checkpoint op → xxh3-128 of the checkpointed bytes (state + client table).
    pub checkpoints: BTreeMap<u8, BTreeMap<u64, u128>>,
    /// Each start of a replica after recovery: (replica, commit, state hash).
    pub recoveries: Vec<(u8, u64, u128)>,
    /// Per replica, for each start in order: the index in `commits[replica]` where that
    /// incarnation's commits begin.
    pub commit_starts: BTreeMap<u8, Vec<usize>>,
    /// Per replica, for each start in order: the highest op its storage reported durable
    /// (last seen in that incarnation).
    pub durable_heads: BTreeMap<u8, Vec<u64>>,
    /// Per replica, for each start in order: what storage recovery reported.
    pub recovery_reports: BTreeMap<u8, Vec<RecoveryReport>>,
    /// Per replica, for each start in order: the highest view it sent a DoViewChange for.
    pub votes: BTreeMap<u8, Vec<View>>,
    /// Coverage marks hit ([`crate::coverage`]): name → times.
    pub marks: BTreeMap<&'static str, u64>,
    /// The replicas that sent a PrepareOk for each of the most recent ops (at most
    /// [`ACKS_KEPT`]): the VOPR aims faults with it, never checks anything by it.
    pub acks: BTreeMap<u64, std::collections::BTreeSet<u8>>,
}

/// How many recent ops [`Registry::acks`] keeps.
pub const ACKS_KEPT: usize = 256;

/// Bound on recorded happenings per simulation.
pub const HAPPENINGS_MAX: usize = 200_000;

fn happen(r: &mut Registry, replica: u8, what: Happening) {
    if r.happenings.len() < HAPPENINGS_MAX {
        r.happenings.push((Instant::now(), replica, what));
    }
}

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry::default());
    /// [`checkpoint`]'s state hashes by the xxh3-128 of the snapshot's bytes.
    static CHECKPOINT_STATE_HASHES: RefCell<BTreeMap<u128, u128>> = const { RefCell::new(BTreeMap::new()) };
    static BUGGY_VIEWS: std::cell::Cell<Option<BuggyViews>> = const { std::cell::Cell::new(None) };
}

/// A simulated buggy (authenticated) peer (issue 13): `replica` rewrites the view of its next
/// `count` StartViewChange messages, after the core made them and before they are sealed, to
/// a view near the largest a message may name (`near_limit`) or to the largest jump a
/// receiver follows (`core::VIEW_JUMP_MAX` above the real one). Either must leave a healed
/// cluster able to elect a primary. Set per simulation by the VOPR (`Swarm::buggy_views`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuggyViews {
    pub replica: u8,
    pub count: u32,
    pub near_limit: bool,
}

/// Select this simulation's buggy peer (`None`: every peer is correct).
pub fn set_buggy_views(buggy: Option<BuggyViews>) {
    BUGGY_VIEWS.with(|b| b.set(buggy));
}

/// The view a buggy peer puts in place of `view` (see [`BuggyViews`]).
fn buggy_view_for(view: View, near_limit: bool) -> View {
    if near_limit {
        crate::core::VIEW_MAX - 3
    } else {
        view + crate::core::VIEW_JUMP_MAX
    }
}

/// Called by the node for every message it is about to send: if this replica is the buggy
/// peer and has rewrites left, a StartViewChange's view is replaced (and recorded).
pub fn buggy_view(replica: u8, body: &mut crate::core::Body) {
    let Some(mut buggy) = BUGGY_VIEWS.with(|b| b.get()) else {
        return;
    };
    if buggy.replica != replica || buggy.count == 0 {
        return;
    }
    if let crate::core::Body::StartViewChange { view } = body {
        let to = buggy_view_for(*view, buggy.near_limit);
        REGISTRY.with(|r| {
            happen(
                &mut r.borrow_mut(),
                replica,
                Happening::BuggyView { from: *view, to },
            )
        });
        *view = to;
        buggy.count -= 1;
        BUGGY_VIEWS.with(|b| b.set(Some(buggy)));
    }
}

/// Publish `replica`'s state.
pub fn publish(replica: &Replica) {
    let id = replica.config().replica;
    REGISTRY.with(|r| {
        let mut r = r.borrow_mut();
        let r = &mut *r;
        let state = r.replicas.entry(id).or_default();
        let commit = replica.commit();
        let status = match replica.status() {
            Status::Normal => "normal",
            Status::ViewChange => "view_change",
            Status::Recovering => "recovering",
        };
        let transition = (state.status.as_str() != status || state.view != replica.view()).then(
            || match replica.status() {
                Status::Normal => Happening::ViewInstalled {
                    view: replica.view(),
                    primary: replica.config().primary_of(replica.view()),
                },
                Status::ViewChange => Happening::ViewChangeStarted {
                    view: replica.view(),
                },
                Status::Recovering => Happening::Recovering {
                    view: replica.view(),
                },
            },
        );
        if commit != state.commit || state.status.is_empty() {
            state.state_hash = replica.state_hash();
            let hash = state.state_hash;
            r.state_hashes.entry(id).or_default().insert(commit, hash);
        }
        let state = r.replicas.entry(id).or_default();
        state.view = replica.view();
        state.log_view = replica.log_view();
        if state.status != status {
            state.status = status.to_string();
        }
        state.primary = replica.is_primary();
        state.op = replica.op();
        state.commit = commit;
        state.checkpoint_op = replica.checkpoint_op();
        // Rebuild the log picture only when the log may have changed shape.
        let shape = (
            replica.op(),
            replica.view(),
            replica.log_view(),
            replica.checkpoint_op(),
            commit,
        );
        if state.log_shape == Some(shape) {
            if let Some(what) = transition {
                happen(r, id, what);
            }
            return;
        }
        state.log_shape = Some(shape);
        // Updated in place (most of it is unchanged from the last publish): what a rebuild
        // from scratch gives, without reallocating the map at every commit.
        // One pass over the old picture and the log's headers together (both in op order):
        // entries held in both are updated, then the ones gone are removed and the new added.
        let mut gone = Vec::new();
        let mut added = Vec::new();
        let mut old = state.log.iter_mut().peekable();
        for (op, h) in replica.headers_between(replica.checkpoint_op(), replica.op()) {
            while let Some((&o, _)) = old.next_if(|(&o, _)| o < op) {
                gone.push(o);
            }
            let v = (h.checksum, h.parent);
            match old.next_if(|(&o, _)| o == op) {
                Some((_, old)) => *old = v,
                None => added.push((op, v)),
            }
        }
        gone.extend(old.map(|(&o, _)| o));
        for o in gone {
            state.log.remove(&o);
        }
        state.log.extend(added);
        if let Some(what) = transition {
            happen(r, id, what);
        }
    });
}

/// Record a PrepareOk for `op` sent while storage held the log synced and chained above the
/// replica's commit point up to `synced` ([`crate::storage::Storage::synced_above`]): an
/// acknowledgement above it breaks the durability rule (none that can count toward a commit
/// before the writes it covers are synced); the VOPR fails such a seed.
pub fn acknowledged(replica: u8, op: u64, synced: u64) {
    REGISTRY.with(|r| {
        let mut r = r.borrow_mut();
        if op > synced {
            r.early_acks.push((replica, op, synced));
        }
        r.acks.entry(op).or_default().insert(replica);
        while r.acks.len() > ACKS_KEPT {
            r.acks.pop_first();
        }
    });
}

/// Record a DoViewChange for `view` sent before `what` it claims was durable by storage's own
/// completions (the I/O task's reports, not the core's flags): the VOPR fails such a seed.
pub fn voted_early(replica: u8, view: View, what: String) {
    REGISTRY.with(|r| r.borrow_mut().early_votes.push((replica, view, what)));
}

/// Record what a replica waits for (sampled: cheap enough for every few ticks).
pub fn blocker(replica: &Replica) {
    let id = replica.config().replica;
    let blocker = replica.blocker();
    REGISTRY.with(|r| {
        r.borrow_mut().blockers.insert(id, blocker);
    });
}

/// Record that a replica started (a new incarnation).
pub fn started(replica: u8) {
    REGISTRY.with(|r| {
        let mut r = r.borrow_mut();
        let index = r.commits.get(&replica).map_or(0, Vec::len);
        r.commit_starts.entry(replica).or_default().push(index);
        r.durable_heads.entry(replica).or_default().push(0);
        r.votes.entry(replica).or_default().push(0);
        let state = r.replicas.entry(replica).or_default();
        state.starts += 1;
        // A new incarnation publishes its status afresh.
        state.status.clear();
        state.log_shape = None;
        happen(&mut r, replica, Happening::Started);
    });
}

/// Record a commit (and, the first time any replica commits `op`, its entry: `entry` is
/// called only then, so the other replicas' commits copy no body).
pub fn commit(replica: u8, op: u64, checksum: Checksum, entry: impl FnOnce() -> Option<Entry>) {
    REGISTRY.with(|r| {
        let mut r = r.borrow_mut();
        if let std::collections::btree_map::Entry::Vacant(slot) = r.committed.entry(op) {
            if let Some(entry) = entry() {
                slot.insert(entry);
            }
        }
        r.commits.entry(replica).or_default().push((op, checksum));
        happen(&mut r, replica, Happening::Commit { op, checksum });
    });
}

/// Record a state transfer.
pub fn state_transferred(replica: u8, op: u64, checksum: Checksum) {
    REGISTRY.with(|r| {
        let mut r = r.borrow_mut();
        let from_op = r.replicas.get(&replica).map_or(0, |s| s.commit);
        r.transfers.push((replica, op, checksum));
        happen(
            &mut r,
            replica,
            Happening::StateTransfer { from_op, to_op: op },
        );
    });
}

/// Why a replica stopped, as a kind (the harness judges kinds, never texts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HaltKind {
    /// Storage failed an fsync, read or write (`StorageError::SyncFailed` / `Io`): the node's
    /// required response to a disk fault — allowed when the fault model injected one.
    DiskFailure,
    /// Anything else: the core halted, storage refused a request, start-up failed.
    Other,
}

impl HaltKind {
    /// The kind of a node's stop.
    pub fn of(error: &crate::node::NodeError) -> HaltKind {
        use crate::node::NodeError;
        use crate::storage::StorageError;
        match error {
            NodeError::Storage(StorageError::SyncFailed(_) | StorageError::Io(_)) => {
                HaltKind::DiskFailure
            }
            _ => HaltKind::Other,
        }
    }
}

/// Record why a replica stopped.
pub fn halted(replica: u8, reason: String, kind: HaltKind) {
    REGISTRY.with(|r| {
        let mut r = r.borrow_mut();
        r.halts.push((replica, reason.clone(), kind));
        happen(&mut r, replica, Happening::Halted { reason });
    });
}

/// Record the highest op the current incarnation's storage reports durable.
pub fn durable(replica: u8, op: u64) {
    REGISTRY.with(|r| {
        if let Some(last) = r
            .borrow_mut()
            .durable_heads
            .entry(replica)
            .or_default()
            .last_mut()
        {
            *last = op;
        }
    });
}

/// Record that the current incarnation sent a DoViewChange for `view` (a vote).
pub fn voted(replica: u8, view: View) {
    REGISTRY.with(|r| {
        if let Some(last) = r.borrow_mut().votes.entry(replica).or_default().last_mut() {
            *last = (*last).max(view);
        }
    });
}

/// Record what storage recovery reported at this start.
pub fn recovery_report(
    replica: u8,
    view: View,
    checkpoint_op: u64,
    present: Vec<u64>,
    faulty: Vec<u64>,
) {
    REGISTRY.with(|r| {
        r.borrow_mut()
            .recovery_reports
            .entry(replica)
            .or_default()
            .push(RecoveryReport {
                view,
                checkpoint_op,
                present: present.into_iter().collect(),
                faulty: faulty.into_iter().collect(),
            })
    });
}

/// Count one hit of the coverage mark `name` (see [`crate::mark!`]).
pub fn mark(name: &'static str) {
    assert!(
        crate::coverage::is_mark(name),
        "coverage mark {name:?} is not listed in coverage::MARKS"
    );
    REGISTRY.with(|r| *r.borrow_mut().marks.entry(name).or_default() += 1);
}

/// Read the registry without copying it.
pub fn with<T>(f: impl FnOnce(&Registry) -> T) -> T {
    REGISTRY.with(|r| f(&r.borrow()))
}

/// A copy of everything published so far.
pub fn snapshot() -> Registry {
    REGISTRY.with(|r| r.borrow().clone())
}

/// Everything published so far, taken (the registry is left empty): for a harness whose run
/// is over, which would otherwise hold it twice.
pub fn take() -> Registry {
    REGISTRY.with(|r| std::mem::take(&mut *r.borrow_mut()))
}

/// Record a checkpoint by the state hash of the state it holds (`core::snapshot::state_hash`,
/// what replicas publish at each commit); a snapshot that does not decode is recorded by the
/// hash of its bytes, which matches no state.
///
/// Replicas checkpoint the same state in the same bytes: each distinct snapshot (by its
/// xxh3-128) is decoded once per simulation.
pub fn checkpoint(replica: u8, op: u64, snapshot: &[u8]) {
    let bytes_hash = xxhash_rust::xxh3::xxh3_128(snapshot);
    let hash = CHECKPOINT_STATE_HASHES.with(|memo| {
        *memo
            .borrow_mut()
            .entry(bytes_hash)
            .or_insert_with(|| crate::core::snapshot::state_hash_of(snapshot).unwrap_or(bytes_hash))
    });
    REGISTRY.with(|r| {
        r.borrow_mut()
            .checkpoints
            .entry(replica)
            .or_default()
            .insert(op, hash);
    });
}

/// Record the state a replica recovered to at start-up.
pub fn recovered(replica: &Replica) {
    let id = replica.config().replica;
    let (commit, hash) = (replica.commit(), replica.state_hash());
    REGISTRY.with(|r| r.borrow_mut().recoveries.push((id, commit, hash)));
}

#[cfg(test)]
mod halt_kind_tests {
    use super::HaltKind;
    use crate::node::NodeError;
    use crate::storage::StorageError;

    /// Goal: only a failed fsync, read or write is the disk-failure kind the harness may allow;
    /// a storage refusal (e.g. an oversized entry), a core halt or a start-up error is not.
    #[test]
    fn only_disk_failures_are_the_disk_failure_kind() {
        let kind = HaltKind::of;
        let storage = |e| NodeError::Storage(e);
        assert_eq!(
            kind(&storage(StorageError::SyncFailed("x".into()))),
            HaltKind::DiskFailure
        );
        assert_eq!(
            kind(&storage(StorageError::Io("x".into()))),
            HaltKind::DiskFailure
        );
        assert_eq!(
            kind(&storage(StorageError::Invalid("entry too large".into()))),
            HaltKind::Other
        );
        assert_eq!(kind(&NodeError::Halted("x".into())), HaltKind::Other);
        assert_eq!(kind(&NodeError::Config("x".into())), HaltKind::Other);
    }
}
