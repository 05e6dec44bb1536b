//! The model (shared by the checkers, not an invariant itself): the committed log replayed in
//! op order through a fresh [`KvState`] and [`ClientTable`], mirroring the core's `apply`
//! (`kmb_node::core::replica`): only `Request` entries execute; a request of a client the table
//! does not hold executes only if it is a registration (otherwise it is answered `session
//! evicted`); a request whose client's last executed request number is greater is skipped, an
//! equal one is a duplicate (not executed again, its cached reply stands), a greater one
//! executes (a body that does not decode replies
//! "malformed request") and replaces the client's table entry, evicting the least recently
//! committed client when the table is full. The state hash is `snapshot::state_hash` (kv
//! state + client table, as the checkpoint snapshot holds them), as `Replica::state_hash`
//! computes it.

use std::collections::{BTreeMap, BTreeSet};

use kmb_node::core::snapshot;
use kmb_node::core::{ClientEntry, ClientTable};
use kmb_node::entry::Operation;
use kmb_node::kv::{self, KvState};

use super::Observations;

/// A request the replay executed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Execution {
    pub client: u128,
    pub request_number: u64,
    /// The decoded body (`None` if it did not decode).
    pub request: Option<kv::Request>,
    pub reply: kv::Reply,
    /// The entry's cluster timestamp (ms): the time the request was applied at.
    pub timestamp: u64,
}

/// Why the replay stopped before the highest committed op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// No replica reported the entry at this op, though a later op committed.
    Gap(u64),
    /// The entry reported at this op is not a valid entry for it (checksums, size or op).
    Invalid { op: u64, why: String },
}

/// The replay's result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replay {
    /// Ops `1..=last` were replayed.
    pub last: u64,
    /// Why the replay stopped short of [`Observations::highest_committed`], if it did.
    pub stop: Option<Stop>,
    /// The model's state hash at each wanted op in `0..=last`.
    pub hashes: BTreeMap<u64, u128>,
    /// The requests executed, by op (Root/Noop entries and duplicates are absent).
    pub executions: BTreeMap<u64, Execution>,
}

/// The model's state hash: the one replicas publish (`snapshot::state_hash`).
pub fn state_hash(kv: &KvState, clients: &ClientTable) -> u128 {
    snapshot::state_hash(kv, clients)
}

/// A committed request entry, as the model needs it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub op: u64,
    pub client: u128,
    pub number: u64,
    pub body: &'a [u8],
    /// The entry's cluster timestamp (ms).
    pub timestamp: u64,
}

/// The duplicate-request rule, stated once for the model: a request whose client's last
/// executed request number is greater or equal is not executed (an equal one is a duplicate,
/// its cached reply stands); a greater one executes (a body that does not decode replies
/// "malformed request") and replaces the client's table entry, evicting the least recently
/// committed client when the table holds `clients_max`. Returns the execution, if any.
pub fn execute(
    kv: &mut KvState,
    clients: &mut ClientTable,
    clients_max: usize,
    r: Request<'_>,
) -> Option<Execution> {
    let known = clients.get(r.client);
    if known.is_some_and(|e| e.request >= r.number) {
        return None;
    }
    let request = kv::Request::decode(r.body).ok();
    if known.is_none() && request != Some(kv::Request::Register) {
        // A session the table does not hold (evicted, or never registered): nothing but a
        // registration executes; it is answered `session evicted`.
        return None;
    }
    let reply = match &request {
        Some(req) => kv.apply(
            req,
            kv::ApplyContext {
                op: r.op,
                timestamp: r.timestamp,
            },
        ),
        None => kv::Reply::Error("malformed request".to_string()),
    };
    let entry = ClientEntry {
        // As the core records it: a registration raises the session's floor to its op.
        request: kmb_node::core::session_floor(request.as_ref(), r.number, r.op),
        op: r.op,
        reply: reply.clone(),
    };
    clients.insert(r.client, entry, clients_max);
    Some(Execution {
        client: r.client,
        request_number: r.number,
        request,
        reply,
        timestamp: r.timestamp,
    })
}

/// Replay `obs.committed` from op 1, recording the state hash after every op in `wanted`
/// (op 0 is the empty state).
pub fn run(obs: &Observations, wanted: &BTreeSet<u64>) -> Replay {
    let mut kv = KvState::new();
    let mut clients = ClientTable::new();
    let mut replay = Replay::default();
    if wanted.contains(&0) {
        replay.hashes.insert(0, state_hash(&kv, &clients));
    }
    let highest = obs.highest_committed();
    let clients_max = obs.clients_max.max(1);
    for op in 1..=highest {
        let Some(entry) = obs.committed.get(&op) else {
            replay.stop = Some(Stop::Gap(op));
            break;
        };
        if !entry.is_valid() || entry.header.op != op {
            replay.stop = Some(Stop::Invalid {
                op,
                why: format!(
                    "entry valid: {}, header op {}",
                    entry.is_valid(),
                    entry.header.op
                ),
            });
            break;
        }
        if entry.header.operation == Operation::Request {
            let (client, request) = (entry.header.client, entry.header.request);
            let request = Request {
                op,
                client,
                number: request,
                body: &entry.body,
                timestamp: entry.header.timestamp,
            };
            if let Some(execution) = execute(&mut kv, &mut clients, clients_max, request) {
                replay.executions.insert(op, execution);
            }
        }
        replay.last = op;
        if wanted.contains(&op) {
            replay.hashes.insert(op, state_hash(&kv, &clients));
        }
    }
    replay
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::fixture;

    /// Goal: the replay reproduces the hashes the (independently built) fixture published.
    #[test]
    fn replay_clean_log_matches_fixture_hashes() {
        let obs = fixture::clean();
        let wanted: BTreeSet<u64> = (0..=obs.highest_committed()).collect();
        let replay = run(&obs, &wanted);
        assert_eq!(replay.stop, None);
        assert_eq!(replay.last, obs.highest_committed());
        assert_eq!(&replay.hashes, &obs.state_hashes[&0]);
    }

    /// Goal: a re-committed duplicate request is not executed twice.
    #[test]
    fn replay_duplicate_request_executes_once() {
        let mut obs = fixture::clean();
        fixture::recommit(&mut obs, 1);
        let last = obs.highest_committed();
        let replay = run(&obs, &BTreeSet::from([last - 1, last]));
        assert_eq!(replay.last, last);
        assert!(!replay.executions.contains_key(&last));
        assert_eq!(replay.hashes[&(last - 1)], replay.hashes[&last]);
    }

    /// Goal: a missing committed entry stops the replay at the gap.
    #[test]
    fn replay_missing_entry_stops_at_gap() {
        let mut obs = fixture::clean();
        obs.committed.remove(&3);
        let replay = run(&obs, &BTreeSet::new());
        assert_eq!(replay.stop, Some(Stop::Gap(3)));
        assert_eq!(replay.last, 2);
    }

    /// Goal: the model's session rule — a request of a client the table does not hold (it
    /// was evicted) is not executed, even a retry of one executed before the eviction; a
    /// registration is, after which an older request number is ignored and a newer executes.
    #[test]
    fn replay_evicted_session_executes_only_a_registration() {
        let (mut kv, mut clients) = (KvState::new(), ClientTable::new());
        let incr = kv::Request::IncrBy {
            key: b"n".to_vec(),
            delta: 1,
        }
        .encode();
        let register = kv::Request::Register.encode();
        let mut op = 0;
        let mut run = |client: u128, number: u64, body: &[u8]| {
            op += 1;
            let r = Request {
                op,
                client,
                number,
                body,
                timestamp: 0,
            };
            execute(&mut kv, &mut clients, 1, r).map(|e| e.reply)
        };
        assert_eq!(run(1, 1, &incr), None, "never registered");
        // Op 2: the session numbers above it.
        assert_eq!(run(1, 1, &register), Some(kv::Reply::Ok));
        assert_eq!(run(1, 2, &incr), None, "at or below the registration's op");
        assert_eq!(run(1, 4, &incr), Some(kv::Reply::Integer(1)));
        // Op 5: client 2 registers; the one-entry table evicts client 1.
        assert_eq!(run(2, 1, &register), Some(kv::Reply::Ok));
        assert_eq!(run(1, 4, &incr), None, "a retry after the eviction");
        // Op 7: client 1 registers again.
        assert_eq!(run(1, 5, &register), Some(kv::Reply::Ok));
        assert_eq!(run(1, 4, &incr), None, "older than the registration");
        assert_eq!(run(1, 8, &incr), Some(kv::Reply::Integer(2)));
        // A late copy of client 1's first registration: ignored while the table holds the
        // session; after an eviction (op 11) it re-opens the session at op 12, and the late
        // copy of its first INCRBY (4) stays stale.
        assert_eq!(run(1, 1, &register), None, "older than the table's entry");
        assert_eq!(
            run(2, 1, &register),
            Some(kv::Reply::Ok),
            "op 11 evicts client 1"
        );
        assert_eq!(
            run(1, 1, &register),
            Some(kv::Reply::Ok),
            "the late registration, op 12"
        );
        assert_eq!(run(1, 4, &incr), None, "the late INCRBY");
    }
}
