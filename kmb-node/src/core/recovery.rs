//! Restart and recovery (VRR §4.3, Protocol-Aware Recovery, TigerBeetle's `recovering_head`):
//! loading what storage recovered (replaying the chained prefix, resuming as a backup or in a
//! view change), and a replica with a faulty head or checkpoint recovering through
//! Recovery / RecoveryResponse without voting.

use crate::entry::View;
use std::collections::BTreeSet;

use super::log::Slot;
use super::message::Body;
use super::message::LogSummary;
use super::replica::Replica;
use super::snapshot;
use super::{DurableState, Status};
use crate::entry::{Checksum, Entry};

impl Replica {
    pub(super) fn load(&mut self, durable: DurableState) -> Result<(), String> {
        let cluster = self.config.cluster;
        if durable.log_view > durable.view {
            return Err("recovered log_view exceeds view".to_string());
        }
        if durable.checkpoint.is_some() && durable.checkpoint_faulty.is_some() {
            return Err("recovered checkpoint is both loaded and faulty".to_string());
        }
        let (kv, clients) = snapshot::decode(&self.checkpoint.snapshot)
            .map_err(|e| format!("checkpoint snapshot does not decode: {e}"))?;
        self.kv = kv;
        self.clients = clients;
        let cp = self.checkpoint.op;
        if cp == 0 {
            let root = Entry::root(cluster);
            self.slots.insert(
                0,
                Slot {
                    header: root.header,
                    body: Some(root.body),
                    durable: true,
                },
            );
        }
        for entry in durable.entries {
            let h = entry.header;
            if h.cluster != cluster || h.op <= cp || !entry.is_valid() {
                return Err(format!("recovered entry at op {} is invalid", h.op));
            }
            if self.slots.range(h.op..).next().is_some() {
                return Err("recovered entries are not ascending".to_string());
            }
            self.slots.insert(
                h.op,
                Slot {
                    header: h,
                    body: Some(entry.body),
                    durable: true,
                },
            );
            self.op = self.op.max(h.op);
        }
        let faulty: BTreeSet<u64> = durable.faulty.iter().copied().filter(|&o| o > cp).collect();
        for &o in &faulty {
            if self.slots.contains_key(&o) {
                return Err(format!("op {o} is both intact and faulty"));
            }
        }
        // Adjacent intact entries must chain.
        let mut prev: Option<(u64, Checksum)> = Some((cp, self.checkpoint.checksum));
        for (&o, slot) in &self.slots {
            if let Some((p, c)) = prev {
                if p + 1 == o && slot.header.parent != c {
                    return Err(format!("recovered log is not hash-chained at op {o}"));
                }
            }
            prev = Some((o, slot.header.checksum));
        }
        let head_faulty = faulty.last().is_some_and(|&f| f > self.op);
        if let Some(&f) = faulty.last() {
            self.op = self.op.max(f);
        }
        self.held_max = self.op.max(cp);
        self.never_written = durable
            .never_written
            .iter()
            .copied()
            .filter(|o| faulty.contains(o))
            .collect();
        // Replay what the contiguous prefix proves committed.
        let mut commit_max = cp;
        let mut o = cp + 1;
        while let Some(slot) = self.slots.get(&o) {
            commit_max = commit_max.max(slot.header.commit.min(o - 1));
            o += 1;
        }
        self.commit_max = commit_max;
        if !self.checkpoint_faulty {
            self.commit_ops_unchecked();
        }

        if self.checkpoint_faulty {
            // Protocol-Aware Recovery: the checkpoint is corrupt, not absent. No state to
            // apply to, serve or vote with: obtain a peer's checkpoint first (then recover
            // the log like a replica with a faulty head).
            if self.config.replica_count == 1 {
                return Err(format!(
                    "single replica with an unreadable checkpoint at op {}: no peer to \
                     repair it from",
                    self.checkpoint.op
                ));
            }
            self.status = Status::Recovering;
            self.request_checkpoint_repair();
        } else if !durable.restarted {
            self.status = Status::Normal;
        } else if head_faulty {
            if self.config.replica_count == 1 {
                return Err("single replica with an unreadable log head: cannot repair".into());
            }
            self.status = Status::Recovering;
            self.broadcast(Body::Recovery { nonce: self.nonce });
        } else if self.log_view < self.view
            || self.config.primary_of(self.view) == self.config.replica
        {
            // A restarted primary may have lost its unsynced pipeline: never resume as primary.
            let view = if self.log_view < self.view {
                self.view
            } else {
                self.view + 1
            };
            self.start_view_change(view);
        } else {
            self.status = Status::Normal;
            self.send_repairs();
        }
        self.progress();
        Ok(())
    }

    pub(super) fn on_recovery(&mut self, from: u8, nonce: u64) {
        if self.status != Status::Normal {
            return;
        }
        let headers = if self.is_primary() {
            self.suffix_headers()
        } else {
            Vec::new()
        };
        let Some(log) = self.own_log(headers) else {
            return;
        };
        let body = Body::RecoveryResponse {
            view: self.view,
            nonce,
            log,
        };
        self.send(from, body);
    }

    pub(super) fn on_recovery_response(
        &mut self,
        from: u8,
        view: View,
        nonce: u64,
        log: LogSummary,
    ) {
        if self.status != Status::Recovering
            || nonce != self.nonce
            || self.state_missing()
            || !self.valid_log(&log)
        {
            return;
        }
        self.recovery_replies.insert(from, (view, log));
        if self.recovery_replies.len() + 1 < self.config.quorum() {
            return;
        }
        let view_max = self
            .recovery_replies
            .values()
            .map(|&(view, _)| view)
            .max()
            .unwrap_or(0);
        if view_max < self.superblock.0 {
            // This replica's durable view is ahead of every responder's (it moved views
            // alone, e.g. while partitioned): none of them will reach that view by itself
            // while its primary is healthy. Ask them to move there; the view change is decided
            // by the DoViewChanges of the others (this replica sends none), and its StartView
            // ends this recovery (its view is `>=` the durable one). The SVC carries no log
            // and no vote: it only makes peers leave an older view, which a timeout also does.
            self.broadcast(Body::StartViewChange {
                view: self.superblock.0,
            });
            return;
        }
        let primary = self.config.primary_of(view_max);
        let Some((view, log)) = self
            .recovery_replies
            .get(&primary)
            .filter(|&&(view, _)| view == view_max)
            .cloned()
        else {
            return;
        };
        self.join_view(primary, view, log);
    }
}
