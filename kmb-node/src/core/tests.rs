//! Tests of the pure core: exact effects of single steps, and end-to-end runs through a small
//! deterministic in-test network whose "disk" executes effects immediately in memory.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand::{Rng, SeedableRng};

use super::message::{Body, Message};
use super::*;
use crate::entry::{Entry, EntryFields, Header, Operation};
use crate::kv::{Reply, Request};

const CLUSTER: u64 = 77;

fn config(replica_count: u8, replica: u8) -> Config {
    let mut c = Config::new(CLUSTER, replica, replica_count);
    c.seed = 1000 + replica as u64;
    c
}

fn small_config(replica_count: u8, replica: u8) -> Config {
    let mut c = config(replica_count, replica);
    c.checkpoint_interval = 4;
    c.pipeline_max = 4;
    c.slot_count = 16;
    c
}

fn set(key: &str, value: &str) -> Vec<u8> {
    Request::Set {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
    }
    .encode()
}

fn msg(from: u8, body: Body) -> Input {
    Input::Message {
        from,
        message: Message::new(CLUSTER, from, body),
    }
}

/// A hash chain of request entries for ops `first..=last`, prepared in `view`.
fn chain(parent: u128, first: u64, last: u64, view: u32, tag: &str) -> Vec<Entry> {
    let mut parent = parent;
    let mut out = Vec::new();
    for op in first..=last {
        let e = Entry::new(
            EntryFields {
                cluster: CLUSTER,
                replica: (view % 3) as u8,
                view,
                op,
                commit: 0,
                parent,
                client: 9,
                request: op,
                operation: Operation::Request,
            },
            set(&format!("{tag}{op}"), "v"),
        );
        parent = e.checksum();
        out.push(e);
    }
    out
}

fn sends(effects: &[Effect]) -> Vec<(u8, Body)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, message } => Some((*to, message.body.clone())),
            _ => None,
        })
        .collect()
}

// ------------------------------------------------------------------ harness

#[derive(Default)]
struct Disk {
    entries: BTreeMap<u64, Entry>,
    superblock: (u32, u32),
    checkpoint: Option<CheckpointState>,
    /// The checkpoint is unreadable (storage reports `CheckpointState::Faulty`).
    checkpoint_faulty: bool,
    faulty: BTreeSet<u64>,
    /// Highest view of an entry dropped by a truncation not yet published by a superblock
    /// write (the storage contract of `Storage::truncate_after`).
    truncated_view: Option<u32>,
}

struct Node {
    replica: Replica,
    disk: Disk,
    up: bool,
    hold_superblock: bool,
    held: Vec<Input>,
    config: Config,
}

struct Net {
    nodes: Vec<Node>,
    queue: VecDeque<(u8, u8, Vec<u8>)>,
    blocked: BTreeSet<u8>,
    replies: Vec<(u8, u128, u64, u64, Reply)>,
    halts: Vec<(u8, String)>,
    log: Vec<(u8, Effect)>,
}

impl Net {
    fn new(replica_count: u8, make: fn(u8, u8) -> Config) -> Net {
        let nodes = (0..replica_count)
            .map(|r| {
                let config = make(replica_count, r);
                let replica = Replica::new(config.clone(), DurableState::formatted());
                Node {
                    replica,
                    disk: Disk::default(),
                    up: true,
                    hold_superblock: false,
                    held: Vec::new(),
                    config,
                }
            })
            .collect();
        Net {
            nodes,
            queue: VecDeque::new(),
            blocked: BTreeSet::new(),
            replies: Vec::new(),
            halts: Vec::new(),
            log: Vec::new(),
        }
    }

    fn input(&mut self, r: u8, input: Input) {
        let mut work = VecDeque::from([input]);
        while let Some(input) = work.pop_front() {
            if !self.nodes[r as usize].up {
                return;
            }
            let effects = self.nodes[r as usize].replica.step(input);
            self.execute(r, effects, &mut work);
        }
    }

    fn execute(&mut self, r: u8, effects: Vec<Effect>, work: &mut VecDeque<Input>) {
        for effect in effects {
            self.log.push((r, effect.clone()));
            let node = &mut self.nodes[r as usize];
            match effect {
                Effect::Send { to, message } => {
                    let bytes = message.encode();
                    assert_eq!(Message::decode(&bytes).as_ref(), Ok(&message));
                    self.queue.push_back((r, to, bytes));
                }
                Effect::WriteEntries(entries) => {
                    for e in entries {
                        node.disk.faulty.remove(&e.header.op);
                        node.disk.entries.insert(e.header.op, e);
                    }
                }
                Effect::TruncateLogAfter(op) => {
                    let dropped = node.disk.entries.split_off(&(op + 1));
                    for e in dropped.values() {
                        let v = node.disk.truncated_view.unwrap_or(0).max(e.header.view);
                        node.disk.truncated_view = Some(v);
                    }
                }
                Effect::Sync { op } => work.push_back(Input::Synced { op }),
                Effect::WriteSuperblock { view, log_view } => {
                    // `Storage::write_superblock` refuses to publish a truncation with a
                    // `log_view` that would let recovery resurrect the dropped entries.
                    if let Some(truncated) = node.disk.truncated_view.take() {
                        assert!(
                            log_view > truncated,
                            "replica {r}: superblock log_view {log_view} publishes a truncation \
                             of entries from view {truncated}"
                        );
                    }
                    let input = Input::SuperblockSynced { view, log_view };
                    node.disk.superblock = (view, log_view);
                    if node.hold_superblock {
                        node.held.push(input);
                    } else {
                        work.push_back(input);
                    }
                }
                Effect::Checkpoint {
                    op,
                    checksum,
                    snapshot,
                } => {
                    // The storage contract (`Storage::checkpoint`): a local checkpoint's entry
                    // is in the WAL (a state transfer uses `InstallCheckpoint`).
                    assert!(
                        node.disk
                            .entries
                            .get(&op)
                            .is_some_and(|e| e.header.checksum == checksum)
                            || node
                                .disk
                                .checkpoint
                                .as_ref()
                                .is_some_and(|c| c.op == op && c.checksum == checksum),
                        "replica {r}: checkpoint at op {op} whose entry is not in the WAL"
                    );
                    node.disk.checkpoint_faulty = false;
                    node.disk.checkpoint = Some(CheckpointState {
                        op,
                        checksum,
                        snapshot,
                    });
                    work.push_back(Input::CheckpointDone { op });
                }
                Effect::InstallCheckpoint {
                    op,
                    checksum,
                    snapshot,
                } => {
                    // `Storage::install_checkpoint`: it advances, or repairs an unreadable
                    // checkpoint with the same op and entry checksum.
                    assert!(
                        node.disk
                            .checkpoint
                            .as_ref()
                            .is_none_or(|c| c.op < op || (c.op == op && c.checksum == checksum)),
                        "replica {r}: installed checkpoint at op {op} does not advance"
                    );
                    node.disk.checkpoint_faulty = false;
                    node.disk.checkpoint = Some(CheckpointState {
                        op,
                        checksum,
                        snapshot,
                    });
                    work.push_back(Input::CheckpointDone { op });
                }
                Effect::Reply {
                    client,
                    request,
                    op,
                    reply,
                } => self.replies.push((r, client, request, op, reply)),
                Effect::Halt(reason) => self.halts.push((r, reason)),
                Effect::Redirect { .. }
                | Effect::Commit { .. }
                | Effect::StateTransferred { .. } => {}
            }
        }
    }

    fn release_superblock(&mut self, r: u8) {
        self.nodes[r as usize].hold_superblock = false;
        let held = std::mem::take(&mut self.nodes[r as usize].held);
        for input in held {
            self.input(r, input);
        }
    }

    fn run(&mut self) {
        let mut steps = 0;
        while let Some((from, to, bytes)) = self.queue.pop_front() {
            steps += 1;
            assert!(steps < 1_000_000, "message storm");
            if self.blocked.contains(&from) || self.blocked.contains(&to) {
                continue;
            }
            let message = Message::decode(&bytes).expect("harness messages decode");
            self.input(to, Input::Message { from, message });
        }
    }

    fn tick(&mut self, ticks: u64) {
        for _ in 0..ticks {
            for r in 0..self.nodes.len() as u8 {
                self.input(r, Input::Tick);
            }
            self.run();
        }
    }

    fn primary(&self) -> Option<u8> {
        (0..self.nodes.len() as u8)
            .find(|&r| self.nodes[r as usize].up && self.nodes[r as usize].replica.is_primary())
    }

    /// Submit to the primary, run until the reply arrives (ticking if needed).
    fn request(&mut self, client: u128, request: u64, body: Vec<u8>) -> (u64, Reply) {
        for _ in 0..500 {
            if let Some(found) = self
                .replies
                .iter()
                .rev()
                .find(|(_, c, q, _, _)| *c == client && *q == request)
            {
                return (found.3, found.4.clone());
            }
            if let Some(p) = self.primary() {
                if !self.blocked.contains(&p) {
                    self.input(
                        p,
                        Input::ClientRequest {
                            client,
                            request,
                            body: body.clone(),
                        },
                    );
                    self.run();
                    continue;
                }
            }
            self.tick(1);
        }
        panic!("request {client}/{request} did not complete");
    }

    fn crash(&mut self, r: u8) {
        self.nodes[r as usize].up = false;
    }

    /// Restart from the disk, as storage recovery would: intact entries chained from the
    /// checkpoint (a break ends the log like a torn tail); `faulty` ops listed, not dropped.
    fn restart(&mut self, r: u8) {
        let node = &mut self.nodes[r as usize];
        let cp_op = node.disk.checkpoint.as_ref().map_or(0, |c| c.op);
        let cp_checksum = node
            .disk
            .checkpoint
            .as_ref()
            .map_or(Entry::root(CLUSTER).checksum(), |c| c.checksum);
        let mut entries = Vec::new();
        let mut faulty = Vec::new();
        let mut prev = Some(cp_checksum);
        for (expect, (&op, e)) in (cp_op + 1..).zip(node.disk.entries.range(cp_op + 1..)) {
            if op != expect {
                break;
            }
            if node.disk.faulty.contains(&op) {
                faulty.push(op);
                prev = None;
                continue;
            }
            if prev.is_some_and(|p| p != e.header.parent) {
                break;
            }
            prev = Some(e.checksum());
            entries.push(e.clone());
        }
        let durable = DurableState {
            view: node.disk.superblock.0,
            log_view: node.disk.superblock.1,
            checkpoint: node
                .disk
                .checkpoint
                .clone()
                .filter(|_| !node.disk.checkpoint_faulty),
            checkpoint_faulty: node
                .disk
                .checkpoint
                .as_ref()
                .filter(|_| node.disk.checkpoint_faulty)
                .map(|c| (c.op, c.checksum)),
            entries,
            faulty,
            never_written: Vec::new(),
            restarted: true,
        };
        let mut config = node.config.clone();
        config.seed += 1;
        node.config = config.clone();
        node.replica = Replica::new(config, durable);
        node.up = true;
        let effects = node.replica.poll_effects();
        let mut work = VecDeque::new();
        self.execute(r, effects, &mut work);
        while let Some(input) = work.pop_front() {
            self.input(r, input);
        }
    }

    fn replica(&self, r: u8) -> &Replica {
        &self.nodes[r as usize].replica
    }

    fn assert_converged(&self, replicas: &[u8]) {
        let first = self.replica(replicas[0]);
        for &r in replicas {
            let replica = self.replica(r);
            assert_eq!(replica.commit(), first.commit(), "replica {r} commit");
            assert_eq!(
                replica.state_hash(),
                first.state_hash(),
                "replica {r} state"
            );
            assert_eq!(
                replica.log_checksum_at(replica.commit()),
                first.log_checksum_at(first.commit()),
                "replica {r} chain"
            );
        }
        assert!(self.halts.is_empty(), "halts: {:?}", self.halts);
    }
}

// ------------------------------------------------------------------ messages

fn every_message() -> Vec<Message> {
    let entries = chain(Entry::root(CLUSTER).checksum(), 1, 2, 0, "k");
    let headers: Vec<_> = entries.iter().map(|e| e.header).collect();
    let bodies = vec![
        Body::Prepare {
            view: 1,
            commit: 2,
            entry: entries[0].clone(),
        },
        Body::PrepareOk {
            view: 1,
            op: 2,
            checksum: 3,
        },
        Body::Commit {
            view: 1,
            commit: 2,
            checkpoint_op: 3,
        },
        Body::StartViewChange { view: 4 },
        Body::DoViewChange {
            view: 4,
            log_view: 3,
            op: 2,
            op_checksum: headers[1].checksum,
            commit: 1,
            checkpoint_op: 0,
            headers: headers.clone(),
            bodies: vec![true, false],
            held_max: 2,
            never_written: vec![],
        },
        Body::StartView {
            view: 4,
            op: 2,
            op_checksum: headers[1].checksum,
            commit: 1,
            checkpoint_op: 0,
            headers: headers.clone(),
        },
        Body::RequestStartView { view: 4 },
        Body::Recovery { nonce: 99 },
        Body::RecoveryResponse {
            view: 4,
            nonce: 99,
            op: 2,
            op_checksum: headers[1].checksum,
            commit: 1,
            checkpoint_op: 0,
            headers: headers.clone(),
        },
        Body::RequestPrepare { op: 2, checksum: 5 },
        Body::RequestHeaders {
            op_min: 1,
            op_max: 2,
        },
        Body::Headers { headers },
        Body::RequestStateTransfer { op_min: 9 },
        Body::StateTransfer {
            view: 4,
            checkpoint_op: 8,
            checkpoint_checksum: 6,
            snapshot: snapshot::empty(),
        },
    ];
    bodies
        .into_iter()
        .map(|body| Message::new(CLUSTER, 2, body))
        .collect()
}

/// Goal: every message type round-trips through its encoding.
#[test]
fn message_every_type_roundtrip_is_identical() {
    let messages = every_message();
    assert_eq!(messages.len(), 14);
    for m in messages {
        assert_eq!(Message::decode(&m.encode()), Ok(m));
    }
}

/// Goal: random bytes, truncations and bit flips of valid messages never make decode panic.
#[test]
fn message_decode_random_bytes_never_panics() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    let valid: Vec<Vec<u8>> = every_message().iter().map(Message::encode).collect();
    for _ in 0..20_000 {
        let len = rng.gen_range(0..400);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        if bytes.len() >= 7 && rng.gen_bool(0.5) {
            bytes[..4].copy_from_slice(b"KMBM");
            bytes[4..6].copy_from_slice(&1u16.to_le_bytes());
            bytes[6] = rng.gen_range(0..16);
        }
        let _ = Message::decode(&bytes);
    }
    for bytes in &valid {
        for len in 0..bytes.len() {
            assert!(Message::decode(&bytes[..len]).is_err());
        }
        for _ in 0..200 {
            let mut b = bytes.clone();
            let i = rng.gen_range(0..b.len());
            b[i] ^= 1 << rng.gen_range(0..8);
            let _ = Message::decode(&b);
        }
    }
}

/// Goal: a message with the wrong cluster id, or whose sender field disagrees with the
/// transport, or from an out-of-range replica, is dropped without effect.
#[test]
fn message_wrong_cluster_or_sender_is_dropped() {
    let mut r = Replica::new(config(3, 1), DurableState::formatted());
    let bad_cluster = Input::Message {
        from: 0,
        message: Message::new(CLUSTER + 1, 0, Body::StartViewChange { view: 5 }),
    };
    assert_eq!(r.step(bad_cluster), vec![]);
    let bad_sender = Input::Message {
        from: 0,
        message: Message::new(CLUSTER, 2, Body::StartViewChange { view: 5 }),
    };
    assert_eq!(r.step(bad_sender), vec![]);
    assert_eq!(r.step(msg(7, Body::StartViewChange { view: 5 })), vec![]);
    assert_eq!(r.view(), 0);
    assert_eq!(r.status(), Status::Normal);
    // Garbage prepares: wrong entry cluster.
    let mut e = chain(Entry::root(CLUSTER).checksum(), 1, 1, 0, "k").remove(0);
    e.header.cluster = 5;
    assert_eq!(
        r.step(msg(
            0,
            Body::Prepare {
                view: 0,
                commit: 0,
                entry: e
            }
        )),
        vec![]
    );
}

// ------------------------------------------------------------------ normal case, exact effects

/// Goal: the normal case on 3 replicas emits exactly write+sync, PrepareOk only after Synced,
/// and commit plus reply at the primary only after its own Synced and a backup's PrepareOk.
#[test]
fn normal_case_three_replicas_exact_effects() {
    let mut p = Replica::new(config(3, 0), DurableState::formatted());
    let mut b = Replica::new(config(3, 1), DurableState::formatted());
    assert_eq!(p.poll_effects(), vec![]);
    let effects = p.step(Input::ClientRequest {
        client: 5,
        request: 1,
        body: set("a", "1"),
    });
    let entry = match &effects[0] {
        Effect::WriteEntries(es) => es[0].clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(entry.header.op, 1);
    assert_eq!(entry.header.parent, Entry::root(CLUSTER).checksum());
    let prepare = Body::Prepare {
        view: 0,
        commit: 0,
        entry: entry.clone(),
    };
    assert_eq!(
        effects,
        vec![
            Effect::WriteEntries(vec![entry.clone()]),
            Effect::Send {
                to: 1,
                message: Message::new(CLUSTER, 0, prepare.clone())
            },
            Effect::Send {
                to: 2,
                message: Message::new(CLUSTER, 0, prepare.clone())
            },
            Effect::Sync { op: 1 },
        ]
    );
    // Backup: write and sync, but no PrepareOk before the sync completes.
    assert_eq!(
        b.step(msg(0, prepare)),
        vec![
            Effect::WriteEntries(vec![entry.clone()]),
            Effect::Sync { op: 1 }
        ]
    );
    let ok = Body::PrepareOk {
        view: 0,
        op: 1,
        checksum: entry.checksum(),
    };
    assert_eq!(
        b.step(Input::Synced { op: 1 }),
        vec![Effect::Send {
            to: 0,
            message: Message::new(CLUSTER, 1, ok.clone())
        }]
    );
    // Primary: a backup's PrepareOk alone does not commit (the primary is not yet durable).
    assert_eq!(p.step(msg(1, ok)), vec![]);
    assert_eq!(p.commit(), 0);
    // Own sync completes: commit, then reply.
    assert_eq!(
        p.step(Input::Synced { op: 1 }),
        vec![
            Effect::Commit {
                op: 1,
                checksum: entry.checksum()
            },
            Effect::Reply {
                client: 5,
                request: 1,
                op: 1,
                reply: Reply::Ok
            },
        ]
    );
    assert_eq!(p.take_commits(), vec![(1, entry.checksum())]);
    // The backup commits on the heartbeat.
    let heartbeat = Body::Commit {
        view: 0,
        commit: 1,
        checkpoint_op: 0,
    };
    assert_eq!(
        b.step(msg(0, heartbeat)),
        vec![Effect::Commit {
            op: 1,
            checksum: entry.checksum()
        }]
    );
    assert_eq!(b.state_hash(), p.state_hash());
}

/// Goal: the primary's own sync alone does not commit on 3 replicas (it needs a PrepareOk).
#[test]
fn normal_case_primary_synced_without_quorum_no_commit() {
    let mut p = Replica::new(config(3, 0), DurableState::formatted());
    p.step(Input::ClientRequest {
        client: 5,
        request: 1,
        body: set("a", "1"),
    });
    assert_eq!(p.step(Input::Synced { op: 1 }), vec![]);
    assert_eq!(p.commit(), 0);
}

/// Goal: writes arriving while a sync is outstanding are covered by the next sync (one
/// outstanding fsync, group commit), and PrepareOk waits for it.
#[test]
fn backup_writes_during_sync_wait_for_next_sync() {
    let mut b = Replica::new(config(3, 1), DurableState::formatted());
    let es = chain(Entry::root(CLUSTER).checksum(), 1, 2, 0, "k");
    let prepare = |e: &Entry| {
        msg(
            0,
            Body::Prepare {
                view: 0,
                commit: 0,
                entry: e.clone(),
            },
        )
    };
    assert_eq!(
        b.step(prepare(&es[0])),
        vec![
            Effect::WriteEntries(vec![es[0].clone()]),
            Effect::Sync { op: 1 }
        ]
    );
    assert_eq!(
        b.step(prepare(&es[1])),
        vec![Effect::WriteEntries(vec![es[1].clone()])]
    );
    let ok = |op, e: &Entry| Effect::Send {
        to: 0,
        message: Message::new(
            CLUSTER,
            1,
            Body::PrepareOk {
                view: 0,
                op,
                checksum: e.checksum(),
            },
        ),
    };
    assert_eq!(
        b.step(Input::Synced { op: 1 }),
        vec![ok(1, &es[0]), Effect::Sync { op: 2 }]
    );
    assert_eq!(b.step(Input::Synced { op: 2 }), vec![ok(2, &es[1])]);
}

/// Goal: a single-replica cluster commits after its own sync.
#[test]
fn cluster_size_one_commits_after_own_sync() {
    let mut p = Replica::new(config(1, 0), DurableState::formatted());
    let effects = p.step(Input::ClientRequest {
        client: 5,
        request: 1,
        body: set("a", "1"),
    });
    assert_eq!(effects.len(), 2);
    assert!(matches!(effects[1], Effect::Sync { op: 1 }));
    let effects = p.step(Input::Synced { op: 1 });
    assert!(matches!(effects[0], Effect::Commit { op: 1, .. }));
    assert!(matches!(
        effects[1],
        Effect::Reply {
            op: 1,
            reply: Reply::Ok,
            ..
        }
    ));
}

/// Goal: a request reaching a backup is redirected to the primary.
#[test]
fn client_request_at_backup_redirects() {
    let mut b = Replica::new(config(3, 2), DurableState::formatted());
    assert_eq!(
        b.step(Input::ClientRequest {
            client: 5,
            request: 1,
            body: set("a", "1")
        }),
        vec![Effect::Redirect {
            client: 5,
            request: 1,
            primary: 0
        }]
    );
}

// ------------------------------------------------------------------ end to end

/// Goal: 3, 5 and 1 replicas commit a sequence of requests and converge on one state.
#[test]
fn cluster_sizes_commit_and_converge() {
    for n in [1u8, 3, 5] {
        let mut net = Net::new(n, config);
        for i in 1..=10u64 {
            let (op, reply) = net.request(1, i, set(&format!("k{i}"), "v"));
            assert_eq!((op, reply), (i, Reply::Ok));
        }
        net.tick(15); // heartbeat carries the commit number to the backups
        let all: Vec<u8> = (0..n).collect();
        net.assert_converged(&all);
        assert_eq!(net.replica(0).commit(), 10);
    }
}

/// Goal: exactly-once: a retry of the last request returns the cached reply without
/// re-executing (INCRBY applied once); an older request is ignored.
#[test]
fn client_table_retry_returns_cached_reply_incrby_once() {
    let mut net = Net::new(3, config);
    let incr = Request::IncrBy {
        key: b"n".to_vec(),
        delta: 5,
    }
    .encode();
    assert_eq!(net.request(1, 1, incr.clone()), (1, Reply::Integer(5)));
    let before = net.replies.len();
    net.input(
        0,
        Input::ClientRequest {
            client: 1,
            request: 1,
            body: incr.clone(),
        },
    );
    assert_eq!(net.replies.len(), before + 1);
    assert_eq!(net.replies.last().unwrap().3, 1);
    assert_eq!(net.replies.last().unwrap().4, Reply::Integer(5));
    assert_eq!(net.replica(0).op(), 1, "a retry is not re-prepared");
    assert_eq!(net.request(1, 2, incr.clone()), (2, Reply::Integer(10)));
    let before = net.replies.len();
    let effects = net.nodes[0].replica.step(Input::ClientRequest {
        client: 1,
        request: 1,
        body: incr,
    });
    assert_eq!(effects, vec![]);
    assert_eq!(net.replies.len(), before);
    net.tick(15);
    for r in 0..3 {
        assert_eq!(net.replica(r).kv().get(b"n"), Some(&b"10"[..]));
    }
}

/// Goal: after the primary crashes, a view change elects a new primary that has every
/// committed op, and the cluster keeps committing.
#[test]
fn view_change_primary_crash_new_primary_has_committed_ops() {
    let mut net = Net::new(3, config);
    for i in 1..=5u64 {
        net.request(1, i, set(&format!("k{i}"), "v"));
    }
    let committed: Vec<_> = (1..=5).map(|o| net.replica(0).log_checksum_at(o)).collect();
    net.crash(0);
    net.blocked.insert(0);
    net.tick(80);
    let p = net.primary().expect("a new primary");
    assert_ne!(p, 0);
    assert!(net.replica(p).view() >= 1);
    for o in 1..=5 {
        assert_eq!(net.replica(p).log_checksum_at(o), committed[o as usize - 1]);
    }
    let (op, _) = net.request(1, 6, set("k6", "v"));
    assert_eq!(op, 6);
    net.tick(15);
    net.assert_converged(&[1, 2]);
    assert_eq!(net.replica(1).kv().len(), 6);
}

/// Goal: a crashed old primary restarts, does not resume as primary, and catches up.
#[test]
fn restart_old_primary_rejoins_and_converges() {
    let mut net = Net::new(3, config);
    for i in 1..=3u64 {
        net.request(1, i, set(&format!("k{i}"), "v"));
    }
    net.crash(0);
    net.blocked.insert(0);
    net.tick(80);
    net.request(1, 4, set("k4", "v"));
    net.blocked.remove(&0);
    net.restart(0);
    assert_ne!(net.replica(0).status(), Status::Normal);
    net.tick(100);
    net.request(1, 5, set("k5", "v"));
    net.tick(30);
    net.assert_converged(&[0, 1, 2]);
    assert_eq!(net.replica(0).commit(), 5);
}

/// Goal: no DoViewChange before the new view is durable in the superblock, and the new
/// primary sends no StartView before its log_view is durable.
#[test]
fn view_change_waits_for_superblock_before_dvc_and_start_view() {
    let mut net = Net::new(3, config);
    net.request(1, 1, set("a", "1"));
    net.crash(0);
    net.blocked.insert(0);
    net.nodes[2].hold_superblock = true;
    net.nodes[1].hold_superblock = true;
    net.tick(60);
    let dvc_or_sv = |net: &Net| {
        net.log.iter().any(|(_, e)| {
            matches!(e, Effect::Send { message, .. }
                if matches!(message.body, Body::DoViewChange { .. } | Body::StartView { .. }))
        })
    };
    assert!(
        !dvc_or_sv(&net),
        "no DVC or SV while the superblock is not durable"
    );
    assert!(net
        .log
        .iter()
        .any(|(_, e)| matches!(e, Effect::WriteSuperblock { .. })));
    net.release_superblock(2);
    net.run();
    net.release_superblock(1);
    net.run();
    net.tick(5);
    let primary = net.primary().expect("view change completes");
    // The new primary's superblock names the new view as its log_view before any StartView.
    let sv_index = net
        .log
        .iter()
        .position(|(_, e)| matches!(e, Effect::Send { message, .. } if matches!(message.body, Body::StartView { .. })))
        .expect("a StartView");
    let sb_index = net
        .log
        .iter()
        .position(|(r, e)| *r == primary && matches!(e, Effect::WriteSuperblock { view, log_view } if view == log_view && *view >= 1))
        .expect("log_view written");
    assert!(sb_index < sv_index);
}

/// Goal: in a view change, a longer log from an older log_view loses to a shorter log with a
/// newer log_view; the loser's extra and forked entries are truncated.
#[test]
fn view_change_newer_log_view_beats_longer_log() {
    let root = Entry::root(CLUSTER).checksum();
    let common = chain(root, 1, 2, 0, "c");
    let old_tail = chain(common[1].checksum(), 3, 5, 1, "old");
    let new_tail = chain(common[1].checksum(), 3, 3, 3, "new");
    let long_old: Vec<Entry> = common.iter().chain(&old_tail).cloned().collect();
    let short_new: Vec<Entry> = common.iter().chain(&new_tail).cloned().collect();
    let durable = |log_view, entries: &Vec<Entry>| DurableState {
        view: 3,
        log_view,
        checkpoint: None,
        checkpoint_faulty: None,
        entries: entries.clone(),
        faulty: vec![],
        never_written: vec![],
        restarted: true,
    };
    // View 3's primary (0) is gone; view 4's primary is 1, which holds the long old log.
    let mut net = Net::new(3, config);
    net.crash(0);
    net.blocked.insert(0);
    for (r, state) in [(1u8, durable(1, &long_old)), (2u8, durable(3, &short_new))] {
        let node = &mut net.nodes[r as usize];
        node.disk.superblock = (3, state.log_view);
        node.disk.entries = state
            .entries
            .iter()
            .map(|e| (e.header.op, e.clone()))
            .collect();
        net.restart(r);
    }
    net.run();
    net.tick(120);
    let p = net.primary().expect("new primary");
    assert_eq!(p, 1);
    assert!(net.halts.is_empty(), "{:?}", net.halts);
    assert!(net
        .log
        .iter()
        .any(|(r, e)| *r == 1 && *e == Effect::TruncateLogAfter(3)));
    assert_eq!(net.replica(1).op(), 3);
    assert_eq!(
        net.replica(1).log_checksum_at(3),
        Some(new_tail[0].checksum())
    );
    assert_eq!(
        net.replica(2).log_checksum_at(3),
        Some(new_tail[0].checksum())
    );
    net.request(5, 1, set("x", "1"));
    net.tick(15);
    net.assert_converged(&[1, 2]);
    assert_eq!(net.replica(1).kv().get(b"new3"), Some(&b"v"[..]));
    assert_eq!(net.replica(1).kv().get(b"old4"), None);
}

/// Goal: a restarted replica whose log head is unreadable is Recovering: it ignores
/// StartViewChange and DoViewChange (no vote, no superblock write), and sends no PrepareOk.
#[test]
fn recovering_replica_does_not_vote() {
    let root = Entry::root(CLUSTER).checksum();
    let entries = chain(root, 1, 2, 0, "k");
    let durable = DurableState {
        view: 0,
        log_view: 0,
        checkpoint: None,
        checkpoint_faulty: None,
        entries: entries.clone(),
        faulty: vec![3],
        never_written: vec![],
        restarted: true,
    };
    let mut r = Replica::new(config(3, 2), durable);
    assert_eq!(r.status(), Status::Recovering);
    let startup = r.poll_effects();
    assert_eq!(sends(&startup).len(), 2);
    assert!(sends(&startup)
        .iter()
        .all(|(_, b)| matches!(b, Body::Recovery { .. })));
    assert_eq!(r.step(msg(0, Body::StartViewChange { view: 1 })), vec![]);
    assert_eq!(r.step(msg(1, Body::StartViewChange { view: 1 })), vec![]);
    let dvc = Body::DoViewChange {
        view: 2,
        log_view: 0,
        op: 0,
        op_checksum: root,
        commit: 0,
        checkpoint_op: 0,
        headers: vec![],
        bodies: vec![],
        held_max: 0,
        never_written: vec![],
    };
    assert_eq!(r.step(msg(0, dvc)), vec![]);
    assert_eq!(r.view(), 0);
    assert_eq!(r.status(), Status::Recovering);
    let later = chain(entries[1].checksum(), 3, 4, 0, "k");
    let effects = r.step(msg(
        0,
        Body::Prepare {
            view: 0,
            commit: 2,
            entry: later[1].clone(),
        },
    ));
    assert!(effects
        .iter()
        .all(|e| !matches!(e, Effect::WriteEntries(_) | Effect::Sync { .. })));
    assert!(sends(&effects)
        .iter()
        .all(|(_, b)| !matches!(b, Body::PrepareOk { .. })));
}

/// Goal: a replica restarted with an unreadable head recovers through Recovery responses
/// (the primary's log), repairs its log and converges.
#[test]
fn recovery_faulty_head_recovers_from_peers_and_converges() {
    let mut net = Net::new(3, config);
    for i in 1..=6u64 {
        net.request(1, i, set(&format!("k{i}"), "v"));
    }
    net.tick(15);
    net.crash(2);
    net.nodes[2].disk.faulty.insert(6);
    net.nodes[2].disk.faulty.insert(4);
    net.restart(2);
    assert_eq!(net.replica(2).status(), Status::Recovering);
    net.run();
    net.tick(40);
    assert_eq!(net.replica(2).status(), Status::Normal);
    net.request(1, 7, set("k7", "v"));
    net.tick(30);
    net.assert_converged(&[0, 1, 2]);
    assert_eq!(net.replica(2).commit(), 7);
}

/// Goal: a corrupt (faulty) entry in the middle of a backup's log is repaired from the
/// primary, and a peer offering a wrong entry for that op is rejected by the hash chain.
#[test]
fn repair_faulty_entry_wrong_entry_rejected_right_entry_accepted() {
    let root = Entry::root(CLUSTER).checksum();
    let entries = chain(root, 1, 4, 0, "k");
    let intact: Vec<Entry> = entries
        .iter()
        .filter(|e| e.header.op != 2)
        .cloned()
        .collect();
    let durable = DurableState {
        view: 0,
        log_view: 0,
        checkpoint: None,
        checkpoint_faulty: None,
        entries: intact,
        faulty: vec![2],
        never_written: vec![],
        restarted: true,
    };
    let mut b = Replica::new(config(3, 1), durable);
    assert_eq!(b.status(), Status::Normal);
    assert_eq!(
        b.commit(),
        0,
        "the entries' commit numbers prove nothing committed"
    );
    let startup = sends(&b.poll_effects());
    assert_eq!(
        startup,
        vec![
            (
                0,
                Body::RequestHeaders {
                    op_min: 2,
                    op_max: 2
                }
            ),
            (
                0,
                Body::PrepareOk {
                    view: 0,
                    op: 1,
                    checksum: entries[0].checksum()
                }
            )
        ]
    );
    // A wrong entry for op 2 (a different body) is rejected.
    let wrong = chain(entries[0].checksum(), 2, 2, 0, "evil").remove(0);
    let effects = b.step(msg(
        2,
        Body::Prepare {
            view: 0,
            commit: 0,
            entry: wrong,
        },
    ));
    assert_eq!(effects, vec![]);
    // A forged header is rejected too: no RequestPrepare follows.
    let forged = chain(entries[0].checksum(), 2, 2, 0, "evil")[0].header;
    assert_eq!(
        b.step(msg(
            2,
            Body::Headers {
                headers: vec![forged]
            }
        )),
        vec![]
    );
    // The right header yields a body request; the right entry is written and synced.
    let effects = b.step(msg(
        0,
        Body::Headers {
            headers: vec![entries[1].header],
        },
    ));
    assert_eq!(
        sends(&effects),
        vec![(
            0,
            Body::RequestPrepare {
                op: 2,
                checksum: entries[1].checksum()
            }
        )]
    );
    let effects = b.step(msg(
        0,
        Body::Prepare {
            view: 0,
            commit: 0,
            entry: entries[1].clone(),
        },
    ));
    assert_eq!(
        effects,
        vec![
            Effect::WriteEntries(vec![entries[1].clone()]),
            Effect::Sync { op: 4 }
        ]
    );
    let effects = b.step(Input::Synced { op: 4 });
    assert_eq!(
        sends(&effects),
        vec![(
            0,
            Body::PrepareOk {
                view: 0,
                op: 4,
                checksum: entries[3].checksum()
            }
        )]
    );
}

/// Goal: end to end, a faulty middle entry on a restarted backup is repaired and the
/// backup converges.
#[test]
fn repair_faulty_middle_entry_end_to_end_converges() {
    let mut net = Net::new(3, config);
    for i in 1..=5u64 {
        net.request(1, i, set(&format!("k{i}"), "v"));
    }
    net.tick(15);
    net.crash(1);
    net.nodes[1].disk.faulty.insert(2);
    net.restart(1);
    net.run();
    net.tick(30);
    net.request(1, 6, set("k6", "v"));
    net.tick(30);
    net.assert_converged(&[0, 1, 2]);
    assert!(
        net.nodes[1].disk.faulty.is_empty(),
        "the faulty op was rewritten"
    );
}

/// Goal: a replica that fell behind the primary's checkpoint receives a state transfer,
/// then repairs the rest and converges; checkpoints complete before their slots are reused.
#[test]
fn state_transfer_lagging_replica_catches_up() {
    let mut net = Net::new(3, small_config);
    net.request(1, 1, set("k0", "v"));
    net.tick(15);
    net.blocked.insert(2);
    for i in 2..=40u64 {
        net.request(1, i, set(&format!("k{i}"), "v"));
    }
    assert!(net.replica(0).checkpoint_op() > 16);
    net.blocked.remove(&2);
    net.tick(60);
    assert!(net
        .log
        .iter()
        .any(|(r, e)| *r == 2 && matches!(e, Effect::StateTransferred { .. })));
    net.request(1, 41, set("k41", "v"));
    net.tick(30);
    net.assert_converged(&[0, 1, 2]);
    assert_eq!(net.replica(2).commit(), 41);
}

/// Goal: the primary does not prepare into a WAL slot whose op is not yet covered by a
/// durable checkpoint (the ring is full until CheckpointDone).
#[test]
fn checkpoint_not_durable_blocks_slot_reuse() {
    let mut p = Replica::new(small_config(1, 0), DurableState::formatted());
    let mut checkpoint_op = None;
    for i in 1..=16u64 {
        let effects = p.step(Input::ClientRequest {
            client: 1,
            request: i,
            body: set("k", "v"),
        });
        assert!(matches!(effects[0], Effect::WriteEntries(_)), "op {i}");
        for e in p.step(Input::Synced { op: i }) {
            if let Effect::Checkpoint { op, .. } = e {
                checkpoint_op.get_or_insert(op);
            }
        }
    }
    assert_eq!(checkpoint_op, Some(4));
    // Op 17 would reuse the slot of op 1: refused while the checkpoint at 4 is not durable.
    let request = |i| Input::ClientRequest {
        client: 1,
        request: i,
        body: set("k", "v"),
    };
    assert_eq!(p.step(request(17)), vec![]);
    let effects = p.step(Input::CheckpointDone { op: 4 });
    assert!(matches!(effects[..], [Effect::Checkpoint { op: 16, .. }]));
    assert!(matches!(p.step(request(17))[0], Effect::WriteEntries(_)));
}

/// Goal: a replica restarted from a checkpoint and its WAL replays to the same state.
#[test]
fn restart_from_checkpoint_replays_to_same_state() {
    let mut net = Net::new(3, small_config);
    for i in 1..=11u64 {
        net.request(1, i, set(&format!("k{i}"), &i.to_string()));
    }
    net.tick(15);
    let hash = net.replica(1).state_hash();
    assert!(net.nodes[1].disk.checkpoint.is_some());
    net.crash(1);
    net.restart(1);
    assert_eq!(
        net.replica(1).commit(),
        10,
        "replays what the log proves committed"
    );
    net.tick(15);
    assert_eq!(net.replica(1).state_hash(), hash);
}

/// Goal: five replicas survive a primary crash: the view change completes and commits
/// continue with every committed op kept.
#[test]
fn view_change_five_replicas_primary_crash_keeps_commits() {
    let mut net = Net::new(5, config);
    for i in 1..=4u64 {
        net.request(1, i, set(&format!("k{i}"), "v"));
    }
    net.crash(0);
    net.blocked.insert(0);
    net.tick(80);
    assert!(net.primary().is_some_and(|p| p != 0));
    assert_eq!(net.request(1, 5, set("k5", "v")).0, 5);
    net.tick(15);
    net.assert_converged(&[1, 2, 3, 4]);
    assert_eq!(net.replica(3).kv().len(), 5);
}

/// Goal: a backup that installs a StartView repairs the missing body, syncs it, writes
/// `log_view = view` and only then sends PrepareOk.
#[test]
fn start_view_backup_prepare_ok_only_after_log_view_durable() {
    let root = Entry::root(CLUSTER).checksum();
    let e = chain(root, 1, 1, 1, "k").remove(0);
    let mut b = Replica::new(config(3, 2), DurableState::formatted());
    let sv = Body::StartView {
        view: 1,
        op: 1,
        op_checksum: e.checksum(),
        commit: 0,
        checkpoint_op: 0,
        headers: vec![e.header],
    };
    let effects = b.step(msg(1, sv));
    assert_eq!(
        effects,
        vec![
            Effect::Send {
                to: 1,
                message: Message::new(
                    CLUSTER,
                    2,
                    Body::RequestPrepare {
                        op: 1,
                        checksum: e.checksum()
                    }
                )
            },
            Effect::WriteSuperblock {
                view: 1,
                log_view: 0
            },
        ]
    );
    assert_eq!((b.view(), b.status()), (1, Status::Normal));
    assert_eq!(
        b.step(Input::SuperblockSynced {
            view: 1,
            log_view: 0
        }),
        vec![]
    );
    let repair = Body::Prepare {
        view: 1,
        commit: 0,
        entry: e.clone(),
    };
    assert_eq!(
        b.step(msg(1, repair)),
        vec![
            Effect::WriteEntries(vec![e.clone()]),
            Effect::Sync { op: 1 }
        ]
    );
    assert_eq!(
        b.step(Input::Synced { op: 1 }),
        vec![Effect::WriteSuperblock {
            view: 1,
            log_view: 1
        }]
    );
    assert_eq!(
        sends(&b.step(Input::SuperblockSynced {
            view: 1,
            log_view: 1
        })),
        vec![(
            1,
            Body::PrepareOk {
                view: 1,
                op: 1,
                checksum: e.checksum()
            }
        )]
    );
}

/// Goal: a replica that sees a Prepare from the primary of a newer view asks for its
/// StartView, and the primary answers with it.
#[test]
fn prepare_from_newer_view_requests_start_view() {
    let root = Entry::root(CLUSTER).checksum();
    let e = chain(root, 1, 1, 4, "k").remove(0);
    let mut b = Replica::new(config(3, 2), DurableState::formatted());
    let effects = b.step(msg(
        1,
        Body::Prepare {
            view: 4,
            commit: 0,
            entry: e,
        },
    ));
    assert_eq!(
        sends(&effects),
        vec![(1, Body::RequestStartView { view: 4 })]
    );
    let mut p = Replica::new(config(3, 0), DurableState::formatted());
    let effects = p.step(msg(2, Body::RequestStartView { view: 0 }));
    assert!(matches!(
        sends(&effects)[..],
        [(2, Body::StartView { view: 0, op: 0, .. })]
    ));
}

/// Goal: a DoViewChange reaching a replica that is not the new primary is ignored, and a
/// StartView from a replica that is not that view's primary is ignored.
#[test]
fn view_change_messages_from_wrong_roles_are_dropped() {
    let root = Entry::root(CLUSTER).checksum();
    let mut r = Replica::new(config(3, 2), DurableState::formatted());
    let dvc = Body::DoViewChange {
        view: 1,
        log_view: 0,
        op: 0,
        op_checksum: root,
        commit: 0,
        checkpoint_op: 0,
        headers: vec![],
        bodies: vec![],
        held_max: 0,
        never_written: vec![],
    };
    assert_eq!(r.step(msg(0, dvc)), vec![]);
    let sv = Body::StartView {
        view: 1,
        op: 0,
        op_checksum: root,
        commit: 0,
        checkpoint_op: 0,
        headers: vec![],
    };
    assert_eq!(r.step(msg(0, sv)), vec![]);
    assert_eq!((r.view(), r.status()), (0, Status::Normal));
}

/// Goal: under seeded random message loss, reordering and backup crashes, replicas never
/// disagree on a committed op, never halt, and converge once faults stop.
#[test]
fn random_faults_committed_prefix_agrees_and_converges() {
    for seed in 0..16u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut net = Net::new(3, small_config);
        let mut committed: BTreeMap<u64, u128> = BTreeMap::new();
        for step in 0..300u64 {
            // Shuffle and drop some in-flight messages.
            let mut q: Vec<_> = net.queue.drain(..).collect();
            for i in (1..q.len()).rev() {
                q.swap(i, rng.gen_range(0..=i));
            }
            q.retain(|_| rng.gen_bool(0.9));
            net.queue.extend(q);
            if rng.gen_bool(0.3) {
                if let Some(p) = net.primary() {
                    net.input(
                        p,
                        Input::ClientRequest {
                            client: 1 + rng.gen_range(0..3u128),
                            request: step + 1,
                            body: set(&format!("k{}", rng.gen_range(0..5)), "v"),
                        },
                    );
                }
            }
            if rng.gen_bool(0.03) {
                let r = rng.gen_range(0..3u8);
                if net.nodes.iter().all(|n| n.up) {
                    net.crash(r);
                    net.restart(r);
                }
            }
            for r in 0..3u8 {
                net.input(r, Input::Tick);
            }
            let n = net.queue.len().min(20);
            for _ in 0..n {
                if let Some((from, to, bytes)) = net.queue.pop_front() {
                    let message = Message::decode(&bytes).unwrap();
                    net.input(to, Input::Message { from, message });
                }
            }
            for r in 0..3u8 {
                for (op, checksum) in net.nodes[r as usize].replica.take_commits() {
                    let prior = committed.entry(op).or_insert(checksum);
                    assert_eq!(
                        *prior, checksum,
                        "seed {seed}: op {op} committed differently"
                    );
                }
            }
            assert!(net.halts.is_empty(), "seed {seed}: {:?}", net.halts);
        }
        net.tick(300);
        let p = net.primary().expect("a primary after healing");
        net.request(99, 1, set("final", "v"));
        net.tick(40);
        let _ = p;
        net.assert_converged(&[0, 1, 2]);
        assert!(
            committed.len() > 20,
            "seed {seed}: only {} ops committed",
            committed.len()
        );
    }
}

/// Goal: messages carrying views or op numbers near overflow are dropped, and a replica fed
/// every message type with extreme field values never panics.
#[test]
fn message_extreme_numbers_are_dropped_without_panic() {
    let mut r = Replica::new(config(3, 1), DurableState::formatted());
    assert_eq!(
        r.step(msg(0, Body::StartViewChange { view: u32::MAX })),
        vec![]
    );
    assert_eq!(
        r.step(msg(
            2,
            Body::StateTransfer {
                view: 0,
                checkpoint_op: u64::MAX,
                checkpoint_checksum: 0,
                snapshot: snapshot::empty()
            }
        )),
        vec![]
    );
    for from in [0u8, 2] {
        for mut m in every_message() {
            m.replica = from;
            match &mut m.body {
                Body::RequestHeaders { op_min, op_max } => {
                    *op_min = 0;
                    *op_max = u64::MAX / 8;
                }
                Body::Commit { commit, .. } => *commit = u64::MAX / 8,
                _ => {}
            }
            let _ = r.step(Input::Message { from, message: m });
            for _ in 0..60 {
                let _ = r.step(Input::Tick);
            }
        }
    }
    assert!(r.halted().is_none());
}

/// Regression (VOPR seed 0): an old primary that prepared an op no backup received rejoins
/// the next view, whose StartView truncates that op. The truncation becomes durable only with
/// a superblock whose `log_view` exceeds the dropped entry's view, so the replica must not
/// write `(new view, old log_view)` after truncating (storage refuses it and the node
/// stopped); it writes `(view, view)` once the installed log is complete, and converges.
#[test]
fn truncating_start_view_defers_superblock_until_log_view() {
    let mut net = Net::new(3, config);
    net.request(1, 1, set("a", "1"));
    net.tick(15);
    net.blocked.insert(0);
    net.input(
        0,
        Input::ClientRequest {
            client: 2,
            request: 1,
            body: set("b", "2"),
        },
    );
    net.run();
    assert_eq!(net.replica(0).op(), 2);
    net.tick(80);
    assert_eq!(net.replica(1).view(), 1);
    assert!(net.replica(1).is_primary());
    assert_eq!(net.replica(1).op(), 1);
    net.blocked.remove(&0);
    let before = net.log.len();
    net.tick(40);
    let zero: Vec<&Effect> = net.log[before..]
        .iter()
        .filter(|(r, _)| *r == 0)
        .map(|(_, e)| e)
        .collect();
    let truncate = zero
        .iter()
        .position(|e| matches!(e, Effect::TruncateLogAfter(1)))
        .expect("the old primary truncates its unacknowledged op");
    let superblocks: Vec<&&Effect> = zero[truncate..]
        .iter()
        .filter(|e| matches!(e, Effect::WriteSuperblock { .. }))
        .collect();
    assert_eq!(
        superblocks,
        [&&Effect::WriteSuperblock {
            view: 1,
            log_view: 1
        }]
    );
    net.request(3, 1, set("c", "3"));
    net.tick(30);
    net.assert_converged(&[0, 1, 2]);
    assert_eq!(net.replica(0).commit(), 2);
}

/// Regression: a StartView delivered again (duplicated or delayed by the network) while the
/// backup is still completing the install, after it already accepted later prepares of the
/// same view, must not truncate them: only the primary of that view prepares in it, so they
/// extend the log being installed. (Truncating them dropped entries of the view being
/// installed, which storage cannot make durable: `log_view` must exceed their view.)
#[test]
fn duplicate_start_view_keeps_prepares_of_the_same_view() {
    let root = Entry::root(CLUSTER).checksum();
    let entries = chain(root, 1, 2, 1, "k");
    let mut b = Replica::new(config(3, 2), DurableState::formatted());
    let sv = Body::StartView {
        view: 1,
        op: 1,
        op_checksum: entries[0].checksum(),
        commit: 0,
        checkpoint_op: 0,
        headers: vec![entries[0].header],
    };
    b.step(msg(1, sv.clone()));
    assert_eq!((b.view(), b.status(), b.log_view()), (1, Status::Normal, 0));
    // The primary prepares op 2 in view 1 before the backup repaired op 1.
    let prepare = Body::Prepare {
        view: 1,
        commit: 0,
        entry: entries[1].clone(),
    };
    let effects = b.step(msg(1, prepare));
    assert!(effects.contains(&Effect::WriteEntries(vec![entries[1].clone()])));
    assert_eq!(b.op(), 2);
    // The StartView again: headers only, nothing truncated, nothing rewritten.
    let effects = b.step(msg(1, sv));
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::TruncateLogAfter(_) | Effect::WriteEntries(_))),
        "{effects:?}"
    );
    assert_eq!(b.op(), 2);
    assert_eq!(b.entry(2), Some(entries[1].clone()));
}

/// Regression (VOPR seeds 99, 154, 218, 230, 245, 263): a primary whose head is exactly its
/// checkpoint has no header for it, so its StartView (and DoViewChange) carries the head's
/// checksum but no headers. A backup that holds that entry must install the log instead of
/// waiting for a header that never comes (every view change stalled, views churned forever);
/// a backup that does not hold it asks for the checkpoint.
#[test]
fn start_view_whose_head_is_the_primarys_checkpoint_is_installed() {
    let root = Entry::root(CLUSTER).checksum();
    let entries = chain(root, 1, 2, 0, "k");
    let durable = DurableState {
        view: 0,
        log_view: 0,
        checkpoint: None,
        checkpoint_faulty: None,
        entries: entries.clone(),
        faulty: Vec::new(),
        never_written: vec![],
        restarted: true,
    };
    let sv = Body::StartView {
        view: 1,
        op: 2,
        op_checksum: entries[1].checksum(),
        commit: 2,
        checkpoint_op: 2,
        headers: Vec::new(),
    };
    let mut b = Replica::new(config(3, 2), durable.clone());
    assert_eq!((b.status(), b.commit()), (Status::Normal, 0));
    let effects = b.step(msg(1, sv.clone()));
    assert_eq!((b.view(), b.status(), b.commit()), (1, Status::Normal, 2));
    assert!(effects.contains(&Effect::WriteSuperblock {
        view: 1,
        log_view: 1
    }));
    // Without the head entry: a state transfer request, not silence.
    let mut short = durable;
    short.entries.truncate(1);
    let mut c = Replica::new(config(3, 2), short);
    let effects = c.step(msg(1, sv));
    assert!(sends(&effects).contains(&(1, Body::RequestStateTransfer { op_min: 1 })));
    assert_eq!((c.view(), c.status()), (0, Status::Normal));
}

// ------------------------------------------------------------------ unreadable checkpoint

/// A replica restarted with an unreadable checkpoint at op 4 (entry checksum known from the
/// superblock) and intact entries 5..=6 of view 1.
fn faulty_checkpoint_replica() -> (Replica, Vec<Entry>) {
    let root = Entry::root(CLUSTER).checksum();
    let log = chain(root, 1, 6, 1, "k");
    let durable = DurableState {
        view: 1,
        log_view: 1,
        checkpoint: None,
        checkpoint_faulty: Some((4, log[3].checksum())),
        entries: log[4..].to_vec(),
        faulty: Vec::new(),
        never_written: vec![],
        restarted: true,
    };
    (Replica::new(small_config(3, 2), durable), log)
}

/// Goal (Protocol-Aware Recovery): a replica whose own checkpoint is unreadable starts
/// Recovering with no state: it asks a peer for a checkpoint at or above its own, takes no
/// part in a view change, sends no PrepareOk, serves nobody; a transfer below its checkpoint
/// or contradicting its checksum is ignored; the right one is installed (same op: storage
/// repairs the checkpoint in place), then the log is recovered from the primary and the
/// replica becomes a normal backup.
#[test]
fn faulty_checkpoint_state_transfer_then_recovery_exact_effects() {
    let (mut r, log) = faulty_checkpoint_replica();
    let c4 = log[3].checksum();
    assert_eq!(r.status(), Status::Recovering);
    assert_eq!((r.commit(), r.checkpoint_op(), r.op()), (0, 4, 6));
    let startup = r.poll_effects();
    assert_eq!(
        sends(&startup),
        vec![(0, Body::RequestStateTransfer { op_min: 4 })]
    );
    assert_eq!(startup.len(), 1);

    // No vote: StartViewChange and a DoViewChange for view 2 (whose primary it is).
    assert_eq!(r.step(msg(0, Body::StartViewChange { view: 2 })), vec![]);
    assert_eq!(r.step(msg(1, Body::StartViewChange { view: 2 })), vec![]);
    let dvc = Body::DoViewChange {
        view: 2,
        log_view: 1,
        op: 6,
        op_checksum: log[5].checksum(),
        commit: 6,
        checkpoint_op: 4,
        headers: vec![],
        bodies: vec![],
        held_max: 6,
        never_written: vec![],
    };
    assert_eq!(r.step(msg(0, dvc)), vec![]);
    assert_eq!((r.view(), r.status()), (1, Status::Recovering));
    // No PrepareOk, no write, no RequestStartView for the current view's prepare.
    let next = chain(log[5].checksum(), 7, 7, 1, "k");
    let prepare = Body::Prepare {
        view: 1,
        commit: 6,
        entry: next[0].clone(),
    };
    assert_eq!(r.step(msg(1, prepare)), vec![]);
    // A StartView cannot be installed without state.
    let sv = Body::StartView {
        view: 1,
        op: 6,
        op_checksum: log[5].checksum(),
        commit: 6,
        checkpoint_op: 4,
        headers: log[4..].iter().map(|e| e.header).collect(),
    };
    assert_eq!(r.step(msg(1, sv)), vec![]);
    // Serves no client and no state transfer.
    let client = Input::ClientRequest {
        client: 5,
        request: 1,
        body: set("a", "b"),
    };
    assert_eq!(r.step(client), vec![]);
    assert_eq!(
        r.step(msg(0, Body::RequestStateTransfer { op_min: 1 })),
        vec![]
    );
    // The request is resent to the next peer every repair_ticks.
    for _ in 1..r.config().repair_ticks {
        assert_eq!(r.step(Input::Tick), vec![]);
    }
    assert_eq!(
        sends(&r.step(Input::Tick)),
        vec![(1, Body::RequestStateTransfer { op_min: 4 })]
    );

    // Below the unreadable checkpoint, or at it with another checksum: ignored.
    let mut kv = crate::kv::KvState::new();
    for e in &log[..4] {
        kv.apply(&Request::decode(&e.body).unwrap());
    }
    let state = snapshot::encode(&kv, &ClientTable::new());
    let transfer = |op, checkpoint_checksum| Body::StateTransfer {
        view: 1,
        checkpoint_op: op,
        checkpoint_checksum,
        snapshot: state.clone(),
    };
    assert_eq!(r.step(msg(0, transfer(3, log[2].checksum()))), vec![]);
    assert_eq!(r.step(msg(0, transfer(4, c4 ^ 1))), vec![]);
    assert_eq!(r.status(), Status::Recovering);

    // The right one: installed, then log recovery starts (Recovery to every peer).
    let effects = r.step(msg(1, transfer(4, c4)));
    let nonce = match &effects[2] {
        Effect::Send { message, .. } => match message.body {
            Body::Recovery { nonce } => nonce,
            ref other => panic!("expected Recovery, got {other:?}"),
        },
        other => panic!("expected a send, got {other:?}"),
    };
    assert_eq!(
        effects,
        vec![
            Effect::StateTransferred {
                op: 4,
                checksum: c4
            },
            Effect::InstallCheckpoint {
                op: 4,
                checksum: c4,
                snapshot: state.clone()
            },
            Effect::Send {
                to: 0,
                message: Message::new(CLUSTER, 2, Body::Recovery { nonce })
            },
            Effect::Send {
                to: 1,
                message: Message::new(CLUSTER, 2, Body::Recovery { nonce })
            },
        ]
    );
    assert_eq!((r.status(), r.commit()), (Status::Recovering, 4));
    assert_eq!(r.state_hash(), xxhash_rust::xxh3::xxh3_128(&state));
    // Still no vote while the log is not recovered.
    assert_eq!(r.step(msg(0, Body::StartViewChange { view: 2 })), vec![]);
    assert_eq!(r.step(Input::CheckpointDone { op: 4 }), vec![]);
    assert_eq!(r.status(), Status::Recovering);

    // Recovery responses (a quorum with the primary of view 1): the replica joins view 1 as
    // a backup, applies 5..=6 from its own intact entries, and acknowledges its durable log.
    let response = |view, headers: Vec<Header>| Body::RecoveryResponse {
        view,
        nonce,
        op: 6,
        op_checksum: log[5].checksum(),
        commit: 6,
        checkpoint_op: 4,
        headers,
    };
    assert_eq!(r.step(msg(0, response(1, vec![]))), vec![]);
    let headers: Vec<Header> = log[4..].iter().map(|e| e.header).collect();
    let effects = r.step(msg(1, response(1, headers)));
    assert_eq!(
        effects,
        vec![
            Effect::Commit {
                op: 5,
                checksum: log[4].checksum()
            },
            Effect::Commit {
                op: 6,
                checksum: log[5].checksum()
            },
            Effect::Send {
                to: 1,
                message: Message::new(
                    CLUSTER,
                    2,
                    Body::PrepareOk {
                        view: 1,
                        op: 6,
                        checksum: log[5].checksum()
                    }
                )
            },
        ]
    );
    assert_eq!((r.status(), r.view(), r.commit()), (Status::Normal, 1, 6));
    // Now it serves its (repaired) checkpoint.
    let effects = r.step(msg(0, Body::RequestStateTransfer { op_min: 4 }));
    assert_eq!(sends(&effects), vec![(0, transfer(4, c4))]);
}

/// Goal: a transfer above the unreadable checkpoint replaces it; local entries above the
/// transferred op that do not chain from it (a superseded history) are dropped, not taken
/// for a contradiction of the committed prefix (no halt).
#[test]
fn faulty_checkpoint_transfer_above_drops_superseded_entries() {
    let (mut r, log) = faulty_checkpoint_replica();
    r.poll_effects();
    // The cluster committed other ops 5..=6 (view 2) and checkpointed at 5: the local 5 and
    // 6 (view 1, never committed) are a superseded history.
    let other = chain(log[3].checksum(), 5, 6, 2, "x");
    let effects = r.step(msg(
        0,
        Body::StateTransfer {
            view: 2,
            checkpoint_op: 5,
            checkpoint_checksum: other[0].checksum(),
            snapshot: snapshot::empty(),
        },
    ));
    assert!(effects.contains(&Effect::InstallCheckpoint {
        op: 5,
        checksum: other[0].checksum(),
        snapshot: snapshot::empty()
    }));
    assert_eq!(r.halted(), None);
    assert_eq!(
        (r.commit(), r.header_at(5), r.header_at(6)),
        (5, None, None)
    );
    assert_eq!(r.log_checksum_at(5), Some(other[0].checksum()));
    // Another transfer is not taken while this one is being installed.
    let again = Body::StateTransfer {
        view: 2,
        checkpoint_op: 6,
        checkpoint_checksum: other[1].checksum(),
        snapshot: snapshot::empty(),
    };
    assert_eq!(r.step(msg(1, again)), vec![]);
    assert_eq!(r.step(Input::CheckpointDone { op: 5 }), vec![]);
    assert_eq!((r.status(), r.checkpoint_op()), (Status::Recovering, 5));
}

/// Goal: a single replica cannot repair an unreadable checkpoint: it halts with the reason.
#[test]
fn faulty_checkpoint_single_replica_halts() {
    let root = Entry::root(CLUSTER).checksum();
    let log = chain(root, 1, 4, 0, "k");
    let durable = DurableState {
        view: 0,
        log_view: 0,
        checkpoint: None,
        checkpoint_faulty: Some((4, log[3].checksum())),
        entries: Vec::new(),
        faulty: Vec::new(),
        never_written: vec![],
        restarted: true,
    };
    let mut r = Replica::new(small_config(1, 0), durable);
    let reason = r.halted().expect("halted").to_string();
    assert!(reason.contains("unreadable checkpoint at op 4"), "{reason}");
    assert_eq!(r.poll_effects(), vec![Effect::Halt(reason)]);
}

/// Goal: RequestStateTransfer is answered with the durable checkpoint if it is at `op_min`
/// or above, else with a snapshot of the applied (committed) state, else not at all.
#[test]
fn request_state_transfer_answers_checkpoint_or_applied_state() {
    let mut net = Net::new(3, small_config);
    for i in 1..=6u64 {
        net.request(1, i, set(&format!("k{i}"), "v"));
    }
    net.tick(15);
    let r = &mut net.nodes[0].replica;
    let (cp, commit) = (r.checkpoint_op(), r.commit());
    assert!(cp > 0 && commit > cp, "checkpoint {cp}, commit {commit}");
    let answer = |r: &mut Replica, op_min| match &sends(
        &r.step(msg(2, Body::RequestStateTransfer { op_min })),
    )[..]
    {
        [] => None,
        [(
            2,
            Body::StateTransfer {
                checkpoint_op,
                checkpoint_checksum,
                snapshot,
                ..
            },
        )] => Some((*checkpoint_op, *checkpoint_checksum, snapshot.clone())),
        other => panic!("unexpected {other:?}"),
    };
    let (op, checksum, _) = answer(r, cp).expect("durable checkpoint");
    assert_eq!((op, Some(checksum)), (cp, r.log_checksum_at(cp)));
    let (op, checksum, state) = answer(r, cp + 1).expect("applied state");
    assert_eq!((op, Some(checksum)), (commit, r.log_checksum_at(commit)));
    assert_eq!(xxhash_rust::xxh3::xxh3_128(&state), r.state_hash());
    assert_eq!(answer(r, commit + 1), None);
}

/// Goal: end to end, a backup whose checkpoint rots while it is down repairs it from a peer,
/// recovers its log and converges; it keeps serving afterwards.
#[test]
fn faulty_checkpoint_end_to_end_converges() {
    let mut net = Net::new(3, small_config);
    for i in 1..=10u64 {
        net.request(1, i, set(&format!("k{i}"), &i.to_string()));
    }
    net.tick(15);
    assert!(net.nodes[2].disk.checkpoint.is_some());
    net.crash(2);
    net.nodes[2].disk.checkpoint_faulty = true;
    net.restart(2);
    assert_eq!(net.replica(2).status(), Status::Recovering);
    net.run();
    net.tick(60);
    assert_eq!(net.replica(2).status(), Status::Normal);
    assert!(!net.nodes[2].disk.checkpoint_faulty);
    assert!(net
        .log
        .iter()
        .any(|(r, e)| *r == 2 && matches!(e, Effect::InstallCheckpoint { .. })));
    net.request(1, 11, set("k11", "v"));
    net.tick(30);
    net.assert_converged(&[0, 1, 2]);
    assert_eq!(net.replica(2).commit(), 11);
}

/// Goal (regression, VOPR seeds 6472 and 8500): a backup in view change receives the
/// StartView of a primary whose head is its checkpoint, beyond the backup's log. It asks for
/// that checkpoint and must accept it although it is not in normal status (it used to drop
/// the answer, time out, and drag the cluster through view changes forever); a checkpoint
/// other than the StartView's head is still ignored.
#[test]
fn view_change_backup_installs_start_view_whose_head_is_a_checkpoint() {
    let root = Entry::root(CLUSTER).checksum();
    let log = chain(root, 1, 8, 0, "k");
    let durable = DurableState {
        view: 0,
        log_view: 0,
        checkpoint: None,
        checkpoint_faulty: None,
        entries: log[..3].to_vec(),
        faulty: Vec::new(),
        never_written: vec![],
        restarted: true,
    };
    let mut r = Replica::new(config(3, 2), durable);
    r.poll_effects();
    let effects = r.step(msg(0, Body::StartViewChange { view: 4 }));
    assert!(effects.contains(&Effect::WriteSuperblock {
        view: 4,
        log_view: 0
    }));
    r.step(Input::SuperblockSynced {
        view: 4,
        log_view: 0,
    });
    assert_eq!((r.status(), r.view()), (Status::ViewChange, 4));
    let head = log[7].checksum();
    let sv = Body::StartView {
        view: 4,
        op: 8,
        op_checksum: head,
        commit: 8,
        checkpoint_op: 8,
        headers: Vec::new(),
    };
    let effects = r.step(msg(1, sv));
    assert_eq!(
        sends(&effects),
        vec![(1, Body::RequestStateTransfer { op_min: 1 })]
    );
    let transfer = |checkpoint_checksum| Body::StateTransfer {
        view: 4,
        checkpoint_op: 8,
        checkpoint_checksum,
        snapshot: snapshot::empty(),
    };
    assert_eq!(r.step(msg(1, transfer(head ^ 1))), vec![]);
    assert_eq!(r.status(), Status::ViewChange);
    let effects = r.step(msg(1, transfer(head)));
    assert!(effects.contains(&Effect::InstallCheckpoint {
        op: 8,
        checksum: head,
        snapshot: snapshot::empty()
    }));
    assert_eq!((r.status(), r.view(), r.commit()), (Status::Normal, 4, 8));
    assert_eq!(r.op(), 8);
    assert!(effects.contains(&Effect::WriteSuperblock {
        view: 4,
        log_view: 4
    }));
}

// ------------------------------------------------------------------ nacks

/// Primary-elect 1 of view 4 after a restart: entries 1..=4 of view 3 on disk, op 3 faulty
/// (its only copy). Returns the replica (its own DoViewChange recorded after replica 0's
/// StartViewChange) and the log.
fn nack_primary_elect() -> (Replica, Vec<Entry>) {
    let root = Entry::root(CLUSTER).checksum();
    let log = chain(root, 1, 4, 3, "k");
    let durable = DurableState {
        view: 4,
        log_view: 3,
        checkpoint: None,
        checkpoint_faulty: None,
        entries: vec![log[0].clone(), log[1].clone(), log[3].clone()],
        faulty: vec![3],
        never_written: vec![],
        restarted: true,
    };
    let mut r = Replica::new(config(3, 1), durable);
    r.poll_effects();
    assert_eq!((r.view(), r.status()), (4, Status::ViewChange));
    r.step(msg(0, Body::StartViewChange { view: 4 }));
    (r, log)
}

/// A DoViewChange for view 4 from a replica whose log (of view 2) ends at op 2.
fn short_dvc(log: &[Entry]) -> Body {
    Body::DoViewChange {
        view: 4,
        log_view: 2,
        op: 2,
        op_checksum: log[1].checksum(),
        commit: 0,
        checkpoint_op: 0,
        headers: vec![log[0].header, log[1].header],
        bodies: vec![true, true],
        held_max: 2,
        never_written: vec![],
    }
}

/// Goal (nacks): an uncommitted op whose only copy is faulty on the primary-elect blocks the
/// view change only until enough replicas nack it. With its own DVC and replica 0's (1 nack:
/// replica 0's log ends before op 3; its own faulty copy is no nack) op 3 may have been
/// committed (by replica 1 and 2), so it waits and asks for op 3's header. A late DVC from
/// replica 2 that also lacks op 3 — its log ends before it, or it holds another entry there
/// with its body — makes 2 = replica_count - quorum + 1 nacks: op 3 was never committed, the
/// log is truncated after op 2, and the view change completes.
#[test]
fn nack_quorum_truncates_unrepairable_uncommitted_op_exact_effects() {
    let root = Entry::root(CLUSTER).checksum();
    let log = chain(root, 1, 4, 3, "k");
    let fork = chain(log[1].checksum(), 3, 3, 2, "f");
    let other_entry = Body::DoViewChange {
        view: 4,
        log_view: 2,
        op: 3,
        op_checksum: fork[0].checksum(),
        commit: 0,
        checkpoint_op: 0,
        headers: vec![log[0].header, log[1].header, fork[0].header],
        bodies: vec![true, true, true],
        held_max: 3,
        never_written: vec![],
    };
    for late in [short_dvc(&log), other_entry] {
        let (mut r, log) = nack_primary_elect();
        let ask = Body::RequestHeaders {
            op_min: 3,
            op_max: 3,
        };
        let effects = r.step(msg(0, short_dvc(&log)));
        assert_eq!(
            effects,
            vec![
                Effect::Send {
                    to: 0,
                    message: Message::new(CLUSTER, 1, ask.clone())
                },
                Effect::Send {
                    to: 2,
                    message: Message::new(CLUSTER, 1, ask)
                },
            ]
        );
        assert_eq!((r.op(), r.status()), (4, Status::ViewChange));
        let effects = r.step(msg(2, late));
        assert_eq!(
            effects,
            vec![Effect::TruncateLogAfter(2), Effect::Sync { op: 2 }]
        );
        assert_eq!(r.op(), 2);
        let effects = r.step(Input::Synced { op: 2 });
        assert_eq!(
            effects,
            vec![Effect::WriteSuperblock {
                view: 4,
                log_view: 4
            }]
        );
        let effects = r.step(Input::SuperblockSynced {
            view: 4,
            log_view: 4,
        });
        let sv = Body::StartView {
            view: 4,
            op: 2,
            op_checksum: log[1].checksum(),
            commit: 0,
            checkpoint_op: 0,
            headers: vec![log[0].header, log[1].header],
        };
        assert_eq!(
            effects,
            vec![
                Effect::Send {
                    to: 0,
                    message: Message::new(CLUSTER, 1, sv.clone())
                },
                Effect::Send {
                    to: 2,
                    message: Message::new(CLUSTER, 1, sv)
                },
            ]
        );
        assert_eq!((r.view(), r.status(), r.op()), (4, Status::Normal, 2));
        assert!(r.is_primary());
    }
}

/// Goal (nacks, safety): a replica that may hold op 3 never counts as a nack. Replica 2's
/// DVC has op 3 faulty too (a hole below its head), or only op 3's header (its body faulty or
/// never repaired): op 3 may have been committed by replicas 1 and 2, so the primary-elect
/// never truncates it and keeps waiting for a repair, through later DVCs and ticks.
#[test]
fn nack_faulty_or_header_only_copy_never_truncates() {
    let root = Entry::root(CLUSTER).checksum();
    let log = chain(root, 1, 4, 3, "k");
    let faulty_too = Body::DoViewChange {
        view: 4,
        log_view: 3,
        op: 4,
        op_checksum: log[3].checksum(),
        commit: 0,
        checkpoint_op: 0,
        headers: vec![log[0].header, log[1].header, log[3].header],
        bodies: vec![true, true, true],
        held_max: 4,
        never_written: vec![],
    };
    let header_only = Body::DoViewChange {
        view: 4,
        log_view: 3,
        op: 4,
        op_checksum: log[3].checksum(),
        commit: 0,
        checkpoint_op: 0,
        headers: log.iter().map(|e| e.header).collect(),
        bodies: vec![true, true, false, true],
        held_max: 4,
        never_written: vec![],
    };
    for late in [faulty_too, header_only] {
        let (mut r, log) = nack_primary_elect();
        r.step(msg(0, short_dvc(&log)));
        let effects = r.step(msg(2, late.clone()));
        assert_eq!(effects, vec![]);
        for _ in 0..40 {
            let effects = r.step(Input::Tick);
            assert!(
                !effects
                    .iter()
                    .any(|e| matches!(e, Effect::TruncateLogAfter(_))),
                "{effects:?}"
            );
            r.step(msg(2, late.clone()));
        }
        assert_eq!((r.view(), r.status(), r.op()), (4, Status::ViewChange, 4));
    }
}

/// Goal (issue 17, VOPR seeds 101074, 107565, 110979): an op a DVC sender provably never
/// made durable is a nack, so a healed cluster whose only copies of an uncommitted op are
/// faulty still elects a primary. Replica 2 has a hole at op 3 that its storage proves was
/// never written (`never_written`: the redundant header copy is blank or stale), or only
/// header-only slots above everything it ever wrote (`held_max` 2): with replica 0's short
/// log that makes 2 nacks, and the primary-elect truncates after op 2 at once.
#[test]
fn nack_never_written_hole_or_above_held_max_truncates() {
    let root = Entry::root(CLUSTER).checksum();
    let log = chain(root, 1, 4, 3, "k");
    let never_written = Body::DoViewChange {
        view: 4,
        log_view: 3,
        op: 4,
        op_checksum: log[3].checksum(),
        commit: 0,
        checkpoint_op: 0,
        headers: vec![log[0].header, log[1].header, log[3].header],
        bodies: vec![true, true, true],
        held_max: 4,
        never_written: vec![3],
    };
    let above_held = Body::DoViewChange {
        view: 4,
        log_view: 3,
        op: 4,
        op_checksum: log[3].checksum(),
        commit: 0,
        checkpoint_op: 0,
        headers: log.iter().map(|e| e.header).collect(),
        bodies: vec![true, true, false, false],
        held_max: 2,
        never_written: vec![],
    };
    for late in [never_written, above_held] {
        let (mut r, log) = nack_primary_elect();
        r.step(msg(0, short_dvc(&log)));
        let effects = r.step(msg(2, late));
        assert_eq!(
            effects,
            vec![Effect::TruncateLogAfter(2), Effect::Sync { op: 2 }]
        );
        assert_eq!((r.op(), r.status()), (2, Status::ViewChange));
    }
}

/// Goal (issue 17): the primary-elect's own never-written hole counts as its nack: replica 1
/// restarted with op 3 faulty and storage proving it never wrote op 3 there; with replica 0's
/// short log (2 nacks) it truncates after op 2 without waiting for replica 2.
#[test]
fn nack_own_never_written_hole_counts() {
    let root = Entry::root(CLUSTER).checksum();
    let log = chain(root, 1, 4, 3, "k");
    let durable = DurableState {
        view: 4,
        log_view: 3,
        checkpoint: None,
        checkpoint_faulty: None,
        entries: vec![log[0].clone(), log[1].clone(), log[3].clone()],
        faulty: vec![3],
        never_written: vec![3],
        restarted: true,
    };
    let mut r = Replica::new(config(3, 1), durable);
    r.poll_effects();
    r.step(msg(0, Body::StartViewChange { view: 4 }));
    let effects = r.step(msg(0, short_dvc(&log)));
    assert_eq!(
        effects,
        vec![Effect::TruncateLogAfter(2), Effect::Sync { op: 2 }]
    );
}

/// Goal (issue 17, VOPR seed 115711): a backup that missed committed prepares while cut off
/// catches up in an idle cluster. No new request arrives whose gap would reveal what it
/// lacks, and the primary's checkpoint is not ahead of it (no state transfer): the primary's
/// periodic resend covers a backup whose acknowledgement is behind the commit number.
#[test]
fn idle_primary_resends_committed_ops_to_a_lagging_backup() {
    let mut net = Net::new(3, config);
    net.blocked.insert(2);
    for request in 1..=3 {
        net.request(7, request, set("k", &request.to_string()));
    }
    let commit = net.replica(0).commit();
    assert_eq!(commit, 3);
    assert_eq!(net.replica(2).commit(), 0);
    net.blocked.remove(&2);
    net.tick(50);
    assert_eq!(net.replica(0).status(), Status::Normal);
    net.assert_converged(&[0, 1, 2]);
}

/// Goal (issue 17, known limit removed): a backup whose StartView install truncated its log
/// and was cut short by a new view change still finishes that install — repairing from any
/// replica — and then publishes it as its `log_view` with the new view, so it can vote.
/// Before, it waited for a StartView of a view it had left: with more than f backups caught
/// that way (the new primary crashed right after its StartView), no DoViewChange quorum
/// could ever form, although every replica was up.
#[test]
fn view_change_completes_an_interrupted_start_view_install_and_votes() {
    let root = Entry::root(CLUSTER).checksum();
    let log = chain(root, 1, 4, 1, "k");
    let fork = chain(log[1].checksum(), 3, 3, 2, "f");
    let durable = DurableState {
        view: 1,
        log_view: 1,
        checkpoint: None,
        checkpoint_faulty: None,
        entries: log.clone(),
        faulty: vec![],
        never_written: vec![],
        restarted: true,
    };
    let mut r = Replica::new(config(3, 0), durable);
    r.poll_effects();
    assert_eq!((r.view(), r.status()), (1, Status::Normal));
    let sv = Body::StartView {
        view: 2,
        op: 3,
        op_checksum: fork[0].checksum(),
        commit: 2,
        checkpoint_op: 0,
        headers: vec![log[0].header, log[1].header, fork[0].header],
    };
    let effects = r.step(msg(2, sv));
    assert!(
        effects.contains(&Effect::TruncateLogAfter(3)),
        "{effects:?}"
    );
    assert_eq!((r.view(), r.op()), (2, 3));
    // The truncation is synced; the superblock waits for the complete install.
    let effects = r.step(Input::Synced { op: 3 });
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::WriteSuperblock { .. })),
        "{effects:?}"
    );
    // The new primary is gone before the body of op 3 arrives; replica 1 starts view 3.
    let effects = r.step(msg(1, Body::StartViewChange { view: 3 }));
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::WriteSuperblock { .. })),
        "{effects:?}"
    );
    assert_eq!((r.view(), r.status()), (3, Status::ViewChange));
    // Replica 1 answers the repair: the install completes and is published with view 3.
    let repair = Body::Prepare {
        view: 2,
        commit: 2,
        entry: fork[0].clone(),
    };
    let effects = r.step(msg(1, repair));
    assert_eq!(
        effects,
        vec![
            Effect::WriteEntries(vec![fork[0].clone()]),
            Effect::Sync { op: 3 }
        ]
    );
    let effects = r.step(Input::Synced { op: 3 });
    assert_eq!(
        effects,
        vec![Effect::WriteSuperblock {
            view: 3,
            log_view: 2
        }]
    );
    assert_eq!(r.log_view(), 2);
}

/// Goal (issue 17): a stuck view change names what blocks it — the op, the view, and which
/// DoViewChange senders hold, miss or nack it — so the next liveness failure is diagnosed in
/// minutes; an idle, caught-up replica reports nothing.
#[test]
fn blocker_names_the_op_and_who_holds_misses_or_nacks_it() {
    let (mut r, log) = nack_primary_elect();
    r.step(msg(0, short_dvc(&log)));
    let blocker = r.blocker().expect("a stuck primary-elect says why");
    assert!(
        blocker.starts_with("view 4: primary-elect lacks op 3 (checksum "),
        "{blocker}"
    );
    assert!(
        blocker.contains("held by [], missing (may have acknowledged it) at [1], nacked by [0] (2 nacks truncate it)"),
        "{blocker}"
    );
    let mut net = Net::new(3, config);
    net.request(7, 1, set("k", "v"));
    net.tick(5);
    assert_eq!(net.replica(1).blocker(), None);
}

/// Goal: the DoViewChange body-presence bitset has one encoding: nonzero padding bits are
/// rejected.
#[test]
fn dvc_bitset_padding_is_rejected() {
    let root = Entry::root(CLUSTER).checksum();
    let log = chain(root, 1, 2, 0, "k");
    let mut bytes = Message::new(CLUSTER, 0, short_dvc(&log)).encode();
    assert!(Message::decode(&bytes).is_ok());
    *bytes.last_mut().expect("not empty") |= 0x80;
    assert!(Message::decode(&bytes).is_err());
}

/// Regression (VOPR seed 451): a replica that moved views alone (durable view 5) and
/// restarted with a faulty head while the others settled in view 2 cannot recover from them
/// (their view is below its durable one, and nothing moves a healthy cluster to a new view):
/// on their RecoveryResponses it asks them to move to its view with a StartViewChange (no
/// log, no vote), and the StartView of view 5 ends its recovery.
#[test]
fn recovering_replica_ahead_of_the_cluster_moves_it_to_its_view() {
    let root = Entry::root(CLUSTER).checksum();
    let log = chain(root, 1, 3, 0, "k");
    let durable = DurableState {
        view: 5,
        log_view: 0,
        checkpoint: None,
        checkpoint_faulty: None,
        entries: log[..2].to_vec(),
        faulty: vec![3],
        never_written: vec![],
        restarted: true,
    };
    let mut r = Replica::new(config(3, 0), durable);
    assert_eq!(r.status(), Status::Recovering);
    let nonce = match sends(&r.poll_effects()).first() {
        Some((_, Body::Recovery { nonce })) => *nonce,
        other => panic!("{other:?}"),
    };
    let response = Body::RecoveryResponse {
        view: 2,
        nonce,
        op: 3,
        op_checksum: log[2].checksum(),
        commit: 3,
        checkpoint_op: 0,
        headers: log.iter().map(|e| e.header).collect(),
    };
    let effects = r.step(msg(2, response));
    let svc = Body::StartViewChange { view: 5 };
    assert_eq!(
        effects,
        vec![
            Effect::Send {
                to: 1,
                message: Message::new(CLUSTER, 0, svc.clone())
            },
            Effect::Send {
                to: 2,
                message: Message::new(CLUSTER, 0, svc)
            },
        ]
    );
    assert_eq!((r.view(), r.status()), (5, Status::Recovering));
    let sv = Body::StartView {
        view: 5,
        op: 3,
        op_checksum: log[2].checksum(),
        commit: 3,
        checkpoint_op: 0,
        headers: log.iter().map(|e| e.header).collect(),
    };
    r.step(msg(2, sv));
    assert_eq!((r.view(), r.status()), (5, Status::Normal));
}

/// Goal: a restarted backup whose WAL holds an older view's entry below a hole (a lost write
/// left the stale entry intact in its slot) does not commit it because it chains from the
/// committed prefix: only entries the head's hash chain vouches for are applied. Repaired
/// headers then prove it stale and the view's entry is committed in its place (VOPR 3612).
#[test]
fn commit_waits_for_head_chain_over_stale_entry_below_hole_exact_effects() {
    let root = Entry::root(CLUSTER).checksum();
    let first = chain(root, 1, 1, 0, "k").remove(0);
    let stale = chain(first.checksum(), 2, 2, 0, "old").remove(0);
    let log = chain(first.checksum(), 2, 4, 1, "new");
    let durable = DurableState {
        view: 1,
        log_view: 1,
        checkpoint: None,
        checkpoint_faulty: None,
        entries: vec![first.clone(), stale.clone(), log[2].clone()],
        faulty: vec![3],
        never_written: vec![],
        restarted: true,
    };
    // Replica 2, a backup of view 1 (primary 1), head intact.
    let mut b = Replica::new(config(3, 2), durable);
    assert_eq!((b.status(), b.commit(), b.op()), (Status::Normal, 0, 4));
    assert_eq!(
        sends(&b.poll_effects()),
        vec![
            (
                1,
                Body::RequestHeaders {
                    op_min: 3,
                    op_max: 3
                }
            ),
            (
                1,
                Body::PrepareOk {
                    view: 1,
                    op: 2,
                    checksum: stale.checksum()
                }
            )
        ]
    );
    // The primary says op 4 committed: op 1 and the stale op 2 chain from the root, but the
    // hole at 3 leaves them unverified, so nothing is applied.
    let effects = b.step(msg(
        1,
        Body::Commit {
            view: 1,
            commit: 4,
            checkpoint_op: 0,
        },
    ));
    assert_eq!(effects, vec![]);
    assert_eq!(b.commit(), 0);
    // The headers of 2 and 3 connect op 1 to the head and replace the stale op 2.
    let effects = b.step(msg(
        1,
        Body::Headers {
            headers: vec![log[0].header, log[1].header],
        },
    ));
    assert_eq!(
        effects,
        vec![
            Effect::Send {
                to: 1,
                message: Message::new(
                    CLUSTER,
                    2,
                    Body::RequestPrepare {
                        op: 2,
                        checksum: log[0].checksum()
                    }
                )
            },
            Effect::Send {
                to: 1,
                message: Message::new(
                    CLUSTER,
                    2,
                    Body::RequestPrepare {
                        op: 3,
                        checksum: log[1].checksum()
                    }
                )
            },
            Effect::Commit {
                op: 1,
                checksum: first.checksum()
            },
        ]
    );
    assert_eq!(b.header_at(2), Some(log[0].header));
    let prepare = |entry: &Entry| {
        msg(
            1,
            Body::Prepare {
                view: 1,
                commit: 4,
                entry: entry.clone(),
            },
        )
    };
    assert_eq!(
        b.step(prepare(&log[0])),
        vec![
            Effect::WriteEntries(vec![log[0].clone()]),
            Effect::Commit {
                op: 2,
                checksum: log[0].checksum()
            },
            Effect::Sync { op: 4 },
        ]
    );
    assert_eq!(
        b.step(prepare(&log[1])),
        vec![
            Effect::WriteEntries(vec![log[1].clone()]),
            Effect::Commit {
                op: 3,
                checksum: log[1].checksum()
            },
            Effect::Commit {
                op: 4,
                checksum: log[2].checksum()
            },
            Effect::Send {
                to: 1,
                message: Message::new(
                    CLUSTER,
                    2,
                    Body::PrepareOk {
                        view: 1,
                        op: 4,
                        checksum: log[2].checksum()
                    }
                )
            },
        ]
    );
    assert_eq!(b.commit(), 4);
    assert_eq!(b.kv().get(b"new2"), Some(&b"v"[..]));
    assert_eq!(b.kv().get(b"old2"), None);
}
