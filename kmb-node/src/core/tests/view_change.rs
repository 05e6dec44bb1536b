//! View change (VRR §4.2, made durable): StartViewChange, DoViewChange, StartView, the choice
//! by `log_view`, installs and `log_view` advance.

use super::*;

/// Goal: after the primary crashes, a view change elects a new primary that has every
/// committed op, and the cluster keeps committing.
#[test]
fn view_change_primary_crash_new_primary_has_committed_ops() {
    let mut net = Net::new(3, config);
    net.register(1);
    for i in 1..=5u64 {
        net.request(1, i, set(&format!("k{i}"), "v"));
    }
    let committed: Vec<_> = (1..=6).map(|o| net.replica(0).log_checksum_at(o)).collect();
    net.crash(0);
    net.blocked.insert(0);
    net.tick(80);
    let p = net.primary().expect("a new primary");
    assert_ne!(p, 0);
    assert!(net.replica(p).view() >= 1);
    for o in 1..=6 {
        assert_eq!(net.replica(p).log_checksum_at(o), committed[o as usize - 1]);
    }
    let (op, _) = net.request(1, 6, set("k6", "v"));
    assert_eq!(op, 7);
    net.tick(15);
    net.assert_converged(&[1, 2]);
    assert_eq!(net.replica(1).kv().len(), 6);
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

/// Goal: five replicas survive a primary crash: the view change completes and commits
/// continue with every committed op kept.
#[test]
fn view_change_five_replicas_primary_crash_keeps_commits() {
    let mut net = Net::new(5, config);
    net.register(1);
    for i in 1..=4u64 {
        net.request(1, i, set(&format!("k{i}"), "v"));
    }
    net.crash(0);
    net.blocked.insert(0);
    net.tick(80);
    assert!(net.primary().is_some_and(|p| p != 0));
    assert_eq!(net.request(1, 5, set("k5", "v")).0, 6);
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
        log: LogSummary {
            op: 1,
            op_checksum: e.checksum(),
            commit: 0,
            checkpoint_op: 0,
            headers: vec![e.header],
        },
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
        [(
            2,
            Body::StartView {
                view: 0,
                log: LogSummary { op: 0, .. }
            }
        )]
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
    let sv = Body::StartView {
        view: 1,
        log: LogSummary {
            op: 0,
            op_checksum: root,
            commit: 0,
            checkpoint_op: 0,
            headers: vec![],
        },
    };
    assert_eq!(r.step(msg(0, sv)), vec![]);
    assert_eq!((r.view(), r.status()), (0, Status::Normal));
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
            now: 0,
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
        log: LogSummary {
            op: 1,
            op_checksum: entries[0].checksum(),
            commit: 0,
            checkpoint_op: 0,
            headers: vec![entries[0].header],
        },
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
        log: LogSummary {
            op: 3,
            op_checksum: fork[0].checksum(),
            commit: 2,
            checkpoint_op: 0,
            headers: vec![log[0].header, log[1].header, fork[0].header],
        },
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
