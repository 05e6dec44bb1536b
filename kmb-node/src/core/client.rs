//! Client requests (VRR §4.1 steps 1–2, at-most-once through the client table): the primary
//! answers a retry of the last request from the table, ignores older ones, and orders a new
//! one as a prepare; backups redirect.

use super::log::span;
use super::message::Body;
use super::replica::Replica;
use super::{Effect, Status};
use crate::entry::{Entry, EntryFields, Operation};
use crate::kv;

impl Replica {
    pub(super) fn on_client_request(&mut self, client: u128, request: u64, body: Vec<u8>) {
        if self.status == Status::Recovering || client == 0 {
            return;
        }
        if self.status != Status::Normal || self.primary() != self.config.replica {
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
                    });
                    return;
                }
            }
            self.effects.push(Effect::Redirect {
                client,
                request,
                primary: self.primary(),
            });
            return;
        }
        // The glue refuses an oversized request with an error before it gets here; the core
        // never prepares one (storage would refuse to write it).
        if !self.active() || body.len() > self.config.body_size_max {
            return;
        }
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
        let in_flight = span(&self.slots, self.commit_min + 1, self.op)
            .any(|(_, s)| s.header.operation == Operation::Request && s.header.client == client);
        let op = self.op + 1;
        if in_flight || op > self.commit_max + self.config.pipeline_max || !self.ring_allows(op) {
            return;
        }
        let Some(parent) = self.checksum_at(self.op) else {
            return;
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
