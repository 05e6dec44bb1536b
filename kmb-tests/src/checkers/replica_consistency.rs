//! **Replica consistency**: replicas at the same commit number hold the same state — the same
//! state hash (kv state + client table), whenever and wherever it was published.
//!
//! From DESIGN.md "The VOPR" (checker "replica consistency (same op ⇒ same state hash)") and
//! state machine replication itself: deterministic execution of one committed sequence.
//!
//! Rules:
//! 1. For every commit number `c`, all the hashes any replica published at `c`
//!    (`state_hashes`) are equal.
//! 2. Replicas whose final states have the same commit have the same final state hash, and a
//!    final state hash equals every hash published at that commit.

use std::collections::BTreeMap;

use super::{Observations, Verdict, Violation};
use crate::diagnosis::Classification;

pub const NAME: &str = "replica_consistency";

/// Check replica consistency (see the module docs).
pub fn check(obs: &Observations) -> Verdict {
    // commit → (first replica seen, its hash)
    let mut first: BTreeMap<u64, (u8, u128, &'static str)> = BTreeMap::new();
    let published = obs
        .state_hashes
        .iter()
        .flat_map(|(&r, hashes)| hashes.iter().map(move |(&c, &h)| (r, c, h, "published")));
    let finals = obs
        .final_states
        .iter()
        .map(|(&r, f)| (r, f.commit, f.state_hash, "final"));
    let mut found: Option<Violation> = None;
    for (replica, commit, hash, what) in published.chain(finals) {
        match first.get(&commit) {
            None => {
                first.insert(commit, (replica, hash, what));
            }
            Some(&(other, h, other_what)) if h != hash => {
                let v = Violation::new(
                    NAME,
                    Classification::ReplicaDivergence,
                    format!(
                        "at commit {commit}: replica {replica} ({what}) has state hash {hash:032x}, replica {other} ({other_what}) has {h:032x}"
                    ),
                )
                .replica(replica)
                .op(commit);
                // Report the lowest diverging commit.
                if found.as_ref().is_none_or(|f| f.op > Some(commit)) {
                    found = Some(v);
                }
            }
            Some(_) => {}
        }
    }
    match found {
        Some(v) => Verdict::Fail(v),
        None => Verdict::Pass,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::fixture;

    /// Goal: replicas that agree at every commit pass.
    #[test]
    fn replica_consistency_agreeing_replicas_pass() {
        assert_eq!(check(&fixture::clean()), Verdict::Pass);
    }

    /// Goal: two replicas with different hashes at commit 5 fire, naming commit 5.
    #[test]
    fn replica_consistency_different_hash_at_commit_5_fires() {
        let mut obs = fixture::clean();
        obs.state_hashes.get_mut(&1).expect("r1").insert(5, 0xdead);
        let Verdict::Fail(v) = check(&obs) else {
            panic!("expected a violation");
        };
        assert_eq!(v.classification, Classification::ReplicaDivergence);
        assert_eq!(v.op, Some(5));
        assert!(v.message.contains("replica 1"), "{}", v.message);
    }

    /// Goal: final states at the same commit with different hashes fire.
    #[test]
    fn replica_consistency_final_states_differ_fires() {
        let mut obs = fixture::clean();
        obs.final_states.get_mut(&2).expect("r2").state_hash ^= 1;
        let Verdict::Fail(v) = check(&obs) else {
            panic!("expected a violation");
        };
        assert_eq!((v.replica, v.op), (Some(2), Some(10)));
    }

    /// Goal: different hashes at different commits are not a divergence.
    #[test]
    fn replica_consistency_different_commits_pass() {
        let mut obs = fixture::clean();
        let r1 = obs.state_hashes.get_mut(&1).expect("r1");
        r1.remove(&8);
        obs.final_states.get_mut(&1).expect("r1").commit = 7;
        obs.final_states.get_mut(&1).expect("r1").state_hash = r1[&7];
        assert_eq!(check(&obs), Verdict::Pass);
    }
}
