//! Generated kmb-like histories (`crate::gen`) through the full kv check.

use crate::gen::{generate, key_name, GenOptions};
use crate::kv::{check, KvOp, Record};
use crate::{CheckOptions, Verdict};

fn ops(records: &[Record]) -> Vec<KvOp> {
    records
        .iter()
        .filter_map(|r| r.to_op().expect("generated records are valid"))
        .collect()
}

fn small(seed: u64, unknown_rate: f64, violate: bool) -> Vec<KvOp> {
    ops(&generate(&GenOptions {
        ops: 4_000,
        seed,
        unknown_rate,
        violate,
        ..GenOptions::default()
    }))
}

/// Generated histories are linearizable, with few or many unknown outcomes.
#[test]
fn generated_histories_are_linearizable() {
    for seed in 1..=6 {
        for rate in [0.0, 0.01, 0.05] {
            let h = small(seed, rate, false);
            assert_eq!(
                check(&h, &CheckOptions::default()),
                Verdict::Linearizable,
                "seed {seed} rate {rate}"
            );
        }
    }
}

/// The planted stale read is found, on a counter key.
#[test]
fn planted_stale_read_is_found() {
    for seed in 1..=6 {
        let h = small(seed, 0.05, true);
        match check(&h, &CheckOptions::default()) {
            Verdict::NotLinearizable(f) => {
                assert!((0..3).any(|k| f.partition == key_name(k, 20)), "{f}")
            }
            other => panic!("seed {seed}: expected a violation, got {other:?}"),
        }
    }
}

/// One heavily contended counter (16 clients, nothing else) with many unknown
/// increments is decided with a small step budget: the op-number order leaves only the
/// unknown increments to place.
#[test]
fn contended_counter_with_unknown_increments_is_decided() {
    let h: Vec<KvOp> = small(9, 0.05, false)
        .into_iter()
        .filter(|o| o.input.key() == Some(key_name(0, 20).as_str()))
        .collect();
    assert!(h.iter().filter(|o| o.output.is_none()).count() > 20);
    let options = CheckOptions { step_cap: 20_000 };
    assert_eq!(check(&h, &options), Verdict::Linearizable);
    let bad: Vec<KvOp> = small(9, 0.05, true)
        .into_iter()
        .filter(|o| o.input.key().is_some())
        .collect();
    assert!(matches!(check(&bad, &options), Verdict::NotLinearizable(_)));
}

/// The generator is deterministic in its seed.
#[test]
fn generator_is_reproducible() {
    let a = generate(&GenOptions::default());
    assert_eq!(a, generate(&GenOptions::default()));
    assert_ne!(
        a,
        generate(&GenOptions {
            seed: 2,
            ..GenOptions::default()
        })
    );
}
