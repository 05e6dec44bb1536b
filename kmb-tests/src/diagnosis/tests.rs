//! Failure reports built from the analyzer's sample story and small synthetic traces.

use serde_json::Value;

use super::*;
use crate::analyzer::tests::story;
use crate::trace::{EventKind, OpKind, TraceCollector, TraceFilter};

fn failure(c: Classification, replica: Option<u8>, op: Option<u64>, key: Option<&str>) -> Failure {
    Failure {
        checker: c.as_str().to_string(),
        classification: c,
        message: format!("{} violated (synthetic)", c.title()),
        replica,
        op,
        key: key.map(str::to_string),
    }
}

fn report(f: &Failure) -> FailureReport {
    let params = serde_json::json!({"seed": 9, "replica_count": 3, "client_count": 3, "disk": {"bit_rot": 0.001}});
    FailureReport::build(9, f, &story(), &params, &[])
}

fn assert_bounds(r: &FailureReport) {
    assert!(
        (SUGGESTIONS_MIN..=SUGGESTIONS_MAX).contains(&r.suggestions.len()),
        "{:#?}",
        r.suggestions
    );
}

fn any(r: &FailureReport, needles: &[&str]) -> bool {
    r.suggestions
        .iter()
        .any(|s| needles.iter().all(|n| s.contains(n)))
}

#[test]
fn data_corruption_names_key_history_and_torn_writes() {
    let r = report(&failure(
        Classification::DataCorruption,
        Some(2),
        Some(57),
        Some("k7"),
    ));
    assert_bounds(&r);
    assert!(
        any(&r, &["key k7", "client 1 request 1", "op 57"]),
        "{:#?}",
        r.suggestions
    );
    assert!(
        any(
            &r,
            &[
                "replica 2 restarted at 0.030000s",
                "3 torn writes (disk.crash_torn)",
                "torn-tail",
                "op 57"
            ]
        ),
        "{:#?}",
        r.suggestions
    );
    assert!(any(
        &r,
        &["replica 2 state-transferred from op 40 to op 57"]
    ));
}

#[test]
fn linearizability_names_unplaceable_op_view_change_and_partition() {
    let r = report(&failure(
        Classification::Linearizability,
        None,
        Some(58),
        Some("k7"),
    ));
    assert_bounds(&r);
    assert!(
        any(
            &r,
            &[
                "cannot be placed",
                "client 2 request 1",
                "read k7",
                "client 1 request 2"
            ]
        ),
        "{:#?}",
        r.suggestions
    );
    assert!(
        any(&r, &["view 2", "replica 1", "primary 1"]),
        "{:#?}",
        r.suggestions
    );
    assert!(any(&r, &["0->1", "never healed"]));
    assert!(any(&r, &["unknown outcome", "client 1 request 2"]));
    assert!(any(&r, &["replica 2 crashed at 0.023000s"]));
}

#[test]
fn replica_divergence_infers_op_and_odd_replica_from_commits() {
    let r = report(&failure(
        Classification::ReplicaDivergence,
        None,
        None,
        None,
    ));
    assert_bounds(&r);
    assert!(
        any(
            &r,
            &["op 57", "bad0 on replica(s) 2", "c0de on replica(s) 0, 1"]
        ),
        "{:#?}",
        r.suggestions
    );
    assert!(any(&r, &["replica 2 restarted", "disk.crash_torn"]));
    assert!(any(&r, &["installed view 2 on replica 1", "log_view"]));
}

#[test]
fn hash_chain_break_names_faults_view_change_and_transfer() {
    let r = report(&failure(
        Classification::HashChainBreak,
        Some(2),
        Some(57),
        None,
    ));
    assert_bounds(&r);
    assert!(
        any(&r, &["disk.bit_rot", "misdirected write"]),
        "{:#?}",
        r.suggestions
    );
    assert!(any(&r, &["view 2", "op 57", "parent"]));
    assert!(any(
        &r,
        &["replica 2 state-transferred from op 40 to op 57"]
    ));
}

#[test]
fn commit_gap_detects_skipped_ops_on_replica() {
    let mut t = TraceCollector::with_options(1, TraceFilter::Verbose, 100);
    for (i, op) in [10u64, 11, 12, 15].iter().enumerate() {
        t.push(
            i as u64 * 1000,
            EventKind::Commit {
                replica: 1,
                op: *op,
                checksum: format!("{op:x}"),
            },
        );
    }
    t.push(
        5000,
        EventKind::FaultInjected {
            kind: "disk.crash_lost".into(),
            replica: Some(1),
            detail: String::new(),
        },
    );
    t.push(
        6000,
        EventKind::ViewInstalled {
            replica: 1,
            view: 3,
            primary: 2,
        },
    );
    t.push(
        7000,
        EventKind::InvariantViolated {
            name: "commit_history".into(),
            detail: "gap".into(),
        },
    );
    let f = failure(Classification::CommitGapOrRewrite, Some(1), Some(13), None);
    let r = FailureReport::build(1, &f, &t.snapshot(), &Value::Null, &[]);
    assert_bounds(&r);
    assert!(
        any(&r, &["replica 1 committed op 12 then op 15", "ops 13..14"]),
        "{:#?}",
        r.suggestions
    );
    assert!(any(
        &r,
        &["replica 1 lost 1 unsynced", "disk.crash_lost", "op 13"]
    ));
    assert!(any(&r, &["view 3", "primary 2", "log_view"]));
}

#[test]
fn commit_rewrite_detected() {
    let mut t = TraceCollector::with_options(1, TraceFilter::Verbose, 100);
    t.push(
        1,
        EventKind::Commit {
            replica: 0,
            op: 4,
            checksum: "aa".into(),
        },
    );
    t.push(
        2,
        EventKind::Commit {
            replica: 0,
            op: 4,
            checksum: "bb".into(),
        },
    );
    let f = failure(Classification::CommitGapOrRewrite, Some(0), Some(4), None);
    let r = FailureReport::build(1, &f, &t.snapshot(), &Value::Null, &[]);
    assert!(
        any(&r, &["replica 0 committed op 4 twice", "aa", "bb"]),
        "{:#?}",
        r.suggestions
    );
}

#[test]
fn liveness_names_last_commit_open_partition_and_outstanding_request() {
    let r = report(&failure(Classification::Liveness, None, None, None));
    assert_bounds(&r);
    assert!(
        any(&r, &["last commit", "op 57", "0.014000s"]),
        "{:#?}",
        r.suggestions
    );
    assert!(any(&r, &["link 0->1 partitioned since 0.024000s"]));
    assert!(any(&r, &["1 view change(s)", "views 2..2"]));
}

#[test]
fn liveness_names_requests_that_never_completed() {
    let mut events = story();
    events.retain(|e| !matches!(e.kind, EventKind::InvariantViolated { .. }));
    let f = failure(Classification::Liveness, None, None, None);
    let r = FailureReport::build(9, &f, &events, &Value::Null, &[]);
    assert!(
        any(&r, &["1 request(s) never completed", "client 3 request 1"]),
        "{:#?}",
        r.suggestions
    );
}

#[test]
fn recovery_failure_names_crash_faults_and_bound() {
    let r = report(&failure(
        Classification::RecoveryFailure,
        Some(2),
        None,
        None,
    ));
    assert_bounds(&r);
    assert!(any(&r, &["replica 2 restarted at 0.030000s after a crash at 0.023000s with 3 torn writes (disk.crash_torn)"]), "{:#?}", r.suggestions);
    assert!(
        any(&r, &["2 of 3 replicas", "0, 2", "more than f"]),
        "{:#?}",
        r.suggestions
    );
}

#[test]
fn non_determinism_names_divergence_point_and_subsystem() {
    let r = report(&failure(
        Classification::NonDeterminism,
        Some(0),
        None,
        None,
    ));
    assert_bounds(&r);
    assert!(
        any(&r, &["#", "0.035000s", "INVARIANT VIOLATED"]),
        "{:#?}",
        r.suggestions
    );
    assert!(
        any(&r, &["client 2 request 1", "workload generator"]),
        "{:#?}",
        r.suggestions
    );
    assert!(any(&r, &["replica 0", "biased"]));
}

#[test]
fn checkpoint_and_storage_classifications_have_suggestions() {
    for c in [
        Classification::CheckpointMismatch,
        Classification::StorageNondeterminism,
    ] {
        let r = report(&failure(c, Some(2), None, None));
        assert_bounds(&r);
        assert!(any(&r, &["replica 2"]), "{c:?}: {:#?}", r.suggestions);
    }
}

#[test]
fn empty_trace_falls_back_to_fixed_text() {
    for c in Classification::ALL {
        let r = FailureReport::build(3, &failure(c, None, None, None), &[], &Value::Null, &[]);
        assert_bounds(&r);
        assert!(r.to_ascii().contains("no trace"));
    }
}

#[test]
fn ascii_report_has_sections_and_repro_with_flags() {
    let f = failure(Classification::Linearizability, None, Some(58), Some("k7"));
    let flags = vec!["--mutation".to_string(), "skip_sync".to_string()];
    let r = FailureReport::build(
        9,
        &f,
        &story(),
        &serde_json::json!({"replica_count": 3}),
        &flags,
    );
    assert_eq!(r.repro_command, "vopr --seed 9 -v --mutation skip_sync");
    let text = r.to_ascii();
    for needle in [
        "VOPR FAILURE REPORT   seed 9",
        "classification: Linearizability violation (linearizability)",
        "-- FAILURE",
        "-- PARAMETERS",
        "replica_count=3",
        "-- WHAT HAPPENED",
        "INVARIANT VIOLATED linearizability",
        "-- FAULTS IN THE 2.000000s BEFORE THE FAILURE",
        "disk.crash_torn x3",
        "-- SUGGESTIONS",
        "   1. ",
        "-- REPRODUCE",
        "vopr --seed 9 -v --mutation skip_sync",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(text.lines().all(|l| l.chars().count() <= REPORT_WIDTH + 60));
    assert!(text
        .lines()
        .filter(|l| l.starts_with('|'))
        .all(|l| l.chars().count() == REPORT_WIDTH));
}

#[test]
fn repro_command_quotes_odd_flags() {
    assert_eq!(
        repro_command(1, &["--mutation".into(), "a b".into()]),
        "vopr --seed 1 -v --mutation 'a b'"
    );
}

#[test]
fn classification_parses_names_and_checker_aliases() {
    for c in Classification::ALL {
        assert_eq!(Classification::parse(c.as_str()), Some(c));
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            format!("\"{}\"", c.as_str())
        );
    }
    assert_eq!(
        Classification::parse("head-progress"),
        Some(Classification::Liveness)
    );
    assert_eq!(
        Classification::parse("model"),
        Some(Classification::DataCorruption)
    );
    assert_eq!(Classification::parse("nope"), None);
}

#[test]
fn failing_op_prefers_op_number_then_last_completed_on_key() {
    let events = story();
    let by_op = failing_op(
        &events,
        &failure(Classification::Linearizability, None, Some(58), None),
    )
    .unwrap();
    assert_eq!((by_op.client, by_op.request), (2, 1));
    let by_key = failing_op(
        &events,
        &failure(Classification::Linearizability, None, None, Some("k7")),
    )
    .unwrap();
    assert_eq!((by_key.client, by_key.request), (2, 1));
    assert_eq!(by_key.op, OpKind::Read);
    assert!(failing_op(
        &events,
        &failure(Classification::Linearizability, None, None, None)
    )
    .is_none());
}
