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
//! 2. The replicas' final published states still show it ([`converged`], the test the liveness
//!    phase polls, on the states taken after the disks were read back: a replica that stopped
//!    or moved on since the poll fires here): every replica of `replica_count` published, is
//!    `normal`, has `op == commit` and its storage's durable claim at or above `commit` (no
//!    sync still in flight), all in one view at one commit `c` with one state hash, and
//!    `c` covers every op number a client saw.
//! 3. The replicas' **durable** state, read back from their disks and examined by storage's
//!    own recovery code (`Observations::disks`, independent of what the replicas published),
//!    confirms it: every replica durably holds the log through `c` (its recovered log reaches
//!    `c`, or its checkpoint does), every durable entry at or below `c` is the committed one
//!    (same checksum as `Observations::committed`, and all replicas' durable entries at `c`
//!    agree), and nothing is unreadable — unless the fault model could damage that replica's
//!    disk (then its image is not required to be whole: the next start repairs it from peers).

use std::collections::BTreeMap;

use super::{DiskCheckpoint, DiskImage, FinalState, Observations, Verdict, Violation};
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
        // The storage I/O runs beside the core: a backup may apply a commit before its own
        // sync of those ops completes. Converged means that sync completed too (rule 3 then
        // reads the disk).
        if r.durable < r.commit {
            return Err(not(
                format!(
                    "replica {i}'s storage holds the log durably through op {} only, below commit {} (a sync in flight)",
                    r.durable, r.commit
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
    let commit = match converged(
        &obs.final_states,
        obs.replica_count,
        highest_seen(&obs.history),
    ) {
        Ok(commit) => commit,
        Err(e) => {
            let mut v = violation(format!("final states: {}", e.message));
            v.replica = e.replica;
            v.op = e.op;
            return Verdict::Fail(v);
        }
    };
    check_disks(obs, commit)
}

/// The durable op a disk image holds at `op`: the entry's checksum, from the recovered log or
/// (at the checkpoint's op) the superblock's checkpoint reference.
fn durable_at(image: &DiskImage, op: u64) -> Option<u128> {
    if let Some(&c) = image.log.get(&op) {
        return Some(c);
    }
    let cp_op = match image.checkpoint {
        DiskCheckpoint::Empty => 0,
        DiskCheckpoint::Verified { op, .. } | DiskCheckpoint::Faulty { op } => op,
    };
    (cp_op == op).then_some(image.checkpoint_entry)
}

/// Rule 3: the disks, read back after convergence at `commit`.
fn check_disks(obs: &Observations, commit: u64) -> Verdict {
    if obs.disks.is_empty() {
        return Verdict::Unknown(String::from(
            "no replica's disk was read back after convergence",
        ));
    }
    let mut at_commit: Option<(u8, u128)> = None;
    for i in 0..obs.replica_count {
        let damaged_allowed = obs.corruptible.contains(&i);
        let image = match obs.disks.get(&i) {
            None => {
                return Verdict::Fail(
                    violation(format!("replica {i}'s disk was not read back")).replica(i),
                )
            }
            Some(Err(_)) if damaged_allowed => continue,
            Some(Err(e)) => {
                return Verdict::Fail(
                    violation(format!(
                        "replica {i}'s disk, read back after convergence, cannot be examined ({e}) though no fault could damage it"
                    ))
                    .replica(i),
                )
            }
            Some(Ok(image)) => image,
        };
        if !image.faulty.is_empty() {
            if damaged_allowed {
                continue;
            }
            return Verdict::Fail(
                violation(format!(
                    "replica {i}'s durable log has unreadable ops {:?} though no fault could damage its disk",
                    image.faulty
                ))
                .replica(i)
                .op(image.faulty[0]),
            );
        }
        for (&op, &checksum) in image.log.range(..=commit) {
            let committed = obs.committed.get(&op).map(|e| e.header.checksum);
            if committed.is_some_and(|c| c != checksum) {
                return Verdict::Fail(
                    violation(format!(
                        "replica {i} durably holds at op {op} an entry ({checksum:032x}) other than the committed one"
                    ))
                    .replica(i)
                    .op(op),
                );
            }
        }
        let Some(held) = durable_at(image, commit) else {
            let head = image.log.keys().next_back().copied();
            return Verdict::Fail(
                violation(format!(
                    "replica {i} is normal at commit {commit}, but its disk durably holds the log only through op {} (a power loss now would lose the rest)",
                    head.map_or_else(|| "none".into(), |h| h.to_string())
                ))
                .replica(i)
                .op(commit),
            );
        };
        match at_commit {
            None => at_commit = Some((i, held)),
            Some((other, c)) if c != held => {
                return Verdict::Fail(
                    violation(format!(
                        "at commit {commit}, replica {i}'s durable entry ({held:032x}) differs from replica {other}'s ({c:032x})"
                    ))
                    .replica(i)
                    .op(commit),
                )
            }
            Some(_) => {}
        }
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

    /// Goal: a replica whose disk holds the log only below the converged commit fires (a
    /// replica that claims `op == commit` must hold it durably).
    #[test]
    fn head_progress_durable_log_short_of_the_commit_fires() {
        let mut obs = fixture::clean();
        let commit = obs.final_states[&0].commit;
        let image = obs.disks.get_mut(&1).expect("r1").as_mut().expect("ok");
        image.log.remove(&commit);
        let v = fail(&obs);
        assert_eq!((v.replica, v.op), (Some(1), Some(commit)));
        assert!(
            v.message.contains("durably holds the log only through"),
            "{}",
            v.message
        );
    }

    /// Goal: a durable entry other than the committed one fires.
    #[test]
    fn head_progress_durable_entry_not_the_committed_one_fires() {
        let mut obs = fixture::clean();
        *obs.disks
            .get_mut(&2)
            .expect("r2")
            .as_mut()
            .expect("ok")
            .log
            .get_mut(&(fixture::CHECKPOINT_OP + 2))
            .expect("op") ^= 1;
        let v = fail(&obs);
        assert_eq!(
            (v.replica, v.op),
            (Some(2), Some(fixture::CHECKPOINT_OP + 2))
        );
    }

    /// Goal: unreadable durable ops fire on a replica no fault could damage, and are excused
    /// on one whose disk the fault model may damage.
    #[test]
    fn head_progress_unexplained_durable_damage_fires() {
        let mut obs = fixture::clean();
        obs.disks
            .get_mut(&0)
            .expect("r0")
            .as_mut()
            .expect("ok")
            .faulty = vec![4];
        assert_eq!(fail(&obs).replica, Some(0));
        obs.corruptible.insert(0);
        assert_eq!(check(&obs), Verdict::Pass);
    }

    /// Goal: no disk read back after a converged run is Unknown, never a pass.
    #[test]
    fn head_progress_without_disks_is_unknown() {
        let mut obs = fixture::clean();
        obs.disks.clear();
        assert!(matches!(check(&obs), Verdict::Unknown(_)));
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

    /// Goal: a replica whose storage has not yet made the log durable through the common
    /// commit (its I/O task's sync still in flight) has not converged: the disks are read
    /// back only once every sync completed.
    #[test]
    fn converged_waits_for_a_sync_in_flight() {
        let mut obs = fixture::clean();
        let r2 = obs.final_states.get_mut(&2).expect("r2");
        r2.durable = r2.commit - 1;
        let e = converged(&obs.final_states, 3, 0).expect_err("not converged");
        assert_eq!((e.replica, e.op), (Some(2), Some(10)));
        assert!(e.message.contains("a sync in flight"), "{}", e.message);
    }
}
