//! Reads without a log entry (`core/read.rs`): served by the primary after a quorum answered a
//! round sent after the read arrived, at a commit point that includes every op it held then.

use super::*;

fn get(key: &str) -> Vec<u8> {
    Request::Get {
        key: key.as_bytes().to_vec(),
    }
    .encode()
}

fn read_input(client: u128, request: u64, body: Vec<u8>, now: u64) -> Input {
    Input::ClientRequest {
        now,
        client,
        request,
        body,
    }
}

/// The read replies among `effects`: `(client, request, op, reply)`.
fn read_replies(effects: &[Effect]) -> Vec<(u128, u64, u64, Reply)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Reply {
                client,
                request,
                op,
                reply,
                read: true,
            } => Some((*client, *request, *op, reply.clone())),
            _ => None,
        })
        .collect()
}

fn round_sent(effects: &[Effect]) -> Vec<(u8, u64)> {
    sends(effects)
        .into_iter()
        .filter_map(|(to, b)| match b {
            Body::Commit { round, .. } => Some((to, round)),
            _ => None,
        })
        .collect()
}

fn ack(from: u8, view: View, round: u64) -> Input {
    msg(from, Body::CommitAck { view, round })
}

/// A 3-replica cluster with `a = 1` committed everywhere.
fn cluster() -> (Net, u64) {
    let mut net = Net::new(3, config);
    net.request(1, 1, Request::Register.encode());
    let (op, _) = net.request(1, 1, set("a", "1"));
    net.tick(20);
    assert_eq!(net.replica(0).commit(), op);
    (net, op)
}

/// Goal: a read writes nothing and is answered only once a quorum answered a round sent after
/// it arrived: the primary sends round 1 at once, no WAL write, no sync, no reply; one
/// backup's answer (with the primary, a quorum of 3) releases the reply, marked a read of the
/// state after the commit point.
#[test]
fn a_read_is_served_after_a_quorum_round_with_no_log_write() {
    let (mut net, op) = cluster();
    let p = &mut net.nodes[0].replica;
    let effects = p.step(read_input(7, 1, get("a"), 0));
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::WriteEntries(_) | Effect::Sync { .. })),
        "{effects:?}"
    );
    assert_eq!(round_sent(&effects), vec![(1, 1), (2, 1)]);
    assert!(read_replies(&effects).is_empty());
    // An answer from another view, or to no round sent yet, confirms nothing.
    assert!(read_replies(&p.step(ack(1, 1, 1))).is_empty());
    assert!(read_replies(&p.step(ack(1, 0, 2))).is_empty());
    let effects = p.step(ack(2, 0, 1));
    assert_eq!(
        read_replies(&effects),
        vec![(7, 1, op, Reply::Value(Some(b"1".to_vec())))]
    );
    assert_eq!(p.op(), op, "no entry");
}

/// Goal: an answer to a round sent before a read arrived never confirms it: a read arriving
/// while round 1 is in flight waits for round 2, which is sent as soon as round 1 is
/// answered; answering round 1 serves only the first read.
#[test]
fn an_earlier_round_does_not_confirm_a_later_read() {
    let (mut net, _) = cluster();
    let p = &mut net.nodes[0].replica;
    assert_eq!(
        round_sent(&p.step(read_input(7, 1, get("a"), 0))),
        [(1, 1), (2, 1)]
    );
    // The second read arrives with round 1 in flight: no new round yet.
    assert!(round_sent(&p.step(read_input(8, 1, get("a"), 0))).is_empty());
    let effects = p.step(ack(1, 0, 1));
    let served: Vec<u128> = read_replies(&effects).iter().map(|r| r.0).collect();
    assert_eq!(served, vec![7]);
    assert_eq!(round_sent(&effects), vec![(1, 2), (2, 2)]);
    // A repeated answer to round 1 still serves nothing.
    assert!(read_replies(&p.step(ack(2, 0, 1))).is_empty());
    let served: Vec<u128> = read_replies(&p.step(ack(2, 0, 2)))
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(served, vec![8]);
}

/// Goal: a read waits for every op the primary held when it arrived — here a write prepared
/// and not yet committed — and then reads a state that includes it.
#[test]
fn a_read_waits_for_the_ops_held_when_it_arrived() {
    let (mut net, op) = cluster();
    let p = &mut net.nodes[0].replica;
    let effects = p.step(read_input(1, 100, set("a", "2"), 0));
    assert!(effects.iter().any(|e| matches!(e, Effect::WriteEntries(_))));
    p.step(Input::Synced { op: op + 1 });
    p.step(read_input(7, 1, get("a"), 0));
    assert!(
        read_replies(&p.step(ack(1, 0, 1))).is_empty(),
        "op {} not committed",
        op + 1
    );
    let checksum = p.entry(op + 1).expect("prepared").checksum();
    let effects = p.step(msg(
        1,
        Body::PrepareOk {
            view: 0,
            op: op + 1,
            checksum,
        },
    ));
    assert_eq!(
        read_replies(&effects),
        vec![(7, 1, op + 1, Reply::Value(Some(b"2".to_vec())))]
    );
}

/// Goal: a primary that leaves its view redirects the reads waiting for their round (it can
/// no longer confirm them).
#[test]
fn a_primary_leaving_its_view_redirects_waiting_reads() {
    let (mut net, _) = cluster();
    let p = &mut net.nodes[0].replica;
    p.step(read_input(7, 1, get("a"), 0));
    let effects = p.step(msg(1, Body::StartViewChange { view: 1 }));
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::Redirect {
                client: 7,
                request: 1,
                primary: 1,
                ..
            }
        )),
        "{effects:?}"
    );
    assert!(read_replies(&p.step(ack(1, 0, 1))).is_empty());
}

/// Goal: what the state's clock decides goes through the log: `TTL`, and a read of a key whose
/// expiry the wall clock has passed (the next entry expires it), while a key not yet due is
/// read without an entry.
#[test]
fn ttl_and_due_keys_go_through_the_log() {
    let mut net = Net::new(3, config);
    net.request(1, 1, Request::Register.encode());
    let expiring = Request::SetWith {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        condition: crate::kv::SetCondition::Always,
        expiry: crate::kv::SetExpiry::At(5_000),
        get: false,
    };
    net.request(1, 1, expiring.encode());
    net.tick(20);
    let p = &mut net.nodes[0].replica;
    let writes = |effects: &[Effect]| effects.iter().any(|e| matches!(e, Effect::WriteEntries(_)));
    assert!(!writes(&p.step(read_input(7, 1, get("k"), 4_999))));
    let ttl = Request::Ttl {
        key: b"k".to_vec(),
        kind: crate::kv::TtlKind::Millis,
    };
    assert!(writes(&p.step(read_input(8, 1, ttl.encode(), 4_999))));
    assert!(writes(&p.step(read_input(9, 1, get("k"), 5_000))));
}

/// Goal: a single replica is its own quorum: a read is served in the step it arrives.
#[test]
fn a_single_replica_serves_a_read_at_once() {
    let mut net = Net::new(1, config);
    net.request(1, 1, Request::Register.encode());
    let (op, _) = net.request(1, 1, set("a", "1"));
    let p = &mut net.nodes[0].replica;
    assert_eq!(
        read_replies(&p.step(read_input(7, 1, get("a"), 0))),
        vec![(7, 1, op, Reply::Value(Some(b"1".to_vec())))]
    );
}

/// Goal: the reads waiting at the primary are bounded: past `READS_MAX`, a read is redirected
/// to this same primary (its client retries) instead of held.
#[test]
fn waiting_reads_are_bounded() {
    let (mut net, _) = cluster();
    let p = &mut net.nodes[0].replica;
    let max = crate::core::read::READS_MAX as u128;
    for client in 0..max {
        let effects = p.step(read_input(100 + client, 1, get("a"), 0));
        assert!(!effects.iter().any(|e| matches!(e, Effect::Redirect { .. })));
    }
    let effects = p.step(read_input(100 + max, 1, get("a"), 0));
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::Redirect {
                primary: 0,
                ordered: false,
                ..
            }
        )),
        "{effects:?}"
    );
    // Round 1 was sent for the first; the others, arriving while it was in flight, are all
    // served by the answer to round 2.
    assert_eq!(read_replies(&p.step(ack(1, 0, 1))).len(), 1);
    assert_eq!(read_replies(&p.step(ack(1, 0, 2))).len(), max as usize - 1);
}
