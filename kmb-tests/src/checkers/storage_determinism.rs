//! **Storage determinism**: replicas that checkpoint the same op write byte-identical
//! checkpoints (kv state + client table, canonically encoded), and what storage reads back is
//! what was written.
//!
//! From DESIGN.md "The VOPR" (checker "storage determinism") and TigerBeetle's practice of
//! deterministic storage: the same logical content has one encoding, so replicas can compare,
//! repair and state-transfer by checksum.
//!
//! Two sources per replica: the bytes it handed storage to write (`checkpoints`, hashed at the
//! write) and, after a converged run, the checkpoint its durable superblock references, **read
//! back from its simulated disk** and verified by storage's own recovery code (`disks`).
//!
//! Rules:
//! 1. For every op, every hash from either source, of every replica, is the same: replicas
//!    agree, and each disk returns the bytes its replica wrote there.
//! 2. A checkpoint read back from a disk the fault model could not damage verifies (a referenced
//!    but unreadable checkpoint there is damage nothing explains).
//! 3. The disk oracle (issue 12) found nothing: every item storage accepted as valid on any read
//!    (superblock copies, checkpoint, WAL entries — at recovery, repair reads and read-backs)
//!    holds no sector an injected fault damaged and straddles no torn write, and every item
//!    storage reported faulty is on a disk an injected fault damaged. The simulated disk keeps
//!    the ground truth (`sim_runtime::disk::accepted`, `reported_faulty`); this rule reports
//!    its first finding.

use std::collections::BTreeMap;

use super::{DiskCheckpoint, Observations, Verdict, Violation};
use crate::diagnosis::Classification;

pub const NAME: &str = "storage_determinism";

fn violation(message: String) -> Violation {
    Violation::new(NAME, Classification::StorageNondeterminism, message)
}

/// Check storage determinism (see the module docs).
pub fn check(obs: &Observations) -> Verdict {
    if let Some(first) = obs.disk_oracle.first() {
        return Verdict::Fail(violation(format!(
            "disk oracle: {first} ({} finding(s) in all)",
            obs.disk_oracle.len()
        )));
    }
    let written = obs.checkpoints.iter().flat_map(|(&replica, cps)| {
        cps.iter()
            .map(move |(&op, &hash)| (replica, op, hash, "wrote bytes"))
    });
    let mut read = Vec::new();
    for (&replica, image) in &obs.disks {
        match image.as_ref().map(|i| i.checkpoint) {
            Ok(DiskCheckpoint::Verified { op, hash }) => {
                read.push((replica, op, hash, "read back from its disk bytes"));
            }
            Ok(DiskCheckpoint::Faulty { op }) if !obs.corruptible.contains(&replica) => {
                return Verdict::Fail(
                    violation(format!(
                        "replica {replica}'s durable checkpoint at op {op} does not verify when read back, though no fault could damage its disk"
                    ))
                    .replica(replica)
                    .op(op),
                );
            }
            _ => {}
        }
    }
    let mut first: BTreeMap<u64, (u8, u128, &str)> = BTreeMap::new();
    for (replica, op, hash, how) in written.chain(read) {
        match first.get(&op) {
            None => {
                first.insert(op, (replica, hash, how));
            }
            Some(&(other, h, other_how)) if h != hash => {
                return Verdict::Fail(
                    violation(format!(
                        "checkpoint at op {op}: replica {replica} {how} hashing to {hash:032x}, replica {other} {other_how} hashing to {h:032x}"
                    ))
                    .replica(replica)
                    .op(op),
                );
            }
            Some(_) => {}
        }
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::fixture::{self, CHECKPOINT_OP};

    /// Goal: identical checkpoints at the same op pass.
    #[test]
    fn storage_determinism_identical_checkpoints_pass() {
        assert_eq!(check(&fixture::clean()), Verdict::Pass);
    }

    /// Goal: differing checkpoint bytes at the same op fire.
    #[test]
    fn storage_determinism_differing_checkpoint_bytes_fires() {
        let mut obs = fixture::clean();
        *obs.checkpoints
            .get_mut(&1)
            .expect("r1")
            .get_mut(&CHECKPOINT_OP)
            .expect("cp") ^= 1;
        let Verdict::Fail(v) = check(&obs) else {
            panic!("expected a violation");
        };
        assert_eq!(v.classification, Classification::StorageNondeterminism);
        assert_eq!((v.replica, v.op), (Some(1), Some(CHECKPOINT_OP)));
    }

    /// Goal: a checkpoint read back from a disk that differs from what its replica wrote
    /// fires, naming the read-back (every replica wrote the same bytes).
    #[test]
    fn storage_determinism_read_back_differing_from_the_write_fires() {
        let mut obs = fixture::clean();
        let image = obs.disks.get_mut(&1).expect("r1").as_mut().expect("ok");
        let DiskCheckpoint::Verified { hash, .. } = &mut image.checkpoint else {
            panic!("fixture checkpoint");
        };
        *hash ^= 1;
        let Verdict::Fail(v) = check(&obs) else {
            panic!("expected a violation");
        };
        assert_eq!((v.replica, v.op), (Some(1), Some(CHECKPOINT_OP)));
        assert!(v.message.contains("read back"), "{}", v.message);
    }

    /// Goal: an unreadable durable checkpoint fires on a replica no fault could damage, and is
    /// excused on one the fault model may damage.
    #[test]
    fn storage_determinism_unexplained_faulty_checkpoint_fires() {
        let mut obs = fixture::clean();
        obs.disks
            .get_mut(&2)
            .expect("r2")
            .as_mut()
            .expect("ok")
            .checkpoint = DiskCheckpoint::Faulty { op: CHECKPOINT_OP };
        assert!(matches!(check(&obs), Verdict::Fail(v) if v.replica == Some(2)));
        obs.corruptible.insert(2);
        assert_eq!(check(&obs), Verdict::Pass);
    }

    /// Goal: a disk-oracle finding fails the seed, naming it.
    #[test]
    fn storage_determinism_disk_oracle_finding_fires() {
        let mut obs = fixture::clean();
        obs.disk_oracle
            .push("node 3 data: storage accepted WAL entry containing damaged sectors".into());
        assert!(
            matches!(check(&obs), Verdict::Fail(v) if v.message.contains("accepted WAL entry"))
        );
    }

    /// Goal: checkpoints at different ops are not compared.
    #[test]
    fn storage_determinism_different_ops_pass() {
        let mut obs = fixture::clean();
        obs.checkpoints.get_mut(&2).expect("r2").insert(8, 0x1);
        obs.checkpoints.get_mut(&0).expect("r0").insert(9, 0x2);
        assert_eq!(check(&obs), Verdict::Pass);
    }
}
