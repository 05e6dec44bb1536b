//! Transactions (multi-key, atomic) and expiry (the timed model with ticks).

use super::kv_model::{get, s, set, sv};
use crate::kv::{check, parse_ndjson, write_ndjson, KvInput, KvOp, KvOutput, KvReply, TimedStore};
use crate::{CheckOptions, Operation, Verdict};

fn val(v: Option<&str>) -> KvOutput {
    KvOutput::Value(v.map(sv))
}

fn op(input: KvInput, output: KvOutput, call: u64, ret: u64, n: u64) -> KvOp {
    Operation {
        client: call,
        input,
        output: Some(KvReply {
            output,
            op_number: Some(n),
            read: false,
        }),
        call,
        ret,
    }
}

fn mset(pairs: &[(&str, &str)]) -> KvInput {
    KvInput::Txn {
        ops: pairs.iter().map(|(k, v)| set(k, v)).collect(),
    }
}

fn mget(keys: &[&str]) -> KvInput {
    KvInput::Txn {
        ops: keys.iter().map(|k| get(k)).collect(),
    }
}

fn results(outs: Vec<KvOutput>) -> KvOutput {
    KvOutput::Results(outs)
}

/// An atomic two-key write read back whole passes; a read that sees half of it (the new
/// `a` with the old `b`) is caught — by the op-number replay, though each key on its own
/// is linearizable.
#[test]
fn a_torn_multi_key_write_is_caught_through_the_op_order() {
    let base = vec![
        op(
            mset(&[("a", "0"), ("b", "0")]),
            results(vec![KvOutput::Ok, KvOutput::Ok]),
            0,
            1,
            1,
        ),
        op(
            mset(&[("a", "1"), ("b", "1")]),
            results(vec![KvOutput::Ok, KvOutput::Ok]),
            2,
            10,
            3,
        ),
    ];
    let mut good = base.clone();
    good.push(op(
        mget(&["a", "b"]),
        results(vec![val(Some("1")), val(Some("1"))]),
        4,
        12,
        4,
    ));
    assert_eq!(
        check(&good, &CheckOptions::default()),
        Verdict::Linearizable
    );
    let mut torn = base.clone();
    // Op 2: a read ordered before the write, seeing a's new value and b's old one.
    torn.push(op(
        mget(&["a", "b"]),
        results(vec![val(Some("1")), val(Some("0"))]),
        4,
        12,
        2,
    ));
    let Verdict::NotLinearizable(f) = check(&torn, &CheckOptions::default()) else {
        panic!("a torn transaction passed");
    };
    assert!(
        f.reason.contains("op number 2") || f.partition == "a",
        "{f:?}"
    );
    // Without op numbers the per-key projections alone: still caught on key a.
    let strip = |mut h: Vec<KvOp>| {
        for o in &mut h {
            if let Some(r) = &mut o.output {
                r.op_number = None;
            }
        }
        h
    };
    let mut torn_seq = strip(base);
    // The read starts after the write returned, yet sees b's old value.
    torn_seq.push(Operation {
        client: 9,
        input: mget(&["a", "b"]),
        output: Some(KvReply {
            output: results(vec![val(Some("1")), val(Some("0"))]),
            op_number: None,
            read: false,
        }),
        call: 11,
        ret: 12,
    });
    assert!(matches!(
        check(&torn_seq, &CheckOptions::default()),
        Verdict::NotLinearizable(_)
    ));
}

/// A transaction that applied only its first write (a partial transaction) is caught.
#[test]
fn a_partial_transaction_is_caught() {
    let tx = KvInput::Txn {
        ops: vec![
            set("a", "x"),
            KvInput::IncrBy {
                key: s("a"),
                delta: 1,
            },
            set("b", "y"),
        ],
    };
    let reply = results(vec![KvOutput::Ok, KvOutput::Error, KvOutput::Ok]);
    let mut h = vec![op(tx, reply, 0, 1, 1)];
    h.push(op(get("b"), val(Some("y")), 2, 3, 2));
    assert_eq!(check(&h, &CheckOptions::default()), Verdict::Linearizable);
    h[1] = op(get("b"), val(None), 2, 3, 2);
    assert!(matches!(
        check(&h, &CheckOptions::default()),
        Verdict::NotLinearizable(_)
    ));
}

fn set_at(k: &str, v: &str, t: u64) -> KvInput {
    KvInput::SetAt {
        key: s(k),
        value: sv(v),
        expires_at: t,
    }
}

fn tick(k: &str, at: u64) -> KvOp {
    Operation {
        client: u64::MAX,
        input: KvInput::Tick { key: s(k), at },
        output: Some(KvReply {
            output: KvOutput::Ok,
            op_number: None,
            read: false,
        }),
        call: at,
        ret: at,
    }
}

/// Expiry: a read after the tick that passes the expiry sees nothing; one that still sees
/// the value is caught; a plain SET in between clears the expiry (so the read after the
/// tick sees it).
#[test]
fn expiry_is_checked_with_ticks() {
    let mut h = vec![
        op(set_at("k", "v", 100), KvOutput::Ok, 0, 10, 1),
        tick("k", 100),
        op(get("k"), val(Some("v")), 20, 30, 2),
        op(get("k"), val(None), 120, 130, 3),
    ];
    assert_eq!(check(&h, &CheckOptions::default()), Verdict::Linearizable);
    h[3] = op(get("k"), val(Some("v")), 120, 130, 3);
    assert!(matches!(
        check(&h, &CheckOptions::default()),
        Verdict::NotLinearizable(_)
    ));
    // A SET (no expiry) before the tick: the key outlives it.
    h[3] = op(set("k", "w"), KvOutput::Ok, 40, 50, 3);
    h.push(op(get("k"), val(Some("w")), 120, 130, 4));
    assert_eq!(check(&h, &CheckOptions::default()), Verdict::Linearizable);
    // The planted bug's behaviour (the SET kept the old expiry): caught.
    let last = h.len() - 1;
    h[last] = op(get("k"), val(None), 120, 130, 4);
    assert!(matches!(
        check(&h, &CheckOptions::default()),
        Verdict::NotLinearizable(_)
    ));
    // Ticks carry no op number and are no client's writes: a history with a scan is
    // still checked in op-number order.
    let with_scan = vec![
        op(set_at("k", "v", 100), KvOutput::Ok, 0, 10, 1),
        tick("k", 100),
        op(
            KvInput::Scan {
                start: s("a"),
                end: s("z"),
                limit: 10,
            },
            KvOutput::Entries(vec![]),
            200,
            210,
            2,
        ),
    ];
    assert_eq!(
        check(&with_scan, &CheckOptions::default()),
        Verdict::Linearizable
    );
    // An expiry already past when the write is ordered: gone at once.
    let late = vec![
        tick("j", 5),
        op(set_at("j", "v", 5), KvOutput::Ok, 10, 20, 1),
        op(get("j"), val(None), 30, 40, 2),
    ];
    assert_eq!(
        check(&late, &CheckOptions::default()),
        Verdict::Linearizable
    );
}

/// The timed store expires keys at the op whose time reaches their expiry and keeps or
/// clears expiries as the node documents.
#[test]
fn timed_store_follows_the_clock() {
    let mut st = TimedStore::default();
    assert_eq!(st.apply(&set_at("a", "1", 100), 10), KvOutput::Ok);
    assert_eq!(
        st.apply(
            &KvInput::IncrBy {
                key: s("a"),
                delta: 1
            },
            20
        ),
        KvOutput::Int(2)
    );
    assert_eq!(st.apply(&get("a"), 99), val(Some("2")));
    assert_eq!(st.apply(&get("a"), 100), val(None));
    assert_eq!(st.apply(&set_at("b", "1", 50), 60), KvOutput::Ok);
    assert_eq!(st.apply(&get("b"), 60), val(None));
    assert_eq!(
        st.apply(&mset(&[("c", "1"), ("d", "2")]), 70),
        results(vec![KvOutput::Ok, KvOutput::Ok])
    );
    assert_eq!(
        st.apply(&mget(&["d", "c", "x"]), 70),
        results(vec![val(Some("2")), val(Some("1")), val(None)])
    );
}

/// Transactions and expiring sets round-trip through the NDJSON format.
#[test]
fn ndjson_round_trips_transactions_and_expiry() {
    let h = vec![
        op(
            mset(&[("a", "1"), ("b", "2")]),
            results(vec![KvOutput::Ok, KvOutput::Ok]),
            1,
            2,
            1,
        ),
        op(set_at("k", "v", 500), KvOutput::Ok, 3, 4, 2),
        Operation {
            client: 7,
            input: mget(&["a", "b"]),
            output: None,
            call: 5,
            ret: u64::MAX,
        },
    ];
    let text = write_ndjson(&h);
    assert_eq!(parse_ndjson(&text).unwrap(), h);
}
