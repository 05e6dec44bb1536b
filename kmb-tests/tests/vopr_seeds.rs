//! End-to-end VOPR seeds under the simulator: the real cluster, the real clients, faults.
#![cfg(madsim)]

use kmb_tests::swarm::SwarmOptions;
use kmb_tests::vopr::{run_seed, Outcome, RunOptions};

fn options(no_faults: bool) -> RunOptions {
    RunOptions {
        swarm: SwarmOptions {
            no_faults,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn check(seed: u64, no_faults: bool) {
    if std::env::var("RUST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
    }
    let record = run_seed(seed, &options(no_faults));
    let line = serde_json::to_string(&record).unwrap();
    assert_eq!(record.outcome, Outcome::Pass, "seed {seed}: {line}");
    assert!(record.client_ops > 0, "seed {seed} ran no client operation");
}

/// Goal: a clean cluster (no faults) passes every checker.
#[test]
fn vopr_no_faults_seeds_pass() {
    for seed in 0..3 {
        check(seed, true);
    }
}

/// Goal: seeds with faults pass every checker.
#[test]
fn vopr_fault_seeds_pass() {
    for seed in 0..20 {
        check(seed, false);
    }
}
