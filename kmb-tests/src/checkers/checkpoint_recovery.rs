//! **Checkpoint and recovery**: a restarted replica recovers exactly the state the cluster
//! committed at its recovered commit number, never a state beyond what was committed; and a
//! checkpoint holds exactly the state at its op.
//!
//! From DESIGN.md "The VOPR" (checker "checkpoint/recovery") and the fault model: crashes at
//! any instant, torn and lost writes — inside the bound, recovery loses nothing committed and
//! invents nothing.
//!
//! Rules (a state hash covers the kv state and the client table; a checkpoint's bytes are the
//! snapshot encoding that the state hash hashes, so the two are comparable):
//! 1. Each recovery `(replica, c, h)`: `c` is at most the highest op anyone committed.
//! 2. Each recovery's `h` equals every reference at commit `c`: any replica's published state
//!    hash at `c`, any replica's checkpoint at `c`, and the model (the committed log replayed,
//!    [`super::replay`]) at `c`.
//! 3. Each checkpoint `(replica, op, h)`: `h` equals any replica's published state hash at `op`
//!    and the model's at `op`.
//! 4. Recovery never forgets a committed op it had made durable (Protocol-Aware Recovery): at
//!    each restart, every op the replica itself committed earlier (with the cluster's
//!    checksum) that lies above the recovered checkpoint and at most the durable head of the
//!    previous incarnation is reported intact or faulty — never absent, as if it had never
//!    been written.
//! 5. A vote survives a crash: a restarted replica's durable view is at least every view it
//!    sent a DoViewChange for before the restart (VSR made durable: the view is synced before
//!    the DoViewChange, or a replica could vote again in an older view).

use std::collections::BTreeSet;

use super::replay;
use super::{Observations, Verdict, Violation};
use crate::diagnosis::Classification;

pub const NAME: &str = "checkpoint_recovery";

/// Every hash known for commit `c` other than the model's, with where it came from.
fn references(obs: &Observations, c: u64) -> Vec<(u128, String)> {
    let published = obs.state_hashes.iter().filter_map(|(r, hashes)| {
        hashes
            .get(&c)
            .map(|&h| (h, format!("replica {r}'s published state")))
    });
    let checkpoints = obs.checkpoints.iter().filter_map(|(r, cps)| {
        cps.get(&c)
            .map(|&h| (h, format!("replica {r}'s checkpoint")))
    });
    published.chain(checkpoints).collect()
}

/// Check checkpoints and recoveries (see the module docs).
pub fn check(obs: &Observations) -> Verdict {
    let highest = obs.highest_committed();
    let wanted: BTreeSet<u64> = obs
        .recoveries
        .iter()
        .map(|&(_, c, _)| c)
        .chain(obs.checkpoints.values().flat_map(|cps| cps.keys().copied()))
        .collect();
    let model = replay::run(obs, &wanted);
    let with_model = |c: u64| {
        let mut refs = references(obs, c);
        if let Some(&h) = model.hashes.get(&c) {
            refs.push((h, "the replayed committed log".to_string()));
        }
        refs
    };
    for (i, &(replica, c, h)) in obs.recoveries.iter().enumerate() {
        if c > highest {
            return Verdict::Fail(
                Violation::new(
                    NAME,
                    Classification::RecoveryFailure,
                    format!(
                        "replica {replica} (start {i}) recovered at commit {c}, beyond the highest committed op {highest}"
                    ),
                )
                .replica(replica)
                .op(c),
            );
        }
        if let Some((other, source)) = with_model(c).into_iter().find(|(o, _)| *o != h) {
            return Verdict::Fail(
                Violation::new(
                    NAME,
                    Classification::RecoveryFailure,
                    format!(
                        "replica {replica} (start {i}) recovered state {h:032x} at commit {c}, but {source} has {other:032x}"
                    ),
                )
                .replica(replica)
                .op(c),
            );
        }
    }
    for (&replica, reports) in &obs.recovery_reports {
        let Some(heads) = obs.durable_heads.get(&replica) else {
            continue;
        };
        if heads.len() != reports.len() {
            continue; // a start that failed before recovery: incarnations do not line up
        }
        let starts = obs.commit_incarnations.get(&replica);
        let commits = obs.commits.get(&replica).map_or(&[][..], Vec::as_slice);
        for k in 1..reports.len() {
            let report = &reports[k];
            let head = heads[k - 1];
            // Ops this replica itself committed before start `k`, as the cluster committed
            // them: their entries were in its WAL, and up to `head` they were synced.
            let end = starts
                .and_then(|s| s.get(k).copied())
                .unwrap_or(commits.len())
                .min(commits.len());
            let had: BTreeSet<u64> = commits[..end]
                .iter()
                .filter(|(op, c)| obs.committed.get(op).is_some_and(|e| e.checksum() == *c))
                .map(|&(op, _)| op)
                .collect();
            if head <= report.checkpoint_op {
                continue;
            }
            let forgotten = had
                .range(report.checkpoint_op + 1..=head)
                .copied()
                .find(|o| !report.present.contains(o) && !report.faulty.contains(o));
            if let Some(op) = forgotten {
                return Verdict::Fail(
                    Violation::new(
                        NAME,
                        Classification::RecoveryFailure,
                        format!(
                            "replica {replica} (start {k}) recovered without committed op {op}: it was durable (head {head}) before the restart, yet recovery reported it neither intact nor faulty"
                        ),
                    )
                    .replica(replica)
                    .op(op),
                );
            }
        }
    }
    for (&replica, reports) in &obs.recovery_reports {
        let Some(votes) = obs.votes.get(&replica) else {
            continue;
        };
        if votes.len() != reports.len() {
            continue;
        }
        let mut voted = 0;
        for k in 1..reports.len() {
            voted = voted.max(votes[k - 1]);
            if reports[k].view < voted {
                return Verdict::Fail(
                    Violation::new(
                        NAME,
                        Classification::RecoveryFailure,
                        format!(
                            "replica {replica} (start {k}) recovered durable view {}, but it had sent a DoViewChange for view {voted} before the restart: its vote was not durable",
                            reports[k].view
                        ),
                    )
                    .replica(replica),
                );
            }
        }
    }
    for (&replica, cps) in &obs.checkpoints {
        for (&op, &h) in cps {
            let refs = with_model(op);
            if let Some((other, source)) = refs.into_iter().find(|(o, _)| *o != h) {
                return Verdict::Fail(
                    Violation::new(
                        NAME,
                        Classification::CheckpointMismatch,
                        format!(
                            "replica {replica}'s checkpoint at op {op} holds {h:032x}, but {source} has {other:032x}"
                        ),
                    )
                    .replica(replica)
                    .op(op),
                );
            }
        }
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::fixture::{self, CHECKPOINT_OP};

    fn fail(obs: &Observations) -> Violation {
        match check(obs) {
            Verdict::Fail(v) => v,
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    /// Goal: a restart that recovers the checkpointed state passes.
    #[test]
    fn checkpoint_recovery_clean_restart_passes() {
        assert_eq!(check(&fixture::clean()), Verdict::Pass);
    }

    /// Goal: a recovered hash that differs from the others at that commit fires.
    #[test]
    fn checkpoint_recovery_wrong_recovered_state_fires() {
        let mut obs = fixture::clean();
        let rec = obs.recoveries.last_mut().expect("restart");
        rec.2 ^= 1;
        let v = fail(&obs);
        assert_eq!(v.classification, Classification::RecoveryFailure);
        assert_eq!((v.replica, v.op), (Some(2), Some(CHECKPOINT_OP)));
    }

    /// Goal: a wrong recovered state with no peer hash at its commit fires via the model.
    #[test]
    fn checkpoint_recovery_wrong_state_without_peers_fires_via_model() {
        let mut obs = fixture::clean();
        for hashes in obs.state_hashes.values_mut() {
            hashes.remove(&3);
        }
        obs.recoveries.push((0, 3, 0xbad));
        let v = fail(&obs);
        assert!(
            v.message.contains("replayed committed log"),
            "{}",
            v.message
        );
    }

    /// Goal: recovering beyond the highest committed op fires.
    #[test]
    fn checkpoint_recovery_beyond_committed_fires() {
        let mut obs = fixture::clean();
        obs.recoveries.push((1, 50, 0));
        assert_eq!(fail(&obs).op, Some(50));
    }

    /// Goal: a checkpoint consistent across replicas but not the state at its op fires.
    #[test]
    fn checkpoint_recovery_checkpoint_not_state_at_op_fires() {
        let mut obs = fixture::clean();
        let bad = obs.state_hashes[&0][&3];
        for cps in obs.checkpoints.values_mut() {
            cps.insert(CHECKPOINT_OP, bad);
        }
        obs.recoveries.retain(|&(_, c, _)| c != CHECKPOINT_OP);
        let v = fail(&obs);
        assert_eq!(v.classification, Classification::CheckpointMismatch);
        assert_eq!(v.op, Some(CHECKPOINT_OP));
    }

    /// Goal: a committed, durable op that recovery reports neither intact nor faulty fires.
    #[test]
    fn checkpoint_recovery_forgotten_durable_op_fires() {
        let mut obs = fixture::clean();
        // Replica 0 committed everything in its first incarnation, then restarted once.
        let commits = obs.commits[&0].clone();
        let op = commits
            .iter()
            .map(|&(o, _)| o)
            .max()
            .expect("replica 0 committed");
        obs.commit_incarnations.insert(0, vec![0, commits.len()]);
        obs.durable_heads.insert(0, vec![op, op]);
        let all: BTreeSet<u64> = (1..=op).collect();
        let report = |present: BTreeSet<u64>| crate::checkers::RecoveryReport {
            view: 0,
            checkpoint_op: 0,
            present,
            faulty: BTreeSet::new(),
        };
        obs.recovery_reports
            .insert(0, vec![report(BTreeSet::new()), report(all.clone())]);
        assert_eq!(check(&obs), Verdict::Pass, "everything recovered");
        let mut missing = all.clone();
        missing.remove(&op);
        obs.recovery_reports
            .insert(0, vec![report(BTreeSet::new()), report(missing)]);
        let v = fail(&obs);
        assert_eq!((v.replica, v.op), (Some(0), Some(op)));
        // Reported faulty instead of absent: fine.
        let mut faulty = crate::checkers::RecoveryReport {
            view: 0,
            checkpoint_op: 0,
            present: all,
            faulty: BTreeSet::new(),
        };
        faulty.present.remove(&op);
        faulty.faulty.insert(op);
        obs.recovery_reports
            .insert(0, vec![report(BTreeSet::new()), faulty]);
        assert_eq!(check(&obs), Verdict::Pass);
    }

    /// Goal: a restarted replica whose durable view is below a view it voted in fires.
    #[test]
    fn checkpoint_recovery_vote_not_durable_fires() {
        let mut obs = fixture::clean();
        let report = |view| crate::checkers::RecoveryReport {
            view,
            ..Default::default()
        };
        obs.recovery_reports.insert(1, vec![report(0), report(3)]);
        obs.votes.insert(1, vec![3, 0]);
        obs.durable_heads.insert(1, vec![0, 0]);
        assert_eq!(check(&obs), Verdict::Pass, "view 3 was durable");
        obs.recovery_reports.insert(1, vec![report(0), report(2)]);
        let v = fail(&obs);
        assert!(v.message.contains("not durable"), "{}", v.message);
        assert_eq!(v.replica, Some(1));
    }
}
