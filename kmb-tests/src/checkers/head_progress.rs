//! **Head progress** (liveness): once faults stop, the network heals and every replica
//! restarts, the cluster converges — every replica normal in one view with `op == commit`, one
//! commit number covering every op a client saw, one state hash — and every outstanding request
//! completes, within a bounded simulated time.
//!
//! From DESIGN.md "The VOPR" (liveness phase; checker "head progress (liveness)") and the fault
//! model's promise "once faults stop the cluster makes progress".
//!
//! Rules:
//! 1. The harness's liveness phase converged before its deadline (`liveness.converged`).
//! 2. The replicas' final published states confirm it ([`converged`], the same test the
//!    liveness phase polls): every replica of `replica_count` published, is `normal`, has
//!    `op == commit`, all in one view at one commit with one state hash, and that commit covers
//!    every op number a client saw.

use std::collections::BTreeMap;

use super::{FinalState, Observations, Verdict, Violation};
use crate::diagnosis::Classification;

pub const NAME: &str = "head_progress";

fn violation(message: String) -> Violation {
    Violation::new(NAME, Classification::Liveness, message)
}

/// Why the replicas have not converged: the first reason found, with where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotConverged {
    pub message: String,
    pub replica: Option<u8>,
    pub op: Option<u64>,
}

/// The one statement of convergence, which the VOPR's liveness phase polls and rule 2
/// re-checks: every replica of `replica_count` published a state (one that halted without
/// publishing is named with its reason), is normal with `op == commit`, all in one view at one
/// commit with one state hash, and that commit covers `highest_seen` (the highest op number a
/// client saw). Returns the common commit.
pub fn converged(
    states: &BTreeMap<u8, FinalState>,
    replica_count: u8,
    highest_seen: u64,
) -> Result<u64, NotConverged> {
    let not = |message: String, replica: Option<u8>, op: Option<u64>| NotConverged {
        message,
        replica,
        op,
    };
    for i in 0..replica_count {
        let Some(r) = states.get(&i) else {
            return Err(not(
                format!("replica {i} never published its state"),
                Some(i),
                None,
            ));
        };
        if let Some(reason) = r.halted.as_ref().filter(|_| r.status.is_empty()) {
            return Err(not(format!("replica {i} halted: {reason}"), Some(i), None));
        }
        if r.status != "normal" {
            return Err(not(
                format!("replica {i} is in status {} (view {})", r.status, r.view),
                Some(i),
                Some(r.commit),
            ));
        }
        if r.op != r.commit {
            return Err(not(
                format!(
                    "replica {i} (view {}) has op {} but commit {}",
                    r.view, r.op, r.commit
                ),
                Some(i),
                Some(r.commit),
            ));
        }
    }
    let Some(first) = states.get(&0).filter(|_| replica_count > 0) else {
        return Err(not("no replicas".into(), None, None));
    };
    let (view, commit, hash) = (first.view, first.commit, first.state_hash);
    for i in 0..replica_count {
        let r = &states[&i];
        let (v, c) = (r.view, r.commit);
        if v != view || c != commit {
            return Err(not(
                format!(
                    "replicas disagree: replica 0 at view {view} commit {commit}, replica {i} at view {v} commit {c}"
                ),
                Some(i),
                Some(c),
            ));
        }
        if r.state_hash != hash {
            return Err(not(
                format!("replica {i} has a different state hash at commit {c}"),
                Some(i),
                Some(c),
            ));
        }
    }
    if commit < highest_seen {
        return Err(not(
            format!("commit {commit} is behind op {highest_seen} seen by a client"),
            None,
            Some(highest_seen),
        ));
    }
    Ok(commit)
}

/// The highest op number any client saw in a reply (0 if none).
pub fn highest_seen(history: &[lincheck::kv::KvOp]) -> u64 {
    history
        .iter()
        .filter_map(|op| op.output.as_ref()?.op_number)
        .max()
        .unwrap_or(0)
}

/// Check head progress (see the module docs).
pub fn check(obs: &Observations) -> Verdict {
    let live = &obs.liveness;
    if !live.converged {
        let waiting = obs.history.iter().filter(|op| op.output.is_none()).count();
        return Verdict::Fail(violation(format!(
            "no convergence within {} ms of healing: {} ({waiting} client op(s) without an outcome)",
            live.deadline_ms, live.detail
        )));
    }
    match converged(
        &obs.final_states,
        obs.replica_count,
        highest_seen(&obs.history),
    ) {
        Ok(_) => Verdict::Pass,
        Err(e) => {
            let mut v = violation(format!("final states: {}", e.message));
            v.replica = e.replica;
            v.op = e.op;
            Verdict::Fail(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::fixture;

    fn fail(obs: &Observations) -> Violation {
        match check(obs) {
            Verdict::Fail(v) => v,
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    /// Goal: a converged cluster whose final states agree passes.
    #[test]
    fn head_progress_converged_cluster_passes() {
        assert_eq!(check(&fixture::clean()), Verdict::Pass);
    }

    /// Goal: liveness not reached by the deadline fires as a liveness failure.
    #[test]
    fn head_progress_not_converged_fires() {
        let mut obs = fixture::clean();
        obs.liveness.converged = false;
        obs.liveness.detail = "replica 1 is in status view_change (view 3)".into();
        let v = fail(&obs);
        assert_eq!(v.classification, Classification::Liveness);
        assert!(v.message.contains("view_change"), "{}", v.message);
    }

    /// Goal: a replica stuck in a view change at the end fires even if converged was reported.
    #[test]
    fn head_progress_final_state_view_change_fires() {
        let mut obs = fixture::clean();
        obs.final_states.get_mut(&1).expect("r1").status = "view_change".into();
        assert_eq!(fail(&obs).replica, Some(1));
    }

    /// Goal: a replica missing from the final states fires.
    #[test]
    fn head_progress_missing_replica_fires() {
        let mut obs = fixture::clean();
        obs.final_states.remove(&2);
        assert_eq!(fail(&obs).replica, Some(2));
    }

    /// Goal: a final commit behind an op a client saw fires.
    #[test]
    fn head_progress_commit_behind_client_fires() {
        let mut obs = fixture::clean();
        for f in obs.final_states.values_mut() {
            f.op = 9;
            f.commit = 9;
        }
        assert_eq!(fail(&obs).op, Some(10));
    }

    /// Goal: final states that disagree on the state hash fire, naming the odd replica.
    #[test]
    fn head_progress_state_hash_disagreement_fires() {
        let mut obs = fixture::clean();
        obs.final_states.get_mut(&2).expect("r2").state_hash ^= 1;
        let v = fail(&obs);
        assert!(v.message.contains("different state hash"), "{}", v.message);
        assert_eq!(v.replica, Some(2));
    }

    /// Goal: a replica that halted before publishing is named with its reason.
    #[test]
    fn converged_names_a_halted_replica_with_its_reason() {
        let mut obs = fixture::clean();
        let r1 = obs.final_states.get_mut(&1).expect("r1");
        r1.status.clear();
        r1.halted = Some("fsync failed".into());
        let e = converged(&obs.final_states, 3, 0).expect_err("not converged");
        assert_eq!(e.message, "replica 1 halted: fsync failed");
        assert_eq!(converged(&fixture::clean().final_states, 3, 10), Ok(10));
    }
}
