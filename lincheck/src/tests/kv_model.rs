//! Key-value model semantics, one operation at a time, and per-key partitioning.

use std::collections::BTreeMap;

use crate::kv::{apply, KvInput, KvKeyModel, KvOp, KvOutput, KvReply, KvValue};
use crate::{check_partitioned, CheckOptions, Model, Operation, Verdict};

pub(super) fn s(x: &str) -> String {
    x.to_string()
}

pub(super) fn sv(x: &str) -> KvValue {
    x.into()
}

pub(super) fn get(k: &str) -> KvInput {
    KvInput::Get { key: s(k) }
}

pub(super) fn set(k: &str, v: &str) -> KvInput {
    KvInput::Set {
        key: s(k),
        value: sv(v),
    }
}

fn incr(k: &str, delta: i64) -> KvInput {
    KvInput::IncrBy { key: s(k), delta }
}

fn cas(k: &str, expected: Option<&str>, new: &str) -> KvInput {
    KvInput::Cas {
        key: s(k),
        expected: expected.map(sv),
        new: sv(new),
    }
}

fn scan(start: &str, end: &str, limit: u64) -> KvInput {
    KvInput::Scan {
        start: s(start),
        end: s(end),
        limit,
    }
}

fn entries(pairs: &[(&str, &str)]) -> KvOutput {
    KvOutput::Entries(pairs.iter().map(|(k, v)| (s(k), sv(v))).collect())
}

/// Get, set and del behave like a map; del reports 1 only when the key existed.
#[test]
fn apply_get_set_del_map_semantics() {
    let mut m = BTreeMap::new();
    assert_eq!(apply(&mut m, &get("a")), KvOutput::Value(None));
    assert_eq!(apply(&mut m, &set("a", "1")), KvOutput::Ok);
    assert_eq!(apply(&mut m, &get("a")), KvOutput::Value(Some(sv("1"))));
    assert_eq!(
        apply(&mut m, &KvInput::Del { key: s("a") }),
        KvOutput::Deleted(1)
    );
    assert_eq!(
        apply(&mut m, &KvInput::Del { key: s("a") }),
        KvOutput::Deleted(0)
    );
    assert_eq!(apply(&mut m, &get("a")), KvOutput::Value(None));
}

/// IncrBy treats absent as 0, stores canonical decimals, and errors on non-integers
/// (including non-canonical renderings) and on overflow without changing the value.
#[test]
fn apply_incrby_integer_semantics_and_errors() {
    let mut m = BTreeMap::new();
    assert_eq!(apply(&mut m, &incr("n", 5)), KvOutput::Int(5));
    assert_eq!(apply(&mut m, &incr("n", -7)), KvOutput::Int(-2));
    assert_eq!(apply(&mut m, &get("n")), KvOutput::Value(Some(sv("-2"))));
    for bad in ["x", "+5", "05", " 5", "", "9223372036854775808"] {
        apply(&mut m, &set("b", bad));
        assert_eq!(apply(&mut m, &incr("b", 1)), KvOutput::Error, "{bad:?}");
        assert_eq!(apply(&mut m, &get("b")), KvOutput::Value(Some(sv(bad))));
    }
    apply(&mut m, &set("big", &i64::MAX.to_string()));
    assert_eq!(apply(&mut m, &incr("big", 1)), KvOutput::Error);
}

/// Cas swaps iff the current value equals `expected`, with `None` meaning absent.
#[test]
fn apply_cas_compares_with_absent_and_values() {
    let mut m = BTreeMap::new();
    assert_eq!(
        apply(&mut m, &cas("k", Some("a"), "b")),
        KvOutput::Swapped(false)
    );
    assert_eq!(apply(&mut m, &cas("k", None, "a")), KvOutput::Swapped(true));
    assert_eq!(
        apply(&mut m, &cas("k", None, "z")),
        KvOutput::Swapped(false)
    );
    assert_eq!(
        apply(&mut m, &cas("k", Some("a"), "b")),
        KvOutput::Swapped(true)
    );
    assert_eq!(apply(&mut m, &get("k")), KvOutput::Value(Some(sv("b"))));
}

/// Scan returns present keys in [start, end), ascending, at most `limit`.
#[test]
fn apply_scan_range_order_limit() {
    let mut m = BTreeMap::new();
    for k in ["d", "a", "c", "b", "e"] {
        apply(&mut m, &set(k, &k.to_uppercase()));
    }
    assert_eq!(
        apply(&mut m, &scan("b", "e", 10)),
        entries(&[("b", "B"), ("c", "C"), ("d", "D")])
    );
    assert_eq!(
        apply(&mut m, &scan("b", "e", 2)),
        entries(&[("b", "B"), ("c", "C")])
    );
    assert_eq!(apply(&mut m, &scan("a", "z", 0)), entries(&[]));
    assert_eq!(apply(&mut m, &scan("e", "a", 5)), entries(&[]));
}

/// The per-key model accepts exactly the specified output and steps unknown ops.
#[test]
fn key_model_step_checks_output() {
    let reply = |output| KvReply {
        output,
        op_number: None,
        read: false,
    };
    let m = KvKeyModel;
    let st = Some(sv("1"));
    assert_eq!(
        m.step(&st, &incr("k", 2), &reply(KvOutput::Int(3))),
        Some(Some(sv("3")))
    );
    assert_eq!(m.step(&st, &incr("k", 2), &reply(KvOutput::Int(4))), None);
    assert_eq!(m.step(&st, &get("k"), &reply(KvOutput::Value(None))), None);
    assert_eq!(
        m.step_unknown(&st, &KvInput::Del { key: s("k") }),
        vec![None]
    );
    assert_eq!(m.step(&st, &scan("a", "z", 1), &reply(entries(&[]))), None);
}

fn op(client: u64, call: u64, ret: u64, input: KvInput, output: KvOutput) -> KvOp {
    Operation {
        client,
        input,
        output: Some(KvReply {
            output,
            op_number: None,
            read: false,
        }),
        call,
        ret,
    }
}

/// A violation on one key among many is found and the failure names that key.
#[test]
fn partitioned_violation_on_one_key_is_named() {
    let mut h = Vec::new();
    let mut t = 0;
    for k in ["a", "b", "c", "d", "e"] {
        h.push(op(1, t, t + 1, set(k, "1"), KvOutput::Ok));
        h.push(op(2, t + 2, t + 3, get(k), KvOutput::Value(Some(sv("1")))));
        t += 4;
    }
    assert_eq!(
        check_partitioned(&KvKeyModel, &h, &CheckOptions::default()),
        Verdict::Linearizable
    );
    h.push(op(3, t, t + 1, get("c"), KvOutput::Value(None)));
    let Verdict::NotLinearizable(f) = check_partitioned(&KvKeyModel, &h, &CheckOptions::default())
    else {
        panic!("expected a violation");
    };
    assert_eq!(f.partition, "c");
    assert_eq!(f.op_index, h.len() - 1);
    assert_eq!(f.prefix, vec![4, 5]);
}

/// Operations outside every partition (scans) are not checked by the partitioned check.
#[test]
fn partitioned_check_skips_unpartitioned_ops() {
    let h = [op(
        0,
        0,
        1,
        scan("a", "z", 5),
        entries(&[("zz", "nonsense")]),
    )];
    assert_eq!(
        check_partitioned(&KvKeyModel, &h, &CheckOptions::default()),
        Verdict::Linearizable
    );
}

/// The integer parser accepts exactly what `i64::to_string` produces (the definition
/// of an integer value), without formatting anything.
#[test]
fn canonical_int_is_exactly_the_rendering_of_an_i64() {
    let reference = |s: &str| s.parse::<i64>().ok().filter(|n| n.to_string() == s);
    let mut cases: Vec<String> = [
        "0",
        "-0",
        "00",
        "01",
        "-01",
        "+1",
        "1",
        "-1",
        "10",
        " 1",
        "1 ",
        "",
        "-",
        "+",
        "1e3",
        "１",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "0x10",
        "1_000",
    ]
    .iter()
    .map(|c| c.to_string())
    .collect();
    cases.extend((-1200..1200).map(|n: i64| n.to_string()));
    cases.extend((0..1200).map(|n| format!("0{n}")));
    for c in &cases {
        assert_eq!(crate::kv::parse_canonical_int(c), reference(c), "{c:?}");
    }
}

#[test]
fn int_value_is_the_canonical_rendering() {
    for n in [0, 7, -5, 10, i64::MAX, i64::MIN] {
        assert_eq!(&*crate::kv::int_value(n), n.to_string());
    }
}
