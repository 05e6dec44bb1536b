//! The Viewstamped Replication core: pure, sans-IO.
//!
//! [`Replica::step`] takes one [`Input`] (a message, a tick, a client request, or a durability
//! completion) and returns the [`Effect`]s the glue must execute, in order. The core never
//! awaits, reads a clock, draws randomness (the recovery nonce comes from [`Config::seed`]),
//! touches a disk or a socket, or iterates a hash map. See `docs/protocol.md` for the protocol
//! and its durability rules.
//!
//! * [`message`] — the replica-to-replica messages and their total encoding.
//! * [`replica`] — the replica's state, construction, inspection, the [`Replica::step`]
//!   dispatch and the `progress` order. Each sub-protocol is an `impl Replica` block in its
//!   own file: `log` (slots, hash chain, prefixes, installing a log), `durability` (sync,
//!   superblock, checkpoints), `normal` (prepare, prepare-ok, commit, apply), `view_change`,
//!   `nack`, `recovery`, `repair`, `state_transfer`, `client`, `read`, `timers`, `diagnose`.
//! * [`snapshot`] — the client table and the checkpoint snapshot (kv state + client table).

/// An invariant of the core: `assert!` in the simulator (every VOPR build, release included,
/// checks it on every step), `debug_assert!` in production builds. For internal consistency
/// only — never for input from the network or a client, which is dropped instead.
macro_rules! invariant {
    ($($arg:tt)*) => {
        if cfg!(madsim) {
            assert!($($arg)*);
        } else {
            debug_assert!($($arg)*);
        }
    };
}

mod client;
pub(crate) mod codec;
mod diagnose;
mod durability;
mod log;
pub mod message;
mod nack;
mod normal;
mod read;
mod recovery;
mod repair;
pub mod replica;
pub mod snapshot;
mod state_transfer;
#[cfg(test)]
mod tests;
mod timers;
mod view_change;

pub use codec::DecodeError;
pub use message::{Body, Message};
pub use normal::session_floor;
pub use replica::Replica;
#[cfg(madsim)]
pub(crate) use replica::{VIEW_JUMP_MAX, VIEW_MAX};
pub use snapshot::{ClientEntry, ClientTable};

use crate::entry::View;
use crate::entry::{Checksum, Entry};
use crate::kv;

/// Static configuration of one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Cluster id: every message and entry carries it; mismatches are dropped.
    pub cluster: u64,
    /// This replica's index, `0..replica_count`.
    pub replica: u8,
    /// 1, 3 or 5.
    pub replica_count: u8,
    /// WAL ring size: op `o` is written only if `o <= durable checkpoint op + slot_count`.
    pub slot_count: u64,
    /// Take a checkpoint once this many ops have been applied since the last one.
    pub checkpoint_interval: u64,
    /// The primary prepares at most this many ops beyond its commit number.
    pub pipeline_max: u64,
    /// Primary: send a Commit heartbeat every this many ticks (also the view-change resend
    /// interval).
    pub heartbeat_ticks: u64,
    /// Primary: resend unacknowledged prepares every this many ticks.
    pub prepare_ticks: u64,
    /// Backup: start a view change after this many ticks without hearing from the primary;
    /// view change: move to the next view after this many ticks without completing.
    pub view_change_ticks: u64,
    /// Resend repair, recovery and state-transfer requests every this many ticks.
    pub repair_ticks: u64,
    /// At most this many clients in the client table (the least recently committed is evicted).
    pub clients_max: usize,
    /// The largest entry body the WAL holds (one slot less its header): a larger client
    /// request is never prepared and a larger entry from a peer is dropped, so nothing a
    /// client or peer sends can make storage refuse a write.
    pub body_size_max: usize,
    /// Randomness for this incarnation (recovery nonces). The glue draws it from
    /// `sim_runtime::rand` at start-up.
    pub seed: u64,
}

impl Config {
    /// A configuration with defaults for everything but identity.
    pub fn new(cluster: u64, replica: u8, replica_count: u8) -> Config {
        Config {
            cluster,
            replica,
            replica_count,
            slot_count: 1024,
            checkpoint_interval: 256,
            pipeline_max: 64,
            heartbeat_ticks: 10,
            prepare_ticks: 20,
            view_change_ticks: 50,
            repair_ticks: 20,
            clients_max: 1024,
            body_size_max: crate::entry::BODY_SIZE_MAX as usize,
            seed: 0,
        }
    }

    /// Check the configuration; one clear line on error.
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.replica_count, 1 | 3 | 5) {
            return Err(format!(
                "replica_count must be 1, 3 or 5, not {}",
                self.replica_count
            ));
        }
        if self.replica >= self.replica_count {
            return Err(format!(
                "replica index {} out of range for {} replicas",
                self.replica, self.replica_count
            ));
        }
        if self.checkpoint_interval == 0 || self.pipeline_max == 0 {
            return Err("checkpoint_interval and pipeline_max must be positive".to_string());
        }
        if self.checkpoint_interval * 2 + self.pipeline_max > self.slot_count {
            return Err(format!(
                "slot_count {} must be at least 2 * checkpoint_interval + pipeline_max = {}",
                self.slot_count,
                self.checkpoint_interval * 2 + self.pipeline_max
            ));
        }
        if self.heartbeat_ticks == 0
            || self.prepare_ticks == 0
            || self.repair_ticks == 0
            || self.view_change_ticks <= self.heartbeat_ticks
        {
            return Err(
                "timeouts must be positive and view_change_ticks > heartbeat_ticks".to_string(),
            );
        }
        if self.body_size_max > crate::entry::BODY_SIZE_MAX as usize {
            return Err(format!(
                "body_size_max {} exceeds the entry format's {}",
                self.body_size_max,
                crate::entry::BODY_SIZE_MAX
            ));
        }
        if self.clients_max == 0 || self.clients_max > snapshot::CLIENTS_MAX_LIMIT {
            return Err(format!(
                "clients_max must be in 1..={}",
                snapshot::CLIENTS_MAX_LIMIT
            ));
        }
        Ok(())
    }

    /// Replicas needed for a commit or a view change: `replica_count / 2 + 1`.
    pub fn quorum(&self) -> usize {
        self.replica_count as usize / 2 + 1
    }

    /// The primary of `view` (round robin).
    pub fn primary_of(&self, view: View) -> u8 {
        (view % View::from(self.replica_count)) as u8
    }
}

/// A durable checkpoint: the state after applying every op up to `op`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointState {
    pub op: u64,
    /// Checksum of the log entry at `op` (the hash-chain anchor for `op + 1`).
    pub checksum: Checksum,
    /// [`snapshot::encode`]d kv state and client table.
    pub snapshot: Snapshot,
}

/// An encoded snapshot, shared (not copied) between the replica's checkpoint state, the
/// effect that stores it and the storage task: a checkpoint holds the whole state.
pub type Snapshot = std::sync::Arc<Vec<u8>>;

/// What storage recovered at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurableState {
    pub view: View,
    pub log_view: View,
    /// `None`: no checkpoint yet (the log starts after the root entry at op 0), or the
    /// checkpoint is unreadable (see `checkpoint_faulty`).
    pub checkpoint: Option<CheckpointState>,
    /// `Some((op, checksum))`: the durable superblock references a checkpoint at `op` (whose
    /// entry has `checksum`) that is unreadable (latent sector error, bit rot). Never treated
    /// as absent: the replica starts `Recovering` with no usable state and repairs it by state
    /// transfer of a peer's checkpoint at an op `>= op` (see `docs/protocol.md`). Exclusive
    /// with `checkpoint`; `entries` and `faulty` are still relative to `op`.
    pub checkpoint_faulty: Option<(u64, Checksum)>,
    /// Intact entries after the checkpoint, ascending by op. Holes are allowed exactly at
    /// `faulty` ops; adjacent entries must chain (`parent`).
    pub entries: Vec<Entry>,
    /// Ops after the checkpoint that were written but are unreadable now. Never treated as
    /// never-written: they are repaired from peers, verified by the hash chain.
    pub faulty: Vec<u64>,
    /// The ops of `faulty` that storage proves this replica never made durable (so never
    /// acknowledged): it may nack them in a view change. See `docs/protocol.md`, "Nacks".
    pub never_written: Vec<u64>,
    /// Whether this replica ran before (false only right after formatting).
    pub restarted: bool,
}

impl DurableState {
    /// The state of a freshly formatted replica.
    pub fn formatted() -> DurableState {
        DurableState {
            view: 0,
            log_view: 0,
            checkpoint: None,
            checkpoint_faulty: None,
            entries: Vec::new(),
            faulty: Vec::new(),
            never_written: Vec::new(),
            restarted: false,
        }
    }
}

/// The replica's protocol status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Normal,
    ViewChange,
    /// Restarted with an unreadable log head or an unreadable checkpoint: takes no part (no
    /// votes, no PrepareOk, no clients) until it has installed a peer's checkpoint (if its own
    /// is unreadable) and then the log of the current primary.
    Recovering,
}

/// One input to [`Replica::step`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A message from replica `from` (as identified by the transport).
    Message { from: u8, message: Message },
    /// One unit of time.
    Tick,
    /// A client request; `body` is an encoded [`kv::Request`].
    ClientRequest {
        client: u128,
        request: u64,
        body: Vec<u8>,
        /// The glue's wall clock (milliseconds since the Unix epoch): the core keeps the
        /// largest it was given and a primary stamps each entry with at least it
        /// (`entry::Header::timestamp`). The core itself reads no clock.
        now: u64,
    },
    /// Answer to [`Effect::Sync`] (echoing its `op`): every entry written before it is durable.
    Synced { op: u64 },
    /// Answer to [`Effect::WriteSuperblock`] (echoing it): the superblock is durable.
    SuperblockSynced { view: View, log_view: View },
    /// Answer to [`Effect::Checkpoint`]: the snapshot is durable and the superblock points at
    /// it; WAL slots of ops `<= op` may be reused.
    CheckpointDone { op: u64 },
}

/// One thing the glue must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Send `message` to replica `to` (best effort).
    Send { to: u8, message: Message },
    /// Write these entries to the WAL (not yet durable).
    WriteEntries(Vec<Entry>),
    /// Discard WAL entries with op greater than this (not yet durable).
    TruncateLogAfter(u64),
    /// Fsync the WAL, then feed [`Input::Synced`] with the same `op`. At most one is
    /// outstanding. An fsync error must stop the node (never retry the same fsync).
    Sync { op: u64 },
    /// Durably write the superblock, then feed [`Input::SuperblockSynced`]. At most one is
    /// outstanding.
    WriteSuperblock { view: View, log_view: View },
    /// Durably store the snapshot as the checkpoint at `op`, then feed
    /// [`Input::CheckpointDone`]. At most one is outstanding.
    Checkpoint {
        op: u64,
        checksum: Checksum,
        snapshot: Snapshot,
    },
    /// State transfer: durably store a peer's checkpoint at `op` (whose entry need not be in
    /// the local WAL, see `Storage::install_checkpoint`), then feed [`Input::CheckpointDone`].
    /// Counts as the one outstanding [`Effect::Checkpoint`].
    InstallCheckpoint {
        op: u64,
        checksum: Checksum,
        snapshot: Snapshot,
    },
    /// Reply to a client: `op` is the op the request was committed (ordered) at — or, for a
    /// `read` served without a log entry (`read.rs`), the op whose state it read (the state
    /// after `op`; the entry at `op` is another request).
    Reply {
        client: u128,
        request: u64,
        op: u64,
        reply: kv::Reply,
        read: bool,
    },
    /// The request reached a replica that is not the primary (or, `ordered`, a primary that
    /// ordered it and left its view before committing it: it may still take effect, and a
    /// retry with the same request number at `primary` gets its outcome).
    Redirect {
        client: u128,
        request: u64,
        primary: u8,
        ordered: bool,
    },
    /// Informational: op committed and applied, in order (for checkers).
    Commit { op: u64, checksum: Checksum },
    /// Informational: state was replaced by a peer's checkpoint at `op` (ops up to `op` were
    /// not applied one by one here).
    StateTransferred { op: u64, checksum: Checksum },
    /// The replica stopped: it can prove it is outside the fault bound (or its durable state
    /// is inconsistent). It ignores every later input.
    Halt(String),
}
