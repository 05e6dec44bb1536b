//! State transfer and checkpoints (VRR Revisited, Pragmatics; Protocol-Aware Recovery for an
//! unreadable checkpoint): a lagging replica installs a peer's checkpoint; WAL slots are
//! reused only behind a durable one.

use super::*;

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
            now: 0,
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
        now: 0,
        client: 1,
        request: i,
        body: set("k", "v"),
    };
    assert_eq!(p.step(request(17)), vec![], "held until the ring has room");
    assert_eq!(p.op(), 16);
    // The checkpoint's durability frees the slot: the held request is ordered at once.
    let effects = p.step(Input::CheckpointDone { op: 4 });
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Checkpoint { op: 16, .. })));
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::WriteEntries(w) if w[0].header.op == 17)));
    assert_eq!(p.op(), 17);
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
        log: LogSummary {
            op: 2,
            op_checksum: entries[1].checksum(),
            commit: 2,
            checkpoint_op: 2,
            headers: Vec::new(),
        },
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
        vote: Vote {
            log_view: 1,
            log: LogSummary {
                op: 6,
                op_checksum: log[5].checksum(),
                commit: 6,
                checkpoint_op: 4,
                headers: vec![],
            },
            bodies: vec![],
            held_max: 6,
            never_written: vec![],
        },
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
        log: LogSummary {
            op: 6,
            op_checksum: log[5].checksum(),
            commit: 6,
            checkpoint_op: 4,
            headers: log[4..].iter().map(|e| e.header).collect(),
        },
    };
    assert_eq!(r.step(msg(1, sv)), vec![]);
    // Serves no client and no state transfer.
    let client = Input::ClientRequest {
        now: 0,
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
        kv.apply(
            &Request::decode(&e.body).unwrap(),
            crate::kv::ApplyContext {
                op: e.header.op,
                timestamp: e.header.timestamp,
            },
        );
    }
    let state = snapshot::encode(&kv, &ClientTable::new(), 0);
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
                snapshot: state.clone().into()
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
    assert_eq!(
        Ok(r.state_hash()),
        crate::core::snapshot::state_hash_of(&state)
    );
    // Still no vote while the log is not recovered.
    assert_eq!(r.step(msg(0, Body::StartViewChange { view: 2 })), vec![]);
    assert_eq!(r.step(Input::CheckpointDone { op: 4 }), vec![]);
    assert_eq!(r.status(), Status::Recovering);

    // Recovery responses (a quorum with the primary of view 1): the replica joins view 1 as
    // a backup, applies 5..=6 from its own intact entries, and acknowledges its durable log.
    let response = |view, headers: Vec<Header>| Body::RecoveryResponse {
        view,
        nonce,
        log: LogSummary {
            op: 6,
            op_checksum: log[5].checksum(),
            commit: 6,
            checkpoint_op: 4,
            headers,
        },
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
        snapshot: snapshot::empty().into()
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
    assert_eq!(
        crate::core::snapshot::state_hash_of(&state),
        Ok(r.state_hash())
    );
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
        log: LogSummary {
            op: 8,
            op_checksum: head,
            commit: 8,
            checkpoint_op: 8,
            headers: Vec::new(),
        },
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
        snapshot: snapshot::empty().into()
    }));
    assert_eq!((r.status(), r.view(), r.commit()), (Status::Normal, 4, 8));
    assert_eq!(r.op(), 8);
    assert!(effects.contains(&Effect::WriteSuperblock {
        view: 4,
        log_view: 4
    }));
}

/// Goal (VOPR seed 806316636212, buggy-peer fault): a replica recovering from an unreadable
/// checkpoint in view 1 installs a peer's StateTransfer sent from a view more than
/// `VIEW_JUMP_MAX` ahead (the rest of the cluster was moved on by clamped jumps) — the jump
/// bound, which a recovering replica cannot follow by view changes, does not apply to it,
/// and the transfer does not move its view.
#[test]
fn faulty_checkpoint_replica_installs_a_transfer_from_far_ahead() {
    use super::replica::VIEW_JUMP_MAX;
    let (mut r, log) = faulty_checkpoint_replica();
    r.poll_effects();
    let c4 = log[3].checksum();
    let mut kv = crate::kv::KvState::new();
    for e in &log[..4] {
        kv.apply(
            &Request::decode(&e.body).unwrap(),
            crate::kv::ApplyContext {
                op: e.header.op,
                timestamp: e.header.timestamp,
            },
        );
    }
    let far = 2 * VIEW_JUMP_MAX + 7;
    let effects = r.step(msg(
        1,
        Body::StateTransfer {
            view: far,
            checkpoint_op: 4,
            checkpoint_checksum: c4,
            snapshot: snapshot::encode(&kv, &ClientTable::new(), 0),
        },
    ));
    assert_eq!(
        effects.first(),
        Some(&Effect::StateTransferred {
            op: 4,
            checksum: c4
        })
    );
    assert_eq!((r.view(), r.status()), (1, Status::Recovering));
}
