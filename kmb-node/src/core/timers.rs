//! Timers (VRR §4.1 heartbeats, §4.2 view-change timeout): the core counts ticks; on each one
//! the primary sends heartbeats and resends unacknowledged prepares, a backup that lost its
//! primary starts a view change, and repair and recovery requests are resent.

use super::log::span;
use super::message::Body;
use super::replica::Replica;
use super::Status;

impl Replica {
    pub(super) fn on_tick(&mut self) {
        self.tick += 1;
        let tick = self.tick;
        match self.status {
            Status::Normal if self.primary() == self.config.replica => {
                // A primary cut off from a quorum cannot commit, and while it serves, its
                // clients wait on it: it stops serving (CheckQuorum, without leaving its view —
                // an isolated replica that raised its view would force a view change on the
                // others when the partition heals) and sends its clients, and the requests it
                // ordered and could not commit, to the next view's primary, which the others
                // elect meanwhile. It serves again once a quorum is heard from.
                let lost = self.lost_quorum();
                if lost && !self.quorum_lost {
                    crate::mark!("primary_stepped_down");
                    let next = self.config.primary_of(self.view + 1);
                    self.redirect_uncommitted(next);
                }
                self.quorum_lost = lost;
                if tick >= self.heartbeat_due {
                    self.heartbeat_due = tick + self.config.heartbeat_ticks;
                    self.send_heartbeat();
                }
                if tick >= self.prepare_due {
                    self.prepare_due = tick + self.config.prepare_ticks;
                    self.resend_prepares();
                }
            }
            Status::Normal => {
                if tick >= self.primary_contact_tick + self.config.view_change_ticks {
                    self.start_view_change(self.view + 1);
                } else if tick >= self.repair_due {
                    self.repair_due = tick + self.config.repair_ticks;
                    self.repair_inflight.clear();
                    self.send_repairs();
                }
            }
            Status::ViewChange => {
                if tick >= self.view_change_due {
                    self.start_view_change(self.view + 1);
                } else if tick >= self.resend_due {
                    self.resend_due = tick + self.config.heartbeat_ticks;
                    self.broadcast(Body::StartViewChange { view: self.view });
                    if self.dvc_sent && self.primary() != self.config.replica {
                        if let Some(vote) = self.own_vote() {
                            self.send_do_view_change(vote);
                        }
                    }
                    if self.is_primary_elect() && self.vc_installed {
                        self.repair_inflight.clear();
                        self.send_repairs();
                    }
                }
            }
            Status::Recovering => {
                if tick >= self.repair_due {
                    self.repair_due = tick + self.config.repair_ticks;
                    if self.state_missing() {
                        self.request_checkpoint_repair();
                    } else {
                        self.broadcast(Body::Recovery { nonce: self.nonce });
                    }
                }
            }
        }
    }

    /// Primary: whether fewer than a quorum (itself included) were heard from within the last
    /// view-change timeout — counted from when it began to lead this view. Backups answer
    /// every heartbeat (`CommitAck`), so an idle cluster keeps serving.
    fn lost_quorum(&mut self) -> bool {
        let (view, tick) = (self.view, self.tick);
        let since = match self.leading_since {
            Some((v, since)) if v == view => since,
            _ => {
                self.leading_since = Some((view, tick));
                tick
            }
        };
        let window = self.config.view_change_ticks;
        let me = self.config.replica as usize;
        let heard = self
            .heard_tick
            .iter()
            .enumerate()
            .filter(|&(r, &t)| r != me && t.max(since) + window > tick)
            .count();
        heard + 1 < self.config.quorum()
    }

    /// Resend what each backup has not acknowledged: the uncommitted pipeline, and — to a
    /// backup that lags behind the commit number (it missed prepares, e.g. while restarting
    /// or partitioned, and an idle cluster sends no new ones whose gap would reveal it) — up to
    /// `pipeline_max` entries after its last acknowledgement.
    fn resend_prepares(&mut self) {
        let last = self.op.min(self.commit_max + self.config.pipeline_max);
        let mut sends = Vec::new();
        for r in self.others() {
            let acked = self.ack_op[r as usize];
            let from = if acked < self.commit_max {
                acked + 1
            } else {
                self.commit_max + 1
            };
            let ops: Vec<u64> = span(&self.slots, from, last)
                .filter(|(_, s)| s.body.is_some())
                .map(|(&o, _)| o)
                .filter(|&o| o > acked)
                .take(self.config.pipeline_max as usize)
                .collect();
            for o in ops {
                if let Some(entry) = self.entry(o) {
                    sends.push((r, entry));
                }
            }
        }
        for (r, entry) in sends {
            let body = Body::Prepare {
                view: self.view,
                commit: self.commit_max,
                entry,
            };
            self.send(r, body);
        }
    }
}
