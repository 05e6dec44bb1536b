//! The search against a brute-force checker on many small random register histories.

use crate::hash::mix64;
use crate::jepsen::{Register, RegisterInput as I, RegisterOp, RegisterOutput as O};
use crate::{check, CheckOptions, Model, Operation, Verdict};

/// Tries every order (and every omission of unknown-outcome ops) that respects real time.
fn brute_force(ops: &[RegisterOp], placed: &mut Vec<bool>, state: Option<i64>) -> bool {
    if ops
        .iter()
        .zip(placed.iter())
        .all(|(o, &p)| p || o.output.is_none())
    {
        return true;
    }
    for x in 0..ops.len() {
        if placed[x] {
            continue;
        }
        // x can go next iff no unplaced completed op returned before x was called.
        let blocked = ops
            .iter()
            .zip(placed.iter())
            .any(|(y, &p)| !p && y.output.is_some() && y.ret < ops[x].call);
        if blocked {
            continue;
        }
        let nexts = match &ops[x].output {
            Some(out) => Register
                .step(&state, &ops[x].input, out)
                .into_iter()
                .collect(),
            None => Register.step_unknown(&state, &ops[x].input),
        };
        for next in nexts {
            placed[x] = true;
            let ok = brute_force(ops, placed, next);
            placed[x] = false;
            if ok {
                return true;
            }
        }
    }
    false
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0) % n
    }
}

fn random_history(rng: &mut Rng) -> Vec<RegisterOp> {
    let n = 1 + rng.below(7) as usize;
    let value = |rng: &mut Rng| rng.below(3) as i64;
    (0..n)
        .map(|c| {
            let call = rng.below(12);
            let ret = call + rng.below(6);
            let (input, output) = match rng.below(3) {
                0 => {
                    let v = rng.below(4);
                    (I::Read, O::Read((v > 0).then_some(v as i64 - 1)))
                }
                1 => (I::Write(value(rng)), O::Write),
                _ => (I::Cas(value(rng), value(rng)), O::Cas(rng.below(2) == 0)),
            };
            let unknown = rng.below(5) == 0;
            Operation {
                client: c as u64,
                input,
                output: (!unknown).then_some(output),
                call,
                ret: if unknown { u64::MAX } else { ret },
            }
        })
        .collect()
}

/// On 20 000 random histories of up to 7 ops, the search agrees with brute force.
#[test]
fn search_random_small_histories_agrees_with_brute_force() {
    let mut rng = Rng(42);
    let (mut yes, mut no) = (0, 0);
    for _ in 0..20_000 {
        let h = random_history(&mut rng);
        let want = brute_force(&h, &mut vec![false; h.len()], None);
        let got = check(&Register, &h, &CheckOptions::default());
        assert_eq!(got.is_linearizable(), want, "{h:#?}\n{got:?}");
        if let Verdict::NotLinearizable(f) = &got {
            assert!(f.op_index < h.len() && f.prefix.iter().all(|&i| i < h.len()));
        }
        if want {
            yes += 1;
        } else {
            no += 1;
        }
    }
    assert!(yes > 2_000 && no > 2_000, "unbalanced sample: {yes} / {no}");
}
