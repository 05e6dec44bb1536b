//! Messages (`core/message.rs`, docs/protocol.md "Messages"): every body round-trips, decoding
//! is total, and the replica drops what is malformed, misaddressed or out of range.

use super::nack::short_dvc;
use super::*;

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
            round: 4,
        },
        Body::CommitAck { view: 5, round: 6 },
        Body::StartViewChange { view: 4 },
        Body::DoViewChange {
            view: 4,
            vote: Vote {
                log_view: 3,
                log: LogSummary {
                    op: 2,
                    op_checksum: headers[1].checksum,
                    commit: 1,
                    checkpoint_op: 0,
                    headers: headers.clone(),
                },
                bodies: vec![true, false],
                held_max: 2,
                never_written: vec![],
            },
        },
        Body::StartView {
            view: 4,
            log: LogSummary {
                op: 2,
                op_checksum: headers[1].checksum,
                commit: 1,
                checkpoint_op: 0,
                headers: headers.clone(),
            },
        },
        Body::RequestStartView { view: 4 },
        Body::Recovery { nonce: 99 },
        Body::RecoveryResponse {
            view: 4,
            nonce: 99,
            log: LogSummary {
                op: 2,
                op_checksum: headers[1].checksum,
                commit: 1,
                checkpoint_op: 0,
                headers: headers.clone(),
            },
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
    assert_eq!(messages.len(), 15);
    for m in messages {
        assert_eq!(Message::decode(&m.encode()), Ok(m));
    }
}

/// Goal: `encode_into` appends exactly `encode`'s bytes after what the buffer held (a frame's
/// header room, `node/peers.rs`), and the size hint is exact for a message carrying an entry or
/// a snapshot (the frame is then allocated once).
#[test]
fn message_encode_into_appends_encode() {
    for m in every_message() {
        let mut buf = vec![0xAA; 12];
        m.encode_into(&mut buf);
        assert_eq!(&buf[..12], &[0xAA; 12]);
        assert_eq!(&buf[12..], &m.encode()[..]);
        if matches!(m.body, Body::Prepare { .. } | Body::StateTransfer { .. }) {
            assert_eq!(m.encoded_len_hint(), m.encode().len(), "{m:?}");
        }
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

/// Goal: messages carrying views or op numbers near overflow are dropped, and a replica fed
/// every message type with extreme field values never panics.
#[test]
fn message_extreme_numbers_are_dropped_without_panic() {
    let mut r = Replica::new(config(3, 1), DurableState::formatted());
    assert_eq!(
        r.step(msg(0, Body::StartViewChange { view: u64::MAX })),
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

/// Goal: one message cannot move a replica's view more than `VIEW_JUMP_MAX` ahead (issue 13:
/// a single StartViewChange naming a view near the limit used to leave no view a cluster
/// could ever move to). A message naming a view further ahead starts a view change to the
/// furthest view allowed (not to its own view, and its sender is not counted); a message
/// within the bound is followed as before; from there timeouts move the view on by one.
/// Clamping rather than dropping lets a replica left far ahead by earlier jumps be followed
/// (VOPR seed 764598860028: dropping excluded it for good).
#[test]
fn a_message_may_not_jump_the_view_past_the_bound() {
    use super::replica::VIEW_JUMP_MAX;
    let mut r = Replica::new(config(3, 1), DurableState::formatted());
    let effects = r.step(msg(0, Body::StartViewChange { view: 1 << 62 }));
    assert_eq!(
        r.view(),
        VIEW_JUMP_MAX,
        "clamped to the furthest view allowed"
    );
    assert!(sends(&effects).iter().all(|(_, b)| *b
        == Body::StartViewChange {
            view: VIEW_JUMP_MAX
        }));
    assert!(!sends(&effects).is_empty());

    let effects = r.step(msg(
        2,
        Body::StartViewChange {
            view: 2 * VIEW_JUMP_MAX,
        },
    ));
    assert_eq!(
        r.view(),
        2 * VIEW_JUMP_MAX,
        "exactly the bound ahead: followed"
    );
    assert!(sends(&effects).iter().any(|(_, b)| *b
        == Body::StartViewChange {
            view: 2 * VIEW_JUMP_MAX
        }));
    // The next view change (its timeout) moves on by one: nothing is wedged.
    for _ in 0..200 {
        r.step(Input::Tick);
        if r.view() > 2 * VIEW_JUMP_MAX {
            break;
        }
    }
    assert_eq!(r.view(), 2 * VIEW_JUMP_MAX + 1);
}
