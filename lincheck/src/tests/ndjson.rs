//! kmb's NDJSON history format.

use crate::kv::{parse_ndjson, write_ndjson, KvInput, KvOp, KvOutput, KvReply, KvValue, Record};
use crate::Operation;

fn s(x: &str) -> String {
    x.to_string()
}

fn sv(x: &str) -> KvValue {
    x.into()
}

fn op(call: u64, ret: u64, input: KvInput, output: Option<KvOutput>, num: Option<u64>) -> KvOp {
    Operation {
        client: 3,
        input,
        output: output.map(|output| KvReply {
            output,
            op_number: num,
            read: false,
        }),
        call,
        ret: if num.is_some() { ret } else { u64::MAX },
    }
}

/// Every op and result kind survives a write/parse round trip.
#[test]
fn ndjson_round_trip_preserves_ops() {
    let ops = vec![
        op(
            1,
            2,
            KvInput::Get { key: s("a") },
            Some(KvOutput::Value(None)),
            Some(1),
        ),
        op(
            1,
            2,
            KvInput::Get { key: s("a") },
            Some(KvOutput::Value(Some(sv("v")))),
            Some(2),
        ),
        op(
            3,
            4,
            KvInput::Set {
                key: s("a"),
                value: sv("v"),
            },
            Some(KvOutput::Ok),
            Some(3),
        ),
        op(
            5,
            6,
            KvInput::Del { key: s("a") },
            Some(KvOutput::Deleted(1)),
            Some(4),
        ),
        op(
            7,
            8,
            KvInput::IncrBy {
                key: s("n"),
                delta: -3,
            },
            Some(KvOutput::Int(-3)),
            Some(5),
        ),
        op(
            7,
            8,
            KvInput::IncrBy {
                key: s("x"),
                delta: 1,
            },
            Some(KvOutput::Error),
            Some(6),
        ),
        op(
            9,
            10,
            KvInput::Cas {
                key: s("a"),
                expected: None,
                new: sv("w"),
            },
            Some(KvOutput::Swapped(true)),
            Some(7),
        ),
        op(
            11,
            12,
            KvInput::Scan {
                start: s("a"),
                end: s("z"),
                limit: 5,
            },
            Some(KvOutput::Entries(vec![(s("a"), sv("w"))])),
            Some(8),
        ),
        op(
            13,
            0,
            KvInput::Cas {
                key: s("a"),
                expected: Some(sv("w")),
                new: sv("q"),
            },
            None,
            None,
        ),
    ];
    let text = write_ndjson(&ops);
    assert_eq!(text.lines().count(), ops.len());
    assert_eq!(parse_ndjson(&text).expect("parses"), ops);
}

/// The documented example lines parse, and fail records are dropped.
#[test]
fn ndjson_documented_examples_parse_fail_dropped() {
    let text = r#"{"client":3,"call":120,"ret":180,"op":"set","key":"k1","value":"v","result":"ok","op_number":17}
{"client":4,"call":121,"ret":150,"op":"get","key":"k1","value":null,"result":"ok","op_number":16}
{"client":5,"call":122,"ret":130,"op":"set","key":"k2","value":"x","result":"fail"}
{"client":6,"call":123,"op":"incrby","key":"k1","delta":2,"result":"unknown"}

{"client":7,"call":190,"ret":200,"op":"scan","start":"k","end":"l","limit":10,"result":"ok","entries":[["k1","v"]],"op_number":18}"#;
    let ops = parse_ndjson(text).expect("parses");
    assert_eq!(ops.len(), 4);
    assert_eq!(
        ops[1].output.as_ref().map(|r| &r.output),
        Some(&KvOutput::Value(None))
    );
    assert_eq!(ops[2].output, None);
    assert_eq!(ops[2].ret, u64::MAX);
}

/// Malformed records are rejected with the right line number and never panic.
#[test]
fn ndjson_malformed_record_names_line() {
    let good = r#"{"client":1,"call":1,"ret":2,"op":"set","key":"a","value":"v","result":"ok","op_number":1}"#;
    let bad = [
        "not json",
        r#"{"client":1,"call":1,"ret":2,"op":"get","key":"a","result":"ok"}"#,
        r#"{"client":1,"call":1,"ret":2,"op":"set","key":"a","value":null,"result":"ok"}"#,
        r#"{"client":1,"call":1,"ret":2,"op":"set","key":"a","value":"v","result":"ok","bogus":1}"#,
        r#"{"client":1,"call":5,"ret":2,"op":"get","key":"a","value":"v","result":"ok"}"#,
        r#"{"client":1,"call":1,"ret":2,"op":"del","key":"a","deleted":2,"result":"ok"}"#,
        r#"{"client":1,"call":1,"op":"get","key":"a","result":"ok","value":"v"}"#,
        r#"{"client":1,"call":1,"op":"get","key":"a","value":"v","result":"unknown"}"#,
        r#"{"client":1,"call":1,"ret":2,"op":"get","key":"a","result":"error"}"#,
        r#"{"client":1,"call":1,"ret":2,"op":"scan","start":"a","end":"b","result":"ok","entries":[]}"#,
        r#"{"client":1,"call":1,"op":"set","key":"a","value":"v","result":"unknown","op_number":3}"#,
        r#"{"client":-1,"call":1,"ret":2,"op":"set","key":"a","value":"v","result":"ok"}"#,
        r#"{"client":1,"call":1,"ret":2,"op":"frob","key":"a","result":"ok"}"#,
    ];
    for line in bad {
        let text = format!("{good}\n\n{line}\n{good}\n");
        let err = parse_ndjson(&text).expect_err(line);
        assert_eq!(err.line, 3, "{line}: {err}");
    }
}

/// A failed record built for the simulator serializes to the documented shape.
#[test]
fn record_failed_serializes_documented_shape() {
    let r = Record::failed(2, 10, Some(11), &KvInput::Del { key: s("k") });
    assert_eq!(
        r.to_line(),
        r#"{"client":2,"call":10,"ret":11,"op":"del","key":"k","result":"fail"}"#
    );
}

/// Validation errors name the op as the `op` field spells it.
#[test]
fn ndjson_errors_name_the_op_as_written() {
    for name in ["get", "set", "del", "incrby", "cas", "scan"] {
        let line = format!(r#"{{"client":1,"call":1,"ret":2,"op":"{name}","result":"ok"}}"#);
        let err = parse_ndjson(&line).expect_err(&line);
        assert!(
            err.message.ends_with(&format!("for op `{name}`")),
            "{line}: {err}"
        );
    }
}
