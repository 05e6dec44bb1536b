//! **Data correctness** (model check): every reply a client saw, and every state a replica
//! published, is what the committed log produces — replies judged by an **independent
//! specification** of the key-value semantics, not by the node's own `kv` code.
//!
//! From DESIGN.md "The VOPR" (checker "model/data correctness") and the fault model's promise
//! "no wrong value is ever returned". The committed log (`Observations::committed`) is replayed
//! by [`super::replay`] exactly as the core applies it (client-table deduplication and the
//! session rule included); the requests it executes are then run, in op order, through
//! [`spec`]: lincheck's sequential specification (`lincheck::kv::TimedStore`, written apart from the
//! node) plus SCAN's two documented reply bounds. A bug in the node's `kv` code that every
//! replica shares (so every replica agrees, and the replay — which runs that code — agrees too)
//! is caught here by the specification.
//!
//! Rules, in terms of the replay over ops `1..=last`:
//! 1. Every committed entry is valid for its op (checksums, size, header op).
//! 2. Every state hash a replica published at commit `c <= last` equals the replay's at `c`.
//! 3. Every executed request's reply, as the node's `kv` code computes it, equals the
//!    specification's for that request in that state (whether or not a client saw it).
//! 4. Every completed client op with op number `n`:
//!    * `n` beyond every op any replica committed: violation (a reply for nothing committed);
//!    * `n <= last`: the entry at `n` must be a request the model executed there (not a no-op,
//!      not a duplicate), from this client (when `client_ids` names it), for this command,
//!      and the client's output must equal the specification's output for it;
//!    * otherwise (the entry at `n` was never observed): unverified.
//!
//! 5. Every completed read the primary served without an entry (its reply marked a read of
//!    the state after op `n`): `n` committed, and the client's output equal to the
//!    specification's for that read in the state after op `n`, at that state's clock.
//!
//! Verdict: the violation at the lowest op; else `Unknown` if the replay stopped at a gap
//! (an op whose entry no replica reported) or a reply could not be verified; else `Pass`.

use std::collections::{BTreeMap, BTreeSet};

use kmb_node::commands::reply_value;
use kmb_node::entry::Operation;
use kmb_node::kv::{self, SCAN_BYTES_MAX, SCAN_LIMIT_MAX};
use lincheck::kv::{KvInput, KvOutput, KvValue, TimedStore};

use super::replay::{self, Stop};
use super::{Observations, Verdict, Violation};
use crate::diagnosis::Classification;
use crate::workload::{key_of, output_of, txn_form, TxnForm};

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
        KvInput::SetAt {
            key,
            value,
            expires_at,
        } => kv::Request::SetWith {
            key: b(key),
            value: b(value),
            condition: kv::SetCondition::Always,
            expiry: kv::SetExpiry::At(*expires_at),
            get: false,
        },
        // A tick is the checker's, never sent: as an empty transaction it matches nothing.
        KvInput::Tick { .. } => kv::Request::Multi {
            watches: Vec::new(),
            commands: Vec::new(),
        },
        KvInput::Txn { ops } => match txn_form(ops) {
            TxnForm::MSet => kv::Request::MSet {
                pairs: ops
                    .iter()
                    .filter_map(|o| match o {
                        KvInput::Set { key, value } => Some((b(key), b(value))),
                        _ => None,
                    })
                    .collect(),
                only_if_none: false,
            },
            TxnForm::MGet => kv::Request::MGet {
                keys: ops.iter().filter_map(KvInput::key).map(b).collect(),
            },
            TxnForm::Tx => kv::Request::Multi {
                watches: Vec::new(),
                commands: ops.iter().map(request_of).collect(),
            },
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

/// The specification's state: key → value, expiries, the clock.
pub type SpecStore = TimedStore;

/// A specification of the key-value semantics: applies one request to the store at the
/// cluster time (ms) its entry carries.
pub type Spec = fn(&mut SpecStore, &KvInput, u64) -> KvOutput;

/// The key-value semantics as documented, independent of the node's `kv` code: lincheck's
/// sequential specification, with SCAN's reply bounds — at most [`SCAN_LIMIT_MAX`] pairs
/// whatever the limit asked, and no pair added once the reply already holds
/// [`SCAN_BYTES_MAX`] key and value bytes.
pub fn spec(store: &mut SpecStore, input: &KvInput, now: u64) -> KvOutput {
    let KvInput::Scan { start, end, limit } = input else {
        return store.apply(input, now);
    };
    let capped = KvInput::Scan {
        start: start.clone(),
        end: end.clone(),
        limit: (*limit).min(u64::from(SCAN_LIMIT_MAX)),
    };
    match store.apply(&capped, now) {
        KvOutput::Entries(all) => {
            let mut bytes = 0usize;
            let mut entries = Vec::new();
            for (k, v) in all {
                if bytes >= SCAN_BYTES_MAX {
                    break;
                }
                bytes += k.len() + v.len();
                entries.push((k, v));
            }
            KvOutput::Entries(entries)
        }
        other => other,
    }
}

/// What a committed request is to the specification.
enum SpecInput {
    /// A data command, with string keys and values.
    Command(KvInput),
    /// No effect on the data: a registration, or a body that did not decode (the node answers
    /// "malformed request" and changes nothing).
    NoEffect,
    /// Keys or values that are not UTF-8: outside what the specification states.
    Unmodelled,
}

fn spec_input(request: Option<&kv::Request>) -> SpecInput {
    let t = |b: &[u8]| String::from_utf8(b.to_vec()).ok();
    let tv = |b: &[u8]| std::str::from_utf8(b).ok().map(KvValue::from);
    let input = match request {
        None | Some(kv::Request::Register) => return SpecInput::NoEffect,
        Some(kv::Request::Get { key }) => t(key).map(|key| KvInput::Get { key }),
        Some(kv::Request::Set { key, value }) => t(key)
            .zip(tv(value))
            .map(|(key, value)| KvInput::Set { key, value }),
        Some(kv::Request::Del { key }) => t(key).map(|key| KvInput::Del { key }),
        Some(kv::Request::IncrBy { key, delta }) => {
            t(key).map(|key| KvInput::IncrBy { key, delta: *delta })
        }
        Some(kv::Request::Cas { key, expected, new }) => {
            let expected = match expected {
                None => Some(None),
                Some(e) => tv(e).map(Some),
            };
            match (t(key), expected, tv(new)) {
                (Some(key), Some(expected), Some(new)) => Some(KvInput::Cas { key, expected, new }),
                _ => None,
            }
        }
        Some(kv::Request::Scan { start, end, limit }) => {
            t(start).zip(t(end)).map(|(start, end)| KvInput::Scan {
                start,
                end,
                limit: u64::from(*limit),
            })
        }
        Some(kv::Request::SetWith {
            key,
            value,
            condition: kv::SetCondition::Always,
            expiry: kv::SetExpiry::At(expires_at),
            get: false,
        }) => t(key).zip(tv(value)).map(|(key, value)| KvInput::SetAt {
            key,
            value,
            expires_at: *expires_at,
        }),
        Some(kv::Request::MSet {
            pairs,
            only_if_none: false,
        }) => pairs
            .iter()
            .map(|(k, v)| {
                t(k).zip(tv(v))
                    .map(|(key, value)| KvInput::Set { key, value })
            })
            .collect::<Option<Vec<_>>>()
            .map(|ops| KvInput::Txn { ops }),
        Some(kv::Request::MGet { keys }) => keys
            .iter()
            .map(|k| t(k).map(|key| KvInput::Get { key }))
            .collect::<Option<Vec<_>>>()
            .map(|ops| KvInput::Txn { ops }),
        Some(kv::Request::Multi { watches, commands }) if watches.is_empty() => {
            let mut ops = Vec::with_capacity(commands.len());
            for c in commands {
                match spec_input(Some(c)) {
                    SpecInput::Command(input)
                        if input.key().is_some() && !matches!(input, KvInput::Txn { .. }) =>
                    {
                        ops.push(input)
                    }
                    _ => return SpecInput::Unmodelled,
                }
            }
            Some(KvInput::Txn { ops })
        }
        // The rest of the command set is outside what the VOPR's clients send and what the
        // specification states.
        Some(_) => None,
    };
    input.map_or(SpecInput::Unmodelled, SpecInput::Command)
}

/// Check data correctness (see the module docs).
pub fn check(obs: &Observations) -> Verdict {
    check_with(obs, spec)
}

/// Check data correctness against the specification `spec` (tests pass a wrong one to show
/// that a disagreement between the node's `kv` code and the specification fires).
pub fn check_with(obs: &Observations, spec: Spec) -> Verdict {
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
    // Rule 3: the executed requests, in op order, through the specification. The spec's
    // outputs stand for ops up to `spec_last` (an unmodelled request ends the comparison).
    let mut store = SpecStore::default();
    let mut spec_outputs: BTreeMap<u64, KvOutput> = BTreeMap::new();
    let mut spec_last = model.last;
    // Reads served without an entry (rule 5), by the op whose state they read; each is
    // evaluated on the specification's state after that op, at the state's clock (the
    // largest timestamp applied).
    let mut reads: Vec<(u64, usize)> = obs
        .history
        .iter()
        .enumerate()
        .filter_map(|(i, op)| {
            let out = op.output.as_ref()?;
            (out.read && out.op_number? <= model.last).then_some((out.op_number?, i))
        })
        .collect();
    reads.sort_unstable();
    let mut reads = reads.into_iter().peekable();
    let mut read_outputs: BTreeMap<usize, KvOutput> = BTreeMap::new();
    let mut clock = 0u64;
    let mut read_state =
        |store: &mut SpecStore, before: u64, clock: u64, out: &mut BTreeMap<usize, KvOutput>| {
            while let Some(&(_, i)) = reads.peek().filter(|&&(n, _)| n < before) {
                reads.next();
                out.insert(i, spec(store, &obs.history[i].input, clock));
            }
        };
    for (&op, exec) in &model.executions {
        read_state(&mut store, op, clock, &mut read_outputs);
        if exec.request.is_some() {
            clock = clock.max(exec.timestamp);
        }
        let input = match spec_input(exec.request.as_ref()) {
            SpecInput::Command(input) => input,
            SpecInput::NoEffect => continue,
            SpecInput::Unmodelled => {
                spec_last = op - 1;
                break;
            }
        };
        let expected = spec(&mut store, &input, exec.timestamp);
        let node = output_of(&input, &reply_value(&exec.reply));
        if node.as_ref() != Some(&expected) {
            found.push(
                violation(format!(
                    "op {op}: the node's kv code replied {:?} to {input:?}; the specification gives {expected:?}",
                    exec.reply
                ))
                .op(op)
                .key(key_of(&input)),
            );
        }
        spec_outputs.insert(op, expected);
    }
    read_state(&mut store, spec_last + 1, clock, &mut read_outputs);
    let mut unverified = 0usize;
    for (index, op) in obs.history.iter().enumerate() {
        let Some(out) = &op.output else { continue };
        let key = key_of(&op.input);
        let Some(n) = out.op_number else {
            unverified += 1;
            continue;
        };
        let at = |message: String| violation(message).op(n).key(key.clone());
        // Formatted only for a violation (the inputs may carry large values).
        let describe = || {
            format!(
                "client {} {:?} -> {:?} at op {n}",
                op.client, op.input, out.output
            )
        };
        if out.read {
            // Rule 5: a read of the state after op `n`.
            if n > highest {
                found.push(at(format!(
                    "{describe} (a read): no replica ever committed op {n} (highest committed op is {highest})",
                    describe = describe()
                )));
            } else if n > spec_last {
                unverified += 1;
            } else if read_outputs.get(&index) != Some(&out.output) {
                found.push(at(format!(
                    "{describe} (history #{index}), a read of the state after op {n}: the specification, over the committed log, gives {:?}",
                    read_outputs.get(&index),
                    describe = describe()
                )));
            }
            continue;
        }
        if n > highest || n == 0 {
            found.push(at(format!(
                "{describe}: no replica ever committed op {n} (highest committed op is {highest})",
                describe = describe()
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
                "{describe}: the committed entry at op {n} is {what}",
                describe = describe()
            )));
            continue;
        };
        if let Some(ids) = obs.client_ids.get(&op.client) {
            if !ids.contains(&exec.client) {
                found.push(at(format!(
                    "{describe}: op {n} committed request {} of client {:#x}, not of this client's sessions {ids:x?}",
                    exec.request_number,
                    exec.client,
                    describe = describe()
                )));
                continue;
            }
        }
        match &exec.request {
            Some(r) if same_request(r, &op.input) => {}
            other => {
                found.push(at(format!(
                    "{describe}: op {n} committed a different command: {other:?}",
                    describe = describe()
                )));
                continue;
            }
        }
        if n > spec_last {
            unverified += 1;
            continue;
        }
        let expected = spec_outputs.get(&n);
        if expected != Some(&out.output) {
            found.push(at(format!(
                "{describe} (history #{index}): the specification, over the committed log, gives {expected:?}",
                describe = describe()
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

    fn the_read(obs: &mut Observations) -> &mut lincheck::kv::KvReply {
        obs.history
            .iter_mut()
            .find_map(|h| h.output.as_mut().filter(|o| o.read))
            .expect("the read")
    }

    fn fail(obs: &Observations) -> Violation {
        violation_of(check(obs))
    }

    fn violation_of(verdict: Verdict) -> Violation {
        match verdict {
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

    /// Goal: a read served without an entry (rule 5) is judged on the state after the op it
    /// names: the GET's reply, named as a read of the state after the op before it, passes;
    /// the value from before the CAS fires; a read of an op never committed fires.
    #[test]
    fn data_correctness_judges_reads_at_the_state_they_name() {
        let mut obs = fixture::clean();
        let at = fixture::REGISTERED + 6;
        let get = fixture::history_at(&mut obs, at);
        let reply = get.output.as_mut().expect("reply");
        reply.read = true;
        reply.op_number = Some(at - 1);
        assert_eq!(check(&obs), Verdict::Pass);
        let mut stale = obs.clone();
        the_read(&mut stale).output = KvOutput::Value(Some("a".into()));
        let v = fail(&stale);
        assert_eq!((v.op, v.key.as_deref()), (Some(at - 1), Some("k0000")));
        assert!(
            v.message.contains("a read of the state after op"),
            "{}",
            v.message
        );
        the_read(&mut obs).op_number = Some(99);
        assert_eq!(fail(&obs).op, Some(99));
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

    /// A wrong specification: INCRBY adds one too many.
    fn off_by_one(store: &mut SpecStore, input: &KvInput, now: u64) -> KvOutput {
        match input {
            KvInput::IncrBy { key, delta } => spec(
                store,
                &KvInput::IncrBy {
                    key: key.clone(),
                    delta: delta + 1,
                },
                now,
            ),
            other => spec(store, other, now),
        }
    }

    /// Goal: the replies are judged by the specification, not by the node's kv code — when the
    /// two disagree (here a wrong specification stands in for a kv bug every replica shares, so
    /// the replay, the replicas and the clients all agree with each other), the check fires at
    /// the first op where they differ.
    #[test]
    fn data_correctness_node_kv_disagreeing_with_the_specification_fires() {
        let obs = fixture::clean();
        let incr = fixture::REGISTERED + 4;
        assert!(matches!(
            fixture::history_at(&mut obs.clone(), incr).input,
            KvInput::IncrBy { .. }
        ));
        let v = violation_of(check_with(&obs, off_by_one));
        assert_eq!((v.op, v.key.as_deref()), (Some(incr), Some("k0002")));
        assert!(
            v.message.contains("the specification gives"),
            "{}",
            v.message
        );
    }

    /// Goal: the specification's SCAN bounds — at most SCAN_LIMIT_MAX pairs, and no pair added
    /// once the reply holds SCAN_BYTES_MAX bytes (the pair that crosses it is kept) — agree
    /// with the node's kv code on the boundary cases.
    #[test]
    fn spec_scan_bounds_agree_with_the_node() {
        let big = "x".repeat(SCAN_BYTES_MAX / 2 - 2);
        let mut store = SpecStore::default();
        let mut node = kv::KvState::new();
        for i in 0..3 {
            let (key, value) = (format!("k{i}"), big.clone());
            spec(
                &mut store,
                &KvInput::Set {
                    key: key.clone(),
                    value: value.as_str().into(),
                },
                0,
            );
            node.apply(
                &kv::Request::Set {
                    key: key.into_bytes(),
                    value: value.into_bytes(),
                },
                kv::ApplyContext::default(),
            );
        }
        for i in 0..1500 {
            let key = format!("s{i:04}");
            spec(
                &mut store,
                &KvInput::Set {
                    key: key.clone(),
                    value: "v".into(),
                },
                0,
            );
            node.apply(
                &kv::Request::Set {
                    key: key.into_bytes(),
                    value: b"v".to_vec(),
                },
                kv::ApplyContext::default(),
            );
        }
        for (start, end, limit, pairs) in
            [("k", "l", 10, 2), ("s", "t", 5000, 1000), ("s", "t", 7, 7)]
        {
            let input = KvInput::Scan {
                start: start.into(),
                end: end.into(),
                limit,
            };
            let expected = spec(&mut store, &input, 0);
            let KvOutput::Entries(entries) = &expected else {
                panic!("{expected:?}");
            };
            assert_eq!(entries.len(), pairs, "{start}..{end} limit {limit}");
            let got = node.apply(&request_of(&input), kv::ApplyContext::default());
            assert_eq!(output_of(&input, &reply_value(&got)), Some(expected));
        }
    }

    /// Goal: a request with bytes the specification does not model ends the comparison there:
    /// replies after it are unverified (Unknown), never judged by a guess.
    #[test]
    fn spec_input_of_non_utf8_is_unmodelled() {
        let set = kv::Request::Set {
            key: vec![0xff],
            value: b"v".to_vec(),
        };
        assert!(matches!(spec_input(Some(&set)), SpecInput::Unmodelled));
        assert!(matches!(
            spec_input(Some(&kv::Request::Register)),
            SpecInput::NoEffect
        ));
        assert!(matches!(spec_input(None), SpecInput::NoEffect));
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

    /// Goal: the specification (lincheck's TimedStore) and the node's kv code agree on
    /// random runs of expiring writes, transactions, and the rest, at advancing timestamps —
    /// so a disagreement in a VOPR run is a bug, not a modelling gap.
    #[test]
    fn spec_agrees_with_the_node_on_expiry_and_transactions() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(14);
        for _ in 0..200 {
            let mut store = SpecStore::default();
            let mut node = kv::KvState::new();
            let mut now = 1_000u64;
            for op in 1..200u64 {
                now += rng.gen_range(0..40);
                let key = |rng: &mut rand_chacha::ChaCha8Rng| format!("k{}", rng.gen_range(0..4));
                let single = |rng: &mut rand_chacha::ChaCha8Rng| match rng.gen_range(0..5) {
                    0 => KvInput::Get { key: key(rng) },
                    1 => KvInput::Set {
                        key: key(rng),
                        value: format!("v{}", rng.gen_range(0..3)).into(),
                    },
                    2 => KvInput::IncrBy {
                        key: key(rng),
                        delta: rng.gen_range(-2..3),
                    },
                    3 => KvInput::Cas {
                        key: key(rng),
                        expected: None,
                        new: "c".into(),
                    },
                    _ => KvInput::Del { key: key(rng) },
                };
                let input = match rng.gen_range(0..4) {
                    0 => KvInput::SetAt {
                        key: key(&mut rng),
                        value: "e".into(),
                        expires_at: now + rng.gen_range(0..100),
                    },
                    1 => KvInput::Txn {
                        ops: (0..rng.gen_range(1..4)).map(|_| single(&mut rng)).collect(),
                    },
                    _ => single(&mut rng),
                };
                let expected = spec(&mut store, &input, now);
                let reply =
                    node.apply(&request_of(&input), kv::ApplyContext { op, timestamp: now });
                assert_eq!(
                    output_of(&input, &reply_value(&reply)),
                    Some(expected),
                    "{input:?} at {now}"
                );
            }
        }
    }
}
