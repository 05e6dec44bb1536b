//! Determinism: the same seed and binary give the same run, event for event.
#![cfg(madsim)]

use kmb_tests::vopr::{run_seed, RunOptions};

/// Goal: two runs of one seed give the same event hash and trace; another seed differs.
#[test]
fn vopr_same_seed_same_event_hash() {
    let options = RunOptions::default();
    let a = run_seed(7, &options);
    let b = run_seed(7, &options);
    let c = run_seed(8, &options);
    assert!(
        a.trace.as_ref().unwrap().pushed_count() > 100,
        "the trace records the run"
    );
    assert_eq!(a.event_hash, b.event_hash, "seed 7 twice");
    let (ta, tb) = (a.trace.unwrap().snapshot(), b.trace.unwrap().snapshot());
    assert_eq!(kmb_tests::trace::first_difference(&ta, &tb), None);
    assert_eq!(a.committed_ops, b.committed_ops);
    assert_ne!(a.event_hash, c.event_hash, "seeds 7 and 8");
}
