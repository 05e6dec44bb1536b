//! The VOPR's invariant checkers: pure functions over [`Observations`], one invariant per file.
//!
//! Everything a checker reads comes from the real replicas (what the node published through the
//! simulator-only inspection hook, and each replica's durable disk image read back after the
//! seed) and from the real clients (the history of what they saw) — never from the harness's
//! own bookkeeping. The checkers name no simulator type, so they
//! compile and are unit-tested in production mode too; the VOPR fills [`Observations`] from the
//! inspection registry after a seed and calls [`check_all`].
//!
//! | file | invariant | fires on |
//! |---|---|---|
//! | [`data_correctness`] | replies match an independent kv specification over the committed log; state hashes match its replay | a read returning a value the specification disagrees with |
//! | [`linearizability`] | the client history is linearizable | no linearization exists |
//! | [`replica_consistency`] | same commit number ⇒ same state hash | two replicas diverge |
//! | [`hash_chain`] | committed logs chain, and agree with the committed entries | a broken parent link |
//! | [`commit_history`] | a committed op never changes; commits are contiguous | a rewrite or a gap |
//! | [`head_progress`] | after healing, the cluster converges in time, and every disk durably holds the committed log | no progress (liveness); a replica whose disk lacks committed ops |
//! | [`checkpoint_recovery`] | a restart recovers exactly the state committed at its commit | a wrong recovered state |
//! | [`storage_determinism`] | the same checkpoint op has the same bytes everywhere, written and read back from disk; every item storage accepts is intact, every item it reports faulty is explained by a fault (the disk oracle) | differing checkpoint bytes; a disk returning other bytes; damage let through; a good item called faulty |
//!
//! [`replay`] is the shared model (not an invariant): the committed log replayed through a
//! fresh key-value state and client table, exactly as the core applies it.

use kmb_node::entry::View;
use std::collections::{BTreeMap, BTreeSet};

use kmb_node::entry::{Checksum, Entry};
pub use kmb_node::storage::RecoveryReport;
use lincheck::kv::KvOp;

use crate::diagnosis::{Classification, Failure};

pub mod checkpoint_recovery;
pub mod commit_history;
pub mod data_correctness;
pub mod hash_chain;
pub mod head_progress;
pub mod linearizability;
pub mod replay;
pub mod replica_consistency;
pub mod storage_determinism;

#[cfg(test)]
pub(crate) mod fixture;

/// The client-table capacity the node runs with (`kmb_node::core::Config::new`'s default, which
/// `kmb_node::node::core_config` keeps).
pub const CLIENTS_MAX_DEFAULT: usize = 1024;

/// One replica's published state at the end of the seed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FinalState {
    /// `"normal"`, `"view_change"`, `"recovering"`, or empty if the incarnation never published.
    pub status: String,
    pub view: View,
    pub op: u64,
    pub commit: u64,
    /// State hash (kv state + client table) at `commit`.
    pub state_hash: u128,
    /// Why the replica last stopped, if it ever halted (reported when `status` is empty).
    pub halted: Option<String>,
    /// The op through which its storage last claimed the log durable (`inspect::durable`, the
    /// current incarnation's): below `commit` while the I/O task's sync is still in flight.
    pub durable: u64,
}

/// What the liveness phase found (filled by the harness from the replicas' published states).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Liveness {
    /// Every replica normal, one view, `op == commit`, one commit covering every op a client
    /// saw, one state hash, and every client done — before the deadline.
    pub converged: bool,
    /// Why not (or what was seen), for the report.
    pub detail: String,
    /// The liveness deadline, simulated ms after healing.
    pub deadline_ms: u64,
}

/// The checkpoint a replica's durable superblock references, as read back from its disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskCheckpoint {
    /// None yet (op 0).
    Empty,
    /// The bytes at `op` read back and verified; the state hash of the state they hold
    /// (`kmb_node::core::snapshot::state_hash_of`, the same hash as
    /// [`Observations::checkpoints`]).
    Verified { op: u64, hash: u128 },
    /// Referenced but unreadable or failing its checksum.
    Faulty { op: u64 },
}

/// One replica's durable state, read back from its simulated disk after the seed (what a
/// power loss at that moment would leave, examined offline by storage's own recovery code:
/// `kmb_node::storage::Storage::examine`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskImage {
    pub checkpoint: DiskCheckpoint,
    /// The checksum of the entry at the checkpoint's op (the hash chain resumes from it).
    pub checkpoint_entry: Checksum,
    /// The log recovery would start with: op → entry checksum, from the checkpoint's op + 1.
    pub log: BTreeMap<u64, Checksum>,
    /// Ops recovery found faulty (to repair from peers).
    pub faulty: Vec<u64>,
}

/// Everything the checkers read, all from the real replicas and the real clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observations {
    /// Replicas in the cluster.
    pub replica_count: u8,
    /// The replicas' client-table capacity (`Config::clients_max`), for the replay.
    pub clients_max: usize,
    /// What clients saw: every completed or unknown-outcome operation, replies with op numbers.
    pub history: Vec<KvOp>,
    /// The cluster clock (wall time, microseconds since the Unix epoch) at history time 0:
    /// history times are microseconds since then. Places the expiry ticks
    /// ([`linearizability::ticks`]).
    pub clock_origin_us: u64,
    /// The least and greatest replica clock offsets (ms; `Swarm::clock_skew_ms`, (0, 0)
    /// without skew): how far an entry's timestamp may be from the real time its op ran.
    pub clock_skew_ms: (i64, i64),
    /// Optional: history client index (`KvOp::client`) → the session client id the node sees
    /// in entry headers (one per session). When present, a reply's entry must carry one of them.
    pub client_ids: BTreeMap<u64, Vec<u128>>,
    /// The committed log: op → the first committed entry any replica reported for it.
    pub committed: BTreeMap<u64, Entry>,
    /// Per replica, every (op, checksum) it committed, in commit order, across restarts.
    pub commits: BTreeMap<u8, Vec<(u64, Checksum)>>,
    /// Per replica, one index into `commits[replica]` per start (incarnation), in start order:
    /// where that incarnation's commits begin (equal consecutive indices for an incarnation
    /// that committed nothing). A replica without an entry is taken as one incarnation.
    pub commit_incarnations: BTreeMap<u8, Vec<usize>>,
    /// State transfers: (replica, checkpoint op installed, its checksum).
    pub transfers: Vec<(u8, u64, Checksum)>,
    /// Per replica: commit number → state hash published at that commit.
    pub state_hashes: BTreeMap<u8, BTreeMap<u64, u128>>,
    /// Per replica: its final in-memory log, op → (checksum, parent).
    pub logs: BTreeMap<u8, BTreeMap<u64, (Checksum, Checksum)>>,
    /// Each start after recovery, in start order: (replica, commit, state hash).
    pub recoveries: Vec<(u8, u64, u128)>,
    /// Per replica: checkpoint op → the state hash of the checkpointed state (kv state + client
    /// table).
    pub checkpoints: BTreeMap<u8, BTreeMap<u64, u128>>,
    /// Per replica: its published state at the end.
    pub final_states: BTreeMap<u8, FinalState>,
    /// The liveness phase's result.
    pub liveness: Liveness,
    /// Per replica, for each start in order: the highest op its storage reported durable in
    /// that incarnation (the last value seen before it stopped).
    pub durable_heads: BTreeMap<u8, Vec<u64>>,
    /// Per replica, for each start in order: what storage recovery reported — the checkpoint
    /// op, the ops recovered intact, and the ops reported faulty.
    pub recovery_reports: BTreeMap<u8, Vec<RecoveryReport>>,
    /// Per replica, for each start in order: the highest view it sent a DoViewChange for in
    /// that incarnation (0 if none).
    pub votes: BTreeMap<u8, Vec<View>>,
    /// Per replica: its durable state read back from its disk after a converged run (empty
    /// when the run did not converge); `Err` says why the file could not be examined.
    pub disks: BTreeMap<u8, Result<DiskImage, String>>,
    /// The replicas whose disk the fault model could damage or fail (corrupt sectors, latent
    /// errors, failed writes): only there may storage report damage.
    pub corruptible: BTreeSet<u8>,
    /// What the simulated disk's oracle found wrong with storage's reads, in order: an item
    /// accepted as valid that an injected fault had damaged (or that straddles a torn write),
    /// or an item reported faulty on a disk no fault ever damaged
    /// (`sim_runtime::disk::accepted`, `reported_faulty`).
    pub disk_oracle: Vec<String>,
}

impl Default for Observations {
    fn default() -> Self {
        Observations::new(0)
    }
}

impl Observations {
    /// Empty observations of a `replica_count`-replica cluster (nothing committed, liveness not
    /// established).
    pub fn new(replica_count: u8) -> Observations {
        Observations {
            replica_count,
            clients_max: CLIENTS_MAX_DEFAULT,
            history: Vec::new(),
            clock_origin_us: 0,
            clock_skew_ms: (0, 0),
            client_ids: BTreeMap::new(),
            committed: BTreeMap::new(),
            commits: BTreeMap::new(),
            commit_incarnations: BTreeMap::new(),
            transfers: Vec::new(),
            state_hashes: BTreeMap::new(),
            logs: BTreeMap::new(),
            recoveries: Vec::new(),
            checkpoints: BTreeMap::new(),
            final_states: BTreeMap::new(),
            liveness: Liveness::default(),
            durable_heads: BTreeMap::new(),
            recovery_reports: BTreeMap::new(),
            votes: BTreeMap::new(),
            disks: BTreeMap::new(),
            corruptible: BTreeSet::new(),
            disk_oracle: Vec::new(),
        }
    }

    /// The highest op anyone is known to have committed (commits, transfers, committed
    /// entries); 0 if none.
    pub fn highest_committed(&self) -> u64 {
        let commits = self.commits.values().flatten().map(|&(op, _)| op);
        let transfers = self.transfers.iter().map(|&(_, op, _)| op);
        let entries = self.committed.keys().copied();
        commits.chain(transfers).chain(entries).max().unwrap_or(0)
    }
}

/// One invariant violated, with what is known about where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The checker's name (one of [`INVARIANTS`]).
    pub invariant: &'static str,
    pub classification: Classification,
    pub message: String,
    pub replica: Option<u8>,
    pub op: Option<u64>,
    pub key: Option<String>,
}

impl Violation {
    /// A violation of `invariant` with nothing located yet.
    pub fn new(
        invariant: &'static str,
        classification: Classification,
        message: impl Into<String>,
    ) -> Violation {
        Violation {
            invariant,
            classification,
            message: message.into(),
            replica: None,
            op: None,
            key: None,
        }
    }

    /// Name the replica.
    pub fn replica(mut self, replica: u8) -> Violation {
        self.replica = Some(replica);
        self
    }

    /// Name the op.
    pub fn op(mut self, op: u64) -> Violation {
        self.op = Some(op);
        self
    }

    /// Name the key.
    pub fn key(mut self, key: impl Into<String>) -> Violation {
        self.key = Some(key.into());
        self
    }
}

impl From<Violation> for Failure {
    fn from(v: Violation) -> Failure {
        Failure {
            checker: v.invariant.to_string(),
            classification: v.classification,
            message: v.message,
            replica: v.replica,
            op: v.op,
            key: v.key,
        }
    }
}

/// A checker's verdict. `Unknown` (the checker could not decide honestly) is never a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail(Violation),
    Unknown(String),
}

impl Verdict {
    pub fn is_pass(&self) -> bool {
        matches!(self, Verdict::Pass)
    }

    pub fn is_fail(&self) -> bool {
        matches!(self, Verdict::Fail(_))
    }

    /// The violation, if the verdict is `Fail`.
    pub fn violation(&self) -> Option<&Violation> {
        match self {
            Verdict::Fail(v) => Some(v),
            _ => None,
        }
    }
}

/// The invariants, in the order [`check_all`] runs them.
pub const INVARIANTS: [&str; 8] = [
    data_correctness::NAME,
    linearizability::NAME,
    replica_consistency::NAME,
    hash_chain::NAME,
    commit_history::NAME,
    head_progress::NAME,
    checkpoint_recovery::NAME,
    storage_determinism::NAME,
];

/// A checker: a pure function of the observations.
pub type Checker = fn(&Observations) -> Verdict;

/// Run every checker, in [`INVARIANTS`] order.
pub fn check_all(obs: &Observations) -> Vec<(&'static str, Verdict)> {
    let checks: [(&'static str, Checker); 8] = [
        (data_correctness::NAME, data_correctness::check),
        (linearizability::NAME, linearizability::check),
        (replica_consistency::NAME, replica_consistency::check),
        (hash_chain::NAME, hash_chain::check),
        (commit_history::NAME, commit_history::check),
        (head_progress::NAME, head_progress::check),
        (checkpoint_recovery::NAME, checkpoint_recovery::check),
        (storage_determinism::NAME, storage_determinism::check),
    ];
    let verdicts: Vec<_> = checks.iter().map(|(name, f)| (*name, f(obs))).collect();
    debug_assert_eq!(verdicts.len(), INVARIANTS.len());
    debug_assert!(verdicts.iter().zip(INVARIANTS).all(|((a, _), b)| *a == b));
    verdicts
}

/// The first failure of `verdicts` (in order), else the first unknown's reason.
pub fn first_problem(verdicts: &[(&'static str, Verdict)]) -> Option<Result<Violation, String>> {
    verdicts
        .iter()
        .find_map(|(_, v)| v.violation().cloned().map(Ok))
        .or_else(|| {
            verdicts.iter().find_map(|(name, v)| match v {
                Verdict::Unknown(reason) => Some(Err(format!("{name}: {reason}"))),
                _ => None,
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a clean cluster passes every checker, in INVARIANTS order.
    #[test]
    fn check_all_clean_cluster_passes_every_invariant() {
        let obs = fixture::clean();
        let verdicts = check_all(&obs);
        let names: Vec<_> = verdicts.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, INVARIANTS);
        for (name, verdict) in &verdicts {
            assert_eq!(*verdict, Verdict::Pass, "{name}");
        }
        assert_eq!(first_problem(&verdicts), None);
    }

    /// Goal: a violation converts to the diagnosis Failure with its location intact.
    #[test]
    fn violation_into_failure_keeps_location() {
        let v = Violation::new("hash_chain", Classification::HashChainBreak, "broken")
            .replica(2)
            .op(9)
            .key("k0001");
        let f: Failure = v.into();
        assert_eq!(f.checker, "hash_chain");
        assert_eq!(f.classification, Classification::HashChainBreak);
        assert_eq!(
            (f.replica, f.op, f.key.as_deref()),
            (Some(2), Some(9), Some("k0001"))
        );
    }

    /// Goal: the default observations establish nothing, so head progress does not pass.
    #[test]
    fn check_all_default_observations_fail_liveness_only() {
        let verdicts = check_all(&Observations::default());
        for (name, verdict) in &verdicts {
            if *name == head_progress::NAME {
                assert!(verdict.is_fail(), "{verdict:?}");
            } else {
                assert!(verdict.is_pass(), "{name}: {verdict:?}");
            }
        }
        let problem = first_problem(&verdicts).expect("a problem");
        assert_eq!(problem.map(|v| v.invariant), Ok(head_progress::NAME));
    }
}
