//! The checkers' public API, used from outside the crate as the VOPR uses it: fill
//! `Observations` field by field, run `check_all`, convert a violation into a `Failure`.

use std::collections::BTreeMap;

use kmb_node::entry::{Entry, EntryFields, Operation};
use kmb_node::kv;
use kmb_tests::checkers::{
    self, DiskCheckpoint, DiskImage, FinalState, Observations, Verdict, INVARIANTS,
};
use kmb_tests::diagnosis::{Classification, Failure};
use lincheck::kv::{KvInput, KvOutput, KvReply};

/// A two-op, one-replica run: client 1 registers its session at op 1, then SET k v commits at
/// op 2 and is acknowledged to the client.
fn one_set() -> Observations {
    let mut obs = Observations::new(1);
    let root = Entry::root(3);
    let entry = |op: u64, parent: u128, request: kv::Request| {
        Entry::new(
            EntryFields {
                cluster: 3,
                replica: 0,
                view: 1,
                op,
                commit: op - 1,
                parent,
                client: 1,
                request: op,
                operation: Operation::Request,
                timestamp: 0,
            },
            request.encode(),
        )
    };
    let register = entry(1, root.checksum(), kv::Request::Register);
    let set = entry(
        2,
        register.checksum(),
        kv::Request::Set {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        },
    );
    obs.commits
        .insert(0, vec![(1, register.checksum()), (2, set.checksum())]);
    obs.logs.insert(
        0,
        BTreeMap::from([
            (0, (root.checksum(), 0)),
            (1, (register.checksum(), root.checksum())),
            (2, (set.checksum(), register.checksum())),
        ]),
    );
    // Its disk, read back after the run: no checkpoint, the log through op 2.
    obs.disks.insert(
        0,
        Ok(DiskImage {
            checkpoint: DiskCheckpoint::Empty,
            checkpoint_entry: root.checksum(),
            log: BTreeMap::from([(1, register.checksum()), (2, set.checksum())]),
            faulty: Vec::new(),
        }),
    );
    obs.committed.insert(1, register);
    obs.committed.insert(2, set);
    obs.final_states.insert(
        0,
        FinalState {
            status: "normal".into(),
            view: 1,
            op: 2,
            commit: 2,
            state_hash: 0,
            halted: None,
            durable: 2,
        },
    );
    obs.history.push(lincheck::Operation {
        client: 0,
        input: KvInput::Set {
            key: "k".into(),
            value: "v".into(),
        },
        output: Some(KvReply {
            output: KvOutput::Ok,
            op_number: Some(2),
            read: false,
        }),
        call: 0,
        ret: 1,
    });
    obs.liveness.converged = true;
    obs
}

/// Goal: a hand-filled clean run passes all eight checkers, in the published order.
#[test]
fn check_all_hand_filled_run_passes() {
    let verdicts = checkers::check_all(&one_set());
    assert_eq!(
        verdicts.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        INVARIANTS
    );
    assert!(
        verdicts.iter().all(|(_, v)| *v == Verdict::Pass),
        "{verdicts:?}"
    );
}

/// Goal: a wrong acknowledged reply becomes a data-corruption Failure naming op and key.
#[test]
fn check_all_wrong_reply_becomes_failure() {
    let mut obs = one_set();
    obs.history[0].input = KvInput::Get { key: "k".into() };
    obs.history[0].output = Some(KvReply {
        output: KvOutput::Value(Some("v".into())),
        op_number: Some(2),
        read: false,
    });
    let problem = checkers::first_problem(&checkers::check_all(&obs));
    let failure: Failure = problem.expect("a problem").expect("a violation").into();
    assert_eq!(failure.checker, "data_correctness");
    assert_eq!(failure.classification, Classification::DataCorruption);
    assert_eq!((failure.op, failure.key.as_deref()), (Some(2), Some("k")));
}
