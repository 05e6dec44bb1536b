//! Client requests and the client table (VRR §4.1, at-most-once via the client table):
//! redirects from backups, cached replies to retries.

use super::*;

/// Goal: a request reaching a backup is redirected to the primary.
#[test]
fn client_request_at_backup_redirects() {
    let mut b = Replica::new(config(3, 2), DurableState::formatted());
    assert_eq!(
        b.step(Input::ClientRequest {
            now: 0,
            client: 5,
            request: 1,
            body: set("a", "1")
        }),
        vec![Effect::Redirect {
            client: 5,
            request: 1,
            primary: 0,
            ordered: false
        }]
    );
}

/// Goal: exactly-once: a retry of the last request returns the cached reply without
/// re-executing (INCRBY applied once); an older request is ignored.
#[test]
fn client_table_retry_returns_cached_reply_incrby_once() {
    let mut net = Net::new(3, config);
    let incr = incr("n", 5);
    // The session numbers above its registration's op (1): its first request is 2.
    assert_eq!(net.register(1), 1);
    assert_eq!(net.request(1, 1, incr.clone()), (2, Reply::Integer(5)));
    let before = net.replies.len();
    net.input(
        0,
        Input::ClientRequest {
            now: 0,
            client: 1,
            request: 2,
            body: incr.clone(),
        },
    );
    assert_eq!(net.replies.len(), before + 1);
    assert_eq!(net.replies.last().unwrap().3, 2);
    assert_eq!(net.replies.last().unwrap().4, Reply::Integer(5));
    assert_eq!(net.replica(0).op(), 2, "a retry is not re-prepared");
    assert_eq!(net.request(1, 2, incr.clone()), (3, Reply::Integer(10)));
    let before = net.replies.len();
    let effects = net.nodes[0].replica.step(Input::ClientRequest {
        now: 0,
        client: 1,
        request: 2,
        body: incr,
    });
    assert_eq!(effects, vec![]);
    assert_eq!(net.replies.len(), before);
    net.tick(15);
    assert_every_replica_holds(&net, b"n", b"10");
}

/// Every replica of `net` holds `value` at `key`.
fn assert_every_replica_holds(net: &Net, key: &[u8], value: &[u8]) {
    for r in 0..net.nodes.len() as u8 {
        assert_eq!(net.replica(r).kv().get(key), Some(value), "replica {r}");
    }
}

/// A client table of one entry: each registration evicts the other client.
fn one_entry_table(replica_count: u8, replica: u8) -> Config {
    let mut c = config(replica_count, replica);
    c.clients_max = 1;
    c
}

fn slot_sized(replica_count: u8, replica: u8) -> Config {
    let mut c = config(replica_count, replica);
    c.body_size_max = 100;
    c
}

/// A SET request body of exactly `size` bytes.
fn set_of_size(size: usize) -> Vec<u8> {
    let overhead = set("k", "").len();
    let body = set("k", &"x".repeat(size - overhead));
    assert_eq!(body.len(), size);
    body
}

/// Goal: a request larger than a WAL slot's body is never prepared (storage would refuse to
/// write it and stop the node: a 100 KB SET stopped the primary, then the next one); one
/// that fits exactly is.
#[test]
fn a_request_larger_than_a_slot_is_never_prepared() {
    let mut net = Net::new(3, slot_sized);
    let effects = net.nodes[0].replica.step(Input::ClientRequest {
        now: 0,
        client: 1,
        request: 1,
        body: set_of_size(101),
    });
    assert_eq!(effects, vec![]);
    assert_eq!(net.replica(0).op(), 0);
    assert_eq!(net.register(1), 1);
    assert_eq!(net.request(1, 2, set_of_size(100)), (2, Reply::Ok));
}

/// Goal: a Prepare whose entry does not fit this replica's WAL slot (a peer with a larger
/// geometry, or a buggy one) is dropped, not written; one that fits is written.
#[test]
fn a_prepare_larger_than_a_slot_is_dropped() {
    let prepare = |size: usize| {
        let mut b = Replica::new(slot_sized(3, 1), DurableState::formatted());
        let root = b.entry(0).expect("root").header.checksum;
        let entry = Entry::new(
            EntryFields {
                cluster: CLUSTER,
                replica: 0,
                view: 0,
                op: 1,
                commit: 0,
                parent: root,
                client: 9,
                request: 1,
                operation: Operation::Request,
                timestamp: 0,
            },
            set_of_size(size),
        );
        let effects = b.step(msg(
            0,
            Body::Prepare {
                view: 0,
                commit: 0,
                entry,
            },
        ));
        let written = effects.iter().any(|e| matches!(e, Effect::WriteEntries(_)));
        (written, b.op())
    };
    assert_eq!(prepare(100), (true, 1));
    assert_eq!(prepare(101), (false, 0));
}

/// Goal (issue 11): exactly once across evictions. With a one-entry client table, client 1's
/// INCRBY executes, client 2's registration evicts client 1, and client 1's retry of the same
/// request is answered `session evicted` without executing (before: executed again, the
/// counter went to 2); after registering again, a new request executes once.
#[test]
fn an_evicted_clients_retry_is_answered_evicted_not_executed() {
    let mut net = Net::new(3, one_entry_table);
    let incr = incr("n", 1);
    assert_eq!(
        net.request(1, 7, incr.clone()),
        (1, Reply::Error(kv::SESSION_EVICTED.into())),
        "never registered"
    );
    assert_eq!(net.register(1), 2);
    assert_eq!(net.request(1, 1, incr.clone()), (3, Reply::Integer(1)));
    assert_eq!(net.register(2), 4);
    // Client 1 never saw its reply and retries request 1.
    net.replies.clear();
    assert_eq!(
        net.request(1, 1, incr.clone()),
        (5, Reply::Error(kv::SESSION_EVICTED.into()))
    );
    net.tick(15);
    assert_every_replica_holds(&net, b"n", b"1");
    assert_eq!(
        net.request(1, 2, Request::Register.encode()),
        (6, Reply::Ok)
    );
    assert_eq!(net.request(1, 3, incr), (7, Reply::Integer(2)));
}

/// Goal: a late copy of an old registration, delivered after its session was evicted, re-opens
/// the session above the old one's numbers: a late copy of a request the old session executed
/// is stale, never executed again (docs/protocol.md, "Sessions"); a retry of the registration
/// itself gets its reply.
#[test]
fn a_late_registration_does_not_let_an_old_request_execute_again() {
    let mut net = Net::new(3, one_entry_table);
    let incr = incr("n", 1);
    let register = Request::Register.encode();
    // Client 1's session: registration numbered 1 (op 1), then INCRBY numbered 2 (op 2).
    assert_eq!(net.request_numbered(1, 1, register.clone()), (1, Reply::Ok));
    assert_eq!(
        net.request_numbered(1, 2, incr.clone()),
        (2, Reply::Integer(1))
    );
    assert_eq!(net.register(2), 3, "client 2 evicts client 1");
    // The late copies: the old registration re-opens client 1 at its own op (4)…
    net.replies.clear();
    assert_eq!(net.request_numbered(1, 1, register.clone()), (4, Reply::Ok));
    // …and a retry of it is answered from the table, not executed.
    net.replies.clear();
    assert_eq!(net.request_numbered(1, 1, register), (4, Reply::Ok));
    // The old INCRBY (2 ≤ 4) is stale: nothing is prepared, nothing replies.
    let effects = net.nodes[0].replica.step(Input::ClientRequest {
        now: 0,
        client: 1,
        request: 2,
        body: incr.clone(),
    });
    assert_eq!(effects, vec![]);
    net.tick(15);
    assert_every_replica_holds(&net, b"n", b"1");
    // The session goes on above its registration's op.
    assert_eq!(net.request_numbered(1, 5, incr), (5, Reply::Integer(2)));
}

/// A pipeline of one uncommitted op.
fn pipeline_of_one(replica_count: u8, replica: u8) -> Config {
    let mut c = config(replica_count, replica);
    c.pipeline_max = 1;
    c
}

fn has_reply(net: &Net, client: u128, request: u64) -> bool {
    net.replies
        .iter()
        .any(|(_, c, q, _, _)| *c == client && *q == request)
}

fn prepared_requests(effects: &[Effect]) -> usize {
    sends(effects)
        .iter()
        .filter(|(_, b)| matches!(b, Body::Prepare { .. }))
        .count()
}

/// Goal: a request that arrives while the primary's pipeline is full is held, not dropped:
/// it is ordered — and answered — once the op ahead of it commits, without the client
/// sending it again (before: dropped, so the client waited out its timeout and retried).
#[test]
fn a_request_beyond_a_full_pipeline_is_held_and_ordered_when_room_appears() {
    let mut net = Net::new(3, pipeline_of_one);
    let base1 = net.register(1);
    let base2 = net.register(2);
    // The backups stop answering: client 1's request stays uncommitted.
    net.blocked.extend([1, 2]);
    net.input(
        0,
        Input::ClientRequest {
            now: 0,
            client: 1,
            request: base1 + 1,
            body: set("a", "1"),
        },
    );
    let op = net.replica(0).op();
    let effects = net.nodes[0].replica.step(Input::ClientRequest {
        now: 0,
        client: 2,
        request: base2 + 1,
        body: set("b", "2"),
    });
    assert_eq!(prepared_requests(&effects), 0, "the pipeline is full");
    assert_eq!(net.replica(0).op(), op);
    assert!(effects
        .iter()
        .all(|e| !matches!(e, Effect::Redirect { .. })));
    net.blocked.clear();
    net.tick(60);
    assert!(has_reply(&net, 1, base1 + 1));
    assert!(
        has_reply(&net, 2, base2 + 1),
        "the held request was ordered and answered without a resend"
    );
    assert_eq!(net.replica(0).kv().get(b"b"), Some(&b"2"[..]));
}

/// Goal: the primary-elect holds a request that reaches it during its view change and
/// orders it once the view starts (before: it redirected the client to itself, and a client
/// following redirects asked again and again until the view started).
#[test]
fn a_primary_elect_holds_requests_until_its_view_starts() {
    let mut net = Net::new(3, config);
    let base = net.register(1);
    net.crash(0);
    net.blocked.insert(0);
    // Replica 1, primary of view 1, cannot finish the view change before its superblock is
    // durable.
    net.nodes[1].hold_superblock = true;
    net.tick(60);
    assert_eq!(net.replica(1).status(), Status::ViewChange);
    let effects = net.nodes[1].replica.step(Input::ClientRequest {
        now: 0,
        client: 1,
        request: base + 1,
        body: set("a", "1"),
    });
    assert!(
        effects
            .iter()
            .all(|e| !matches!(e, Effect::Redirect { .. })),
        "held, not redirected: {effects:?}"
    );
    net.release_superblock(1);
    net.tick(30);
    assert!(net.replica(1).is_primary());
    assert!(
        has_reply(&net, 1, base + 1),
        "ordered once the view started"
    );
}

/// Primary 0, cut off from the others, has ordered client 1's INCRBY (request `base + 1`),
/// which cannot commit. Returns the net and the client's registration op (`base`).
fn cut_off_primary_with_an_uncommitted_incr() -> (Net, u64) {
    let mut net = Net::new(3, config);
    let base = net.register(1);
    net.blocked.insert(0);
    net.input(
        0,
        Input::ClientRequest {
            now: 0,
            client: 1,
            request: base + 1,
            body: incr("n", 1),
        },
    );
    (net, base)
}

/// Goal: a primary that learns of a newer view redirects the requests it ordered and did not
/// commit, so their clients retry at the new primary at once (before: they waited for a
/// reply that never came); the retry there commits exactly once.
#[test]
fn a_deposed_primary_redirects_its_uncommitted_requests() {
    let (mut net, base) = cut_off_primary_with_an_uncommitted_incr();
    net.tick(80);
    let p = (1..3u8)
        .find(|&r| net.replica(r).is_primary())
        .expect("a new primary among the others");
    net.log.clear();
    net.blocked.clear();
    net.tick(40);
    let redirected = net.log.iter().any(|(r, e)| {
        *r == 0
            && *e
                == Effect::Redirect {
                    client: 1,
                    request: base + 1,
                    primary: p,
                    ordered: true,
                }
    });
    assert!(
        redirected,
        "replica 0 redirected its uncommitted request to {p}"
    );
    let (_, reply) = net.request(1, 1, incr("n", 1));
    assert_eq!(reply, Reply::Integer(1), "executed once");
}

/// Goal: a primary that hears from no quorum for a view-change timeout stops serving: the
/// request it ordered and cannot commit, and every new one, are redirected to the next view's
/// primary (which the others elect meanwhile) — without raising its own view, so the heal
/// forces no view change on the others. Once it hears a quorum again it serves again.
#[test]
fn a_primary_that_hears_no_quorum_stops_serving_and_redirects() {
    let (mut net, base) = cut_off_primary_with_an_uncommitted_incr();
    net.log.clear();
    net.tick(40);
    assert!(
        !net.log
            .iter()
            .any(|(r, e)| *r == 0 && matches!(e, Effect::Redirect { .. })),
        "still serving within the timeout"
    );
    net.tick(20);
    let redirect = Effect::Redirect {
        client: 1,
        request: base + 1,
        primary: 1,
        ordered: true,
    };
    assert!(net.log.contains(&(0, redirect)), "its uncommitted request");
    let effects = net.nodes[0].replica.step(Input::ClientRequest {
        now: 0,
        client: 2,
        request: 1,
        body: set("a", "1"),
    });
    assert_eq!(
        effects,
        vec![Effect::Redirect {
            client: 2,
            request: 1,
            primary: 1,
            ordered: false
        }]
    );
    // A retry of the request it ordered is redirected as ordered: it may still take effect.
    let effects = net.nodes[0].replica.step(Input::ClientRequest {
        now: 0,
        client: 1,
        request: base + 1,
        body: incr("n", 1),
    });
    assert_eq!(
        effects,
        vec![Effect::Redirect {
            client: 1,
            request: base + 1,
            primary: 1,
            ordered: true
        }]
    );
    assert_eq!(net.replica(0).view(), 0, "it did not raise its view");
    assert!(net.replica(0).is_primary());
}

/// Goal: backups answer heartbeats (`CommitAck`), so an idle cluster keeps serving: after 50
/// view-change timeouts without a client request, the primary still orders one (without the
/// answers it would count no quorum and redirect).
#[test]
fn an_idle_cluster_keeps_serving() {
    let mut net = Net::new(3, config);
    let base = net.register(1);
    net.tick(50 * 50);
    assert_eq!(net.replica(0).view(), 0);
    let effects = net.nodes[0].replica.step(Input::ClientRequest {
        now: 0,
        client: 1,
        request: base + 1,
        body: set("a", "1"),
    });
    assert_eq!(
        prepared_requests(&effects),
        2,
        "ordered and sent to both backups"
    );
}
