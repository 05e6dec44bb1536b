//! **Storage determinism**: replicas that checkpoint the same op write byte-identical
//! checkpoints (kv state + client table, canonically encoded).
//!
//! From DESIGN.md "The VOPR" (checker "storage determinism") and TigerBeetle's practice of
//! deterministic storage: the same logical content has one encoding, so replicas can compare,
//! repair and state-transfer by checksum.
//!
//! Rule: for every op, all replicas' checkpoint hashes at that op (`checkpoints`) are equal.

use std::collections::BTreeMap;

use super::{Observations, Verdict, Violation};
use crate::diagnosis::Classification;

pub const NAME: &str = "storage_determinism";

/// Check storage determinism (see the module docs).
pub fn check(obs: &Observations) -> Verdict {
    let mut first: BTreeMap<u64, (u8, u128)> = BTreeMap::new();
    for (&replica, cps) in &obs.checkpoints {
        for (&op, &hash) in cps {
            match first.get(&op) {
                None => {
                    first.insert(op, (replica, hash));
                }
                Some(&(other, h)) if h != hash => {
                    return Verdict::Fail(
                        Violation::new(
                            NAME,
                            Classification::StorageNondeterminism,
                            format!(
                                "checkpoint at op {op}: replica {replica} wrote bytes hashing to {hash:032x}, replica {other} to {h:032x}"
                            ),
                        )
                        .replica(replica)
                        .op(op),
                    );
                }
                Some(_) => {}
            }
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

    /// Goal: checkpoints at different ops are not compared.
    #[test]
    fn storage_determinism_different_ops_pass() {
        let mut obs = fixture::clean();
        obs.checkpoints.get_mut(&2).expect("r2").insert(8, 0x1);
        obs.checkpoints.get_mut(&0).expect("r0").insert(9, 0x2);
        assert_eq!(check(&obs), Verdict::Pass);
    }
}
