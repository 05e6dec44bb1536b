//! The generic search, exercised with the register model.

use crate::jepsen::{Register, RegisterInput as I, RegisterOp, RegisterOutput as O};
use crate::{check, CheckOptions, Model, Operation, Verdict};

fn done(client: u64, call: u64, ret: u64, input: I, output: O) -> RegisterOp {
    Operation {
        client,
        input,
        output: Some(output),
        call,
        ret,
    }
}

fn unknown(client: u64, call: u64, input: I) -> RegisterOp {
    Operation {
        client,
        input,
        output: None,
        call,
        ret: u64::MAX,
    }
}

fn verdict(history: &[RegisterOp]) -> Verdict {
    check(&Register, history, &CheckOptions::default())
}

/// An empty history is linearizable.
#[test]
fn empty_history_is_linearizable() {
    assert_eq!(verdict(&[]), Verdict::Linearizable);
}

/// A sequential write then read of the written value is linearizable.
#[test]
fn sequential_write_read_is_linearizable() {
    let h = [
        done(0, 0, 1, I::Read, O::Read(None)),
        done(0, 2, 3, I::Write(1), O::Write),
        done(1, 4, 5, I::Read, O::Read(Some(1))),
        done(1, 6, 7, I::Cas(1, 2), O::Cas(true)),
        done(0, 8, 9, I::Read, O::Read(Some(2))),
    ];
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

/// A read that returns an overwritten value after the overwrite completed is a
/// violation, and the failure names that read and a prefix of the two writes.
#[test]
fn stale_read_is_not_linearizable_and_names_the_read() {
    let h = [
        done(0, 0, 1, I::Write(1), O::Write),
        done(0, 2, 3, I::Write(2), O::Write),
        done(1, 4, 5, I::Read, O::Read(Some(1))),
    ];
    let Verdict::NotLinearizable(f) = verdict(&h) else {
        panic!("expected a violation");
    };
    assert_eq!(f.op_index, 2);
    assert_eq!(f.prefix, vec![0, 1]);
    assert!(f.op.contains("Read"), "{}", f.op);
}

/// A read concurrent with a write may see either the old or the new value.
#[test]
fn concurrent_read_either_order_is_linearizable() {
    for seen in [None, Some(7)] {
        let h = [
            done(0, 0, 10, I::Write(7), O::Write),
            done(1, 1, 2, I::Read, O::Read(seen)),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable, "read saw {seen:?}");
    }
}

/// Two concurrent writes may take effect in either order, but a later read must see
/// one of them.
#[test]
fn concurrent_writes_either_order_later_read_constrained() {
    for (seen, ok) in [(1, true), (2, true), (3, false)] {
        let h = [
            done(0, 0, 10, I::Write(1), O::Write),
            done(1, 0, 10, I::Write(2), O::Write),
            done(2, 11, 12, I::Read, O::Read(Some(seen))),
        ];
        assert_eq!(verdict(&h).is_linearizable(), ok, "read saw {seen}");
    }
}

/// Equal timestamps are concurrent: a read called at the instant a write returns may
/// still see the old value.
#[test]
fn equal_timestamps_are_concurrent() {
    let h = [
        done(0, 0, 5, I::Write(1), O::Write),
        done(1, 5, 6, I::Read, O::Read(None)),
    ];
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

/// An unknown-outcome write whose value is read later is linearizable.
#[test]
fn unknown_write_seen_later_is_linearizable() {
    let h = [
        unknown(0, 0, I::Write(5)),
        done(1, 10, 11, I::Read, O::Read(Some(5))),
        done(1, 12, 13, I::Read, O::Read(Some(5))),
    ];
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

/// An unknown-outcome write that is never seen (it may never have happened) is fine.
#[test]
fn unknown_write_never_seen_is_linearizable() {
    let h = [
        done(0, 0, 1, I::Write(1), O::Write),
        unknown(1, 2, I::Write(5)),
        unknown(2, 2, I::Cas(1, 9)),
        done(0, 10, 11, I::Read, O::Read(Some(1))),
        done(0, 12, 13, I::Read, O::Read(Some(1))),
    ];
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

/// A read of a value nobody wrote is a violation even with unknown-outcome ops around.
#[test]
fn read_of_unwritten_value_with_unknowns_is_not_linearizable() {
    let h = [
        unknown(0, 0, I::Write(5)),
        unknown(1, 0, I::Cas(5, 6)),
        done(2, 10, 11, I::Read, O::Read(Some(7))),
    ];
    assert!(matches!(verdict(&h), Verdict::NotLinearizable(f) if f.op_index == 2));
}

/// An unknown-outcome write invoked after a read returned cannot explain that read.
#[test]
fn unknown_write_after_read_cannot_explain_it() {
    let h = [
        done(0, 0, 1, I::Read, O::Read(Some(5))),
        unknown(1, 2, I::Write(5)),
    ];
    assert!(matches!(verdict(&h), Verdict::NotLinearizable(_)));
}

/// An unknown-outcome cas may take effect between two reads, exactly once.
#[test]
fn unknown_cas_takes_effect_at_most_once() {
    let ok = [
        done(0, 0, 1, I::Write(1), O::Write),
        unknown(1, 2, I::Cas(1, 2)),
        done(0, 3, 4, I::Read, O::Read(Some(1))),
        done(0, 5, 6, I::Read, O::Read(Some(2))),
    ];
    assert_eq!(verdict(&ok), Verdict::Linearizable);
    let bad = [
        done(0, 0, 1, I::Write(1), O::Write),
        unknown(1, 2, I::Cas(1, 2)),
        done(0, 3, 4, I::Read, O::Read(Some(2))),
        done(0, 5, 6, I::Write(1), O::Write),
        done(0, 7, 8, I::Read, O::Read(Some(2))),
    ];
    assert!(matches!(verdict(&bad), Verdict::NotLinearizable(_)));
}

/// Reaching the step cap yields Unknown, never a pass.
#[test]
fn step_cap_reached_is_unknown() {
    let h: Vec<RegisterOp> = (0..8)
        .map(|c| done(c, 0, 100, I::Write(c as i64), O::Write))
        .chain([done(99, 101, 102, I::Read, O::Read(Some(3)))])
        .collect();
    let v = check(&Register, &h, &CheckOptions { step_cap: 5 });
    assert!(matches!(v, Verdict::Unknown { .. }), "{v:?}");
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

/// A known op whose return precedes its call makes the verdict Unknown (bad input).
#[test]
fn return_before_call_is_unknown() {
    let h = [done(0, 5, 4, I::Read, O::Read(None))];
    assert!(matches!(verdict(&h), Verdict::Unknown { .. }));
}

/// A model whose unknown-outcome op has two possible effects.
struct Chooser;

impl Model for Chooser {
    type State = u8;
    type Input = Option<u8>; // None = choose (1 or 2), Some(_) = read
    type Output = u8;
    fn init(&self) -> u8 {
        0
    }
    fn step(&self, state: &u8, input: &Option<u8>, output: &u8) -> Option<u8> {
        match input {
            None => (*output == 1 || *output == 2).then_some(*output),
            Some(_) => (output == state).then_some(*state),
        }
    }
    fn step_unknown(&self, state: &u8, input: &Option<u8>) -> Vec<u8> {
        match input {
            None => vec![1, 2],
            Some(_) => vec![*state],
        }
    }
}

/// Every alternative of a nondeterministic unknown-outcome op is tried on backtracking.
#[test]
fn nondeterministic_unknown_alternatives_are_all_tried() {
    let op = |input, output, call, ret| Operation {
        client: 0,
        input,
        output,
        call,
        ret,
    };
    let h = [
        op(None, None, 0, u64::MAX),
        op(Some(0), Some(2), 5, 6),
        op(Some(0), Some(2), 7, 8),
    ];
    assert_eq!(
        check(&Chooser, &h, &CheckOptions::default()),
        Verdict::Linearizable
    );
    let bad = [
        op(None, None, 0, u64::MAX),
        op(Some(0), Some(1), 5, 6),
        op(Some(0), Some(2), 7, 8),
    ];
    assert!(matches!(
        check(&Chooser, &bad, &CheckOptions::default()),
        Verdict::NotLinearizable(_)
    ));
}
