//! Nacks (TigerBeetle's DoViewChange nacks, Protocol-Aware Recovery; docs/protocol.md
//! "Nacks"): the primary-elect truncates the chosen log before an op whose only copies are
//! faulty once `replica_count - quorum + 1` DoViewChange senders prove they never held it.

use super::message::Vote;
use super::replica::Replica;
use super::Status;
use crate::entry::Checksum;

impl Replica {
    /// Whether `dvc` proves its sender never held (so never acknowledged) the entry `checksum`
    /// at `op`: the op is beyond the sender's head, or the sender holds a different entry
    /// there with its body intact. A header without a body (faulty or not yet repaired), a
    /// hole, or an op below the sender's header suffix proves nothing.
    pub(super) fn nacks(dvc: &Vote, op: u64, checksum: Checksum) -> bool {
        if op > dvc.log.op || op > dvc.held_max || dvc.never_written.binary_search(&op).is_ok() {
            return true;
        }
        match dvc.log.headers.binary_search_by_key(&op, |h| h.op) {
            Ok(i) => dvc.log.headers[i].checksum != checksum && dvc.bodies.get(i) == Some(&true),
            Err(_) => false,
        }
    }

    /// Nacks (TigerBeetle, Protocol-Aware Recovery): the primary-elect, having installed the
    /// chosen log, truncates it before the first op whose body it lacks (or whose header too:
    /// then the entry is the one the successor's `parent` names, if known), that no DVC holds,
    /// and that at least `replica_count - quorum + 1` DVC senders (itself included) nack:
    /// the replicas left cannot form the quorum a commit needs, so neither that op nor any
    /// later one (an acknowledgement covers the whole prefix) was committed.
    pub(super) fn truncate_nacked(&mut self) {
        if !self.is_primary_elect()
            || !self.vc_installed
            || self.status != Status::ViewChange
            || self.halted.is_some()
        {
            return;
        }
        let n = self.config.replica_count as usize;
        let quorum_nack = n - self.config.quorum() + 1;
        let canonical = |op: u64| -> Option<Checksum> {
            let at = |o: u64| {
                self.vc_headers
                    .binary_search_by_key(&o, |h| h.op)
                    .ok()
                    .map(|i| self.vc_headers[i])
            };
            at(op)
                .map(|h| h.checksum)
                .or_else(|| at(op + 1).map(|h| h.parent))
        };
        let holds = |d: &Vote, op: u64, c: Checksum| {
            d.log
                .headers
                .binary_search_by_key(&op, |h| h.op)
                .is_ok_and(|i| d.log.headers[i].checksum == c && d.bodies.get(i) == Some(&true))
        };
        let mut cut = None;
        for op in self.commit_max + 1..=self.op {
            // The entry the chosen log has at `op`, and the new head below it, must both be
            // known from that log (its own headers, or its successor's `parent`).
            let Some(c) = canonical(op) else {
                continue;
            };
            if self
                .slots
                .get(&op)
                .is_some_and(|s| s.header.checksum == c && s.body.is_some())
                || self.dvcs.values().any(|d| holds(d, op, c))
            {
                continue;
            }
            let below = op - 1;
            let head_known = below == self.commit_min
                || self.vc_headers.iter().any(|h| {
                    h.op == below
                        && self.slots.get(&below).map(|s| s.header.checksum) == Some(h.checksum)
                });
            if !head_known {
                continue;
            }
            let nacks = self.dvcs.values().filter(|d| Self::nacks(d, op, c)).count();
            if nacks >= quorum_nack {
                cut = Some(below);
                break;
            }
        }
        if let Some(head) = cut {
            self.truncate_after(head);
            self.repair_inflight.retain(|&o| o <= head);
        }
    }
}
