//! Targeted cases of the per-key check in op-number order (`kv::ordered`): each would
//! get the wrong verdict if one of its reductions were unsound.

use crate::gen::{generate, GenOptions};
use crate::kv::ordered::{check_key, KeyOutcome};
use crate::kv::{KvInput, KvOp, KvOutput, KvReply, KvValue};
use crate::{CheckOptions, Operation};

fn s(x: &str) -> String {
    x.to_string()
}

fn sv(x: &str) -> KvValue {
    x.into()
}

fn set(v: &str) -> KvInput {
    KvInput::Set {
        key: s("k"),
        value: sv(v),
    }
}

fn cas(expected: &str, new: &str) -> KvInput {
    KvInput::Cas {
        key: s("k"),
        expected: Some(sv(expected)),
        new: sv(new),
    }
}

fn get() -> KvInput {
    KvInput::Get { key: s("k") }
}

/// Completed ops one after another (op numbers in that order), then unknown-outcome
/// ops called at time 0.
fn history(completed: &[(KvInput, KvOutput)], unknown: &[KvInput]) -> Vec<KvOp> {
    let mut h: Vec<KvOp> = completed
        .iter()
        .enumerate()
        .map(|(i, (input, output))| Operation {
            client: i as u64,
            input: input.clone(),
            output: Some(KvReply {
                output: output.clone(),
                op_number: Some(i as u64 + 1),
                read: false,
            }),
            call: 10 * i as u64 + 1,
            ret: 10 * i as u64 + 2,
        })
        .collect();
    h.extend(unknown.iter().map(|input| Operation {
        client: 99,
        input: input.clone(),
        output: None,
        call: 0,
        ret: u64::MAX,
    }));
    h
}

fn ordered(h: &[KvOp]) -> Option<bool> {
    let members: Vec<usize> = (0..h.len()).collect();
    match check_key(
        &h.iter().collect::<Vec<_>>(),
        &members,
        CheckOptions::DEFAULT_STEP_CAP,
    ) {
        KeyOutcome::Linearizable => Some(true),
        KeyOutcome::Violation { .. } => Some(false),
        KeyOutcome::StepCap | KeyOutcome::NotApplicable => None,
    }
}

fn value(v: &str) -> KvOutput {
    KvOutput::Value(Some(sv(v)))
}

/// An unknown cas from `w` to `x` explains a read of `x`, `w` is written again, and
/// `x` is read again: one unknown cas cannot explain both reads, two can (a class
/// counts its used members).
#[test]
fn one_unknown_cas_does_not_explain_two_reads() {
    let completed = [
        (set("w"), KvOutput::Ok),
        (get(), value("x")),
        (set("w"), KvOutput::Ok),
        (get(), value("x")),
    ];
    assert_eq!(ordered(&history(&completed, &[cas("w", "x")])), Some(false));
    let two = [cas("w", "x"), cas("w", "x")];
    assert_eq!(ordered(&history(&completed, &two)), Some(true));
}

/// One state used the unknown cas `e -> v`, another the unknown set `u` (both make the
/// failed cas legal and are overwritten by `set e`); only the second can still produce
/// the later read of `v`. A set only stands in for a cas to the same value, so the
/// first state must not dominate the second.
#[test]
fn a_set_of_another_value_does_not_stand_in_for_a_cas() {
    let completed = [
        (set("e"), KvOutput::Ok),
        (cas("e", "n"), KvOutput::Swapped(false)),
        (set("e"), KvOutput::Ok),
        (get(), value("v")),
    ];
    let h = history(&completed, &[cas("e", "v"), set("u")]);
    assert_eq!(ordered(&h), Some(true));
    // Without the set, the cas is needed twice: a violation.
    let h = history(&completed, &[cas("e", "v")]);
    assert_eq!(ordered(&h), Some(false));
}

/// A read of `q` reachable only through an unknown set of `p` followed by an unknown
/// cas from `p` to `q`: the pruning of values that cannot lead to the read's value
/// must follow cas ops backwards.
#[test]
fn values_leading_to_a_read_through_a_cas_are_kept() {
    let completed = [(set("a"), KvOutput::Ok), (get(), value("q"))];
    let h = history(&completed, &[set("p"), cas("p", "q")]);
    assert_eq!(ordered(&h), Some(true));
    let h = history(&completed, &[set("p"), cas("a", "p")]);
    assert_eq!(ordered(&h), Some(false));
}

/// Fresh values written by unknown sets are read once and then retire; their sets
/// merge with the other unknown sets, used and available members added up: after two
/// of them explain the reads, the last del needs a third unknown set.
#[test]
fn retired_writes_still_count() {
    let del = || KvInput::Del { key: s("k") };
    let completed = [
        (get(), value("f1")),
        (del(), KvOutput::Deleted(1)),
        (get(), value("f2")),
        (del(), KvOutput::Deleted(1)),
        (del(), KvOutput::Deleted(1)),
    ];
    // f1 and f2 are used for the reads; the last del needs a third write.
    let h = history(&completed, &[set("f1"), set("f2"), set("f3")]);
    assert_eq!(ordered(&h), Some(true));
    let h = history(&completed, &[set("f1"), set("f2")]);
    assert_eq!(ordered(&h), Some(false));
}

/// Every key of a generated history with many unknown outcomes (2 %, three register
/// keys) is decided in op-number order, none left to the general search: without the
/// merging of retired values the frontier of a register key outgrows its bound.
#[test]
fn generated_keys_are_decided_in_op_number_order() {
    let ops: Vec<KvOp> = generate(&GenOptions {
        ops: 60_000,
        keys: 6,
        seed: 3,
        unknown_rate: 0.02,
        ..GenOptions::default()
    })
    .iter()
    .filter_map(|r| r.to_op().expect("generated records are valid"))
    .collect();
    let mut keys: Vec<&str> = ops.iter().filter_map(|o| o.input.key()).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let members: Vec<usize> = (0..ops.len())
            .filter(|&i| ops[i].input.key() == Some(key))
            .collect();
        assert!(
            matches!(
                check_key(
                    &ops.iter().collect::<Vec<_>>(),
                    &members,
                    CheckOptions::DEFAULT_STEP_CAP
                ),
                KeyOutcome::Linearizable
            ),
            "key {key}"
        );
    }
}

/// 600 dels that each find the key present, after 300 unknown sets and 300 unknown cas
/// ops from absent (all writing unobserved values): either explains each del. A cas
/// spent instead of a set leaves a state that dominates, so the frontier stays at one
/// state instead of one per split between them (up to 301, beyond its bound).
#[test]
fn a_set_stands_in_for_a_cas_and_keeps_the_frontier_small() {
    let del = || KvInput::Del { key: s("k") };
    let completed: Vec<(KvInput, KvOutput)> =
        (0..600).map(|_| (del(), KvOutput::Deleted(1))).collect();
    let unknown: Vec<KvInput> = (0..300)
        .flat_map(|i| {
            let new = format!("u{i}").into();
            [
                set(&format!("s{i}")),
                KvInput::Cas {
                    key: s("k"),
                    expected: None,
                    new,
                },
            ]
        })
        .collect();
    assert_eq!(ordered(&history(&completed, &unknown)), Some(true));
    assert_eq!(ordered(&history(&completed, &unknown[..599])), Some(false));
}

/// A read of a value only an unknown set writes, from an absent key with hundreds of
/// unknown increments and an unrelated unknown cas available: the increments' sums
/// cannot lead to the read value and are not explored (else the closure would exceed
/// its bound and the key would go to the general search).
#[test]
fn increments_that_cannot_reach_a_read_value_are_not_explored() {
    let completed = [
        (KvInput::Del { key: s("k") }, KvOutput::Deleted(0)),
        (get(), value("q")),
    ];
    let mut unknown = vec![set("q"), cas("zz", "y")];
    for delta in [1, 2, 3, 5, 7] {
        unknown.extend((0..100).map(|_| KvInput::IncrBy { key: s("k"), delta }));
    }
    assert_eq!(ordered(&history(&completed, &unknown)), Some(true));
    assert_eq!(ordered(&history(&completed, &unknown[1..])), Some(false));
}
