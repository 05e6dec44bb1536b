//! Planted bugs (mutation points), compiled under `cfg(madsim)` — and, for real-cluster chaos
//! runs, into a production build with the `chaos-mutation` feature, where three of the points
//! exist ([`PRODUCTION_POINTS`]) and `KMB_MUTATION=<name>` selects one (docs/chaos.md).
//!
//! A simulator is worth what its checkers catch: each [`Mutation`] is a known protocol or
//! storage bug that the production code can be switched into, for one simulation at a time.
//! The VOPR selects one per seed (`vopr --mutation NAME`) and `scripts/mutation-score.sh`
//! measures how many seeds the checkers need to catch each.
//!
//! At each mutation point the production code reads
//! `#[cfg(madsim)] if crate::mutation::is(Mutation::X) { … }`: outside the simulator the
//! point does not exist, so production code paths are unchanged. The active mutation is a
//! **thread-local** (each seed runs on its own thread, `sim_runtime::sim::run`), set by the
//! harness at the start of the seed's simulation; it never leaks across seeds. The pure VSR
//! core reads it too: that thread-local read is the one exception to the core's purity, and
//! exists only in simulator builds, for this hook.
//!
//! [`fired`] counts how often each mutation point was reached with its mutation active (per
//! thread, so per seed), so a test can prove the planted bug's code path really ran.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

/// A planted bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutation {
    /// The primary commits (and replies) as soon as its own log is durable, without waiting
    /// for a quorum of PrepareOks.
    CommitBeforeQuorum,
    /// A backup acknowledges (PrepareOk) prepares it holds but has not synced.
    PrepareOkBeforeSync,
    /// DoViewChange is sent before the new view is durable in the superblock.
    ViewNotSyncedBeforeDvc,
    /// The new primary picks the longest log among the DoViewChanges, ignoring `log_view`.
    ViewChangeLongestLog,
    /// Storage recovery treats the first bad checksum in the log as a torn tail: the entry and
    /// everything after it are dropped and nothing is reported faulty.
    RecoveryTruncatesAtBadChecksum,
    /// Storage recovery reports corrupt entries as blank (never written) instead of faulty.
    CorruptAsBlank,
    /// The checkpoint snapshot omits the client table.
    ClientTableNotCheckpointed,
    /// A backup answers GET from its own state (op number: its commit number) instead of
    /// redirecting to the primary.
    ReadFromBackup,
    /// Quorum arithmetic: with 5 replicas the primary commits at f acknowledgements (itself
    /// included) instead of f + 1.
    QuorumOneShort,
    /// A backup in normal status takes a Prepare of an older view from that view's primary as
    /// if it were current (stale-message handling).
    StalePrepareAccepted,
    /// A repaired entry is accepted though it does not match the header (or the successor's
    /// parent link) the log expects (read-path validation).
    RepairAcceptsUnchained,
    /// Storage recovery keeps entries of an older view above `log_view_head` (a suffix a view
    /// change truncated, still on disk) as if current.
    RecoveryIgnoresLogViewHead,
    /// A state transfer older than the replica's commit point is installed (stale reply).
    StaleStateTransferInstalled,
    /// Storage recovery accepts a prepare whose header verifies but whose body fails its
    /// checksum (read-path validation).
    BodyChecksumUnchecked,
    /// A request of a client the client table no longer holds (evicted) executes as if new,
    /// instead of answering `session evicted` (client-table eviction).
    EvictedSessionExecutes,
    /// Quorum arithmetic in the view change: with 5 replicas the new primary starts its view
    /// from f DoViewChanges (itself included) instead of f + 1.
    DvcQuorumOneShort,
    /// A plain SET keeps the key's old expiry instead of clearing it (expiry semantics).
    SetKeepsTtl,
    /// A transaction stops at its first error reply, keeping what ran before it: not
    /// all-or-nothing (transaction atomicity).
    MultiPartial,
    /// A primary stamps entries with its own clock only, not the largest of it and the
    /// previous entry's timestamp: with skewed clocks, cluster time goes back at a failover.
    TimestampGoesBack,
    /// The primary serves a read without a log entry before a quorum confirmed, after the
    /// read arrived, that it is still the primary of its view (`core/read.rs`).
    ReadUnconfirmed,
    /// A DoViewChange sender whose durable `log_view` equals the chosen entry's view (not only
    /// an older one) counts as a nack of it, though it may have acknowledged it
    /// (`core/nack.rs`, rule 5).
    NackLogViewNotOlder,
}

impl Mutation {
    /// Every mutation, in a fixed order.
    pub const ALL: [Mutation; 21] = [
        Mutation::CommitBeforeQuorum,
        Mutation::PrepareOkBeforeSync,
        Mutation::ViewNotSyncedBeforeDvc,
        Mutation::ViewChangeLongestLog,
        Mutation::RecoveryTruncatesAtBadChecksum,
        Mutation::CorruptAsBlank,
        Mutation::ClientTableNotCheckpointed,
        Mutation::ReadFromBackup,
        Mutation::QuorumOneShort,
        Mutation::StalePrepareAccepted,
        Mutation::RepairAcceptsUnchained,
        Mutation::RecoveryIgnoresLogViewHead,
        Mutation::StaleStateTransferInstalled,
        Mutation::BodyChecksumUnchecked,
        Mutation::EvictedSessionExecutes,
        Mutation::DvcQuorumOneShort,
        Mutation::SetKeepsTtl,
        Mutation::MultiPartial,
        Mutation::TimestampGoesBack,
        Mutation::ReadUnconfirmed,
        Mutation::NackLogViewNotOlder,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Mutation::CommitBeforeQuorum => "commit-before-quorum",
            Mutation::PrepareOkBeforeSync => "prepare-ok-before-sync",
            Mutation::ViewNotSyncedBeforeDvc => "view-not-synced-before-dvc",
            Mutation::ViewChangeLongestLog => "view-change-longest-log",
            Mutation::RecoveryTruncatesAtBadChecksum => "recovery-truncates-at-bad-checksum",
            Mutation::CorruptAsBlank => "corrupt-as-blank",
            Mutation::ClientTableNotCheckpointed => "client-table-not-checkpointed",
            Mutation::ReadFromBackup => "read-from-backup",
            Mutation::QuorumOneShort => "quorum-one-short",
            Mutation::StalePrepareAccepted => "stale-prepare-accepted",
            Mutation::RepairAcceptsUnchained => "repair-accepts-unchained",
            Mutation::RecoveryIgnoresLogViewHead => "recovery-ignores-log-view-head",
            Mutation::StaleStateTransferInstalled => "stale-state-transfer-installed",
            Mutation::BodyChecksumUnchecked => "body-checksum-unchecked",
            Mutation::EvictedSessionExecutes => "evicted-session-executes",
            Mutation::DvcQuorumOneShort => "dvc-quorum-one-short",
            Mutation::SetKeepsTtl => "set-keeps-ttl",
            Mutation::MultiPartial => "multi-partial",
            Mutation::TimestampGoesBack => "timestamp-goes-back",
            Mutation::ReadUnconfirmed => "read-unconfirmed",
            Mutation::NackLogViewNotOlder => "nack-log-view-not-older",
        }
    }

    /// One line saying what the planted bug does.
    pub fn description(self) -> &'static str {
        match self {
            Mutation::CommitBeforeQuorum => {
                "the primary commits and replies before a quorum of PrepareOks (counts itself as a quorum)"
            }
            Mutation::PrepareOkBeforeSync => {
                "a backup sends PrepareOk for prepares it has written but not synced"
            }
            Mutation::ViewNotSyncedBeforeDvc => {
                "DoViewChange is sent before the new view is durable in the superblock"
            }
            Mutation::ViewChangeLongestLog => {
                "the new primary picks the longest DoViewChange log, ignoring log_view"
            }
            Mutation::RecoveryTruncatesAtBadChecksum => {
                "storage recovery truncates the log at the first bad checksum (mid-log corruption taken for a torn tail)"
            }
            Mutation::CorruptAsBlank => {
                "storage recovery reports corrupt entries as blank (never written), not faulty"
            }
            Mutation::ClientTableNotCheckpointed => {
                "checkpoint snapshots omit the client table (retries after a restart apply twice)"
            }
            Mutation::ReadFromBackup => {
                "a backup answers GET from its own state with its commit number as op number"
            }
            Mutation::QuorumOneShort => {
                "with 5 replicas the primary commits at 2 acknowledgements (itself included), not 3"
            }
            Mutation::StalePrepareAccepted => {
                "a backup takes a Prepare of an older view from that view's primary as current"
            }
            Mutation::RepairAcceptsUnchained => {
                "a repaired entry is accepted though its checksum is not the one the log expects"
            }
            Mutation::RecoveryIgnoresLogViewHead => {
                "storage recovery keeps older-view entries above log_view_head (a truncated suffix) as current"
            }
            Mutation::StaleStateTransferInstalled => {
                "a state transfer older than the replica's commit point is installed"
            }
            Mutation::BodyChecksumUnchecked => {
                "storage recovery accepts a prepare whose body fails its checksum"
            }
            Mutation::EvictedSessionExecutes => {
                "a request of an evicted client executes as new instead of answering `session evicted`"
            }
            Mutation::DvcQuorumOneShort => {
                "with 5 replicas a new primary starts its view from 2 DoViewChanges (itself included), not 3"
            }
            Mutation::SetKeepsTtl => "a plain SET keeps the key's old expiry instead of clearing it",
            Mutation::MultiPartial => {
                "a transaction stops at its first error reply, keeping what ran before it (not all-or-nothing)"
            }
            Mutation::TimestampGoesBack => {
                "a primary stamps entries with its own clock only (cluster time goes back when a new primary's clock is behind)"
            }
            Mutation::ReadUnconfirmed => {
                "the primary serves reads without a log entry before a quorum confirms it still leads its view"
            }
            Mutation::NackLogViewNotOlder => {
                "a view-change vote whose log_view equals the chosen entry's view counts as a nack (it may have acknowledged it)"
            }
        }
    }

    /// The mutation called `name`, if any.
    pub fn from_name(name: &str) -> Option<Mutation> {
        Mutation::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl std::fmt::Display for Mutation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

thread_local! {
    static ACTIVE: Cell<Option<Mutation>> = const { Cell::new(None) };
    static FIRED: RefCell<BTreeMap<Mutation, u64>> = const { RefCell::new(BTreeMap::new()) };
    static BITES: RefCell<BTreeMap<Mutation, u64>> = const { RefCell::new(BTreeMap::new()) };
}

/// Select the mutation of this thread's simulation (`None`: the correct code) and reset the
/// fired counters.
pub fn set(mutation: Option<Mutation>) {
    ACTIVE.with(|a| a.set(mutation));
    FIRED.with(|f| f.borrow_mut().clear());
    BITES.with(|b| b.borrow_mut().clear());
}

/// The active mutation: in the simulator, the thread's; in a production build with the
/// `chaos-mutation` feature, the one named by the `KMB_MUTATION` environment variable
/// (read once), unless a thread selected one with [`set`].
pub fn active() -> Option<Mutation> {
    #[cfg(not(madsim))]
    if let Some(m) = from_env() {
        return Some(m);
    }
    ACTIVE.with(|a| a.get())
}

/// `KMB_MUTATION` (production `chaos-mutation` builds only). Only the points compiled
/// outside the simulator can fire: [`PRODUCTION_POINTS`].
#[cfg(not(madsim))]
pub fn from_env() -> Option<Mutation> {
    static FROM_ENV: std::sync::OnceLock<Option<Mutation>> = std::sync::OnceLock::new();
    *FROM_ENV.get_or_init(|| {
        std::env::var("KMB_MUTATION")
            .ok()
            .and_then(|n| Mutation::from_name(n.trim()))
    })
}

/// The mutations whose points exist in a production `chaos-mutation` build.
pub const PRODUCTION_POINTS: [Mutation; 3] = [
    Mutation::ReadFromBackup,
    Mutation::CommitBeforeQuorum,
    Mutation::ReadUnconfirmed,
];

/// Whether `mutation` is active; if it is, the point counts as fired.
pub fn is(mutation: Mutation) -> bool {
    let on = active() == Some(mutation);
    if on {
        FIRED.with(|f| *f.borrow_mut().entry(mutation).or_default() += 1);
    }
    on
}

/// Record that `mutation`'s buggy behaviour actually changed the outcome (stronger than
/// [`is`], which counts every time the point is reached).
pub fn bit(mutation: Mutation) {
    BITES.with(|b| *b.borrow_mut().entry(mutation).or_default() += 1);
}

/// How often `mutation`'s points were reached while it was active, in this thread.
pub fn fired(mutation: Mutation) -> u64 {
    FIRED.with(|f| f.borrow().get(&mutation).copied().unwrap_or(0))
}

/// How often `mutation` changed behaviour (see [`bit`]), in this thread.
pub fn bites(mutation: Mutation) -> u64 {
    BITES.with(|b| b.borrow().get(&mutation).copied().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for m in Mutation::ALL {
            assert_eq!(Mutation::from_name(m.name()), Some(m));
            assert!(!m.description().is_empty());
        }
        let mut names: Vec<_> = Mutation::ALL.iter().map(|m| m.name()).collect();
        names.dedup();
        assert_eq!(names.len(), Mutation::ALL.len());
        assert_eq!(Mutation::from_name("no-such-bug"), None);
    }

    #[test]
    fn set_selects_and_resets_counters() {
        set(Some(Mutation::ReadFromBackup));
        assert!(is(Mutation::ReadFromBackup));
        assert!(!is(Mutation::CorruptAsBlank));
        assert_eq!(fired(Mutation::ReadFromBackup), 1);
        set(None);
        assert_eq!(fired(Mutation::ReadFromBackup), 0);
    }
}
