//! The per-key check in op-number order (`kv::ordered`) against the general search, on
//! many small random single-key histories with many unknown-outcome ops. The completed
//! ops run one after another, so real time allows only their op-number order and the
//! two checks must give the same verdict; half of the histories get one corrupted
//! reply, so both verdicts occur.

use crate::hash::mix64;
use crate::kv::ordered::{check_key, KeyOutcome};
use crate::kv::{apply, KvInput, KvKeyModel, KvOp, KvOutput, KvReply, KvValue};
use crate::{check, CheckOptions, Operation};
use std::collections::BTreeMap;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0) % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    /// Sets of reused, integer and fresh values, gets, dels, cas ops, increments.
    Register,
    /// Increments (mostly positive, some negative) and gets, many of them unknown.
    Counter,
}

const KEY: &str = "k";

fn random_input(rng: &mut Rng, shape: Shape, fresh: &mut u32, written: &[KvValue]) -> KvInput {
    let key = KEY.to_string();
    // A value: a shared one, an integer, or a fresh one (written once: it is observed
    // for a while and then retires).
    let mut value = |rng: &mut Rng| match rng.below(4) {
        0 => {
            *fresh += 1;
            KvValue::from(format!("f{fresh}"))
        }
        _ => KvValue::from(rng.pick(&["a", "b", "7", "f1"])),
    };
    match (shape, rng.below(10)) {
        (Shape::Counter, 0..=2) => KvInput::Get { key },
        (Shape::Counter, r) => KvInput::IncrBy {
            key,
            delta: match r {
                3 => -1,
                4 | 5 => 2,
                6 => 3,
                _ => 1,
            },
        },
        (Shape::Register, 0..=2) => KvInput::Get { key },
        (Shape::Register, 3 | 4) => KvInput::Set {
            key,
            value: value(rng),
        },
        (Shape::Register, 5) => KvInput::Del { key },
        (Shape::Register, 6) => KvInput::IncrBy {
            key,
            delta: 1 + rng.below(2) as i64,
        },
        (Shape::Register, _) => {
            // Expect a recently written value (often stale), a shared one, or absent.
            let expected = match rng.below(3) {
                0 if !written.is_empty() => Some(
                    written[written.len() - 1 - rng.below(written.len().min(3) as u64) as usize]
                        .clone(),
                ),
                1 => Some(rng.pick(&["a", "7"]).into()),
                _ => None,
            };
            KvInput::Cas {
                key,
                expected,
                new: value(rng),
            }
        }
    }
}

/// A wrong reply of the same kind as `out`.
fn corrupt(rng: &mut Rng, out: &KvOutput) -> KvOutput {
    match out {
        KvOutput::Value(_) => KvOutput::Value(match rng.below(4) {
            0 => None,
            _ => Some(
                rng.pick(&["a", "b", "7", "3", "5", "f1", "f2", "f3"])
                    .into(),
            ),
        }),
        KvOutput::Int(n) => KvOutput::Int(n + 1 + rng.below(3) as i64),
        KvOutput::Deleted(n) => KvOutput::Deleted(1 - n),
        KvOutput::Swapped(b) => KvOutput::Swapped(!b),
        other => other.clone(),
    }
}

/// A sequential execution of one key: completed ops in slots `[10i+1, 10i+2]` with op
/// numbers `i+1`; unknown ops called at some earlier slot boundary, applied at their
/// place in the execution or (half of them) never. One completed reply may then be
/// corrupted.
fn random_history(rng: &mut Rng, shape: Shape) -> Vec<KvOp> {
    let n = 4 + rng.below(14) as usize;
    let unknown_share = 2 + rng.below(5); // in tenths
    let mut store = BTreeMap::new();
    let (mut fresh, mut written, mut completed) = (0u32, Vec::new(), 0u64);
    let mut history = Vec::new();
    for _ in 0..n {
        let input = random_input(rng, shape, &mut fresh, &written);
        if let KvInput::Set { value, .. } | KvInput::Cas { new: value, .. } = &input {
            written.push(value.clone());
        }
        if rng.below(10) < unknown_share {
            if rng.below(2) == 0 {
                apply(&mut store, &input);
            }
            let call = 10 * rng.below(completed + 1);
            history.push(Operation {
                client: history.len() as u64,
                input,
                output: None,
                call,
                ret: u64::MAX,
            });
        } else {
            let output = apply(&mut store, &input);
            history.push(Operation {
                client: history.len() as u64,
                input,
                output: Some(KvReply {
                    output,
                    op_number: Some(completed + 1),
                    read: false,
                }),
                call: 10 * completed + 1,
                ret: 10 * completed + 2,
            });
            completed += 1;
        }
    }
    if rng.below(2) == 0 {
        let done: Vec<usize> = (0..history.len())
            .filter(|&i| history[i].output.is_some())
            .collect();
        if !done.is_empty() {
            let victim = done[rng.below(done.len() as u64) as usize];
            if let Some(reply) = history[victim].output.as_mut() {
                reply.output = corrupt(rng, &reply.output);
            }
        }
    }
    history
}

fn agree_on_random_histories(shape: Shape, seed: u64, count: usize) {
    let mut rng = Rng(seed);
    let (mut yes, mut no, mut skipped) = (0, 0, 0);
    for _ in 0..count {
        let h = random_history(&mut rng, shape);
        let members: Vec<usize> = (0..h.len()).collect();
        let want = check(&KvKeyModel, &h, &CheckOptions::default());
        assert!(!matches!(want, crate::Verdict::Unknown { .. }), "{h:#?}");
        let got = match check_key(
            &h.iter().collect::<Vec<_>>(),
            &members,
            CheckOptions::DEFAULT_STEP_CAP,
        ) {
            KeyOutcome::Linearizable => true,
            KeyOutcome::Violation {
                prefix, blocked, ..
            } => {
                assert!(blocked < h.len() && prefix.iter().all(|&i| i < h.len()));
                false
            }
            KeyOutcome::StepCap => panic!("step cap on a tiny history: {h:#?}"),
            KeyOutcome::NotApplicable => {
                skipped += 1;
                continue;
            }
        };
        assert_eq!(got, want.is_linearizable(), "{shape:?}\n{h:#?}\n{want:?}");
        if got {
            yes += 1;
        } else {
            no += 1;
        }
    }
    let share = count / 5;
    assert!(
        yes > share && no > share && skipped < count / 100,
        "unbalanced sample: {yes} linearizable, {no} not, {skipped} not decided in order"
    );
}

/// Register histories (reused and fresh values, unknown sets, dels, cas ops and
/// increments): the op-number-order check agrees with the general search. This covers
/// the retirement of values no op tells apart any more, the forgetting of cas classes
/// whose expected value is gone, a set standing in for a cas to the same value in the
/// dominance, and the pruning of values that cannot lead to a read's value.
#[test]
fn ordered_check_agrees_with_search_on_random_registers() {
    agree_on_random_histories(Shape::Register, 1, 6_000);
}

/// Counter histories with many unknown increments (both signs) and planted wrong
/// reads: the op-number-order check agrees with the general search.
#[test]
fn ordered_check_agrees_with_search_on_random_counters() {
    agree_on_random_histories(Shape::Counter, 2, 6_000);
}
