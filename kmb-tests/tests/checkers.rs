//! The checkers' public API, used from outside the crate as the VOPR uses it: fill
//! `Observations` field by field, run `check_all`, convert a violation into a `Failure`.

use std::collections::BTreeMap;

use kmb_node::entry::{Entry, EntryFields, Operation};
use kmb_node::kv;
use kmb_tests::checkers::{self, FinalState, Observations, Verdict, INVARIANTS};
use kmb_tests::diagnosis::{Classification, Failure};
use lincheck::kv::{KvInput, KvOutput, KvReply};

/// A one-op, one-replica run: SET k v committed at op 1 and acknowledged to the client.
fn one_set() -> Observations {
    let mut obs = Observations::new(1);
    let root = Entry::root(3);
    let set = kv::Request::Set {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
    };
    let e = Entry::new(
        EntryFields {
            cluster: 3,
            replica: 0,
            view: 1,
            op: 1,
            commit: 0,
            parent: root.checksum(),
            client: 1,
            request: 1,
            operation: Operation::Request,
        },
        set.encode(),
    );
    obs.commits.insert(0, vec![(1, e.checksum())]);
    obs.logs.insert(
        0,
        BTreeMap::from([
            (0, (root.checksum(), 0)),
            (1, (e.checksum(), root.checksum())),
        ]),
    );
    obs.committed.insert(1, e);
    obs.final_states.insert(
        0,
        FinalState {
            status: "normal".into(),
            view: 1,
            op: 1,
            commit: 1,
            state_hash: 0,
            halted: None,
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
            op_number: Some(1),
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
        op_number: Some(1),
    });
    let problem = checkers::first_problem(&checkers::check_all(&obs));
    let failure: Failure = problem.expect("a problem").expect("a violation").into();
    assert_eq!(failure.checker, "data_correctness");
    assert_eq!(failure.classification, Classification::DataCorruption);
    assert_eq!((failure.op, failure.key.as_deref()), (Some(1), Some("k")));
}
