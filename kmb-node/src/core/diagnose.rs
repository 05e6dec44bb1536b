//! Diagnosis: what a replica waits for (`blocker`, sampled by the VOPR's liveness reports)
//! and a one-line dump of its protocol state. Reads only; never part of a decision.

use std::collections::BTreeSet;

use super::log::span;
use super::replica::Replica;
use super::Status;

impl Replica {
    /// What this replica is waiting for, if it is not simply idle and caught up: one line
    /// naming the view, the op and — for a primary-elect stuck on an op — which DoViewChange
    /// senders hold, miss or nack it. For liveness reports (the VOPR prints it when a healed
    /// cluster does not converge) and operators' logs.
    pub fn blocker(&self) -> Option<String> {
        if let Some(reason) = &self.halted {
            return Some(format!("halted: {reason}"));
        }
        let set = |s: &BTreeSet<u8>| format!("{:?}", s.iter().collect::<Vec<_>>());
        let view = self.view;
        match self.status {
            Status::Recovering => Some(if self.checkpoint_faulty {
                format!(
                    "view {view}: recovering with an unreadable checkpoint at op {}: waiting for a peer's state transfer",
                    self.checkpoint.op
                )
            } else {
                format!(
                    "view {view}: recovering (faulty head): waiting for RecoveryResponses from a quorum including the primary; have {:?}",
                    self.recovery_replies.keys().collect::<Vec<_>>()
                )
            }),
            Status::ViewChange if self.is_primary_elect() => {
                let dvcs: BTreeSet<u8> = self.dvcs.keys().copied().collect();
                if dvcs.len() < self.config.quorum() || !dvcs.contains(&self.config.replica) {
                    return Some(format!(
                        "view {view}: primary-elect has DoViewChanges from {} (needs {} including its own); StartViewChanges from {}",
                        set(&dvcs),
                        self.config.quorum(),
                        set(&self.svc_from)
                    ));
                }
                if !self.vc_installed {
                    return Some(format!(
                        "view {view}: primary-elect waits for the chosen log's head checkpoint {:?}",
                        self.head_checkpoint_wanted.map(|(op, _)| op)
                    ));
                }
                let lacking = (self.commit_max + 1..=self.op)
                    .find(|o| self.slots.get(o).is_none_or(|s| s.body.is_none()));
                let Some(op) = lacking else {
                    return Some(format!(
                        "view {view}: primary-elect installed op {} and waits for its log to be durable (synced: {})",
                        self.op,
                        self.log_synced()
                    ));
                };
                let checksum = self.slots.get(&op).map(|s| s.header.checksum).or_else(|| {
                    self.slots.get(&(op + 1)).map(|s| s.header.parent)
                });
                let (mut hold, mut miss, mut nack) = (Vec::new(), Vec::new(), Vec::new());
                for (&r, d) in &self.dvcs {
                    let held = checksum.is_some_and(|c| {
                        d.log.headers.binary_search_by_key(&op, |h| h.op).is_ok_and(|i| {
                            d.log.headers[i].checksum == c && d.bodies.get(i) == Some(&true)
                        })
                    });
                    if held {
                        hold.push(r);
                    } else if Self::nacks(d, op, checksum, self.chosen_view_floor(op)) {
                        nack.push(r);
                    } else {
                        miss.push(r);
                    }
                }
                let n = self.config.replica_count as usize;
                Some(format!(
                    "view {view}: primary-elect lacks op {op} (checksum {}): held by {hold:?}, missing (may have acknowledged it) at {miss:?}, nacked by {nack:?} ({} nacks truncate it); commit {}",
                    checksum.map_or("unknown".to_string(), |c| format!("{:08x}", c as u32)),
                    n - self.config.quorum() + 1,
                    self.commit_max
                ))
            }
            Status::ViewChange => Some(format!(
                "view {view}: backup of primary {}: StartViewChanges from {}, view durable: {}, log synced: {}, DoViewChange sent: {}, installed view {} (log_view {}, truncation unpublished: {})",
                self.primary(),
                set(&self.svc_from),
                self.superblock.0 >= view,
                self.log_synced(),
                self.dvc_sent,
                self.install_view,
                self.log_view,
                self.truncation_unpublished
            )),
            Status::Normal if self.log_view < view => Some(format!(
                "view {view}: installing the primary's log (log_view {}): op {}, durable prefix {}",
                self.log_view,
                self.op,
                self.durable_prefix()
            )),
            Status::Normal if self.commit_min < self.commit_max => {
                let op = self.commit_min + 1;
                let what = match self.slots.get(&op) {
                    None => "no header",
                    Some(s) if s.body.is_none() => "header without body",
                    Some(_) => "entry not yet vouched for by the head's chain",
                };
                Some(format!(
                    "view {view}: cannot commit op {op} ({what}); commit_max {}, op {}",
                    self.commit_max, self.op
                ))
            }
            Status::Normal if self.is_primary() && self.commit_min < self.op => {
                let op = self.commit_min + 1;
                let acked: Vec<u8> = self
                    .others()
                    .filter(|&r| self.ack_op[r as usize] >= op)
                    .collect();
                Some(format!(
                    "view {view}: primary waits for acknowledgements of op {op} (acked by {acked:?}, own durable prefix {})",
                    self.durable_prefix()
                ))
            }
            Status::Normal => None,
        }
    }

    /// One line describing the replica's protocol state (for logs).
    pub fn debug_summary(&self) -> String {
        let missing_bodies = span(&self.slots, self.commit_min + 1, self.op)
            .filter(|(_, s)| s.body.is_none())
            .count();
        let slots = span(&self.slots, self.commit_min + 1, self.op).count();
        format!(
            "status={:?} view={} log_view={} sb={:?} op={} commit_min={} commit_max={} cp={} cp_inflight={:?} slots={} missing_bodies={} durable_prefix={} synced={} svc={:?} dvcs={:?} dvc_sent={} vc_installed={} first_slot={:?}",
            self.status, self.view, self.log_view, self.superblock, self.op, self.commit_min,
            self.commit_max, self.checkpoint.op, self.checkpoint_inflight.as_ref().map(|c| c.op),
            slots, missing_bodies, self.durable_prefix(), self.log_synced(), self.svc_from,
            self.dvcs.keys().collect::<Vec<_>>(), self.dvc_sent, self.vc_installed,
            self.slots.keys().next(),
        )
    }
}
