//! Client requests (VRR §4.1 steps 1–2, at-most-once through the client table): the primary
//! answers a retry of the last request from the table, ignores older ones, and orders a new
//! one as a prepare; backups redirect.
//!
//! No request is dropped without an answer while its client could be served soon: a primary
//! whose pipeline or WAL ring is full, or whose view is not active yet, and a primary-elect
//! during its view change, hold new requests in a bounded queue and order them as soon as
//! they can; a primary that stops being one (a view change, a newer view) redirects what it
//! held — queued requests and prepared ones not yet committed — to the new view's primary,
//! so a client retries there at once instead of waiting out a timeout. (A retry of a request
//! the new primary holds in its log waits there for the commit; one it does not hold is
//! ordered anew: the client table keeps it exactly once either way.)

use super::log::span;
use super::message::Body;
use super::replica::Replica;
use super::{Effect, Status};
use crate::entry::{Entry, EntryFields, Operation};
use crate::kv;

/// Requests a primary holds at most while it cannot order them (beyond: dropped; the client
/// retries after its timeout).
pub(super) const REQUEST_QUEUE_MAX: usize = 256;

/// A client request held until the primary can order it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct QueuedRequest {
    pub(super) client: u128,
    pub(super) request: u64,
    pub(super) body: Vec<u8>,
}

impl Replica {
    pub(super) fn on_client_request(&mut self, client: u128, request: u64, body: Vec<u8>) {
        if self.status == Status::Recovering || client == 0 {
            return;
        }
        let elect = self.status == Status::ViewChange && self.primary() == self.config.replica;
        if elect {
            // The primary-elect orders it once its view starts (or redirects it if another
            // view change passes it by).
            self.enqueue_request(client, request, body);
            return;
        }
        if self.status != Status::Normal
            || self.primary() != self.config.replica
            || self.quorum_lost
        {
            // Mutation `read-from-backup` (simulator, or a `chaos-mutation` build): a backup
            // answers GET from its own state, at its own commit number, instead of redirecting.
            #[cfg(any(madsim, feature = "chaos-mutation"))]
            if self.status == Status::Normal
                && crate::mutation::is(crate::mutation::Mutation::ReadFromBackup)
            {
                if let Ok(kv::Request::Get { key }) = kv::Request::decode(&body) {
                    crate::mutation::bit(crate::mutation::Mutation::ReadFromBackup);
                    let reply = kv::Reply::Value(self.kv.get(&key).map(<[u8]>::to_vec));
                    self.effects.push(Effect::Reply {
                        client,
                        request,
                        op: self.commit_min,
                        reply,
                        read: true,
                    });
                    return;
                }
            }
            // A primary that lost its quorum sends clients to the next view's primary (and
            // says so if it had ordered this very request: a retry of it).
            let (primary, ordered) = if self.quorum_lost && self.is_primary() {
                let ordered = self.uncommitted_requests().any(|r| r == (client, request));
                (self.config.primary_of(self.view + 1), ordered)
            } else {
                (self.primary(), false)
            };
            self.effects.push(Effect::Redirect {
                client,
                request,
                primary,
                ordered,
            });
            return;
        }
        // The glue refuses an oversized request with an error before it gets here; the core
        // never prepares one (storage would refuse to write it).
        if body.len() > self.config.body_size_max {
            return;
        }
        if !self.active() {
            self.enqueue_request(client, request, body);
            return;
        }
        match self.try_start_read(client, request, body) {
            Ok(()) => {}
            Err(body) => self.order_request(client, request, body),
        }
    }

    /// The active primary orders a request through the log: answered from the client table
    /// if it is a retry, held if its client's earlier request or the pipeline is not done,
    /// else prepared.
    pub(super) fn order_request(&mut self, client: u128, request: u64, body: Vec<u8>) {
        if let Some(e) = self.clients.get(client) {
            // A retry of the last request gets its cached reply. So does a registration's
            // retry: its entry records the registration's op, above the number it was sent
            // with (`session_floor`), and the client learns from the reply the op it numbers
            // from (an entry since replaced by a request: the session moved on, nobody waits).
            let cached = request == e.request
                || (request < e.request
                    && e.request == e.op
                    && kv::Request::decode(&body) == Ok(kv::Request::Register));
            if cached {
                crate::mark!("duplicate_request_cached_reply");
                let (op, reply) = (e.op, e.reply.clone());
                self.effects.push(Effect::Reply {
                    client,
                    request,
                    op,
                    reply,
                    read: false,
                });
                return;
            }
            if request < e.request {
                // A request the client gave up on and superseded, delivered late (a stalled
                // link, a retry on another replica): the client no longer waits for it.
                crate::mark!("stale_client_request");
                return;
            }
        }
        // A request of this client already ordered and not committed: if it is this one, its
        // reply answers the client (the glue keys waiters by client and request number);
        // an earlier one (a new primary has yet to commit what it inherited) goes first.
        let in_flight = self
            .uncommitted_requests()
            .filter(|&(c, _)| c == client)
            .map(|(_, r)| r)
            .max();
        if let Some(ordered) = in_flight {
            if ordered < request {
                self.enqueue_request(client, request, body);
            }
            return;
        }
        if !self.may_prepare() {
            self.enqueue_request(client, request, body);
            return;
        }
        let op = self.op + 1;
        let Some(parent) = self.checksum_at(self.op) else {
            return;
        };
        // Cluster time never goes backwards along the log: at least the predecessor's stamp
        // (the one the checkpoint records when the head is the checkpoint).
        let previous = self.timestamp_at(self.op);
        if previous > self.wall_clock {
            crate::mark!("timestamp_kept_from_predecessor");
        }
        let timestamp = self.wall_clock.max(previous);
        // Mutation `timestamp-goes-back` (simulator): the primary stamps its own clock only.
        #[cfg(madsim)]
        let timestamp = {
            use crate::mutation::{self, Mutation};
            if mutation::is(Mutation::TimestampGoesBack) {
                if self.wall_clock < previous {
                    mutation::bit(Mutation::TimestampGoesBack);
                }
                self.wall_clock
            } else {
                timestamp
            }
        };
        let entry = Entry::new(
            EntryFields {
                cluster: self.config.cluster,
                replica: self.config.replica,
                view: self.view,
                op,
                commit: self.commit_max,
                parent,
                client,
                request,
                operation: Operation::Request,
                timestamp,
            },
            body,
        );
        self.op = op;
        self.put_entry(entry.clone());
        self.broadcast(Body::Prepare {
            view: self.view,
            commit: self.commit_max,
            entry,
        });
    }
}

impl Replica {
    /// `(client, request)` of every client request in the log above the commit point.
    fn uncommitted_requests(&self) -> impl Iterator<Item = (u128, u64)> + '_ {
        span(&self.slots, self.commit_min + 1, self.op)
            .filter(|(_, s)| s.header.operation == Operation::Request)
            .map(|(_, s)| (s.header.client, s.header.request))
    }

    /// Whether the active primary can order one more request now: its pipeline and its WAL
    /// ring have room, and its head is known.
    fn may_prepare(&self) -> bool {
        let op = self.op + 1;
        op <= self.commit_max + self.config.pipeline_max
            && self.ring_allows(op)
            && self.checksum_at(self.op).is_some()
    }

    /// Hold a request until it can be ordered: one per client (a later request number
    /// replaces an earlier one, which its client gave up on), [`REQUEST_QUEUE_MAX`] in all.
    fn enqueue_request(&mut self, client: u128, request: u64, body: Vec<u8>) {
        if let Some(q) = self.request_queue.iter_mut().find(|q| q.client == client) {
            if request > q.request {
                *q = QueuedRequest {
                    client,
                    request,
                    body,
                };
            }
            return;
        }
        if self.request_queue.len() < REQUEST_QUEUE_MAX {
            crate::mark!("client_request_queued");
            self.request_queue.push_back(QueuedRequest {
                client,
                request,
                body,
            });
        }
    }

    /// After each step: the active primary orders the requests it held, in arrival order,
    /// while it has room; a replica that neither is nor is about to be the primary redirects
    /// what it held to the primary (a deposed primary's ordered, uncommitted requests were
    /// redirected as it left its view: [`Replica::redirect_uncommitted`]).
    pub(super) fn serve_request_queue(&mut self) {
        let serving = self.status == Status::Normal
            && self.is_primary()
            && self.active()
            && !self.quorum_lost;
        let elect = self.status == Status::ViewChange && self.primary() == self.config.replica;
        if serving {
            // Each held request is looked at once per step (one that must still wait goes
            // back into the queue).
            for q in std::mem::take(&mut self.request_queue) {
                if self.may_prepare() {
                    self.on_client_request(q.client, q.request, q.body);
                } else {
                    self.request_queue.push_back(q);
                }
            }
        } else if !elect && (!self.is_primary() || self.quorum_lost) {
            let primary = if self.is_primary() {
                self.config.primary_of(self.view + 1)
            } else {
                self.primary()
            };
            for q in std::mem::take(&mut self.request_queue) {
                self.effects.push(Effect::Redirect {
                    client: q.client,
                    request: q.request,
                    primary,
                    ordered: false,
                });
            }
        }
    }

    /// Called as this replica leaves the view it is primary of, for `primary`, the primary of
    /// the view it moves to, before its log changes: the clients of its ordered, uncommitted
    /// requests retry there (which commits them if the new view kept them, or orders them
    /// anew).
    pub(super) fn redirect_uncommitted(&mut self, primary: u8) {
        if !self.is_primary() || primary == self.config.replica || self.halted.is_some() {
            return;
        }
        let held: Vec<(u128, u64)> = self.uncommitted_requests().collect();
        if !held.is_empty() {
            crate::mark!("deposed_primary_redirects");
        }
        for (client, request) in held {
            self.effects.push(Effect::Redirect {
                client,
                request,
                primary,
                ordered: true,
            });
        }
    }
}
