//! Simulator-only inspection hook: what each replica of the current simulation holds, published
//! by the real node after every batch, for the VOPR's checkers. Compiled only under
//! `cfg(madsim)`. Each seed runs on its own thread (`sim_runtime::sim::run`), so a thread-local
//! registry is per simulation.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::core::{Replica, Status};
use crate::entry::Checksum;

/// One replica's published state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaState {
    pub view: u32,
    pub log_view: u32,
    pub status: String,
    pub primary: bool,
    pub op: u64,
    pub commit: u64,
    pub checkpoint_op: u64,
    /// Hash of the key-value state after applying every op up to `commit`.
    pub state_hash: u128,
    /// Checksums of the log entries the replica holds, by op.
    pub log: BTreeMap<u64, Checksum>,
    /// Times this replica started (incarnations).
    pub starts: u64,
}

/// Everything published in this simulation.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    pub replicas: BTreeMap<u8, ReplicaState>,
    /// Every (op, checksum) each replica ever committed, in commit order.
    pub commits: BTreeMap<u8, Vec<(u64, Checksum)>>,
    /// State transfers: (replica, op, checksum).
    pub transfers: Vec<(u8, u64, Checksum)>,
    /// Why replicas stopped: (replica, reason).
    pub halts: Vec<(u8, String)>,
}

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry::default());
}

/// Publish `replica`'s state.
pub fn publish(replica: &Replica) {
    let id = replica.config().replica;
    REGISTRY.with(|r| {
        let mut r = r.borrow_mut();
        let state = r.replicas.entry(id).or_default();
        let commit = replica.commit();
        if commit != state.commit || state.status.is_empty() {
            state.state_hash = replica.state_hash();
        }
        state.view = replica.view();
        state.log_view = replica.log_view();
        state.status = match replica.status() {
            Status::Normal => "normal",
            Status::ViewChange => "view_change",
            Status::Recovering => "recovering",
        }
        .to_string();
        state.primary = replica.is_primary();
        state.op = replica.op();
        state.commit = commit;
        state.checkpoint_op = replica.checkpoint_op();
        let lo = replica.checkpoint_op();
        state.log = (lo..=replica.op())
            .filter_map(|op| replica.log_checksum_at(op).map(|c| (op, c)))
            .collect();
    });
}

/// Record that a replica started (a new incarnation).
pub fn started(replica: u8) {
    REGISTRY.with(|r| r.borrow_mut().replicas.entry(replica).or_default().starts += 1);
}

/// Record a commit.
pub fn commit(replica: u8, op: u64, checksum: Checksum) {
    REGISTRY.with(|r| {
        r.borrow_mut()
            .commits
            .entry(replica)
            .or_default()
            .push((op, checksum))
    });
}

/// Record a state transfer.
pub fn state_transferred(replica: u8, op: u64, checksum: Checksum) {
    REGISTRY.with(|r| r.borrow_mut().transfers.push((replica, op, checksum)));
}

/// Record why a replica stopped.
pub fn halted(replica: u8, reason: String) {
    REGISTRY.with(|r| r.borrow_mut().halts.push((replica, reason)));
}

/// A copy of everything published so far.
pub fn snapshot() -> Registry {
    REGISTRY.with(|r| r.borrow().clone())
}
