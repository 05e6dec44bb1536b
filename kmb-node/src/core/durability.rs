//! Durability (TigerBeetle: nothing is acted on before it is durable; docs/protocol.md
//! "Durability rules"): one outstanding WAL sync covering every write since the previous one
//! (group commit), the superblock's `(view, log_view)`, and checkpoints that free WAL slots.

use super::replica::Replica;
use super::snapshot;
#[cfg(madsim)]
use super::snapshot::ClientTable;
use super::{CheckpointState, Effect, Snapshot};
use crate::entry::View;

impl Replica {
    pub(super) fn on_synced(&mut self, op: u64) {
        // The glue answers each sync once, in order, only after the fsync that covered it
        // (`node/io.rs`): a completion of no sync in flight is a glue bug.
        invariant!(
            self.sync_inflight.as_ref().is_some_and(|(o, _)| *o == op),
            "Synced {{ op: {op} }} without that sync in flight ({:?})",
            self.sync_inflight.as_ref().map(|(o, _)| o)
        );
        if self.sync_inflight.as_ref().is_some_and(|(o, _)| *o == op) {
            let (_, ops) = self.sync_inflight.take().expect("checked");
            for o in ops {
                if let Some(slot) = self.slots.get_mut(&o) {
                    slot.durable = true;
                }
            }
            self.syncing_truncate = false;
        }
    }

    pub(super) fn maybe_sync(&mut self) {
        if self.sync_inflight.is_none() && (!self.dirty.is_empty() || self.dirty_truncate) {
            let ops = std::mem::take(&mut self.dirty);
            self.syncing_truncate = self.dirty_truncate;
            self.dirty_truncate = false;
            self.sync_inflight = Some((self.op, ops));
            self.effects.push(Effect::Sync { op: self.op });
        }
    }

    pub(super) fn on_superblock_synced(&mut self, view: View, log_view: View) {
        invariant!(
            self.superblock_inflight == Some((view, log_view)),
            "SuperblockSynced {{ {view}, {log_view} }} without that write in flight ({:?})",
            self.superblock_inflight
        );
        if self.superblock_inflight == Some((view, log_view)) {
            self.superblock_inflight = None;
            self.superblock = (view, log_view);
        }
    }

    pub(super) fn maybe_write_superblock(&mut self) {
        let desired = (self.view, self.log_view);
        if self.truncation_unpublished && desired.1 < self.install_view {
            return;
        }
        if self.superblock_inflight.is_none() && self.superblock != desired {
            self.truncation_unpublished = false;
            self.superblock_inflight = Some(desired);
            self.effects.push(Effect::WriteSuperblock {
                view: desired.0,
                log_view: desired.1,
            });
        }
    }

    pub(super) fn on_checkpoint_done(&mut self, op: u64) {
        invariant!(
            self.checkpoint_inflight
                .as_ref()
                .is_some_and(|c| c.op == op),
            "CheckpointDone {{ op: {op} }} without that checkpoint in flight ({:?})",
            self.checkpoint_inflight.as_ref().map(|c| c.op)
        );
        if self
            .checkpoint_inflight
            .as_ref()
            .is_some_and(|c| c.op == op)
        {
            self.checkpoint = self.checkpoint_inflight.take().expect("checked");
            self.checkpoint_faulty = false;
            let kept = self.slots.split_off(&op);
            for o in self.slots.keys() {
                self.dirty.remove(o);
                if let Some((_, syncing)) = &mut self.sync_inflight {
                    syncing.remove(o);
                }
            }
            self.slots = kept;
        }
    }

    pub(super) fn maybe_checkpoint(&mut self) {
        if self.checkpoint_inflight.is_some()
            || self.checkpoint_faulty
            || self.commit_min < self.checkpoint.op + self.config.checkpoint_interval
        {
            return;
        }
        let Some(checksum) = self.checksum_at(self.commit_min) else {
            return;
        };
        // The incremental digests behind every published state hash match a recomputation.
        invariant!(
            self.kv.digest() == self.kv.digest_recomputed() && self.clients.digest_is_consistent(),
            "incremental state digest diverged from a recomputation at checkpoint {}",
            self.commit_min
        );
        let stamp = self.timestamp_at(self.commit_min);
        let snapshot = Snapshot::new(snapshot::encode(&self.kv, &self.clients, stamp));
        #[cfg(madsim)]
        let snapshot = {
            use crate::mutation::{self, Mutation};
            if mutation::is(Mutation::ClientTableNotCheckpointed) {
                mutation::bit(Mutation::ClientTableNotCheckpointed);
                Snapshot::new(snapshot::encode(&self.kv, &ClientTable::new(), stamp))
            } else {
                snapshot
            }
        };
        let cp = CheckpointState {
            op: self.commit_min,
            checksum,
            snapshot: Snapshot::clone(&snapshot),
        };
        self.checkpoint_inflight = Some(cp);
        self.effects.push(Effect::Checkpoint {
            op: self.commit_min,
            checksum,
            snapshot,
        });
    }
}
