//! Nacks (TigerBeetle's DoViewChange nacks, Protocol-Aware Recovery; docs/protocol.md
//! "Nacks"): the primary-elect truncates the chosen log before an op whose only copies are
//! faulty once `replica_count - quorum + 1` DoViewChange senders prove they never held it.

use super::message::Vote;
use super::replica::Replica;
use super::Status;
use crate::entry::{Checksum, View};

impl Replica {
    /// Whether `dvc` proves its sender never held (so never acknowledged) the entry `checksum`
    /// at `op`: the op is beyond the sender's head, or the sender holds a different entry
    /// there with its body intact. A header without a body (faulty or not yet repaired), a
    /// hole, or an op below the sender's header suffix proves nothing.
    ///
    /// `view_floor`: a view the chosen entry at `op` is at least of (its own, or that of the
    /// chosen log's nearest known entry below it: views never decrease along a log). A sender
    /// whose durable `log_view` is older never acknowledged it (docs/protocol.md, "Nacks",
    /// rule 5), whatever it holds at `op`.
    ///
    /// With `checksum` unknown (no DVC's header for `op` is known to be canonical) only the
    /// proofs that hold for any entry the chosen log may have there count: the op is beyond
    /// the sender's head, it never wrote that slot, or its `log_view` is below `view_floor`.
    pub(super) fn nacks(
        dvc: &Vote,
        op: u64,
        checksum: Option<Checksum>,
        view_floor: Option<View>,
    ) -> bool {
        if op > dvc.log.op || op > dvc.held_max || dvc.never_written.binary_search(&op).is_ok() {
            return true;
        }
        if view_floor.is_some_and(|floor| dvc.log_view < floor) {
            return true;
        }
        // Mutation `nack-log-view-not-older` (simulator): a sender of the entry's own view
        // nacks too.
        #[cfg(madsim)]
        if view_floor.is_some_and(|floor| dvc.log_view == floor)
            && crate::mutation::is(crate::mutation::Mutation::NackLogViewNotOlder)
        {
            crate::mutation::bit(crate::mutation::Mutation::NackLogViewNotOlder);
            return true;
        }
        let Some(checksum) = checksum else {
            return false;
        };
        match dvc.log.headers.binary_search_by_key(&op, |h| h.op) {
            Ok(i) => dvc.log.headers[i].checksum != checksum && dvc.bodies.get(i) == Some(&true),
            Err(_) => false,
        }
    }

    /// A view the chosen log's entry at `op` is at least of: the view of its header if known,
    /// else of the nearest known header below it (views never decrease along a log).
    pub(super) fn chosen_view_floor(&self, op: u64) -> Option<View> {
        let at = self.vc_headers.partition_point(|h| h.op <= op);
        at.checked_sub(1).map(|i| self.vc_headers[i].view)
    }

    /// Fill holes of the chosen log from other DoViewChanges where the canonical entry is
    /// known by its view (issue 17, seed 1063603349953): between two entries of the chosen
    /// log prepared in the same view V, the canonical log holds entries of view V only (views
    /// never decrease along a log), and a view's primary prepares each op once — so a header
    /// of view V at such an op, in any DVC whatever its `log_view`, is the canonical one.
    /// Without this, an op held intact only by a replica with an older `log_view`, next to
    /// ops that no replica holds, could be neither repaired (its checksum unknown) nor nacked
    /// past (the new head unknown), and the view change never completed. Two different
    /// headers of the same view and op would contradict that; then nothing is adopted.
    fn adopt_same_view_headers(&mut self) {
        loop {
            let mut adopted = None;
            'gaps: for w in self.vc_headers.windows(2) {
                let (lo, hi) = (w[0], w[1]);
                if hi.op == lo.op + 1 || lo.view != hi.view {
                    continue;
                }
                for op in lo.op + 1..hi.op {
                    let mut candidates = self
                        .dvcs
                        .values()
                        .flat_map(|d| d.log.headers.iter())
                        .filter(|h| h.op == op && h.view == lo.view)
                        .map(|h| (h.checksum, *h))
                        .collect::<std::collections::BTreeMap<_, _>>()
                        .into_values();
                    let (Some(h), None) = (candidates.next(), candidates.next()) else {
                        continue;
                    };
                    let fits_below = op != lo.op + 1 || h.parent == lo.checksum;
                    let fits_above = op + 1 != hi.op || hi.parent == h.checksum;
                    if fits_below && fits_above {
                        adopted = Some(h);
                        break 'gaps;
                    }
                }
            }
            let Some(h) = adopted else {
                return;
            };
            let at = self.vc_headers.partition_point(|x| x.op < h.op);
            self.vc_headers.insert(at, h);
            if h.op > self.commit_min {
                self.put_header(h);
            }
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
        self.adopt_same_view_headers();
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
            // The entry the chosen log has at `op` is known from that log (its own headers,
            // or its successor's `parent`) or not at all; then only nacks that hold for any
            // entry count. The new head below it must be known.
            let c = canonical(op);
            if c.is_some_and(|c| {
                self.slots
                    .get(&op)
                    .is_some_and(|s| s.header.checksum == c && s.body.is_some())
                    || self.dvcs.values().any(|d| holds(d, op, c))
            }) {
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
            let floor = self.chosen_view_floor(op);
            let nacks = self
                .dvcs
                .values()
                .filter(|d| Self::nacks(d, op, c, floor))
                .count();
            if nacks >= quorum_nack {
                // Coverage (simulator only): whether rule 5 made the difference.
                #[cfg(madsim)]
                if self
                    .dvcs
                    .values()
                    .filter(|d| Self::nacks(d, op, c, None))
                    .count()
                    < quorum_nack
                {
                    crate::mark!("nack_by_log_view");
                }
                cut = Some(below);
                break;
            }
        }
        if let Some(head) = cut {
            crate::mark!("nack_truncation");
            self.truncate_after(head);
            self.repair_inflight.retain(|&o| o <= head);
        }
    }
}
