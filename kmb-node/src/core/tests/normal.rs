//! The normal case (VRR §4.1; TigerBeetle: nothing acted on before it is durable): prepare,
//! prepare-ok after sync, commit at a quorum, apply in order along the head's hash chain.

use super::*;

/// Goal: the normal case on 3 replicas emits exactly write+sync, PrepareOk only after Synced,
/// and commit plus reply at the primary only after its own Synced and a backup's PrepareOk.
#[test]
fn normal_case_three_replicas_exact_effects() {
    let mut p = Replica::new(config(3, 0), DurableState::formatted());
    let mut b = Replica::new(config(3, 1), DurableState::formatted());
    assert_eq!(p.poll_effects(), vec![]);
    // A session's first request: its registration.
    let effects = p.step(Input::ClientRequest {
        now: 0,
        client: 5,
        request: 1,
        body: Request::Register.encode(),
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
                reply: Reply::Ok,
                read: false,
            },
        ]
    );
    assert_eq!(p.take_commits(), vec![(1, entry.checksum())]);
    // The backup commits on the heartbeat, and answers it.
    let heartbeat = Body::Commit {
        view: 0,
        commit: 1,
        checkpoint_op: 0,
        round: 0,
    };
    assert_eq!(
        b.step(msg(0, heartbeat)),
        vec![
            Effect::Send {
                to: 0,
                message: Message::new(CLUSTER, 1, Body::CommitAck { view: 0, round: 0 })
            },
            Effect::Commit {
                op: 1,
                checksum: entry.checksum()
            }
        ]
    );
    assert_eq!(b.state_hash(), p.state_hash());
}

/// Goal: the primary's own sync alone does not commit on 3 replicas (it needs a PrepareOk).
#[test]
fn normal_case_primary_synced_without_quorum_no_commit() {
    let mut p = Replica::new(config(3, 0), DurableState::formatted());
    p.step(Input::ClientRequest {
        now: 0,
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
        now: 0,
        client: 5,
        request: 1,
        body: Request::Register.encode(),
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

/// Goal: 3, 5 and 1 replicas commit a sequence of requests and converge on one state.
#[test]
fn cluster_sizes_commit_and_converge() {
    for n in [1u8, 3, 5] {
        let mut net = Net::new(n, config);
        assert_eq!(net.register(1), 1);
        for i in 1..=10u64 {
            let (op, reply) = net.request(1, i, set(&format!("k{i}"), "v"));
            assert_eq!((op, reply), (i + 1, Reply::Ok));
        }
        net.tick(15); // heartbeat carries the commit number to the backups
        let all: Vec<u8> = (0..n).collect();
        net.assert_converged(&all);
        assert_eq!(net.replica(0).commit(), 11);
    }
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
                            now: 0,
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
    // hole at 3 leaves them unverified, so nothing is applied (the heartbeat is answered).
    let effects = b.step(msg(
        1,
        Body::Commit {
            view: 1,
            commit: 4,
            checkpoint_op: 0,
            round: 0,
        },
    ));
    assert_eq!(
        sends(&effects),
        vec![(1, Body::CommitAck { view: 1, round: 0 })]
    );
    assert_eq!(effects.len(), 1);
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

/// Goal: the core's invariants are checked on every step (asserted in the simulator,
/// debug-asserted here): a commit that goes back is caught at the next step.
#[test]
#[should_panic(expected = "commit went back")]
fn invariants_catch_a_commit_going_back() {
    let mut net = Net::new(1, config);
    net.register(1);
    net.request(1, 1, set("a", "1"));
    let replica = &mut net.nodes[0].replica;
    // As if the last step had left the commit above where the next one finds it.
    replica.checked.1 = replica.commit_min + 1;
    replica.step(Input::Tick);
}

/// Goal: a checkpoint above the applied commit is caught at the next step.
#[test]
#[should_panic(expected = "above the applied commit")]
fn invariants_catch_a_checkpoint_above_the_commit() {
    let mut net = Net::new(1, config);
    net.register(1);
    let replica = &mut net.nodes[0].replica;
    replica.checkpoint.op = 5;
    replica.step(Input::Tick);
}

/// Goal: entries carry cluster time that never goes backwards: the primary stamps the
/// largest of its clock and its predecessor's timestamp — a primary whose clock went back, or
/// a new primary whose clock is behind the old one's, stamps the predecessor's time — and the
/// state machine evaluates expiry against it (a key set to expire 1 s after the old primary's
/// clock is still there under the new primary, whose clock is 9 s behind).
#[test]
fn entries_carry_cluster_time_that_never_goes_back() {
    let mut net = Net::new(3, config);
    net.clocks.insert(0, 10_000);
    net.request(1, 1, Request::Register.encode());
    let expiring = Request::SetWith {
        key: b"lock".to_vec(),
        value: b"me".to_vec(),
        condition: crate::kv::SetCondition::Always,
        expiry: crate::kv::SetExpiry::In(1_000),
        get: false,
    };
    let (op, _) = net.request(1, 1, expiring.encode());
    assert_eq!(net.replica(0).entry(op).unwrap().header.timestamp, 10_000);
    net.clocks.insert(0, 4_000);
    let (op, _) = net.request(1, 2, set("a", "1"));
    assert_eq!(
        net.replica(0).entry(op).unwrap().header.timestamp,
        10_000,
        "clock went back"
    );
    // The primary fails; the new one's clock is far behind.
    net.crash(0);
    net.blocked.insert(0);
    for r in [1, 2] {
        net.clocks.insert(r, 1_000);
    }
    // A write that reads the lock (a plain read would not make an entry: `read.rs`).
    let touch = || {
        Request::SetWith {
            key: b"lock".to_vec(),
            value: b"me".to_vec(),
            condition: crate::kv::SetCondition::IfPresent,
            expiry: crate::kv::SetExpiry::Keep,
            get: true,
        }
        .encode()
    };
    let (op, reply) = net.request(1, 3, touch());
    let primary = net.primary().expect("a new primary");
    assert_ne!(primary, 0);
    assert_eq!(
        net.replica(primary).entry(op).unwrap().header.timestamp,
        10_000
    );
    assert_eq!(
        reply,
        Reply::Value(Some(b"me".to_vec())),
        "not expired at 10 s"
    );
    net.clocks.insert(primary, 11_000);
    let (op, reply) = net.request(1, 4, touch());
    assert_eq!(
        net.replica(primary).entry(op).unwrap().header.timestamp,
        11_000
    );
    assert_eq!(reply, Reply::Value(None), "expired at 11 s");
}

/// Goal: cluster time holds across a restart whose log's head is the checkpoint. The kv
/// state's clock counts only applied ops, so when the op on top of the checkpoint applied
/// nothing (here a malformed request, stamped later than the last applied one), the primary
/// elected after every replica restarted must stamp no earlier than that op: the checkpoint's
/// snapshot records its entry's timestamp (VOPR seed 580836881653: it stamped a second
/// earlier, from the kv clock).
#[test]
fn cluster_time_holds_when_the_head_is_a_checkpoint_over_an_op_that_applied_nothing() {
    let mut net = Net::new(3, small_config);
    for r in 0..3 {
        net.clocks.insert(r, 10_000);
    }
    net.request(1, 1, Request::Register.encode());
    net.request(1, 2, set("a", "1"));
    net.request(1, 3, set("b", "2"));
    for r in 0..3 {
        net.clocks.insert(r, 20_000);
    }
    let (op, reply) = net.request(1, 4, vec![0xff, 0xfe]);
    assert!(matches!(reply, Reply::Error(_)), "malformed: {reply:?}");
    assert_eq!(op, 4, "the checkpoint interval's op");
    net.tick(50);
    for r in 0..3 {
        let replica = net.replica(r);
        assert_eq!(
            replica.checkpoint.op, 4,
            "replica {r} checkpointed the malformed op"
        );
        assert_eq!(replica.kv.clock(), 10_000, "applied ops only");
        assert_eq!(
            crate::core::snapshot::timestamp(&replica.checkpoint.snapshot),
            Some(20_000)
        );
    }
    for r in 0..3 {
        net.crash(r);
    }
    for r in 0..3 {
        net.clocks.insert(r, 1_000);
        net.restart(r);
    }
    let (op, _) = net.request(1, 5, set("c", "3"));
    let primary = net.primary().expect("a primary");
    assert_eq!(
        net.replica(primary).entry(op).unwrap().header.timestamp,
        20_000,
        "not below the checkpoint's entry"
    );
}
