//! **Commit history**: a committed op is never rewritten, and each replica commits without
//! gaps.
//!
//! From DESIGN.md "The VOPR" (checker "commit history (no gaps, never rewritten)") and VR's
//! safety property: once an op commits, its entry is fixed in every later view.
//!
//! Rules:
//! 1. Never rewritten: every (op, checksum) ever seen — the committed entries, every replica's
//!    commits in every incarnation, every state transfer's checkpoint — has one checksum per op.
//! 2. No gaps: within one incarnation of a replica, each commit is the previous plus one,
//!    except that after a state transfer to op `t` (recorded in `transfers`) the next commit
//!    is `t + 1`. Going back or repeating an op within an incarnation is a violation.
//! 3. Restarts: when a replica's incarnations line up with its recoveries (one recovery per
//!    start), each incarnation's first commit is at most its recovered commit plus one (a
//!    restart replays its log from the checkpoint up to the recovered commit, re-emitting
//!    those commits, which must keep their checksums) unless a state transfer covers the jump:
//!    recovery never skips ops.
//! 4. Cluster time never goes back: along the committed log, each entry's timestamp is at
//!    least its predecessor's (the primary stamps the largest of its clock and the previous
//!    entry's timestamp; with skewed replica clocks a new primary's clock may be behind).

use std::collections::BTreeMap;

use super::{Observations, Verdict, Violation};
use crate::diagnosis::Classification;

pub const NAME: &str = "commit_history";

fn violation(message: String) -> Violation {
    Violation::new(NAME, Classification::CommitGapOrRewrite, message)
}

/// Whether replica `r` state-transferred to `t` with `after < t`.
fn transferred(obs: &Observations, r: u8, t: u64, after: u64) -> bool {
    t > after && obs.transfers.iter().any(|&(tr, op, _)| tr == r && op == t)
}

/// Check the commit history (see the module docs).
pub fn check(obs: &Observations) -> Verdict {
    // 4. Cluster time never goes back (checked first: a rewritten entry may differ only in
    // its timestamp).
    let mut previous: Option<(u64, u64)> = None;
    for (&op, entry) in &obs.committed {
        let t = entry.header.timestamp;
        if let Some((p, pt)) = previous.filter(|&(p, _)| p + 1 == op) {
            if t < pt {
                return Verdict::Fail(
                    violation(format!(
                        "cluster time went back: the committed entry at op {op} is stamped {t} ms, its predecessor at op {p} {pt} ms"
                    ))
                    .op(op),
                );
            }
        }
        previous = Some((op, t));
    }
    // 1. Never rewritten.
    let mut seen: BTreeMap<u64, (u128, String)> = obs
        .committed
        .iter()
        .map(|(&op, e)| (op, (e.checksum(), "the committed entry".to_string())))
        .collect();
    let commits = obs
        .commits
        .iter()
        .flat_map(|(&r, c)| c.iter().map(move |&(op, cs)| (r, op, cs, "committed")));
    let transfers = obs
        .transfers
        .iter()
        .map(|&(r, op, cs)| (r, op, cs, "state-transferred to"));
    for (replica, op, checksum, what) in commits.chain(transfers) {
        match seen.get(&op) {
            Some((c, source)) if *c != checksum => {
                return Verdict::Fail(
                    violation(format!(
                        "op {op} rewritten: replica {replica} {what} it as {checksum:032x}, but {source} has {c:032x}"
                    ))
                    .replica(replica)
                    .op(op),
                );
            }
            Some(_) => {}
            None => {
                seen.insert(op, (checksum, format!("replica {replica}")));
            }
        }
    }
    // 2 and 3. Contiguity per incarnation.
    for (&r, commits) in &obs.commits {
        let starts = obs
            .commit_incarnations
            .get(&r)
            .cloned()
            .unwrap_or_else(|| vec![0]);
        if starts.windows(2).any(|w| w[0] > w[1]) || starts.last() > Some(&commits.len()) {
            return Verdict::Unknown(format!(
                "replica {r}: incarnation boundaries {starts:?} do not fit {} commits",
                commits.len()
            ));
        }
        let recovered: Vec<u64> = obs
            .recoveries
            .iter()
            .filter(|(rr, _, _)| *rr == r)
            .map(|&(_, c, _)| c)
            .collect();
        let aligned = recovered.len() == starts.len();
        let mut bounds = starts.clone();
        bounds.push(commits.len());
        for (k, w) in bounds.windows(2).enumerate() {
            let incarnation = &commits[w[0].min(w[1])..w[1]];
            if aligned {
                if let Some(&(first, _)) = incarnation.first() {
                    let c = recovered[k];
                    // A restarted replica re-commits its log from its checkpoint up to the
                    // recovered commit `c` (replay), then continues: its first commit is at
                    // most `c + 1`. Starting later skips ops, unless a transfer covers them.
                    if first > c + 1 && !transferred(obs, r, first - 1, c) {
                        return Verdict::Fail(
                            violation(format!(
                                "replica {r} incarnation {k} recovered at commit {c} but first committed op {first}"
                            ))
                            .replica(r)
                            .op(first),
                        );
                    }
                }
            }
            for pair in incarnation.windows(2) {
                let (p, n) = (pair[0].0, pair[1].0);
                if n == p + 1 || (n > p + 1 && transferred(obs, r, n - 1, p)) {
                    continue;
                }
                let what = if n > p {
                    format!(
                        "skipped ops {}..={} (no state transfer to {})",
                        p + 1,
                        n - 1,
                        n - 1
                    )
                } else {
                    "went back".to_string()
                };
                return Verdict::Fail(
                    violation(format!(
                        "replica {r} incarnation {k} committed op {n} right after op {p}: {what}"
                    ))
                    .replica(r)
                    .op(n),
                );
            }
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

    /// Goal: contiguous commits, a restart re-commit and a state-transfer jump pass.
    #[test]
    fn commit_history_clean_run_passes() {
        assert_eq!(check(&fixture::clean()), Verdict::Pass);
    }

    /// Goal: the same op committed with two checksums on two replicas fires.
    #[test]
    fn commit_history_op_committed_twice_differently_fires() {
        let mut obs = fixture::clean();
        obs.commits.get_mut(&2).expect("r2")[2].1 ^= 1; // op 3
        let v = fail(&obs);
        assert_eq!(v.classification, Classification::CommitGapOrRewrite);
        assert_eq!((v.replica, v.op), (Some(2), Some(3)));
    }

    /// Goal: a committed entry stamped earlier than its predecessor fires (rule 4).
    #[test]
    fn commit_history_cluster_time_going_back_fires() {
        let mut obs = fixture::clean();
        let op = fixture::REGISTERED + 2;
        let e = obs.committed[&op].clone();
        let restamped = kmb_node::entry::Entry::new(
            kmb_node::entry::EntryFields {
                cluster: e.header.cluster,
                replica: e.header.replica,
                view: e.header.view,
                op: e.header.op,
                commit: e.header.commit,
                parent: e.header.parent,
                client: e.header.client,
                request: e.header.request,
                operation: e.header.operation,
                timestamp: 100,
            },
            e.body.clone(),
        );
        obs.committed.insert(op, restamped);
        let v = fail(&obs);
        assert!(
            v.message.contains("cluster time went back"),
            "{}",
            v.message
        );
        assert_eq!(v.op, Some(op + 1));
    }

    /// Goal: a replica rewriting an op after a restart fires.
    #[test]
    fn commit_history_rewrite_after_restart_fires() {
        let mut obs = fixture::clean();
        let r2 = obs.commits.get_mut(&2).expect("r2");
        let last = r2.len() - 1;
        r2[last].1 ^= 1;
        assert_eq!(fail(&obs).op, Some(fixture::REGISTERED + 8));
    }

    /// Goal: a commit gap within one incarnation fires.
    #[test]
    fn commit_history_gap_within_incarnation_fires() {
        let mut obs = fixture::clean();
        obs.commits.get_mut(&0).expect("r0").remove(4); // op 5
        let v = fail(&obs);
        assert_eq!((v.replica, v.op), (Some(0), Some(6)));
        assert!(v.message.contains("skipped ops 5..=5"), "{}", v.message);
    }

    /// Goal: a jump without the state transfer that explains it fires.
    #[test]
    fn commit_history_jump_without_transfer_fires() {
        let mut obs = fixture::clean();
        obs.transfers.clear();
        assert_eq!(fail(&obs).replica, Some(1));
    }

    /// Goal: a re-commit without a restart boundary fires.
    #[test]
    fn commit_history_recommit_without_restart_fires() {
        let mut obs = fixture::clean();
        obs.commit_incarnations.insert(2, vec![0]);
        obs.recoveries.retain(|&(r, c, _)| !(r == 2 && c > 0));
        let v = fail(&obs);
        assert!(v.message.contains("went back"), "{}", v.message);
    }

    /// Goal: an incarnation that starts past its recovered commit fires.
    #[test]
    fn commit_history_restart_skips_ops_fires() {
        let mut obs = fixture::clean();
        for rec in obs.recoveries.iter_mut().filter(|r| r.0 == 2 && r.1 > 0) {
            rec.1 = 2;
        }
        let v = fail(&obs);
        assert!(v.message.contains("recovered at commit 2"), "{}", v.message);
    }

    /// Goal: a state transfer to a checkpoint with a different checksum fires.
    #[test]
    fn commit_history_transfer_contradicts_commit_fires() {
        let mut obs = fixture::clean();
        obs.transfers[0].2 ^= 1;
        assert_eq!(fail(&obs).op, Some(fixture::CHECKPOINT_OP));
    }
}
