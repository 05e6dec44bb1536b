//! Reads without a log entry (ReadIndex, as Raft's §6.4 read path, in VSR terms): the primary
//! answers a read-only request from its applied state, with no prepare, no disk write and no
//! fsync, once it has confirmed that it was still the primary of its view *after the read
//! arrived* and has applied every op it held when the read arrived.
//!
//! **Why that is linearizable.** Let the read arrive at the primary of view `v` when its log
//! head is `o`. Every write acknowledged to a client before then was committed in some view
//! `w`:
//! * `w <= v`: a committed op is in the log of every later view's primary (the view change
//!   keeps it), so it is at or below `o`; the read is served at `commit_min >= o`, a state that
//!   includes it.
//! * `w > v`: impossible once the read is confirmed. Committing in `w` needs a quorum of
//!   replicas in view `w`, before the read arrived; the confirmation is a quorum (the primary
//!   included) that was normal in view `v` after the read arrived (each answered a round the
//!   primary sent after it). The two quorums share a replica, whose view would have gone back
//!   from `w` to `v` — views never go back.
//!
//! The state served is at `commit_min` (at least `o`); the reply names that op, marked as a
//! read (`Effect::Reply::read`): the state *after* op `commit_min`, not an op of its own. A
//! committed op above `o` that the state includes is one whose write has not been acknowledged
//! yet, or was acknowledged during the read: either may be ordered before the read.
//!
//! **Rounds.** A read needs a round sent after it arrived: the next round number. The primary
//! sends a round (`Body::Commit` with `round`) as soon as a read waits for one and no round is
//! in flight, and every heartbeat repeats the latest round, so a lost round is resent; backups
//! echo the round in `Body::CommitAck` (only in their current view, in normal status). Reads
//! arriving while a round is in flight wait for the next one: one quorum round serves any
//! number of reads.
//!
//! **Expiry.** A read is served from the state at `commit_min`, whose clock is the timestamp
//! of the last applied entry. A read whose answer could depend on a key whose expiry is at or
//! before the primary's wall clock (the state would expire it at the next entry), and `TTL`,
//! whose answer is the clock itself, go through the log as any request (`docs/protocol.md`,
//! "Reads").
//!
//! A read is never answered from the client table and never recorded there: it changes
//! nothing, so a retry is simply read again.

use super::message::Body;
use super::replica::Replica;
use super::{Effect, Status};
use crate::entry::View;
use crate::kv;

/// At most this many reads wait at the primary (beyond: redirected to it again, so the client
/// retries).
pub(super) const READS_MAX: usize = 4096;

/// A read waiting at the primary for its round and commit point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingRead {
    client: u128,
    request: u64,
    body: Vec<u8>,
    request_decoded: kv::Request,
    /// The view it arrived in.
    view: View,
    /// The first round sent after it arrived.
    round: u64,
    /// The primary's log head when it arrived.
    op: u64,
}

impl Replica {
    /// The active primary's entry point for a client request that may be a read: `Err` hands
    /// the body back (not a read served this way: it goes through the log).
    pub(super) fn try_start_read(
        &mut self,
        client: u128,
        request: u64,
        body: Vec<u8>,
    ) -> Result<(), Vec<u8>> {
        let Ok(decoded) = kv::Request::decode(&body) else {
            return Err(body);
        };
        if !self.kv.readable(&decoded, self.wall_clock) {
            if decoded.is_read() {
                crate::mark!("read_through_log");
            }
            return Err(body);
        }
        if self.reads.len() >= READS_MAX {
            self.effects.push(Effect::Redirect {
                client,
                request,
                primary: self.config.replica,
                ordered: false,
            });
            return Ok(());
        }
        self.reads.push_back(PendingRead {
            client,
            request,
            body,
            request_decoded: decoded,
            view: self.view,
            round: self.read_round + 1,
            op: self.op,
        });
        Ok(())
    }

    /// A backup answered round `round` of `view`.
    pub(super) fn on_commit_ack(&mut self, from: u8, view: View, round: u64) {
        if !self.is_primary() || view != self.view || round > self.read_round {
            return;
        }
        if self.read_acks.0 != view {
            self.read_acks = (view, vec![0; self.config.replica_count as usize]);
        }
        let ack = &mut self.read_acks.1[from as usize];
        *ack = (*ack).max(round);
    }

    /// The highest round a quorum (the primary included) answered in the current view.
    fn confirmed_round(&self) -> u64 {
        let me = self.config.replica as usize;
        let mut rounds: Vec<u64> = (0..self.config.replica_count as usize)
            .map(|r| match r {
                _ if r == me => self.read_round,
                _ if self.read_acks.0 == self.view => self.read_acks.1[r],
                _ => 0,
            })
            .collect();
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        rounds[self.config.quorum() - 1]
    }

    /// The heartbeat, carrying the latest read round.
    pub(super) fn send_heartbeat(&mut self) {
        self.broadcast(Body::Commit {
            view: self.view,
            commit: self.commit_max,
            checkpoint_op: self.checkpoint.op,
            round: self.read_round,
        });
    }

    /// After each step: serve the reads whose round is confirmed and whose op is applied, in
    /// arrival order; send a round if reads wait for one and none is in flight; a replica that
    /// no longer serves as this view's primary redirects what waits.
    pub(super) fn serve_reads(&mut self) {
        if self.reads.is_empty() {
            return;
        }
        let serving = self.status == Status::Normal
            && self.is_primary()
            && self.active()
            && !self.quorum_lost
            && self.halted.is_none();
        if !serving {
            let primary = if self.is_primary() {
                self.config.primary_of(self.view + 1)
            } else {
                self.primary()
            };
            crate::mark!("reads_redirected");
            for r in std::mem::take(&mut self.reads) {
                self.effects.push(Effect::Redirect {
                    client: r.client,
                    request: r.request,
                    primary,
                    ordered: false,
                });
            }
            return;
        }
        // A round for the reads that arrived since the last one was sent, if none is in
        // flight (one that is, is repeated by the heartbeat until a quorum answers it).
        let waiting = self.reads.back().is_some_and(|r| r.round > self.read_round);
        if waiting && self.confirmed_round() == self.read_round {
            self.read_round += 1;
            self.send_heartbeat();
        }
        let confirmed = self.confirmed_round();
        // Mutation `read-unconfirmed` (simulator, or a `chaos-mutation` build): reads are
        // served without waiting for their round.
        #[cfg(any(madsim, feature = "chaos-mutation"))]
        let unconfirmed = crate::mutation::is(crate::mutation::Mutation::ReadUnconfirmed);
        #[cfg(not(any(madsim, feature = "chaos-mutation")))]
        let unconfirmed = false;
        while let Some(r) = self.reads.front() {
            // Reads of an earlier view of this primary (it led again after a view change)
            // are confirmed anew: their round numbers were sent in another view.
            if r.view != self.view {
                let r = self.reads.pop_front().expect("front");
                self.effects.push(Effect::Redirect {
                    client: r.client,
                    request: r.request,
                    primary: self.config.replica,
                    ordered: false,
                });
                continue;
            }
            let round_ok = r.round <= confirmed;
            if !(round_ok || unconfirmed) || r.op > self.commit_min {
                break;
            }
            #[cfg(any(madsim, feature = "chaos-mutation"))]
            if !round_ok {
                crate::mutation::bit(crate::mutation::Mutation::ReadUnconfirmed);
            }
            let r = self.reads.pop_front().expect("front");
            invariant!(r.op <= self.commit_min && r.view == self.view);
            match self.kv.read(&r.request_decoded, self.wall_clock) {
                Some(reply) => {
                    crate::mark!("read_served_without_entry");
                    self.effects.push(Effect::Reply {
                        client: r.client,
                        request: r.request,
                        op: self.commit_min,
                        reply,
                        read: true,
                    });
                }
                // A key it reads came due while it waited: ordered through the log.
                None => {
                    crate::mark!("read_came_due");
                    self.order_request(r.client, r.request, r.body);
                }
            }
        }
    }
}
