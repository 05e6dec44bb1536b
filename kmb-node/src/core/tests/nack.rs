//! Nacks (TigerBeetle's DVC nacks, Protocol-Aware Recovery): truncating an uncommitted op
//! whose only copies are faulty once enough DoViewChange senders prove they never held it.

use super::*;

/// Primary-elect 1 of view 4 after a restart: entries 1..=4 of view 3 on disk, op 3 faulty
/// (its only copy). Returns the replica (its own DoViewChange recorded after replica 0's
/// StartViewChange) and the log.
pub(super) fn nack_primary_elect() -> (Replica, Vec<Entry>) {
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
pub(super) fn short_dvc(log: &[Entry]) -> Body {
    Body::DoViewChange {
        view: 4,
        vote: Vote {
            log_view: 2,
            log: LogSummary {
                op: 2,
                op_checksum: log[1].checksum(),
                commit: 0,
                checkpoint_op: 0,
                headers: vec![log[0].header, log[1].header],
            },
            bodies: vec![true, true],
            held_max: 2,
            never_written: vec![],
        },
    }
}

/// A DoViewChange for view 4 from a replica of `log_view` whose log holds `log`'s ops 1 and 2
/// and then `other` at op 3 (with its body if `body`).
fn dvc_with_other_op_3(log: &[Entry], other: &Entry, log_view: View, body: bool) -> Body {
    Body::DoViewChange {
        view: 4,
        vote: Vote {
            log_view,
            log: LogSummary {
                op: 3,
                op_checksum: other.checksum(),
                commit: 0,
                checkpoint_op: 0,
                headers: vec![log[0].header, log[1].header, other.header],
            },
            bodies: vec![true, true, body],
            held_max: 3,
            never_written: vec![],
        },
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
    let other_entry = dvc_with_other_op_3(&log, &fork[0], 2, true);
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
            log: LogSummary {
                op: 2,
                op_checksum: log[1].checksum(),
                commit: 0,
                checkpoint_op: 0,
                headers: vec![log[0].header, log[1].header],
            },
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
        vote: Vote {
            log_view: 3,
            log: LogSummary {
                op: 4,
                op_checksum: log[3].checksum(),
                commit: 0,
                checkpoint_op: 0,
                headers: vec![log[0].header, log[1].header, log[3].header],
            },
            bodies: vec![true, true, true],
            held_max: 4,
            never_written: vec![],
        },
    };
    let header_only = Body::DoViewChange {
        view: 4,
        vote: Vote {
            log_view: 3,
            log: LogSummary {
                op: 4,
                op_checksum: log[3].checksum(),
                commit: 0,
                checkpoint_op: 0,
                headers: log.iter().map(|e| e.header).collect(),
            },
            bodies: vec![true, true, false, true],
            held_max: 4,
            never_written: vec![],
        },
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
        vote: Vote {
            log_view: 3,
            log: LogSummary {
                op: 4,
                op_checksum: log[3].checksum(),
                commit: 0,
                checkpoint_op: 0,
                headers: vec![log[0].header, log[1].header, log[3].header],
            },
            bodies: vec![true, true, true],
            held_max: 4,
            never_written: vec![3],
        },
    };
    let above_held = Body::DoViewChange {
        view: 4,
        vote: Vote {
            log_view: 3,
            log: LogSummary {
                op: 4,
                op_checksum: log[3].checksum(),
                commit: 0,
                checkpoint_op: 0,
                headers: log.iter().map(|e| e.header).collect(),
            },
            bodies: vec![true, true, false, false],
            held_max: 2,
            never_written: vec![],
        },
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

/// Primary-elect 1 of view 4 (`log_view` 3) after a restart with `log` (ops 1..=4 of view 3)
/// on disk but op 3 faulty, storage proving it never wrote op 3 there; replica 0's
/// StartViewChange received.
fn elect_with_op_3_never_written(log: &[Entry]) -> Replica {
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
    r
}

/// Goal (issue 17): the primary-elect's own never-written hole counts as its nack: replica 1
/// restarted with op 3 faulty and storage proving it never wrote op 3 there; with replica 0's
/// short log (2 nacks) it truncates after op 2 without waiting for replica 2.
#[test]
fn nack_own_never_written_hole_counts() {
    let root = Entry::root(CLUSTER).checksum();
    let log = chain(root, 1, 4, 3, "k");
    let mut r = elect_with_op_3_never_written(&log);
    let effects = r.step(msg(0, short_dvc(&log)));
    assert_eq!(
        effects,
        vec![Effect::TruncateLogAfter(2), Effect::Sync { op: 2 }]
    );
}

/// Goal (issue 17, seed 1063603349953): the chosen log has holes at ops 4–6 between two
/// entries of view 3 (ops 3 and 7); op 4 is held intact only by replica 0, whose `log_view` is
/// older, and no replica holds ops 5 or 6. Op 4's header is adopted from replica 0's DVC (the
/// canonical entry there is of view 3, and view 3 prepared op 4 once), so its body is asked
/// for; op 5's checksum stays unknown, and the two proofs that hold for any entry — replica
/// 0's and replica 2's never-written slot 5 — are enough to truncate after op 4. Before, the
/// primary-elect knew neither op 4's checksum nor op 5's, could repair nothing and nack
/// nothing, and the view change never completed.
#[test]
fn nack_adopts_same_view_header_and_truncates_past_an_unknown_op_exact_effects() {
    let root = Entry::root(CLUSTER).checksum();
    let log = chain(root, 1, 7, 3, "k");
    let durable = DurableState {
        view: 4,
        log_view: 3,
        checkpoint: None,
        checkpoint_faulty: None,
        entries: vec![
            log[0].clone(),
            log[1].clone(),
            log[2].clone(),
            log[6].clone(),
        ],
        faulty: vec![4, 5, 6],
        never_written: vec![],
        restarted: true,
    };
    let mut r = Replica::new(config(3, 1), durable);
    r.poll_effects();
    r.step(msg(0, Body::StartViewChange { view: 4 }));
    let dvc = |headers: Vec<Header>, never_written: Vec<u64>| Body::DoViewChange {
        view: 4,
        vote: Vote {
            log_view: 2,
            log: LogSummary {
                op: 7,
                op_checksum: log[6].checksum(),
                commit: 0,
                checkpoint_op: 0,
                headers: headers.clone(),
            },
            bodies: vec![true; headers.len()],
            held_max: 7,
            never_written,
        },
    };
    let h = |op: usize| log[op - 1].header;
    let effects = r.step(msg(0, dvc(vec![h(1), h(2), h(3), h(4), h(7)], vec![5, 6])));
    let asked: Vec<(u8, Body)> = sends(&effects)
        .into_iter()
        .filter(|(_, b)| matches!(b, Body::RequestPrepare { .. }))
        .collect();
    assert!(
        asked.contains(&(
            0,
            Body::RequestPrepare {
                op: 4,
                checksum: log[3].checksum()
            }
        )),
        "op 4's body is asked of replica 0: {effects:?}"
    );
    assert!(!effects.contains(&Effect::TruncateLogAfter(4)));
    assert_eq!(
        (r.op(), r.status()),
        (7, Status::ViewChange),
        "1 nack of op 5: wait"
    );

    let effects = r.step(msg(2, dvc(vec![h(1), h(2), h(3), h(7)], vec![5, 6])));
    assert!(
        effects.contains(&Effect::TruncateLogAfter(4)),
        "2 nacks of op 5 (checksum unknown): truncated after op 4: {effects:?}"
    );
    assert_eq!((r.op(), r.status()), (4, Status::ViewChange));

    // Replica 0's copy of op 4 arrives; the view change completes with the log ending there.
    let effects = r.step(msg(
        0,
        Body::Prepare {
            view: 4,
            commit: 0,
            entry: log[3].clone(),
        },
    ));
    assert_eq!(effects, vec![Effect::WriteEntries(vec![log[3].clone()])]);
    // The truncation's sync completes, then the repaired entry's.
    assert_eq!(
        r.step(Input::Synced { op: 4 }),
        vec![Effect::Sync { op: 4 }]
    );
    assert_eq!(
        r.step(Input::Synced { op: 4 }),
        vec![Effect::WriteSuperblock {
            view: 4,
            log_view: 4
        }]
    );
    r.step(Input::SuperblockSynced {
        view: 4,
        log_view: 4,
    });
    assert_eq!((r.status(), r.op()), (Status::Normal, 4));
    assert!(r.is_primary());
}

/// Goal (issue 15, VOPR seed 779786877473 on the I/O branch): a DVC sender whose durable
/// `log_view` is older than the view of the chosen entry at op `X` never acknowledged that
/// entry (a replica acknowledges only while its durable `log_view` is its view, which is at
/// least the view of every entry it acknowledges, and `log_view` never decreases), so it
/// nacks `X` even though it holds an older view's header there without a body. Replica 1
/// (primary-elect of view 4, `log_view` 3) restarted with op 3 of view 3 never written;
/// replica 0's log, of `log_view` 2, holds a view-2 header at op 3 whose body it lacks. Before
/// this rule that was one nack short and the view change waited for replica 2 forever; with
/// it, 2 nacks truncate after op 2. The same DVC with `log_view` 3 (it may have acknowledged
/// the view-3 entry) is no nack.
#[test]
fn nack_from_a_sender_whose_log_view_is_older_than_the_entry() {
    let root = Entry::root(CLUSTER).checksum();
    let log = chain(root, 1, 4, 3, "k");
    let older = chain(log[1].checksum(), 3, 3, 2, "o");
    for (log_view, truncates) in [(2, true), (3, false)] {
        let mut r = elect_with_op_3_never_written(&log);
        let effects = r.step(msg(
            0,
            dvc_with_other_op_3(&log, &older[0], log_view, false),
        ));
        let truncated = effects.contains(&Effect::TruncateLogAfter(2));
        assert_eq!(truncated, truncates, "log_view {log_view}: {effects:?}");
        assert_eq!(r.op(), if truncates { 2 } else { 4 });
    }
}
