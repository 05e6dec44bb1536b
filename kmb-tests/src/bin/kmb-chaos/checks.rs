//! The checks after the heal: the history (NDJSON and lincheck), acknowledged writes,
//! counters, availability gaps.

use std::collections::HashMap;

use lincheck::kv::{KvInput, KvOp, KvOutput, Record};
use lincheck::{CheckOptions, Operation, Verdict};

use crate::nemesis::Applied;
use crate::workload::{Op, Outcome};

/// The history as NDJSON (docs/history-format.md), in call order.
pub fn ndjson(ops: &[Op]) -> String {
    let mut sorted: Vec<&Op> = ops.iter().collect();
    sorted.sort_by_key(|o| o.call);
    let mut out = String::new();
    for op in sorted {
        let record = match &op.outcome {
            Outcome::Fail => Record::failed(op.session, op.call, Some(op.ret), &op.input),
            _ => Record::from_op(&to_kv_op(op).expect("not a fail")),
        };
        out.push_str(&record.to_line());
        out.push('\n');
    }
    out
}

/// The checker's operation (`None` for a `fail`: it certainly did not take effect).
fn to_kv_op(op: &Op) -> Option<KvOp> {
    let (output, ret) = match &op.outcome {
        Outcome::Ok(reply) => (Some(reply.clone()), op.ret),
        Outcome::Unknown => (None, u64::MAX),
        Outcome::Fail => return None,
    };
    Some(Operation {
        client: op.session,
        input: op.input.clone(),
        output,
        call: op.call,
        ret,
    })
}

pub struct LincheckResult {
    pub verdict: Verdict,
    pub seconds: f64,
    pub peak_before_mb: f64,
    pub peak_after_mb: f64,
}

/// The process's peak resident set (VmHWM), in MB.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

pub fn lincheck(ops: &[Op]) -> LincheckResult {
    let history: Vec<KvOp> = ops.iter().filter_map(to_kv_op).collect();
    let peak_before_mb = peak_rss_mb();
    let t = sim_runtime::time::Instant::now();
    let verdict = lincheck::kv::check(&history, &CheckOptions::default());
    LincheckResult {
        verdict,
        seconds: t.elapsed().as_secs_f64(),
        peak_before_mb,
        peak_after_mb: peak_rss_mb(),
    }
}

/// Every acknowledged write present or superseded, judged from the final read of each
/// register (a linearizable read after the heal, with its op number):
/// * the final value must have been written by some write (acknowledged or unknown);
/// * if it was written by an acknowledged write, that must be the acknowledged write with
///   the highest op number on the key (anything acknowledged later would have replaced it);
/// * an absent key must have no acknowledged write.
///
/// A final value written by an unknown-outcome write is accepted (that write has no op
/// number; lincheck places it).
pub fn acknowledged_writes(ops: &[Op], finals: &HashMap<String, Option<String>>) -> Vec<String> {
    let mut problems = Vec::new();
    // key -> value -> (acknowledged op number or None for unknown)
    let mut writes: HashMap<&str, HashMap<&str, Option<u64>>> = HashMap::new();
    let mut last_acked: HashMap<&str, (u64, &str)> = HashMap::new();
    for op in ops {
        let (key, value) = match &op.input {
            KvInput::Set { key, value } => (key.as_str(), &**value),
            KvInput::Cas { key, new, .. } => (key.as_str(), &**new),
            _ => continue,
        };
        let acked = match &op.outcome {
            Outcome::Ok(reply) => match reply.output {
                KvOutput::Ok | KvOutput::Swapped(true) => reply.op_number,
                _ => continue,
            },
            Outcome::Unknown => None,
            Outcome::Fail => continue,
        };
        writes.entry(key).or_default().insert(value, acked);
        if let Some(n) = acked {
            let e = last_acked.entry(key).or_insert((n, value));
            if n > e.0 {
                *e = (n, value);
            }
        }
    }
    let mut keys: Vec<&String> = finals.keys().collect();
    keys.sort();
    for key in keys {
        let last = last_acked.get(key.as_str());
        match (&finals[key], last) {
            (None, Some((n, v))) => problems.push(format!(
                "{key}: absent at the end, but {v:?} was acknowledged (op {n})"
            )),
            (None, None) => {}
            (Some(v), _) => match writes.get(key.as_str()).and_then(|w| w.get(v.as_str())) {
                None => problems.push(format!("{key}: final value {v:?} was never written")),
                Some(None) => {} // an unknown-outcome write: it took effect
                Some(Some(n)) => {
                    if let Some((m, w)) = last {
                        if m > n {
                            problems.push(format!(
                                "{key}: final value {v:?} (op {n}) but {w:?} was acknowledged \
                                 later (op {m}): a lost write"
                            ));
                        }
                    }
                }
            },
        }
    }
    problems
}

/// Counters: the final value must equal the acknowledged increments plus a subset of the
/// unknown-outcome ones. The subset-sum check is exact: a bitset of every sum reachable
/// from the unknown increments (each 1..=5, so the bitset is at most 5 × their count).
pub fn counters(ops: &[Op], finals: &HashMap<String, Option<String>>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut keys: Vec<&String> = finals.keys().collect();
    keys.sort();
    for key in keys {
        let mut acked = 0i64;
        let mut unknown = Vec::new();
        for op in ops {
            if let KvInput::IncrBy { key: k, delta } = &op.input {
                if k != key {
                    continue;
                }
                match &op.outcome {
                    Outcome::Ok(r) if matches!(r.output, KvOutput::Int(_)) => acked += delta,
                    Outcome::Unknown => unknown.push(*delta),
                    _ => {}
                }
            }
        }
        let Some(final_value) = finals[key]
            .as_deref()
            .map_or(Some(0), |v| v.parse::<i64>().ok())
        else {
            problems.push(format!(
                "{key}: final value {:?} is not an integer",
                finals[key]
            ));
            continue;
        };
        let extra = final_value - acked;
        let total: i64 = unknown.iter().sum();
        let ok = (0..=total).contains(&extra) && {
            let mut reach = vec![false; total as usize + 1];
            reach[0] = true;
            for &d in &unknown {
                for s in (d as usize..=total as usize).rev() {
                    reach[s] |= reach[s - d as usize];
                }
            }
            reach[extra as usize]
        };
        if !ok {
            problems.push(format!(
                "{key}: final {final_value} != acknowledged increments {acked} + a subset of \
                 {} unknown increments (sum {total})",
                unknown.len()
            ));
        }
    }
    problems
}

/// A gap with no successful operation.
pub struct Gap {
    pub from_us: u64,
    pub to_us: u64,
    pub cause: String,
}

/// The `count` longest gaps between successful completions in `[0, end_us]`, each with the
/// nemesis action in effect when it began (or the first one that began inside it).
pub fn gaps(ops: &[Op], end_us: u64, applied: &[Applied], count: usize) -> Vec<Gap> {
    let mut rets: Vec<u64> = ops
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Ok(_)) && o.ret <= end_us)
        .map(|o| o.ret)
        .collect();
    rets.push(0);
    rets.push(end_us);
    rets.sort_unstable();
    let mut gaps: Vec<(u64, u64)> = rets.windows(2).map(|w| (w[0], w[1])).collect();
    gaps.sort_by_key(|(a, b)| std::cmp::Reverse(b - a));
    gaps.truncate(count);
    gaps.into_iter()
        .map(|(a, b)| {
            let us = |d: std::time::Duration| d.as_micros() as u64;
            let active = applied
                .iter()
                .find(|x| us(x.start) <= a && a <= us(x.end))
                .map(|x| {
                    format!(
                        "during nemesis: {} (from {:.1}s to {:.1}s)",
                        x.what,
                        x.start.as_secs_f64(),
                        x.end.as_secs_f64()
                    )
                });
            let inside = || {
                applied
                    .iter()
                    .find(|x| a <= us(x.start) && us(x.start) <= b)
                    .map(|x| {
                        format!(
                            "nemesis began inside it: {} (at {:.1}s)",
                            x.what,
                            x.start.as_secs_f64()
                        )
                    })
            };
            let after = || {
                applied.iter().rfind(|x| us(x.end) <= a).map(|x| {
                    format!(
                        "no fault in effect; last healed: {} (healed at {:.1}s)",
                        x.what,
                        x.end.as_secs_f64()
                    )
                })
            };
            Gap {
                from_us: a,
                to_us: b,
                cause: active
                    .or_else(inside)
                    .or_else(after)
                    .unwrap_or_else(|| "no nemesis action before it (start-up)".into()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lincheck::kv::KvReply;

    fn incr(key: &str, delta: i64, outcome: Outcome) -> Op {
        Op {
            worker: 0,
            session: 1,
            input: KvInput::IncrBy {
                key: key.into(),
                delta,
            },
            call: 0,
            ret: 1,
            outcome,
        }
    }

    fn ok(n: i64) -> Outcome {
        Outcome::Ok(KvReply {
            output: KvOutput::Int(n),
            op_number: Some(1),
            read: false,
        })
    }

    #[test]
    fn counters_accept_a_subset_of_unknown_increments_only() {
        let ops = vec![
            incr("c0", 2, ok(2)),
            incr("c0", 3, Outcome::Unknown),
            incr("c0", 5, Outcome::Unknown),
        ];
        for (v, good) in [
            (2, true),
            (5, true),
            (7, true),
            (10, true),
            (4, false),
            (11, false),
        ] {
            let finals = HashMap::from([("c0".to_string(), Some(v.to_string()))]);
            assert_eq!(counters(&ops, &finals).is_empty(), good, "final {v}");
        }
    }

    #[test]
    fn a_lost_acknowledged_write_is_reported() {
        let set = |v: &str, op: u64| Op {
            worker: 0,
            session: 1,
            input: KvInput::Set {
                key: "r0".into(),
                value: v.into(),
            },
            call: op,
            ret: op + 1,
            outcome: Outcome::Ok(KvReply {
                output: KvOutput::Ok,
                op_number: Some(op),
                read: false,
            }),
        };
        let ops = vec![set("a", 1), set("b", 5)];
        let finals = |v: &str| HashMap::from([("r0".to_string(), Some(v.to_string()))]);
        assert!(acknowledged_writes(&ops, &finals("b")).is_empty());
        assert_eq!(acknowledged_writes(&ops, &finals("a")).len(), 1);
        assert_eq!(acknowledged_writes(&ops, &finals("z")).len(), 1);
    }
}
