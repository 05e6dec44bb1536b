//! Ad-hoc seed runner for debugging (simulation only): `VOPR_SEED=17 VOPR_COUNT=1` runs seeds
//! 17..18 with faults (`VOPR_NO_FAULTS=1` turns them off) and prints one line per seed.
//! Without `VOPR_SEED` it does nothing.
#![cfg(madsim)]

use kmb_tests::swarm::SwarmOptions;
use kmb_tests::vopr::{run_seed, Outcome, RunOptions};

#[test]
fn vopr_debug_seeds() {
    let Ok(seed) = std::env::var("VOPR_SEED") else {
        return;
    };
    let first: u64 = seed.parse().expect("VOPR_SEED is a number");
    let count: u64 = std::env::var("VOPR_COUNT")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    if std::env::var("RUST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
    }
    let options = RunOptions {
        swarm: SwarmOptions {
            no_faults: std::env::var("VOPR_NO_FAULTS").is_ok(),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut failed = Vec::new();
    for seed in first..first + count {
        let record = run_seed(seed, &options);
        if record.outcome == Outcome::Pass {
            println!("seed {seed}: pass ({} committed)", record.committed_ops);
        } else {
            println!(
                "seed {seed}: {:?} {:?}: {}",
                record.outcome,
                record.failure_kind,
                record.failure_message.as_deref().unwrap_or("")
            );
            if std::env::var("VOPR_JSON").is_ok() {
                println!("{}", serde_json::to_string(&record).unwrap());
            }
            failed.push(seed);
        }
    }
    println!("failed seeds: {failed:?}");
    assert!(failed.is_empty(), "failed seeds: {failed:?}");
}
