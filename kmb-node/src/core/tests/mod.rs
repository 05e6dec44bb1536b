//! Tests of the pure core: exact effects of single steps, and end-to-end runs through a small
//! deterministic in-test network whose "disk" executes effects immediately in memory.
//!
//! This module is the shared harness (`Net`, `Disk`, `Node`) and helpers (`config`, `msg`,
//! `chain`, `sends`); the tests live in one file per sub-protocol, like the core itself.

mod client;
mod diagnose;
mod messages;
mod nack;
mod normal;
mod read;
mod recovery;
mod repair;
mod state_transfer;
mod view_change;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand::{Rng, SeedableRng};

use super::message::{Body, LogSummary, Message, Vote};
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

/// An INCRBY request body.
fn incr(key: &str, delta: i64) -> Vec<u8> {
    Request::IncrBy {
        key: key.as_bytes().to_vec(),
        delta,
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
fn chain(parent: u128, first: u64, last: u64, view: View, tag: &str) -> Vec<Entry> {
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
                timestamp: 0,
            },
            // Client 9's session opens at op 1 (nothing else executes for an unknown client).
            if op == 1 {
                Request::Register.encode()
            } else {
                set(&format!("{tag}{op}"), "v")
            },
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
    superblock: (View, View),
    checkpoint: Option<CheckpointState>,
    /// The checkpoint is unreadable (storage reports `CheckpointState::Faulty`).
    checkpoint_faulty: bool,
    faulty: BTreeSet<u64>,
    /// Highest view of an entry dropped by a truncation not yet published by a superblock
    /// write (the storage contract of `Storage::truncate_after`).
    truncated_view: Option<View>,
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
    /// Per client: its latest registration's op. A session numbers its requests above it
    /// (`core::session_floor`), so [`Net::request`] sends a test's request number `n` as
    /// `op + n`: tests keep writing 1, 2, 3 after a registration.
    bases: BTreeMap<u128, u64>,
    /// Per replica: the wall clock (ms) its glue passes with client requests.
    clocks: BTreeMap<u8, u64>,
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
            bases: BTreeMap::new(),
            clocks: BTreeMap::new(),
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
                    ..
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

    /// Open `client`'s session (request number 0): the client table executes nothing else
    /// for a client it does not hold. Returns the registration's op.
    fn register(&mut self, client: u128) -> u64 {
        let (op, reply) = self.request(client, 0, Request::Register.encode());
        assert_eq!(reply, Reply::Ok);
        op
    }

    /// Submit to the primary, run until the reply arrives (ticking if needed).
    fn request(&mut self, client: u128, request: u64, body: Vec<u8>) -> (u64, Reply) {
        let request = self
            .bases
            .get(&client)
            .map_or(request, |base| base + request);
        let (op, reply) = self.request_numbered(client, request, body.clone());
        if body == Request::Register.encode() && reply == Reply::Ok {
            self.bases.insert(client, op);
        }
        (op, reply)
    }

    /// [`Net::request`] with the request number as sent.
    fn request_numbered(&mut self, client: u128, request: u64, body: Vec<u8>) -> (u64, Reply) {
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
                    let now = self.clocks.get(&p).copied().unwrap_or(0);
                    self.input(
                        p,
                        Input::ClientRequest {
                            now,
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
