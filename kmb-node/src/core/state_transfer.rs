//! State transfer (VRR Revisited, Pragmatics: "State Transfer", here of checkpoints;
//! Protocol-Aware Recovery for an unreadable local checkpoint): a replica behind a peer's
//! checkpoint installs it, and a replica whose own checkpoint is unreadable repairs it from a
//! peer before recovering its log.

use super::log::span;
use super::message::Body;
use super::replica::Replica;
use super::snapshot::{self, SNAPSHOT_SIZE_MAX};
use super::{CheckpointState, Effect, Snapshot, Status};
use crate::entry::Checksum;

impl Replica {
    pub(super) fn maybe_request_state_transfer(&mut self, from: u8, peer_checkpoint_op: u64) {
        if peer_checkpoint_op <= self.commit_min
            || self.checkpoint_inflight.is_some()
            || self.tick < self.state_transfer_due
        {
            return;
        }
        let present = span(&self.slots, self.commit_min + 1, peer_checkpoint_op)
            .filter(|(_, s)| s.body.is_some())
            .count() as u64;
        if present == peer_checkpoint_op - self.commit_min {
            return;
        }
        self.request_state_transfer(from, peer_checkpoint_op);
    }

    /// Ask `from` for its checkpoint (rate limited), whatever the local log holds: the log
    /// `from` sent cannot be installed without it (its head is its checkpoint).
    pub(super) fn request_state_transfer(&mut self, from: u8, peer_checkpoint_op: u64) {
        if peer_checkpoint_op <= self.commit_min
            || self.checkpoint_inflight.is_some()
            || self.tick < self.state_transfer_due
        {
            return;
        }
        self.state_transfer_due = self.tick + self.config.repair_ticks;
        let op_min = self.commit_min + 1;
        self.send(from, Body::RequestStateTransfer { op_min });
    }

    /// The local checkpoint is unreadable and no peer's has been accepted yet: `kv` and
    /// `clients` are not the state at `commit_min`.
    pub(super) fn state_missing(&self) -> bool {
        self.checkpoint_faulty && self.checkpoint_inflight.is_none()
    }

    /// Ask the next peer (round robin, one per `repair_ticks`) for a checkpoint at an op at
    /// or above the unreadable local one.
    pub(super) fn request_checkpoint_repair(&mut self) {
        let others: Vec<u8> = self.others().collect();
        let Some(&to) = others.get(self.state_transfer_peer as usize % others.len().max(1)) else {
            return;
        };
        self.state_transfer_peer = self.state_transfer_peer.wrapping_add(1);
        crate::mark!("checkpoint_repair_requested");
        let op_min = self.checkpoint.op;
        self.send(to, Body::RequestStateTransfer { op_min });
    }

    /// Answer a RequestStateTransfer: the durable checkpoint if it is at `op_min` or above,
    /// else a snapshot of the applied state (every op up to `commit_min` is committed) if that
    /// is; nothing from a replica without usable state.
    pub(super) fn on_request_state_transfer(&mut self, from: u8, op_min: u64) {
        if self.status == Status::Recovering || self.checkpoint_faulty {
            return;
        }
        let (op, checksum, snapshot) = if self.checkpoint.op > 0 && self.checkpoint.op >= op_min {
            (
                self.checkpoint.op,
                self.checkpoint.checksum,
                self.checkpoint.snapshot.to_vec(),
            )
        } else if self.commit_min > self.checkpoint.op && self.commit_min >= op_min {
            let Some(checksum) = self.checksum_at(self.commit_min) else {
                return;
            };
            (
                self.commit_min,
                checksum,
                snapshot::encode(&self.kv, &self.clients, self.timestamp_at(self.commit_min)),
            )
        } else {
            return;
        };
        if snapshot.len() <= SNAPSHOT_SIZE_MAX {
            let body = Body::StateTransfer {
                view: self.view,
                checkpoint_op: op,
                checkpoint_checksum: checksum,
                snapshot,
            };
            self.send(from, body);
        }
    }

    pub(super) fn on_state_transfer(
        &mut self,
        op: u64,
        checksum: Checksum,
        snapshot_bytes: Vec<u8>,
    ) {
        // Repairing an unreadable local checkpoint at `n`: a peer's checkpoint at `n` must
        // have the entry checksum our superblock recorded (so our intact entries above `n`,
        // which chain from it, stay valid); one above `n` is accepted as in any state
        // transfer. Our log above it was never verified against the cluster's: not
        // authoritative.
        let repairing = self.status == Status::Recovering && self.state_missing();
        let wanted = !self.state_missing()
            && op > self.commit_min
            && self.head_checkpoint_wanted == Some((op, checksum));
        let eligible = repairing
            || wanted
            || self.status == Status::Normal
            || (self.is_primary_elect() && self.vc_installed);
        if !eligible || self.checkpoint_inflight.is_some() {
            return;
        }
        if repairing {
            let n = self.checkpoint.op;
            if op < n || (op == n && checksum != self.checkpoint.checksum) {
                return;
            }
        } else if op <= self.commit_min {
            // Mutation `stale-state-transfer-installed` (simulator): an older one is taken.
            #[cfg(madsim)]
            let stale_taken = op < self.commit_min && {
                use crate::mutation::{self, Mutation};
                let on = mutation::is(Mutation::StaleStateTransferInstalled);
                if on {
                    mutation::bit(Mutation::StaleStateTransferInstalled);
                }
                on
            };
            #[cfg(not(madsim))]
            let stale_taken = false;
            if !stale_taken {
                return;
            }
        }
        let Ok((kv, clients)) = snapshot::decode(&snapshot_bytes) else {
            return;
        };
        if self
            .slots
            .get(&op)
            .is_some_and(|s| s.header.checksum != checksum)
        {
            if !repairing && !wanted && self.chain_from(op) {
                return; // contradicts our (authoritative) log: ignore
            }
            self.remove_slot(op);
        }
        crate::mark!("state_transfer_installed");
        self.kv = kv;
        self.clients = clients;
        let below: Vec<u64> = self.slots.range(..op).map(|(&o, _)| o).collect();
        for o in below {
            self.slots.remove(&o);
            self.forget_durability(o);
        }
        self.commit_min = op;
        self.commit_max = self.commit_max.max(op);
        if self.op < op {
            self.op = op;
        }
        let snapshot_bytes = Snapshot::new(snapshot_bytes);
        self.checkpoint_inflight = Some(CheckpointState {
            op,
            checksum,
            snapshot: Snapshot::clone(&snapshot_bytes),
        });
        self.effects.push(Effect::StateTransferred { op, checksum });
        self.effects.push(Effect::InstallCheckpoint {
            op,
            checksum,
            snapshot: snapshot_bytes,
        });
        if wanted {
            // Install the authoritative log now (its truncation comes before any check of
            // our own suffix against the new checkpoint).
            self.head_checkpoint_wanted = None;
            match self.pending_join.take() {
                Some((primary, view, log)) => self.join_view(primary, view, log),
                None => {
                    self.try_install_dvcs();
                    if !self.vc_installed {
                        self.clean_chain();
                        self.send_repairs();
                    }
                }
            }
            return;
        }
        if repairing {
            self.drop_superseded_after(op);
        }
        self.clean_chain();
        self.send_repairs();
        if repairing {
            // Now recover the log like a replica with a faulty head (no votes until then).
            self.repair_due = self.tick + self.config.repair_ticks;
            self.broadcast(Body::Recovery { nonce: self.nonce });
        }
    }

    /// After installing a peer's (committed) checkpoint at `op` while recovering: local
    /// entries from `op + 1` that do not chain from it belong to a superseded history (never
    /// committed). Drop that run from memory (it is not authoritative, and `clean_chain`
    /// would take a contradiction of the committed prefix connected to the head for lost
    /// committed data); entries after a hole stay, to be verified by repair and by the log
    /// installed from the primary. Storage keeps them until that install truncates them.
    fn drop_superseded_after(&mut self, op: u64) {
        let Some(mut prev) = self.checksum_at(op) else {
            return;
        };
        let mut run = Vec::new();
        let mut superseded = false;
        for (&o, slot) in self.slots.range(op + 1..) {
            if o != op + 1 + run.len() as u64 {
                break;
            }
            if run.is_empty() {
                superseded = slot.header.parent != prev;
                if !superseded {
                    break;
                }
            } else if slot.header.parent != prev {
                break;
            }
            prev = slot.header.checksum;
            run.push(o);
        }
        if superseded {
            for o in run {
                self.remove_slot(o);
            }
        }
    }
}
