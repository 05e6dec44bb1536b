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
//! 2. The replicas' final published states confirm it: every replica of `replica_count`
//!    published, is `normal`, has `op == commit`, all at one commit, and that commit covers
//!    every op number a client saw.

use super::{Observations, Verdict, Violation};
use crate::diagnosis::Classification;

pub const NAME: &str = "head_progress";

fn violation(message: String) -> Violation {
    Violation::new(NAME, Classification::Liveness, message)
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
    let mut commit = None;
    for r in 0..obs.replica_count {
        let Some(f) = obs.final_states.get(&r) else {
            return Verdict::Fail(
                violation(format!("replica {r} published no final state")).replica(r),
            );
        };
        if f.status != "normal" || f.op != f.commit {
            return Verdict::Fail(
                violation(format!(
                    "replica {r} ended in status {:?} (view {}) with op {} and commit {}",
                    f.status, f.view, f.op, f.commit
                ))
                .replica(r)
                .op(f.commit),
            );
        }
        match commit {
            None => commit = Some((r, f.commit)),
            Some((other, c)) if c != f.commit => {
                return Verdict::Fail(
                    violation(format!(
                        "replicas ended apart: replica {other} at commit {c}, replica {r} at commit {}",
                        f.commit
                    ))
                    .replica(r)
                    .op(f.commit),
                );
            }
            Some(_) => {}
        }
    }
    let highest_seen = obs
        .history
        .iter()
        .filter_map(|op| op.output.as_ref()?.op_number)
        .max()
        .unwrap_or(0);
    if let Some((_, c)) = commit.filter(|&(_, c)| c < highest_seen) {
        return Verdict::Fail(
            violation(format!(
                "the cluster ended at commit {c}, behind op {highest_seen} a client saw"
            ))
            .op(highest_seen),
        );
    }
    Verdict::Pass
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
            f.op = 7;
            f.commit = 7;
        }
        assert_eq!(fail(&obs).op, Some(8));
    }
}
