//! Test fixture: a small, clean 3-replica run built by hand (no simulation), which each
//! checker's tests mutate to plant one violation. Each request executes through
//! [`replay::execute`] (the model's one duplicate-request rule; every scripted request is
//! fresh), but the log, its hash chain, the history and each replica's view are built here,
//! independently of [`replay::run`].
//!
//! The run: two clients register their sessions at ops 1 and 2, then 8 client ops commit at
//! ops 3..=10 (SET, GET, SET, INCRBY, CAS, GET, DEL, SCAN); every replica checkpoints op 6.
//! Replica 0 commits 1..=10 in one incarnation. Replica 1 commits 1..=4, state-transfers to
//! op 6, then commits 7..=10. Replica 2 commits 1..=8, restarts (recovering the op-6
//! checkpoint), then re-commits 7..=10.

use std::collections::BTreeMap;

use kmb_node::commands::reply_value;
use kmb_node::core::ClientTable;
use kmb_node::entry::{Entry, EntryFields, Operation};
use kmb_node::kv::{self, KvState};
use lincheck::kv::{KvInput, KvOp, KvReply};
use lincheck::Operation as HistoryOp;

use super::data_correctness::request_of;
use super::replay::{self, state_hash};
use super::{DiskCheckpoint, DiskImage, FinalState, Liveness, Observations};
use crate::workload::output_of;

pub const CLUSTER: u64 = 7;
/// Ops 1..=REGISTERED are the clients' session registrations (no history entries).
pub const REGISTERED: u64 = 2;
pub const CHECKPOINT_OP: u64 = REGISTERED + 4;

fn s(v: &str) -> String {
    v.to_string()
}

/// The client ops of the clean run, in op order: (history client index, input).
pub fn script() -> Vec<(u64, KvInput)> {
    vec![
        (
            0,
            KvInput::Set {
                key: s("k0000"),
                value: s("a").into(),
            },
        ),
        (1, KvInput::Get { key: s("k0000") }),
        (
            0,
            KvInput::Set {
                key: s("k0001"),
                value: s("b").into(),
            },
        ),
        (
            1,
            KvInput::IncrBy {
                key: s("k0002"),
                delta: 5,
            },
        ),
        (
            0,
            KvInput::Cas {
                key: s("k0000"),
                expected: Some(s("a").into()),
                new: s("c").into(),
            },
        ),
        (1, KvInput::Get { key: s("k0000") }),
        (0, KvInput::Del { key: s("k0001") }),
        (
            1,
            KvInput::Scan {
                start: s("k0000"),
                end: s("k0003"),
                limit: 10,
            },
        ),
    ]
}

/// The session client id of history client `c`.
pub fn client_id(c: u64) -> u128 {
    u128::from(c) + 1
}

/// An entry at `op` chained to `parent`.
pub fn entry(op: u64, parent: u128, client: u128, request: u64, body: Vec<u8>) -> Entry {
    Entry::new(
        EntryFields {
            cluster: CLUSTER,
            replica: 0,
            view: 0,
            op,
            commit: op - 1,
            parent,
            client,
            request,
            operation: Operation::Request,
            timestamp: 0,
        },
        body,
    )
}

/// The clean observations described in the module docs.
pub fn clean() -> Observations {
    let replica_count = 3u8;
    let mut obs = Observations::new(replica_count);
    let root = Entry::root(CLUSTER);
    let mut kv = KvState::new();
    let mut clients = ClientTable::new();
    let mut hashes = BTreeMap::from([(0u64, state_hash(&kv, &clients))]);
    let mut chain = BTreeMap::from([(0u64, (root.checksum(), root.header.parent))]);
    let mut requests: BTreeMap<u64, u64> = BTreeMap::new();
    let mut parent = root.checksum();
    for c in 0..REGISTERED {
        let op = c + 1;
        let body = kv::Request::Register.encode();
        // The session numbers its requests above its registration's op.
        requests.insert(c, op);
        let request = replay::Request {
            op,
            client: client_id(c),
            number: 1,
            body: &body,
            timestamp: 0,
        };
        let executed = replay::execute(&mut kv, &mut clients, obs.clients_max, request);
        assert_eq!(
            executed.expect("a registration executes").reply,
            kv::Reply::Ok
        );
        let e = entry(op, parent, client_id(c), 1, body);
        parent = e.checksum();
        chain.insert(op, (e.checksum(), e.header.parent));
        obs.committed.insert(op, e);
        hashes.insert(op, state_hash(&kv, &clients));
        obs.client_ids.insert(c, vec![client_id(c)]);
    }
    for (i, (c, input)) in script().into_iter().enumerate() {
        let op = REGISTERED + i as u64 + 1;
        let number = requests.entry(c).or_default();
        *number += 1;
        let body = request_of(&input).encode();
        let request = replay::Request {
            op,
            client: client_id(c),
            number: *number,
            body: &body,
            timestamp: 0,
        };
        let executed = replay::execute(&mut kv, &mut clients, obs.clients_max, request);
        let reply = executed.expect("every scripted request is fresh").reply;
        let e = entry(op, parent, client_id(c), *number, body);
        parent = e.checksum();
        chain.insert(op, (e.checksum(), e.header.parent));
        obs.committed.insert(op, e);
        hashes.insert(op, state_hash(&kv, &clients));
        let output = output_of(&input, &reply_value(&reply)).expect("reply fits its command");
        obs.history.push(HistoryOp {
            client: c,
            input,
            output: Some(KvReply {
                output,
                op_number: Some(op),
                read: false,
            }),
            call: op * 10,
            ret: op * 10 + 5,
        });
        obs.client_ids.insert(c, vec![client_id(c)]);
    }
    let last = obs.committed.len() as u64;
    let checksum = |op: u64| chain[&op].0;
    let run =
        |ops: std::ops::RangeInclusive<u64>| ops.map(|o| (o, checksum(o))).collect::<Vec<_>>();
    let at = |ops: &[u64]| {
        ops.iter()
            .map(|&o| (o, hashes[&o]))
            .collect::<BTreeMap<_, _>>()
    };
    // Replica 0: one incarnation, 1..=10.
    obs.commits.insert(0, run(1..=last));
    obs.commit_incarnations.insert(0, vec![0]);
    obs.state_hashes.insert(0, hashes.clone());
    // Replica 1: 1..=4, state transfer to the checkpoint, 7..=10.
    let mut r1 = run(1..=REGISTERED + 2);
    r1.extend(run(CHECKPOINT_OP + 1..=last));
    obs.commits.insert(1, r1);
    obs.commit_incarnations.insert(1, vec![0]);
    obs.transfers
        .push((1, CHECKPOINT_OP, checksum(CHECKPOINT_OP)));
    let r1_hashes: Vec<u64> = (0..=REGISTERED + 2).chain(CHECKPOINT_OP..=last).collect();
    obs.state_hashes.insert(1, at(&r1_hashes));
    // Replica 2: 1..=8, restart from the checkpoint, 7..=10.
    let mut r2 = run(1..=REGISTERED + 6);
    r2.extend(run(CHECKPOINT_OP + 1..=last));
    obs.commits.insert(2, r2);
    obs.commit_incarnations
        .insert(2, vec![0, (REGISTERED + 6) as usize]);
    obs.state_hashes.insert(2, hashes.clone());
    for r in 0..replica_count {
        obs.recoveries.push((r, 0, hashes[&0]));
        obs.checkpoints
            .insert(r, BTreeMap::from([(CHECKPOINT_OP, hashes[&CHECKPOINT_OP])]));
        obs.logs.insert(
            r,
            chain
                .range(CHECKPOINT_OP..)
                .map(|(&o, &l)| (o, l))
                .collect(),
        );
        obs.final_states.insert(
            r,
            FinalState {
                status: s("normal"),
                view: 0,
                op: last,
                commit: last,
                state_hash: hashes[&last],
                halted: None,
                durable: last,
            },
        );
    }
    for r in 0..replica_count {
        let image = DiskImage {
            checkpoint: DiskCheckpoint::Verified {
                op: CHECKPOINT_OP,
                hash: hashes[&CHECKPOINT_OP],
            },
            checkpoint_entry: checksum(CHECKPOINT_OP),
            log: run(CHECKPOINT_OP + 1..=last).into_iter().collect(),
            faulty: Vec::new(),
        };
        obs.disks.insert(r, Ok(image));
    }
    obs.recoveries
        .push((2, CHECKPOINT_OP, hashes[&CHECKPOINT_OP]));
    obs.liveness = Liveness {
        converged: true,
        detail: s("converged"),
        deadline_ms: 10_000,
    };
    obs
}

/// Append a committed request entry at the next op, committed by every replica (only
/// `committed`, `commits` and `logs` change; hashes and history do not).
pub fn append_entry(obs: &mut Observations, client: u128, request: u64, body: &[u8]) {
    let op = obs.highest_committed() + 1;
    let parent = obs.committed[&(op - 1)].checksum();
    let e = entry(op, parent, client, request, body.to_vec());
    for commits in obs.commits.values_mut() {
        commits.push((op, e.checksum()));
    }
    for log in obs.logs.values_mut() {
        log.insert(op, (e.checksum(), parent));
    }
    obs.committed.insert(op, e);
}

/// Commit the request entry at `op` again at the next op (a duplicate the model must not
/// execute twice).
pub fn recommit(obs: &mut Observations, op: u64) {
    let first = obs.committed[&op].clone();
    let h = &first.header;
    append_entry(obs, h.client, h.request, &first.body);
}

/// The history op whose reply carries op number `op`.
pub fn history_at(obs: &mut Observations, op: u64) -> &mut KvOp {
    obs.history
        .iter_mut()
        .find(|h| h.output.as_ref().and_then(|o| o.op_number) == Some(op))
        .expect("a reply at that op")
}

/// The kv request committed at `op`.
pub fn request_at(obs: &Observations, op: u64) -> kv::Request {
    kv::Request::decode(&obs.committed[&op].body).expect("decodes")
}
