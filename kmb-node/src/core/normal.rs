//! The normal case (VRR §4.1): the primary prepares, backups append, sync and acknowledge with
//! PrepareOk, the primary commits at a quorum of durable acknowledgements, and every replica
//! applies committed ops in order, only along the head's hash chain.

use super::message::Body;
use super::replica::Replica;
use super::snapshot::ClientEntry;
use super::{Effect, Status};
use crate::entry::View;
use crate::entry::{Checksum, Entry, Header, Operation};
use crate::kv;

impl Replica {
    pub(super) fn on_prepare(&mut self, from: u8, view: View, commit: u64, entry: Entry) {
        let h = entry.header;
        if h.cluster != self.config.cluster
            || h.op == 0
            || h.operation == Operation::Root
            || !entry.is_valid()
        {
            return;
        }
        let from_primary = from == self.config.primary_of(view);
        // Mutation `stale-prepare-accepted` (simulator): an older view's Prepare taken as current.
        #[cfg(madsim)]
        let stale_taken = view < self.view
            && from_primary
            && self.status == Status::Normal
            && self.primary() != self.config.replica
            && {
                use crate::mutation::{self, Mutation};
                let on = mutation::is(Mutation::StalePrepareAccepted);
                if on {
                    mutation::bit(Mutation::StalePrepareAccepted);
                }
                on
            };
        #[cfg(not(madsim))]
        let stale_taken = false;
        if (view == self.view || stale_taken)
            && from_primary
            && self.status == Status::Normal
            && self.primary() != self.config.replica
        {
            self.primary_contact_tick = self.tick;
            self.commit_max = self.commit_max.max(commit);
            self.on_prepare_normal(entry);
        } else if view > self.view && from_primary {
            self.request_start_view(from, view);
        } else if self.status != Status::Recovering {
            self.accept_repair(entry);
        }
    }

    fn on_prepare_normal(&mut self, entry: Entry) {
        let h = entry.header;
        let o = h.op;
        if o <= self.commit_min {
            self.acked_op = None; // a retransmission: acknowledge again
            return;
        }
        if o <= self.op {
            match self.slots.get(&o) {
                Some(s) if s.header.checksum == h.checksum => {
                    if s.body.is_none() {
                        self.accept_repair(entry);
                    } else {
                        self.acked_op = None;
                    }
                }
                Some(_) if o == self.op => {
                    self.put_entry(entry);
                    self.clean_chain();
                }
                Some(_) => {}
                None => self.accept_repair(entry),
            }
            return;
        }
        if !self.ring_allows(o) {
            return;
        }
        let gap = o > self.op + 1;
        self.op = o;
        self.put_entry(entry);
        self.clean_chain();
        if gap {
            self.send_repairs();
        }
    }

    pub(super) fn on_prepare_ok(&mut self, from: u8, view: View, op: u64, checksum: Checksum) {
        if self.is_primary()
            && view == self.view
            && op <= self.op
            && self.checksum_at(op) == Some(checksum)
        {
            let ack = &mut self.ack_op[from as usize];
            *ack = (*ack).max(op);
        }
    }

    pub(super) fn on_commit(
        &mut self,
        from: u8,
        view: View,
        commit: u64,
        checkpoint_op: u64,
        round: u64,
    ) {
        if from != self.config.primary_of(view) {
            return;
        }
        if view == self.view && self.status == Status::Normal && from != self.config.replica {
            self.primary_contact_tick = self.tick;
            self.commit_max = self.commit_max.max(commit);
            self.maybe_request_state_transfer(from, checkpoint_op);
            // The primary learns that this backup still hears it, in this view, after it sent
            // `round` (which confirms the reads waiting for that round: `read.rs`).
            self.send(from, Body::CommitAck { view, round });
        } else if view > self.view || self.status == Status::Recovering {
            self.request_start_view(from, view);
        }
    }

    pub(super) fn try_ack(&mut self) {
        if self.status != Status::Normal || self.primary() == self.config.replica || !self.active()
        {
            return;
        }
        let d = self.durable_prefix();
        #[cfg(madsim)]
        let d = {
            use crate::mutation::{self, Mutation};
            let written = self.chained_prefix(false);
            if mutation::is(Mutation::PrepareOkBeforeSync) && written > d {
                mutation::bit(Mutation::PrepareOkBeforeSync);
                written
            } else {
                d
            }
        };
        if d == 0 || self.acked_op.is_some_and(|a| a >= d) {
            return;
        }
        let Some(checksum) = self.checksum_at(d) else {
            return;
        };
        self.acked_op = Some(d);
        let body = Body::PrepareOk {
            view: self.view,
            op: d,
            checksum,
        };
        self.send(self.primary(), body);
    }

    pub(super) fn try_commit_primary(&mut self) {
        if !self.is_primary() || !self.active() {
            return;
        }
        let mut acks = self.ack_op.clone();
        acks[self.config.replica as usize] = self.durable_prefix();
        acks.sort_unstable_by(|a, b| b.cmp(a));
        let committed = acks[self.config.quorum() - 1];
        // Mutation `quorum-one-short` (simulator): one acknowledgement short with 5 replicas.
        #[cfg(madsim)]
        let committed = {
            use crate::mutation::{self, Mutation};
            if self.config.replica_count == 5 && mutation::is(Mutation::QuorumOneShort) {
                let short = acks[self.config.quorum() - 2];
                if short > committed {
                    mutation::bit(Mutation::QuorumOneShort);
                }
                short.max(committed)
            } else {
                committed
            }
        };
        // Mutation `commit-before-quorum` (simulator, or a `chaos-mutation` build).
        #[cfg(any(madsim, feature = "chaos-mutation"))]
        let committed = {
            use crate::mutation::{self, Mutation};
            let own = self.durable_prefix();
            if mutation::is(Mutation::CommitBeforeQuorum) && own > committed {
                mutation::bit(Mutation::CommitBeforeQuorum);
                own
            } else {
                committed
            }
        };
        if committed > self.commit_max {
            self.commit_max = committed;
        }
    }

    pub(super) fn active(&self) -> bool {
        self.log_view == self.view && self.superblock == (self.view, self.view)
    }

    fn may_commit(&self) -> bool {
        (self.status == Status::Normal && self.log_view == self.view)
            || (self.is_primary_elect() && self.vc_installed && self.chain_to_head())
    }

    pub(super) fn commit_ops(&mut self) {
        if self.halted.is_none() && self.commit_min < self.commit_max && self.may_commit() {
            let floor = self.head_chain_floor();
            self.commit_ops_from(floor);
        }
    }

    /// Apply the entries up to `commit_max` (restart: the chained prefix whose headers prove
    /// their predecessors committed).
    pub(super) fn commit_ops_unchecked(&mut self) {
        self.commit_ops_from(0);
    }

    /// Apply entries in order up to `commit_max`, each chained from the previous one and at
    /// or above `floor` (see [`Self::head_chain_floor`]).
    fn commit_ops_from(&mut self, floor: u64) {
        while self.commit_min < self.commit_max.min(self.op) {
            let o = self.commit_min + 1;
            if o < floor {
                break;
            }
            let Some(prev) = self.checksum_at(self.commit_min) else {
                break;
            };
            let Some(slot) = self.slots.get(&o) else {
                break;
            };
            let Some(body) = slot.body.clone() else {
                break;
            };
            let header = slot.header;
            if header.parent != prev {
                break;
            }
            self.commit_min = o;
            self.commits.push((o, header.checksum));
            self.effects.push(Effect::Commit {
                op: o,
                checksum: header.checksum,
            });
            self.apply(header, &body);
        }
    }

    fn apply(&mut self, header: Header, body: &[u8]) {
        // Mutation `evicted-session-executes` (simulator): the eviction rule is skipped.
        #[cfg(madsim)]
        let evicted_executes = || {
            use crate::mutation::{self, Mutation};
            let on = mutation::is(Mutation::EvictedSessionExecutes);
            if on {
                mutation::bit(Mutation::EvictedSessionExecutes);
            }
            on
        };
        #[cfg(not(madsim))]
        let evicted_executes = || false;
        if header.operation != Operation::Request {
            return;
        }
        let (client, request) = (header.client, header.request);
        let known = self.clients.get(client);
        let decoded = || kv::Request::decode(body);
        let reply = match known {
            Some(e) if e.request > request => None,
            Some(e) if e.request == request => {
                crate::mark!("duplicate_request_cached_reply");
                Some((e.op, e.reply.clone()))
            }
            // Exactly once across evictions: a client the table does not hold may have had
            // this very request executed before it was evicted, so nothing but a registration
            // executes for it; it learns it was evicted, and nothing is recorded (issue 11: a
            // retry after 1,100 other sessions executed a second time).
            None if decoded() != Ok(kv::Request::Register) && !evicted_executes() => {
                crate::mark!("session_evicted_reply");
                Some((header.op, kv::Reply::Error(kv::SESSION_EVICTED.to_string())))
            }
            _ => {
                let request_decoded = decoded();
                let reply = match &request_decoded {
                    Ok(r) => self.kv.apply(
                        r,
                        kv::ApplyContext {
                            op: header.op,
                            timestamp: header.timestamp,
                        },
                    ),
                    Err(_) => kv::Reply::Error("malformed request".to_string()),
                };
                // A registration raises the session's request floor to its own op: the
                // session numbers its requests above it (the client learns the op from the
                // reply), and every request of an earlier incarnation of this client id —
                // delivered late, even after a late copy of an old registration re-entered it
                // — numbers at or below it and never executes again (`session_floor`).
                let floor = session_floor(request_decoded.as_ref().ok(), request, header.op);
                self.clients.insert(
                    client,
                    ClientEntry {
                        request: floor,
                        op: header.op,
                        reply: reply.clone(),
                    },
                    self.config.clients_max,
                );
                Some((header.op, reply))
            }
        };
        if let (Some((op, reply)), true) = (reply, self.is_primary()) {
            self.effects.push(Effect::Reply {
                client,
                request,
                op,
                reply,
                read: false,
            });
        }
    }
}

/// The request number a client-table entry records for a request numbered `request` committed
/// at `op`: a registration records `max(request, op)` — every request of an earlier
/// incarnation of the session committed below `op`, so it numbers at most `op` (one request
/// per op) and is refused as stale, including after a late copy of an old registration
/// re-entered an evicted session (docs/protocol.md, "Sessions"). Anything else records its
/// own number.
pub fn session_floor(decoded: Option<&kv::Request>, request: u64, op: u64) -> u64 {
    if decoded == Some(&kv::Request::Register) {
        request.max(op)
    } else {
        request
    }
}
