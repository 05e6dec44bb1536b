//! **Hash-chain integrity**: every committed entry names its predecessor's checksum as its
//! parent, from the cluster's root entry on, and a replica's log agrees with the committed log.
//!
//! From DESIGN.md "The VOPR" (checker "hash-chain integrity") and `kmb_node::entry`: the hash
//! chain (`header.parent` = checksum of the entry at `op - 1`, op 0 = the root) is what lets a
//! replica prove its log is the committed one.
//!
//! Rules:
//! 1. The committed log: op 1's parent is `Entry::root(cluster)`'s checksum, and for
//!    consecutive committed ops `o, o+1`, `parent(o+1) == checksum(o)`.
//! 2. Each replica's final log, within its committed prefix (ops `<=` its final commit): for
//!    consecutive ops present, `parent(o+1) == checksum(o)`; and each op's checksum equals the
//!    committed entry's (op 0: the root's). Uncommitted suffixes may legitimately hold stale,
//!    non-chaining headers until the core's repair cleans them, so they are not checked.

use kmb_node::entry::Entry;

use super::{Observations, Verdict, Violation};
use crate::diagnosis::Classification;

pub const NAME: &str = "hash_chain";

fn violation(message: String) -> Violation {
    Violation::new(NAME, Classification::HashChainBreak, message)
}

/// Check hash-chain integrity (see the module docs).
pub fn check(obs: &Observations) -> Verdict {
    let root = obs
        .committed
        .values()
        .next()
        .map(|e| Entry::root(e.header.cluster).checksum());
    // 1. The committed log.
    if let (Some(root), Some(first)) = (root, obs.committed.get(&1)) {
        if first.header.parent != root {
            return Verdict::Fail(
                violation(format!(
                    "committed op 1 has parent {:032x}, not the root entry's checksum {root:032x}",
                    first.header.parent
                ))
                .op(1),
            );
        }
    }
    for ((&o, prev), (&next_op, next)) in obs.committed.iter().zip(obs.committed.iter().skip(1)) {
        if next_op == o + 1 && next.header.parent != prev.checksum() {
            return Verdict::Fail(
                violation(format!(
                    "committed op {next_op} has parent {:032x}, but committed op {o} has checksum {:032x}",
                    next.header.parent,
                    prev.checksum()
                ))
                .op(next_op),
            );
        }
    }
    // 2. Each replica's final log, within its committed prefix.
    for (&replica, log) in &obs.logs {
        let Some(commit) = obs.final_states.get(&replica).map(|f| f.commit) else {
            continue;
        };
        let committed = log.range(..=commit);
        for ((&o, &(checksum, _)), (&next_op, &(_, parent))) in
            committed.clone().zip(committed.clone().skip(1))
        {
            if next_op == o + 1 && parent != checksum {
                return Verdict::Fail(
                    violation(format!(
                        "replica {replica}: op {next_op} has parent {parent:032x}, but op {o} has checksum {checksum:032x} (both committed, commit {commit})"
                    ))
                    .replica(replica)
                    .op(next_op),
                );
            }
        }
        for (&o, &(checksum, _)) in committed {
            let expected = match o {
                0 => root,
                _ => obs.committed.get(&o).map(Entry::checksum),
            };
            if let Some(expected) = expected.filter(|&e| e != checksum) {
                return Verdict::Fail(
                    violation(format!(
                        "replica {replica}: committed op {o} has checksum {checksum:032x} in its log, but the committed entry has {expected:032x}"
                    ))
                    .replica(replica)
                    .op(o),
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

    /// Goal: chained logs that agree with the committed log pass.
    #[test]
    fn hash_chain_clean_logs_pass() {
        assert_eq!(check(&fixture::clean()), Verdict::Pass);
    }

    /// Goal: a broken parent link in a replica's committed log fires.
    #[test]
    fn hash_chain_broken_parent_in_replica_log_fires() {
        let mut obs = fixture::clean();
        obs.logs
            .get_mut(&1)
            .expect("r1")
            .get_mut(&8)
            .expect("op 8")
            .1 ^= 1;
        let v = fail(&obs);
        assert_eq!(v.classification, Classification::HashChainBreak);
        assert_eq!((v.replica, v.op), (Some(1), Some(8)));
    }

    /// Goal: a committed entry whose parent is not its predecessor fires.
    #[test]
    fn hash_chain_broken_committed_link_fires() {
        let mut obs = fixture::clean();
        let e = &obs.committed[&5];
        let body = e.body.clone();
        let forged = fixture::entry(5, 0xbad, e.header.client, e.header.request, body);
        obs.committed.insert(5, forged);
        assert_eq!(fail(&obs).op, Some(5));
    }

    /// Goal: a committed op 1 that does not chain to the root fires.
    #[test]
    fn hash_chain_first_op_not_on_root_fires() {
        let mut obs = fixture::clean();
        let e = &obs.committed[&1];
        let forged = fixture::entry(1, 0xbad, e.header.client, e.header.request, e.body.clone());
        obs.committed.insert(1, forged);
        assert_eq!(fail(&obs).op, Some(1));
    }

    /// Goal: a replica holding a different checksum for a committed op fires.
    #[test]
    fn hash_chain_log_disagrees_with_committed_fires() {
        let mut obs = fixture::clean();
        let log = obs.logs.get_mut(&2).expect("r2");
        log.insert(10, (0x1234, log[&10].1));
        let v = fail(&obs);
        assert_eq!((v.replica, v.op), (Some(2), Some(10)));
    }

    /// Goal: a non-chaining uncommitted suffix is not a violation.
    #[test]
    fn hash_chain_uncommitted_suffix_is_not_checked() {
        let mut obs = fixture::clean();
        obs.logs.get_mut(&0).expect("r0").insert(11, (0x9, 0xbad));
        obs.logs.get_mut(&0).expect("r0").insert(12, (0xa, 0xbad));
        obs.final_states.get_mut(&0).expect("r0").op = 12;
        assert_eq!(check(&obs), Verdict::Pass);
    }
}
