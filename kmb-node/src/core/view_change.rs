//! View change (VRR §4.2, made durable): StartViewChange, DoViewChange to the new primary,
//! the choice of the log with the highest `log_view` then `op`, its install, and StartView to
//! the backups; `log_view` advances only once the installed log is complete and durable.

use crate::entry::View;
use std::collections::BTreeSet;

use super::log::InstallError;
use super::message::{Body, LogSummary, Vote, HEADERS_MAX};
use super::replica::Replica;
use super::Status;
use crate::entry::Header;

impl Replica {
    pub(super) fn start_view_change(&mut self, view: View) {
        invariant!(view > self.view || self.status != Status::ViewChange);
        self.redirect_uncommitted(self.config.primary_of(view));
        self.quorum_lost = false;
        self.view = view;
        self.status = Status::ViewChange;
        self.svc_from = BTreeSet::from([self.config.replica]);
        self.dvcs.clear();
        self.dvc_sent = false;
        self.vc_installed = false;
        self.vc_headers.clear();
        self.acked_op = None;
        self.head_checkpoint_wanted = None;
        self.pending_join = None;
        self.view_change_due = self.tick + self.config.view_change_ticks;
        self.resend_due = self.tick + self.config.heartbeat_ticks;
        self.recovery_replies.clear();
        self.broadcast(Body::StartViewChange { view });
    }

    pub(super) fn on_start_view_change(&mut self, from: u8, view: View) {
        if self.status == Status::Recovering {
            return;
        }
        if view > self.view {
            self.start_view_change(view);
        }
        if view == self.view && self.status == Status::ViewChange {
            self.svc_from.insert(from);
        }
    }

    /// This replica's DoViewChange content: its durable `log_view`, its log, and the evidence
    /// for nacks.
    pub(super) fn own_vote(&self) -> Option<Vote> {
        let log = self.own_log(self.suffix_headers())?;
        Some(Vote {
            log_view: self.superblock.1,
            bodies: self.bodies_of(&log.headers),
            log,
            held_max: self.held_max,
            never_written: self
                .never_written
                .range(self.commit_max + 1..)
                .copied()
                .take(HEADERS_MAX)
                .collect(),
        })
    }

    /// Per header (of this replica's own slots): whether the body is held intact and durably.
    fn bodies_of(&self, headers: &[Header]) -> Vec<bool> {
        headers
            .iter()
            .map(|h| {
                self.slots.get(&h.op).is_some_and(|s| {
                    s.header.checksum == h.checksum && s.body.is_some() && s.durable
                })
            })
            .collect()
    }

    /// Send this replica's DoViewChange for the current view to that view's primary.
    pub(super) fn send_do_view_change(&mut self, vote: Vote) {
        let body = Body::DoViewChange {
            view: self.view,
            vote,
        };
        self.send(self.primary(), body);
    }

    pub(super) fn try_send_dvc(&mut self) {
        // Mutation `view-not-synced-before-dvc` (simulator only): a backup sends its
        // DoViewChange without waiting for the new view to be durable in the superblock.
        #[cfg(madsim)]
        if self.status == Status::ViewChange
            && !self.dvc_sent
            && self.svc_from.len() >= self.config.quorum()
            && self.superblock.0 < self.view
            && self.log_synced()
            && self.primary() != self.config.replica
            && crate::mutation::is(crate::mutation::Mutation::ViewNotSyncedBeforeDvc)
        {
            if let Some(vote) = self.own_vote() {
                crate::mutation::bit(crate::mutation::Mutation::ViewNotSyncedBeforeDvc);
                self.dvc_sent = true;
                self.send_do_view_change(vote);
            }
            return;
        }
        if self.status != Status::ViewChange
            || self.dvc_sent
            || self.svc_from.len() < self.config.quorum()
            || self.superblock.0 < self.view
            || !self.log_synced()
        {
            return;
        }
        let Some(vote) = self.own_vote() else {
            return;
        };
        self.dvc_sent = true;
        if self.primary() == self.config.replica {
            self.dvcs.insert(self.config.replica, vote);
            self.try_install_dvcs();
            self.progress_after_install();
        } else {
            self.send_do_view_change(vote);
        }
    }

    pub(super) fn on_do_view_change(&mut self, from: u8, view: View, dvc: Vote) {
        if self.status == Status::Recovering
            || self.config.primary_of(view) != self.config.replica
            || dvc.log_view > view
            || !self.valid_log(&dvc.log)
            || dvc.bodies.len() != dvc.log.headers.len()
        {
            return;
        }
        if view > self.view {
            self.start_view_change(view);
        }
        if view != self.view {
            return;
        }
        match self.status {
            Status::ViewChange => {
                self.svc_from.insert(from);
                // After the install, a late DVC still counts toward nacks (its log is not
                // considered for the choice: any quorum suffices for that).
                if self.vc_installed {
                    crate::mark!("view_change_late_dvc");
                }
                self.dvcs.insert(from, dvc);
            }
            Status::Normal => self.send_start_view(from),
            Status::Recovering => {}
        }
    }

    pub(super) fn try_install_dvcs(&mut self) {
        let needed = self.config.quorum();
        // Mutation `dvc-quorum-one-short` (simulator): one DoViewChange fewer with 5 replicas.
        #[cfg(madsim)]
        let needed = if self.config.replica_count == 5
            && self.is_primary_elect()
            && !self.vc_installed
            && crate::mutation::is(crate::mutation::Mutation::DvcQuorumOneShort)
        {
            if self.dvcs.len() == needed - 1 && self.dvcs.contains_key(&self.config.replica) {
                crate::mutation::bit(crate::mutation::Mutation::DvcQuorumOneShort);
            }
            needed - 1
        } else {
            needed
        };
        if !self.is_primary_elect()
            || self.vc_installed
            || self.dvcs.len() < needed
            || !self.dvcs.contains_key(&self.config.replica)
        {
            return;
        }
        let me = self.config.replica;
        let (&best_from, best) = self
            .dvcs
            .iter()
            .max_by_key(|(&r, s)| (s.log_view, s.log.op, r == me, std::cmp::Reverse(r)))
            .expect("quorum is not empty");
        let best = best.clone();
        if self.dvcs.values().any(|s| s.log.op > best.log.op) {
            crate::mark!("view_change_log_view_beats_length");
        }
        #[cfg(madsim)]
        let (best_from, best) = {
            use crate::mutation::{self, Mutation};
            if mutation::is(Mutation::ViewChangeLongestLog) {
                let (&longest_from, longest) = self
                    .dvcs
                    .iter()
                    .max_by_key(|(&r, s)| (s.log.op, r == me, std::cmp::Reverse(r)))
                    .expect("quorum is not empty");
                if longest_from != best_from {
                    mutation::bit(Mutation::ViewChangeLongestLog);
                }
                (longest_from, longest.clone())
            } else {
                (best_from, best)
            }
        };
        let commit = self.dvcs.values().map(|s| s.log.commit).max().unwrap_or(0);
        if best_from != me {
            match self.install_log(self.view, &best.log) {
                Ok(()) => {}
                Err(InstallError::Conflict) => {
                    self.halt(format!(
                        "view {}: the chosen log (op {}) contradicts committed op {}",
                        self.view, best.log.op, self.commit_min
                    ));
                    return;
                }
                Err(InstallError::MissingHead) => {
                    self.head_checkpoint_wanted = Some((best.log.op, best.log.op_checksum));
                    self.request_state_transfer(best_from, best.log.checkpoint_op);
                    return;
                }
            }
        }
        self.vc_installed = true;
        self.install_view = self.view;
        self.vc_headers = best.log.headers;
        self.commit_max = self.commit_max.max(commit);
        self.truncate_nacked();
        let lagging: Vec<(u8, u64)> = self
            .dvcs
            .iter()
            .map(|(&r, s)| (r, s.log.checkpoint_op))
            .filter(|&(r, _)| r != me)
            .collect();
        for (r, cp) in lagging {
            self.maybe_request_state_transfer(r, cp);
        }
        self.send_repairs();
    }

    fn progress_after_install(&mut self) {
        if self.vc_installed {
            self.commit_ops();
            self.try_advance_log_view();
        }
    }

    /// Claim the installed log as `log_view` once it is complete, chained and durable: the
    /// current view's in normal status (or as the primary-elect that installed the chosen
    /// log); in a view change, the view whose log was last installed (`install_view`). The
    /// latter lets a backup whose StartView install was cut short by a new view change finish
    /// it (repairing from anyone) and then publish its truncation and vote: otherwise, if
    /// more than f replicas were caught that way, no DoViewChange quorum could ever form in a
    /// healed cluster (issue 17).
    pub(super) fn try_advance_log_view(&mut self) {
        let installing =
            self.status == Status::Normal || (self.is_primary_elect() && self.vc_installed);
        let target = if installing {
            self.view
        } else if self.status == Status::ViewChange {
            self.install_view.min(self.view)
        } else {
            return;
        };
        if self.log_view < target
            && self.log_synced()
            && self.chain_to_head()
            && self.durable_prefix() == self.op
        {
            self.log_view = target;
        }
    }

    pub(super) fn try_finish_view_change(&mut self) {
        if self.is_primary_elect() && self.vc_installed && self.active() {
            self.status = Status::Normal;
            self.ack_op = vec![0; self.config.replica_count as usize];
            self.heartbeat_due = self.tick + self.config.heartbeat_ticks;
            self.prepare_due = self.tick + self.config.prepare_ticks;
            self.dvcs.clear();
            self.svc_from.clear();
            let others: Vec<u8> = self.others().collect();
            for to in others {
                self.send_start_view(to);
            }
        }
    }

    fn send_start_view(&mut self, to: u8) {
        let Some(log) = self.own_log(self.suffix_headers()) else {
            return;
        };
        self.send(
            to,
            Body::StartView {
                view: self.view,
                log,
            },
        );
    }

    pub(super) fn request_start_view(&mut self, from: u8, view: View) {
        let eligible = match self.status {
            Status::Recovering => view >= self.superblock.0 && !self.state_missing(),
            _ => view > self.view,
        };
        if eligible {
            self.send(from, Body::RequestStartView { view });
        }
    }

    /// The primary of `view` answers a RequestStartView with its StartView.
    pub(super) fn on_request_start_view(&mut self, from: u8, view: View) {
        if self.is_primary() && view == self.view {
            self.send_start_view(from);
        }
    }

    pub(super) fn on_start_view(&mut self, from: u8, view: View, log: LogSummary) {
        if from != self.config.primary_of(view) || self.state_missing() {
            return;
        }
        let accept = match self.status {
            Status::Recovering => view >= self.superblock.0,
            Status::ViewChange => view >= self.view,
            Status::Normal => view > self.view || (view == self.view && self.log_view < self.view),
        };
        if !accept {
            return;
        }
        self.join_view(from, view, log);
    }

    /// Adopt the log of `view` from its primary and become its backup.
    pub(super) fn join_view(&mut self, primary: u8, view: View, log: LogSummary) {
        self.redirect_uncommitted(primary);
        self.quorum_lost = false;
        match self.install_log(view, &log) {
            Ok(()) => {}
            Err(InstallError::Conflict) => return,
            Err(InstallError::MissingHead) => {
                // Only the sender's checkpoint can complete this log: ask for it, and join
                // once it arrives (see `on_state_transfer`).
                self.head_checkpoint_wanted = Some((log.op, log.op_checksum));
                let checkpoint_op = log.checkpoint_op;
                self.pending_join = Some((primary, view, log));
                self.request_state_transfer(primary, checkpoint_op);
                return;
            }
        }
        self.head_checkpoint_wanted = None;
        self.pending_join = None;
        // `log_view` stays below the new view until the installed log is complete and
        // durable (a recovering replica whose log_view already is this view keeps it: every
        // entry it holds is from this view's log).
        self.view = view;
        self.status = Status::Normal;
        self.svc_from.clear();
        self.dvcs.clear();
        self.dvc_sent = false;
        self.vc_installed = false;
        self.acked_op = None;
        self.recovery_replies.clear();
        self.primary_contact_tick = self.tick;
        self.commit_max = self.commit_max.max(log.commit);
        self.maybe_request_state_transfer(primary, log.checkpoint_op);
        self.send_repairs();
    }
}
