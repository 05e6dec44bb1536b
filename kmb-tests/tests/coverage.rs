//! Coverage marks (`kmb_node::coverage`) are hit by the scenarios that take their paths: a
//! pinned seed per mark that a regression exercises, asserted through `SeedRecord::marks`.
#![cfg(madsim)]

use kmb_tests::vopr::{run_seed, Outcome, RunOptions};

fn marks_of(seed: u64) -> std::collections::BTreeMap<String, u64> {
    let record = run_seed(seed, &RunOptions::default());
    assert_eq!(record.outcome, Outcome::Pass, "seed {seed}");
    record.marks
}

/// Goal: the client-table eviction seed (issue 11, `vopr_regressions`) evicts clients and
/// answers an evicted session's retry `session evicted`; the oversized-request seed refuses a
/// request at admission. Every mark a seed reports is a listed one.
#[test]
fn pinned_scenarios_hit_their_marks() {
    let eviction = marks_of(196);
    for mark in ["client_evicted", "session_evicted_reply"] {
        assert!(
            eviction.get(mark).copied().unwrap_or(0) > 0,
            "{mark}: {eviction:?}"
        );
    }
    let oversized = marks_of(1);
    assert!(
        oversized.get("request_too_large").copied().unwrap_or(0) > 0,
        "{oversized:?}"
    );
    for name in eviction.keys().chain(oversized.keys()) {
        assert!(kmb_node::coverage::is_mark(name), "{name}");
    }
}
