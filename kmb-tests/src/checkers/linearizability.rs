//! **Linearizability**: the history the real clients saw has a linearization (per key, with
//! unknown-outcome operations free to take effect at any point after their call, or never),
//! and replies respect their op numbers (real-time order; scans replayed in op-number order).
//!
//! From DESIGN.md "The VOPR" (checker "linearizability", Wing–Gong/Lowe search split by key).
//! `lincheck::kv::check` decides; a step-capped search is `Unknown`, never a pass.
//!
//! **Expiry.** A key written with an expiry time `T` (`SET … PXAT T`) disappears for every
//! op the cluster orders at cluster time `T` or later (the entry's timestamp). The checker
//! adds one [`KvInput::Tick`] per key and expiry time, spanning the real times at which the
//! cluster clock can read `T`: with replica clocks off the real one by `lo..=hi` ms
//! (`Observations::clock_skew_ms`), from `T − hi` to `T − lo` (a single instant without
//! skew). That is sound because an op's entry timestamp lies within its call and return,
//! shifted by the skew: the primary stamps the largest of its clock at the request's arrival
//! (≥ real call + lo) and its predecessor's stamp (itself ≤ real time + hi), so an op stamped
//! at or after `T` returned after `T − hi`, and one stamped before `T` was called before
//! `T − lo` — the tick may be placed between them.

use lincheck::kv::{self, KvInput, KvOp, KvOutput, KvReply};
use lincheck::{CheckOptions, Operation};

use super::{Observations, Verdict, Violation};
use crate::diagnosis::Classification;

pub const NAME: &str = "linearizability";

/// Check linearizability with the default step cap.
pub fn check(obs: &Observations) -> Verdict {
    check_with(obs, &CheckOptions::default())
}

/// Check linearizability with `options`.
pub fn check_with(obs: &Observations, options: &CheckOptions) -> Verdict {
    let ticks = ticks(&obs.history, obs.clock_origin_us, obs.clock_skew_ms);
    let history: Vec<&KvOp> = obs.history.iter().chain(&ticks).collect();
    match kv::check_refs(&history, options) {
        lincheck::Verdict::Linearizable => Verdict::Pass,
        lincheck::Verdict::NotLinearizable(f) => Verdict::Fail(
            Violation::new(NAME, Classification::Linearizability, f.to_string())
                .key(f.partition.clone()),
        ),
        lincheck::Verdict::Unknown { reason } => Verdict::Unknown(reason),
    }
}

/// One tick per (key, expiry time) the expiring writes of `history` name, over the history
/// times at which the cluster clock could read it (`clock_origin_us` is the real clock at
/// history time 0; `skew_ms` the least and greatest replica clock offsets): checked after
/// the history's own operations.
pub fn ticks(history: &[KvOp], clock_origin_us: u64, skew_ms: (i64, i64)) -> Vec<KvOp> {
    let mut expiries: std::collections::BTreeSet<(String, u64)> = Default::default();
    let mut collect = |input: &KvInput| {
        if let KvInput::SetAt {
            key, expires_at, ..
        } = input
        {
            expiries.insert((key.clone(), *expires_at));
        }
    };
    for op in history {
        match &op.input {
            KvInput::Txn { ops } => ops.iter().for_each(&mut collect),
            other => collect(other),
        }
    }
    let mut out = Vec::new();
    for (key, at) in expiries {
        let real = |offset_ms: i64| {
            let us =
                i128::from(at) * 1000 - i128::from(offset_ms) * 1000 - i128::from(clock_origin_us);
            us.clamp(0, i128::from(u64::MAX)) as u64
        };
        out.push(Operation {
            client: u64::MAX,
            input: KvInput::Tick { key, at },
            output: Some(KvReply {
                output: KvOutput::Ok,
                op_number: None,
                read: false,
            }),
            call: real(skew_ms.1),
            ret: real(skew_ms.0),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use lincheck::kv::{KvInput, KvOutput, KvReply};
    use lincheck::Operation;

    use super::*;
    use crate::checkers::fixture;

    /// Goal: the clean sequential history passes.
    #[test]
    fn linearizability_clean_history_passes() {
        assert_eq!(check(&fixture::clean()), Verdict::Pass);
    }

    /// Goal: a read that returns a value overwritten before it was invoked fires, keyed.
    #[test]
    fn linearizability_stale_read_after_write_fires() {
        let mut obs = fixture::clean();
        // After everything, a GET of k0000 (last set to "c" by the CAS) returns "a".
        obs.history.push(Operation {
            client: 1,
            input: KvInput::Get {
                key: "k0000".into(),
            },
            output: Some(KvReply {
                output: KvOutput::Value(Some("a".into())),
                op_number: None,
                read: false,
            }),
            call: 1_000,
            ret: 1_005,
        });
        let Verdict::Fail(v) = check(&obs) else {
            panic!("expected a violation");
        };
        assert_eq!(v.classification, Classification::Linearizability);
        assert_eq!(v.key.as_deref(), Some("k0000"));
    }

    /// Goal: a search that hits its step cap is Unknown, not a pass.
    #[test]
    fn linearizability_step_cap_is_unknown() {
        let mut obs = Observations::new(3);
        // Many concurrent writes and reads of one key: the search cannot finish in one step.
        for c in 0..6u64 {
            obs.history.push(Operation {
                client: c,
                input: KvInput::Set {
                    key: "k".into(),
                    value: c.to_string().into(),
                },
                output: Some(KvReply {
                    output: KvOutput::Ok,
                    op_number: None,
                    read: false,
                }),
                call: 0,
                ret: 100,
            });
            obs.history.push(Operation {
                client: c + 10,
                input: KvInput::Get { key: "k".into() },
                output: Some(KvReply {
                    output: KvOutput::Value(Some(((c + 1) % 6).to_string().into())),
                    op_number: None,
                    read: false,
                }),
                call: 0,
                ret: 100,
            });
        }
        let verdict = check_with(&obs, &CheckOptions { step_cap: 1 });
        assert!(matches!(verdict, Verdict::Unknown(_)), "{verdict:?}");
    }

    fn done(input: KvInput, output: KvOutput, call: u64, ret: u64, n: u64) -> KvOp {
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

    /// Goal: expiry is judged at the real time the cluster clock reached the expiry time: a
    /// key gone after it passes (which fails without the ticks: the value vanished), and a
    /// key still readable after it fires; the clock origin places the tick.
    #[test]
    fn linearizability_expiry_is_judged_by_ticks() {
        let origin_us = 1_700_000_000_000_000;
        let expires_at = origin_us / 1000 + 500; // history time 500 ms
        let mut obs = Observations::new(3);
        obs.clock_origin_us = origin_us;
        obs.history = vec![
            done(
                KvInput::SetAt {
                    key: "k".into(),
                    value: "v".into(),
                    expires_at,
                },
                KvOutput::Ok,
                0,
                1_000,
                1,
            ),
            done(
                KvInput::Get { key: "k".into() },
                KvOutput::Value(Some("v".into())),
                2_000,
                3_000,
                2,
            ),
            done(
                KvInput::Get { key: "k".into() },
                KvOutput::Value(None),
                600_000,
                601_000,
                3,
            ),
        ];
        assert_eq!(check(&obs), Verdict::Pass);
        let untimed = kv::check(&obs.history, &CheckOptions::default());
        assert!(matches!(untimed, lincheck::Verdict::NotLinearizable(_)));
        // Still there 100 ms after the expiry: a violation.
        obs.history[2].output = Some(KvReply {
            output: KvOutput::Value(Some("v".into())),
            op_number: Some(3),
            read: false,
        });
        assert!(matches!(check(&obs), Verdict::Fail(_)));
        // A read that overlaps the expiry time may see either.
        obs.history[2].call = 400_000;
        assert_eq!(check(&obs), Verdict::Pass);
        // Clocks skewed by up to 200 ms: a read 100 ms after the expiry may still see it; one
        // 300 ms after may not.
        obs.history[2].call = 600_000;
        assert!(matches!(check(&obs), Verdict::Fail(_)));
        obs.clock_skew_ms = (-200, 0);
        assert_eq!(check(&obs), Verdict::Pass);
        obs.history[2].call = 800_000;
        obs.history[2].ret = 801_000;
        assert!(matches!(check(&obs), Verdict::Fail(_)));
    }

    /// Goal: a transaction seen half-applied by a concurrent multi-key read fires.
    #[test]
    fn linearizability_torn_transaction_fires() {
        let mset = KvInput::Txn {
            ops: vec![
                KvInput::Set {
                    key: "a".into(),
                    value: "1".into(),
                },
                KvInput::Set {
                    key: "b".into(),
                    value: "1".into(),
                },
            ],
        };
        let mget = KvInput::Txn {
            ops: vec![
                KvInput::Get { key: "a".into() },
                KvInput::Get { key: "b".into() },
            ],
        };
        let mut obs = Observations::new(3);
        obs.history = vec![
            done(
                mset,
                KvOutput::Results(vec![KvOutput::Ok, KvOutput::Ok]),
                0,
                10,
                2,
            ),
            done(
                mget,
                KvOutput::Results(vec![
                    KvOutput::Value(Some("1".into())),
                    KvOutput::Value(None),
                ]),
                5,
                15,
                3,
            ),
        ];
        assert!(matches!(check(&obs), Verdict::Fail(_)));
        obs.history[1].output = Some(KvReply {
            output: KvOutput::Results(vec![
                KvOutput::Value(Some("1".into())),
                KvOutput::Value(Some("1".into())),
            ]),
            op_number: Some(3),
            read: false,
        });
        assert_eq!(check(&obs), Verdict::Pass);
    }
}
