//! Client requests and the client table (VRR §4.1, at-most-once via the client table):
//! redirects from backups, cached replies to retries.

use super::*;

/// Goal: a request reaching a backup is redirected to the primary.
#[test]
fn client_request_at_backup_redirects() {
    let mut b = Replica::new(config(3, 2), DurableState::formatted());
    assert_eq!(
        b.step(Input::ClientRequest {
            client: 5,
            request: 1,
            body: set("a", "1")
        }),
        vec![Effect::Redirect {
            client: 5,
            request: 1,
            primary: 0
        }]
    );
}

/// Goal: exactly-once: a retry of the last request returns the cached reply without
/// re-executing (INCRBY applied once); an older request is ignored.
#[test]
fn client_table_retry_returns_cached_reply_incrby_once() {
    let mut net = Net::new(3, config);
    let incr = Request::IncrBy {
        key: b"n".to_vec(),
        delta: 5,
    }
    .encode();
    assert_eq!(net.request(1, 1, incr.clone()), (1, Reply::Integer(5)));
    let before = net.replies.len();
    net.input(
        0,
        Input::ClientRequest {
            client: 1,
            request: 1,
            body: incr.clone(),
        },
    );
    assert_eq!(net.replies.len(), before + 1);
    assert_eq!(net.replies.last().unwrap().3, 1);
    assert_eq!(net.replies.last().unwrap().4, Reply::Integer(5));
    assert_eq!(net.replica(0).op(), 1, "a retry is not re-prepared");
    assert_eq!(net.request(1, 2, incr.clone()), (2, Reply::Integer(10)));
    let before = net.replies.len();
    let effects = net.nodes[0].replica.step(Input::ClientRequest {
        client: 1,
        request: 1,
        body: incr,
    });
    assert_eq!(effects, vec![]);
    assert_eq!(net.replies.len(), before);
    net.tick(15);
    for r in 0..3 {
        assert_eq!(net.replica(r).kv().get(b"n"), Some(&b"10"[..]));
    }
}
