//! The full kv check: per key, op-number order, and scans.

use crate::kv::{check, KvInput, KvOp, KvOutput, KvReply, KvValue, OP_NUMBER_PARTITION};
use crate::{CheckOptions, Operation, Verdict};

fn s(x: &str) -> String {
    x.to_string()
}

fn sv(x: &str) -> KvValue {
    x.into()
}

fn set(k: &str, v: &str) -> KvInput {
    KvInput::Set {
        key: s(k),
        value: sv(v),
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

fn op(call: u64, ret: u64, input: KvInput, output: KvOutput, num: u64) -> KvOp {
    Operation {
        client: call,
        input,
        output: Some(KvReply {
            output,
            op_number: Some(num),
            read: false,
        }),
        call,
        ret,
    }
}

fn unknown(call: u64, input: KvInput) -> KvOp {
    Operation {
        client: call,
        input,
        output: None,
        call,
        ret: u64::MAX,
    }
}

fn verdict(h: &[KvOp]) -> Verdict {
    check(h, &CheckOptions::default())
}

fn failure_at(h: &[KvOp]) -> (String, usize) {
    match verdict(h) {
        Verdict::NotLinearizable(f) => (f.partition, f.op_index),
        other => panic!("expected a violation, got {other:?}"),
    }
}

/// A scan that sees exactly the writes ordered before it is linearizable.
#[test]
fn scan_consistent_with_op_order_is_linearizable() {
    let h = [
        op(0, 1, set("a", "1"), KvOutput::Ok, 1),
        op(0, 1, set("c", "3"), KvOutput::Ok, 2),
        op(
            2,
            3,
            scan("a", "z", 10),
            entries(&[("a", "1"), ("c", "3")]),
            3,
        ),
        op(4, 5, KvInput::Del { key: s("a") }, KvOutput::Deleted(1), 4),
        op(6, 7, scan("a", "z", 10), entries(&[("c", "3")]), 5),
    ];
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

/// A scan missing a key written before it in op order fires, naming the scan.
#[test]
fn scan_missing_key_written_before_it_fires() {
    let h = [
        op(0, 1, set("a", "1"), KvOutput::Ok, 1),
        op(0, 1, set("b", "2"), KvOutput::Ok, 2),
        op(2, 3, scan("a", "z", 10), entries(&[("a", "1")]), 3),
    ];
    assert_eq!(failure_at(&h), (s(OP_NUMBER_PARTITION), 2));
}

/// A scan returning a stale value, or a key outside its range, or too many entries
/// fires.
#[test]
fn scan_wrong_value_range_or_limit_fires() {
    let base = || {
        vec![
            op(0, 1, set("a", "1"), KvOutput::Ok, 1),
            op(2, 3, set("a", "2"), KvOutput::Ok, 2),
        ]
    };
    for bad in [
        entries(&[("a", "1")]),
        entries(&[("a", "2"), ("zz", "9")]),
        entries(&[("a", "2"), ("a", "2")]),
    ] {
        let mut h = base();
        h.push(op(4, 5, scan("a", "z", 2), bad.clone(), 3));
        assert_eq!(failure_at(&h), (s(OP_NUMBER_PARTITION), 2), "{bad:?}");
    }
    let mut h = base();
    h.push(op(4, 5, scan("a", "z", 0), entries(&[("a", "2")]), 3));
    assert_eq!(failure_at(&h).1, 2);
}

/// When a scan hits its limit, keys after its last entry are not required.
#[test]
fn scan_at_limit_does_not_need_later_keys() {
    let h = [
        op(0, 1, set("a", "1"), KvOutput::Ok, 1),
        op(0, 1, set("b", "2"), KvOutput::Ok, 2),
        op(2, 3, scan("a", "z", 1), entries(&[("a", "1")]), 3),
    ];
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

/// A real-time order that contradicts the op numbers fires even if values agree.
#[test]
fn real_time_versus_op_number_inversion_fires() {
    let h = [
        op(0, 1, set("a", "1"), KvOutput::Ok, 5),
        op(2, 3, set("b", "1"), KvOutput::Ok, 4),
    ];
    assert_eq!(failure_at(&h), (s(OP_NUMBER_PARTITION), 1));
}

/// Two operations with the same op number fire.
#[test]
fn duplicate_op_number_fires() {
    let h = [
        op(0, 1, set("a", "1"), KvOutput::Ok, 1),
        op(0, 1, set("b", "1"), KvOutput::Ok, 1),
    ];
    assert_eq!(failure_at(&h).0, OP_NUMBER_PARTITION);
}

/// A scan on a key touched by an unknown-outcome write is checked only on the other
/// keys: either reply for the uncertain key passes, a missing certain key fires.
#[test]
fn scan_with_unknown_write_checks_only_certain_keys() {
    for seen in [
        &[("a", "1"), ("b", "2")][..],
        &[("a", "1"), ("b", "9")],
        &[("a", "1")],
    ] {
        let h = [
            op(0, 1, set("a", "1"), KvOutput::Ok, 1),
            op(0, 1, set("b", "2"), KvOutput::Ok, 2),
            unknown(2, set("b", "9")),
            unknown(2, KvInput::Del { key: s("b") }),
            op(3, 4, scan("a", "z", 10), entries(seen), 3),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable, "{seen:?}");
    }
    let h = [
        op(0, 1, set("a", "1"), KvOutput::Ok, 1),
        op(0, 1, set("b", "2"), KvOutput::Ok, 2),
        unknown(2, set("b", "9")),
        op(3, 4, scan("a", "z", 10), entries(&[("b", "9")]), 3),
    ];
    assert_eq!(failure_at(&h), (s(OP_NUMBER_PARTITION), 3));
}

/// An unknown-outcome write invoked after a scan returned does not excuse the scan.
#[test]
fn unknown_write_after_scan_does_not_excuse_it() {
    let h = [
        op(0, 1, set("a", "1"), KvOutput::Ok, 1),
        op(2, 3, scan("a", "z", 10), entries(&[]), 2),
        unknown(4, KvInput::Del { key: s("a") }),
    ];
    assert_eq!(failure_at(&h), (s(OP_NUMBER_PARTITION), 1));
}

/// A completed write without an op number makes scans uncheckable: Unknown.
#[test]
fn write_without_op_number_with_scans_is_unknown() {
    let mut w = op(0, 1, set("a", "1"), KvOutput::Ok, 1);
    if let Some(r) = w.output.as_mut() {
        r.op_number = None;
    }
    let h = [w, op(2, 3, scan("a", "z", 10), entries(&[("a", "1")]), 2)];
    assert!(matches!(verdict(&h), Verdict::Unknown { .. }));
}

/// A per-key violation is reported with its key even when op numbers are consistent.
#[test]
fn per_key_violation_is_reported_by_key() {
    let h = [
        op(0, 1, set("k", "1"), KvOutput::Ok, 1),
        op(2, 3, KvInput::Get { key: s("k") }, KvOutput::Value(None), 2),
    ];
    assert_eq!(failure_at(&h), (s("k"), 1));
}

/// Histories generated from a real sequential execution (op numbers = execution order,
/// some outcomes forgotten, some unknown ops never applied) are always linearizable, and
/// corrupting one scan reply is caught unless it only touches uncertain keys.
#[test]
fn kv_random_sequential_executions_are_linearizable() {
    use crate::hash::mix64;
    use std::collections::BTreeMap;
    let mut seed = 7u64;
    let mut rnd = |n: u64| {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(seed) % n
    };
    let keys = ["a", "b", "c", "d"];
    let mut caught = 0;
    for _ in 0..2_000 {
        let n = 1 + rnd(12) as usize;
        // (call, linearization point, ret, input, forgotten, applied-if-forgotten)
        let mut plan = Vec::new();
        for _ in 0..n {
            let call = rnd(40);
            let lin = call + 1 + rnd(5);
            let ret = lin + 1 + rnd(5);
            let key = s(keys[rnd(4) as usize]);
            let val = |r: u64| sv(["1", "2", "x"][r as usize]);
            let input = match rnd(6) {
                0 => KvInput::Get { key },
                1 => KvInput::Set {
                    key,
                    value: val(rnd(3)),
                },
                2 => KvInput::Del { key },
                3 => KvInput::IncrBy {
                    key,
                    delta: rnd(3) as i64 - 1,
                },
                4 => KvInput::Cas {
                    key,
                    expected: (rnd(3) > 0).then(|| val(rnd(3))),
                    new: val(rnd(3)),
                },
                _ => {
                    let a = rnd(5) as usize;
                    let b = a + rnd(4) as usize;
                    let name = |i: usize| s(keys.get(i).copied().unwrap_or("z"));
                    scan(&name(a), &name(b), rnd(4))
                }
            };
            plan.push((call, lin, ret, input, rnd(6) == 0, rnd(2) == 0));
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| (plan[i].1, i));
        let mut store = BTreeMap::new();
        let mut history: Vec<Option<KvOp>> = vec![None; n];
        for (num, &i) in order.iter().enumerate() {
            let (call, _, ret, input, forgotten, applied) = &plan[i];
            if *forgotten {
                if *applied {
                    crate::kv::apply(&mut store, input);
                }
                history[i] = Some(unknown(*call, input.clone()));
            } else {
                let out = crate::kv::apply(&mut store, input);
                history[i] = Some(op(*call, *ret, input.clone(), out, num as u64));
            }
        }
        let mut history: Vec<KvOp> = history.into_iter().flatten().collect();
        assert_eq!(verdict(&history), Verdict::Linearizable, "{history:#?}");
        // Corrupt a scan by dropping its first entry.
        if let Some(victim) = history.iter_mut().find(|o| {
            matches!(&o.output, Some(KvReply { output: KvOutput::Entries(e), .. }) if !e.is_empty())
        }) {
            if let Some(KvReply {
                output: KvOutput::Entries(e),
                ..
            }) = victim.output.as_mut()
            {
                e.remove(0);
            }
            if matches!(verdict(&history), Verdict::NotLinearizable(_)) {
                caught += 1;
            }
        }
    }
    assert!(caught > 100, "only {caught} corrupted scans caught");
}

/// A read answered at the state after op `num`, without an op of its own.
fn read_at(call: u64, ret: u64, input: KvInput, output: KvOutput, num: u64) -> KvOp {
    let mut o = op(call, ret, input, output, num);
    if let Some(reply) = o.output.as_mut() {
        reply.read = true;
    }
    o
}

fn get(k: &str) -> KvInput {
    KvInput::Get { key: s(k) }
}

fn value(v: Option<&str>) -> KvOutput {
    KvOutput::Value(v.map(sv))
}

/// Reads of the state after op 2 share its number with the write at op 2 and with each
/// other, one after another in real time and overlapping: linearizable; so is a scan read
/// there, and a write at op 3 called after them.
#[test]
fn reads_sharing_an_op_number_are_linearizable() {
    let h = [
        op(0, 1, set("a", "1"), KvOutput::Ok, 1),
        op(2, 3, set("a", "2"), KvOutput::Ok, 2),
        read_at(4, 5, get("a"), value(Some("2")), 2),
        read_at(6, 9, get("a"), value(Some("2")), 2),
        read_at(7, 8, get("a"), value(Some("2")), 2),
        read_at(7, 8, scan("a", "b", 10), entries(&[("a", "2")]), 2),
        op(10, 11, set("a", "3"), KvOutput::Ok, 3),
        read_at(12, 13, get("a"), value(Some("3")), 3),
    ];
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

/// A stale read: the write at op 2 returned before the read was called, yet the read names
/// the state after op 1 — the op-number check fires (so does the per-key check: the value
/// is stale).
#[test]
fn a_read_of_a_state_older_than_a_returned_write_fires() {
    let h = [
        op(0, 1, set("a", "1"), KvOutput::Ok, 1),
        op(2, 3, set("b", "2"), KvOutput::Ok, 2),
        read_at(4, 5, get("a"), value(Some("1")), 1),
    ];
    assert_eq!(failure_at(&h), (OP_NUMBER_PARTITION.to_string(), 2));
}

/// A read that returned before the write at its op number was called: the read sees the
/// state after that write, which did not exist yet.
#[test]
fn a_read_before_the_write_whose_state_it_names_fires() {
    let h = [
        read_at(0, 1, get("b"), value(None), 1),
        op(2, 3, set("a", "1"), KvOutput::Ok, 1),
    ];
    assert_eq!(failure_at(&h), (OP_NUMBER_PARTITION.to_string(), 1));
}

/// A read whose value is not the state after its op fires, though every op overlaps (real
/// time allows the value read): the key's check in op-number order places the read after
/// the write at its op.
#[test]
fn a_read_with_the_wrong_state_for_its_op_fires() {
    let h = [
        op(0, 10, set("a", "1"), KvOutput::Ok, 1),
        op(0, 10, set("a", "2"), KvOutput::Ok, 2),
        read_at(0, 10, get("a"), value(Some("1")), 2),
    ];
    assert_eq!(failure_at(&h), ("a".to_string(), 2));
    // Named as a read of the state after op 1, it is linearizable.
    let mut h = h;
    h[2] = read_at(0, 10, get("a"), value(Some("1")), 1);
    assert_eq!(verdict(&h), Verdict::Linearizable);
}
