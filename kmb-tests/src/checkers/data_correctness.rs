//! **Data correctness** (model check): every reply a client saw, and every state a replica
//! published, is what the committed log produces when replayed through the real state machine.
//!
//! From DESIGN.md "The VOPR" (checker "model/data correctness") and the fault model's promise
//! "no wrong value is ever returned". The committed log (`Observations::committed`) is replayed
//! by [`super::replay`] exactly as the core applies it (client-table deduplication included).
//!
//! Rules, in terms of the replay over ops `1..=last`:
//! 1. Every committed entry is valid for its op (checksums, size, header op).
//! 2. Every state hash a replica published at commit `c <= last` equals the model's at `c`.
//! 3. Every completed client op with op number `n`:
//!    * `n` beyond every op any replica committed: violation (a reply for nothing committed);
//!    * `n <= last`: the entry at `n` must be a request the model executed there (not a no-op,
//!      not a duplicate), from this client (when `client_ids` names it), for this command,
//!      and the client's output must equal the model's reply converted exactly as the node and
//!      client do it (`commands::reply_value`, then `workload::output_of`);
//!    * otherwise (the entry at `n` was never observed): unverified.
//!
//! Verdict: the violation at the lowest op; else `Unknown` if the replay stopped at a gap
//! (an op whose entry no replica reported) or a reply could not be verified; else `Pass`.

use std::collections::BTreeSet;

use kmb_node::commands::reply_value;
use kmb_node::entry::Operation;
use kmb_node::kv::{self, SCAN_LIMIT_MAX};
use lincheck::kv::KvInput;

use super::replay::{self, Stop};
use super::{Observations, Verdict, Violation};
use crate::diagnosis::Classification;
use crate::workload::{key_of, output_of};

pub const NAME: &str = "data_correctness";

/// The state-machine request a client library call with `input` sends (the client library
/// sends `RANGE start end LIMIT n`, which the node caps at [`SCAN_LIMIT_MAX`]).
pub fn request_of(input: &KvInput) -> kv::Request {
    let b = |s: &str| s.as_bytes().to_vec();
    match input {
        KvInput::Get { key } => kv::Request::Get { key: b(key) },
        KvInput::Set { key, value } => kv::Request::Set {
            key: b(key),
            value: b(value),
        },
        KvInput::Del { key } => kv::Request::Del { key: b(key) },
        KvInput::IncrBy { key, delta } => kv::Request::IncrBy {
            key: b(key),
            delta: *delta,
        },
        KvInput::Cas { key, expected, new } => kv::Request::Cas {
            key: b(key),
            expected: expected.as_deref().map(b),
            new: b(new),
        },
        KvInput::Scan { start, end, limit } => kv::Request::Scan {
            start: b(start),
            end: b(end),
            limit: (*limit).min(u64::from(SCAN_LIMIT_MAX)) as u32,
        },
    }
}

/// Whether `committed` is the request `input` sends (scan limits compared after the cap).
fn same_request(committed: &kv::Request, input: &KvInput) -> bool {
    let cap = |r: &kv::Request| match r {
        kv::Request::Scan { start, end, limit } => kv::Request::Scan {
            start: start.clone(),
            end: end.clone(),
            limit: (*limit).min(SCAN_LIMIT_MAX),
        },
        other => other.clone(),
    };
    cap(committed) == cap(&request_of(input))
}

fn violation(message: String) -> Violation {
    Violation::new(NAME, Classification::DataCorruption, message)
}

/// Check data correctness (see the module docs).
pub fn check(obs: &Observations) -> Verdict {
    let wanted: BTreeSet<u64> = obs
        .state_hashes
        .values()
        .flat_map(|h| h.keys().copied())
        .collect();
    let model = replay::run(obs, &wanted);
    let highest = obs.highest_committed();
    let mut found: Vec<Violation> = Vec::new();
    if let Some(Stop::Invalid { op, why }) = &model.stop {
        found.push(violation(format!("committed entry at op {op} is invalid: {why}")).op(*op));
    }
    for (&replica, hashes) in &obs.state_hashes {
        let mismatch = hashes
            .range(..=model.last)
            .find(|(c, h)| model.hashes.get(c).is_some_and(|m| m != *h));
        if let Some((&c, &h)) = mismatch {
            found.push(
                violation(format!(
                    "replica {replica} published state hash {h:032x} at commit {c}, but replaying the committed log gives {:032x}",
                    model.hashes[&c]
                ))
                .replica(replica)
                .op(c),
            );
        }
    }
    let mut unverified = 0usize;
    for (index, op) in obs.history.iter().enumerate() {
        let Some(out) = &op.output else { continue };
        let key = key_of(&op.input);
        let Some(n) = out.op_number else {
            unverified += 1;
            continue;
        };
        let at = |message: String| violation(message).op(n).key(key.clone());
        let describe = format!(
            "client {} {:?} -> {:?} at op {n}",
            op.client, op.input, out.output
        );
        if n > highest || n == 0 {
            found.push(at(format!(
                "{describe}: no replica ever committed op {n} (highest committed op is {highest})"
            )));
            continue;
        }
        if n > model.last {
            unverified += 1;
            continue;
        }
        let Some(exec) = model.executions.get(&n) else {
            let what = match obs.committed.get(&n).map(|e| e.header.operation) {
                Some(Operation::Request) => {
                    "a duplicate request that was not executed there".to_string()
                }
                other => format!("a {other:?} entry"),
            };
            found.push(at(format!(
                "{describe}: the committed entry at op {n} is {what}"
            )));
            continue;
        };
        if let Some(ids) = obs.client_ids.get(&op.client) {
            if !ids.contains(&exec.client) {
                found.push(at(format!(
                    "{describe}: op {n} committed request {} of client {:#x}, not of this client's sessions {ids:x?}",
                    exec.request_number, exec.client
                )));
                continue;
            }
        }
        match &exec.request {
            Some(r) if same_request(r, &op.input) => {}
            other => {
                found.push(at(format!(
                    "{describe}: op {n} committed a different command: {other:?}"
                )));
                continue;
            }
        }
        let expected = output_of(&op.input, &reply_value(&exec.reply));
        if expected.as_ref() != Some(&out.output) {
            found.push(at(format!(
                "{describe} (history #{index}): replaying the committed log gives {expected:?} (reply {:?})",
                exec.reply
            )));
        }
    }
    if let Some(v) = found.into_iter().min_by_key(|v| v.op.unwrap_or(u64::MAX)) {
        return Verdict::Fail(v);
    }
    if let Some(Stop::Gap(g)) = model.stop {
        return Verdict::Unknown(format!(
            "no replica reported the committed entry at op {g}: ops {g}..={highest} not replayed ({unverified} replies unverified)"
        ));
    }
    if unverified > 0 {
        return Verdict::Unknown(format!(
            "{unverified} replies could not be matched to a replayed op"
        ));
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests {
    use lincheck::kv::KvOutput;

    use super::*;
    use crate::checkers::fixture;

    fn fail(obs: &Observations) -> Violation {
        match check(obs) {
            Verdict::Fail(v) => v,
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    /// Goal: replies and published hashes that match the replay pass.
    #[test]
    fn data_correctness_clean_run_passes() {
        assert_eq!(check(&fixture::clean()), Verdict::Pass);
    }

    /// Goal: a GET returning a stale value (the one before the CAS) fires.
    #[test]
    fn data_correctness_stale_get_fires() {
        let mut obs = fixture::clean();
        let at = fixture::REGISTERED + 6;
        let get = fixture::history_at(&mut obs, at);
        get.output.as_mut().expect("reply").output = KvOutput::Value(Some("a".into()));
        let v = fail(&obs);
        assert_eq!(v.classification, Classification::DataCorruption);
        assert_eq!((v.op, v.key.as_deref()), (Some(at), Some("k0000")));
    }

    /// Goal: a scan reply missing a pair fires.
    #[test]
    fn data_correctness_scan_missing_pair_fires() {
        let mut obs = fixture::clean();
        let at = fixture::REGISTERED + 8;
        let scan = fixture::history_at(&mut obs, at);
        scan.output.as_mut().expect("reply").output =
            KvOutput::Entries(vec![("k0000".into(), "c".into())]);
        assert_eq!(fail(&obs).op, Some(at));
    }

    /// Goal: a reply carrying the op number of another client's request fires.
    #[test]
    fn data_correctness_reply_at_foreign_op_fires() {
        let mut obs = fixture::clean();
        // Client 1's GET (the second scripted op) claims the op of client 0's SET (the first).
        let set_op = fixture::REGISTERED + 1;
        let get = fixture::history_at(&mut obs, set_op + 1);
        get.output.as_mut().expect("reply").op_number = Some(set_op);
        let v = fail(&obs);
        assert_eq!(v.op, Some(set_op));
        assert!(
            v.message.contains("not of this client's sessions"),
            "{}",
            v.message
        );
    }

    /// Goal: a reply at an op no replica committed fires.
    #[test]
    fn data_correctness_reply_beyond_commits_fires() {
        let mut obs = fixture::clean();
        fixture::history_at(&mut obs, 8)
            .output
            .as_mut()
            .expect("reply")
            .op_number = Some(99);
        assert_eq!(fail(&obs).op, Some(99));
    }

    /// Goal: a replica publishing a state hash the replay disagrees with fires.
    #[test]
    fn data_correctness_published_hash_differs_from_model_fires() {
        let mut obs = fixture::clean();
        *obs.state_hashes
            .get_mut(&2)
            .expect("r2")
            .get_mut(&3)
            .expect("c3") ^= 1;
        let v = fail(&obs);
        assert_eq!((v.replica, v.op), (Some(2), Some(3)));
    }

    /// Goal: a gap in the observed committed log is Unknown, never a pass.
    #[test]
    fn data_correctness_gap_in_committed_log_is_unknown() {
        let mut obs = fixture::clean();
        obs.committed.remove(&7);
        assert!(matches!(check(&obs), Verdict::Unknown(m) if m.contains("op 7")));
    }

    /// Goal: a duplicate re-commit of a request does not count as a second execution.
    #[test]
    fn data_correctness_duplicate_commit_is_not_reexecuted() {
        let mut obs = fixture::clean();
        let first = fixture::REGISTERED + 1;
        fixture::recommit(&mut obs, first);
        // The replay agrees with the published hashes, and a reply claiming the duplicate's op
        // fires.
        assert_eq!(check(&obs), Verdict::Pass);
        let duplicate = obs.highest_committed();
        fixture::history_at(&mut obs, first)
            .output
            .as_mut()
            .expect("reply")
            .op_number = Some(duplicate);
        assert!(fail(&obs).message.contains("duplicate"));
    }

    /// Goal: scan limits above the node's cap compare equal after capping.
    #[test]
    fn request_of_scan_limit_is_capped() {
        let input = KvInput::Scan {
            start: "a".into(),
            end: "b".into(),
            limit: 5000,
        };
        let committed = kv::Request::Scan {
            start: b"a".to_vec(),
            end: b"b".to_vec(),
            limit: SCAN_LIMIT_MAX,
        };
        assert!(same_request(&committed, &input));
        assert_eq!(
            fixture::request_at(&fixture::clean(), fixture::REGISTERED + 1),
            request_of(&fixture::script()[0].1)
        );
    }
}
