//! The buggy-peer fault (`Swarm::buggy_peer`, `kmb_node::inspect::BuggyViews`): a replica
//! whose StartViewChange messages name views far ahead of the cluster's (issue 13). On the
//! code before the fix (32-bit views, no jump bound) a seed with a near-limit rewrite wedged
//! the cluster (see `vopr_regressions.rs`); here such seeds must pass, and the fault must fire.
#![cfg(madsim)]

use kmb_tests::swarm::{Swarm, SwarmOptions};
use kmb_tests::vopr::{run_seed, Outcome, RunOptions};

/// The first `n` seeds from `from` whose swarm has a buggy peer of the given kind.
fn seeds_with_buggy_peer(from: u64, n: usize, near_limit: bool) -> Vec<u64> {
    (from..)
        .filter(|&s| {
            Swarm::from_seed(s, SwarmOptions::default())
                .buggy_peer
                .is_some_and(|b| b.near_limit == near_limit)
        })
        .take(n)
        .collect()
}

fn check(near_limit: bool) {
    let mut fired = 0;
    for seed in seeds_with_buggy_peer(0, 6, near_limit) {
        let record = run_seed(seed, &RunOptions::default());
        let line = serde_json::to_string(&record).unwrap();
        assert_eq!(record.outcome, Outcome::Pass, "seed {seed}: {line}");
        fired += record
            .fault_counters
            .get("peer.buggy_view")
            .copied()
            .unwrap_or(0);
    }
    assert!(fired > 0, "the buggy peer never rewrote a view");
}

/// Goal: StartViewChange messages naming a view near the largest allowed (2^63 − 3) are
/// refused by the jump bound, and every such seed still passes every checker, liveness
/// included.
#[test]
fn buggy_peer_near_the_view_limit_cannot_wedge_the_cluster() {
    check(true);
}

/// Goal: the largest jump a replica follows (`VIEW_JUMP_MAX` ahead) is followed, and the
/// cluster goes on electing primaries from there.
#[test]
fn buggy_peer_with_the_largest_allowed_jump_is_survived() {
    check(false);
}
