//! Repair (Protocol-Aware Recovery): holes and faulty entries repaired from peers, each
//! accepted only if the hash chain vouches for it.

use super::*;

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
