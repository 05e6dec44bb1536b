//! The Jepsen etcd log parser.

use crate::jepsen::{parse, RegisterInput as I, RegisterOutput as O};

/// Tabs and spaces, nil reads, cas values, fail (dropped), info and a dangling
/// invocation (both unknown) all parse as documented.
#[test]
fn parse_mixed_separators_fail_info_expected_ops() {
    let log = "INFO  jepsen.util - 0\t:invoke\t:read\tnil\n\
               INFO  jepsen.util - 1   :invoke :write  3\n\
               INFO  jepsen.util - 0\t:ok\t:read\tnil\n\
               INFO  jepsen.util - 1   :ok     :write  3\n\
               INFO  jepsen.util - 2\t:invoke\t:cas\t[3 4]\n\
               INFO  jepsen.util - 2\t:fail\t:cas\t[3 4]\n\
               \n\
               INFO  jepsen.util - 3\t:invoke\t:write\t9\n\
               INFO  jepsen.util - 3\t:info\t:write\t:timed-out\n\
               INFO  jepsen.util - 4\t:invoke\t:cas\t[3 5]\n\
               INFO  jepsen.util - 4\t:ok\t:cas\t[3 5]\n\
               INFO  jepsen.util - 5\t:invoke\t:read\tnil\n";
    let ops = parse(log).expect("parses");
    let summary: Vec<_> = ops
        .iter()
        .map(|o| (o.client, o.input, o.output, o.call, o.ret))
        .collect();
    assert_eq!(
        summary,
        vec![
            (0, I::Read, Some(O::Read(None)), 0, 2),
            (1, I::Write(3), Some(O::Write), 1, 3),
            (3, I::Write(9), None, 7, u64::MAX),
            (4, I::Cas(3, 5), Some(O::Cas(true)), 9, 10),
            (5, I::Read, None, 11, u64::MAX),
        ]
    );
}

/// Malformed lines are reported with their 1-based line number.
#[test]
fn parse_malformed_line_names_line_number() {
    let cases = [
        "INFO  jepsen.util - 0\t:invoke\t:read\tnil\ngarbage\n",
        "INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - x\t:ok\t:read\t1\n",
        "INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 0\t:ok\t:read\tzz\n",
        "INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 1\t:ok\t:read\t1\n",
        "INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 0\t:invoke\t:cas\t[1]\n",
    ];
    for log in cases {
        let err = parse(log).expect_err(log);
        assert_eq!(err.line, 2, "{log}: {err}");
    }
}
