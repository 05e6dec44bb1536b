//! Restart and recovery (VRR §4.3; TigerBeetle's `recovering_head`): replay of the durable
//! log, Recovery / RecoveryResponse, and a restarted replica never voting with lost state.

use super::*;

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
        vote: Vote {
            log_view: 0,
            log: LogSummary {
                op: 0,
                op_checksum: root,
                commit: 0,
                checkpoint_op: 0,
                headers: vec![],
            },
            bodies: vec![],
            held_max: 0,
            never_written: vec![],
        },
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

/// Replica 0 of 3 restarted in durable view `view` (log_view 0) with entries 1..=2 of view 0
/// and op 3 faulty (its head): Recovering. Returns it, the log 1..=3, and its Recovery nonce.
fn recovering_in_view(view: View) -> (Replica, Vec<Entry>, u64) {
    let root = Entry::root(CLUSTER).checksum();
    let log = chain(root, 1, 3, 0, "k");
    let durable = DurableState {
        view,
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
    (r, log, nonce)
}

/// Regression (VOPR seed 451): a replica that moved views alone (durable view 5) and
/// restarted with a faulty head while the others settled in view 2 cannot recover from them
/// (their view is below its durable one, and nothing moves a healthy cluster to a new view):
/// on their RecoveryResponses it asks them to move to its view with a StartViewChange (no
/// log, no vote), and the StartView of view 5 ends its recovery.
#[test]
fn recovering_replica_ahead_of_the_cluster_moves_it_to_its_view() {
    let (mut r, log, nonce) = recovering_in_view(5);
    let response = Body::RecoveryResponse {
        view: 2,
        nonce,
        log: LogSummary {
            op: 3,
            op_checksum: log[2].checksum(),
            commit: 3,
            checkpoint_op: 0,
            headers: log.iter().map(|e| e.header).collect(),
        },
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
        log: LogSummary {
            op: 3,
            op_checksum: log[2].checksum(),
            commit: 3,
            checkpoint_op: 0,
            headers: log.iter().map(|e| e.header).collect(),
        },
    };
    r.step(msg(2, sv));
    assert_eq!((r.view(), r.status()), (5, Status::Normal));
}

/// Regression (VOPR seeds 842542259098, 842542261147, buggy-peer fault): a replica recovering
/// (faulty head) in view 1 while the others are more than `VIEW_JUMP_MAX` views on takes
/// their RecoveryResponses — from a quorum including the primary — and joins their view;
/// the jump bound, which a recovering replica cannot follow by view changes, does not apply.
#[test]
fn recovering_replica_far_behind_the_cluster_recovers() {
    use super::replica::VIEW_JUMP_MAX;
    let (mut r, log, nonce) = recovering_in_view(1);
    let far = 3 * VIEW_JUMP_MAX + 1; // primary: replica 1 of 3
    let summary = LogSummary {
        op: 3,
        op_checksum: log[2].checksum(),
        commit: 3,
        checkpoint_op: 0,
        headers: log.iter().map(|e| e.header).collect(),
    };
    let response = |view| Body::RecoveryResponse {
        view,
        nonce,
        log: summary.clone(),
    };
    r.step(msg(2, response(far)));
    r.step(msg(1, response(far)));
    assert_eq!((r.view(), r.status()), (far, Status::Normal));
}
