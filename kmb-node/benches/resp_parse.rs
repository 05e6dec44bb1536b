//! RESP command parsing cost for large commands fed in 16 KiB reads (not a timed test).
//!
//! `cargo bench -p kmb-node --bench resp_parse` (or `scripts/resp-bench.sh`). Builds one
//! command of 32 (16 MiB) and one of 128 (64 MiB) 512 KiB arguments, feeds each to the
//! connection's reader in 16 KiB chunks (what a client connection reads at a time) and prints
//! the median time over several runs (`KMB_BENCH_RUNS`, default 5).
//!
//! `KMB_BENCH_BASELINE=1` also times `baseline`: a verbatim copy of the reader kmb used before
//! issue 13 (re-parse the whole buffer from its start after every read, copying it), driven by
//! the same loop the client connection had. It is quadratic: expect minutes at 64 MiB.

#[cfg(madsim)]
fn main() {}

#[cfg(not(madsim))]
fn main() {
    bench::main()
}

#[cfg(not(madsim))]
mod bench {
    use kmb_node::resp::{CommandReader, ARG_SIZE_MAX};
    use sim_runtime::time::Instant;

    const CHUNK: usize = 16 * 1024;

    /// Seconds to parse one command of `args` arguments from its bytes.
    type Reader = fn(&[u8], usize) -> f64;

    fn command(args: usize) -> Vec<u8> {
        let mut out = format!("*{args}\r\n").into_bytes();
        for i in 0..args {
            out.extend_from_slice(format!("${ARG_SIZE_MAX}\r\n").as_bytes());
            out.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, ARG_SIZE_MAX));
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// The reader as the client connection uses it: seconds to parse `input`.
    fn incremental(input: &[u8], args: usize) -> f64 {
        let start = Instant::now();
        let mut reader = CommandReader::new(usize::MAX);
        let mut commands = 0;
        for chunk in input.chunks(CHUNK) {
            reader.feed(chunk);
            while let Some(command) = reader.next_command().expect("valid command") {
                assert_eq!(command.len(), args);
                commands += 1;
            }
        }
        assert_eq!(commands, 1);
        start.elapsed().as_secs_f64()
    }

    /// The pre-issue-13 connection loop over the pre-issue-13 parser.
    fn baseline(input: &[u8], args: usize) -> f64 {
        let start = Instant::now();
        let mut buffer: Vec<u8> = Vec::new();
        let mut chunks = input.chunks(CHUNK);
        let mut commands = 0;
        loop {
            match old::parse_command(&buffer).expect("valid command") {
                Some((parsed, used)) => {
                    assert_eq!(parsed.len(), args);
                    commands += 1;
                    buffer.drain(..used);
                }
                None => match chunks.next() {
                    Some(chunk) => buffer.extend_from_slice(chunk),
                    None => break,
                },
            }
        }
        assert_eq!(commands, 1);
        start.elapsed().as_secs_f64()
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    }

    pub fn main() {
        let runs: usize = std::env::var("KMB_BENCH_RUNS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(5);
        let with_baseline = std::env::var("KMB_BENCH_BASELINE").is_ok_and(|v| v == "1");
        println!("RESP command parse, 16 KiB reads ({runs} runs, medians)");
        println!(
            "{:>10} {:>6} {:>12} {:>12}",
            "reader", "args", "MiB", "seconds"
        );
        for args in [32usize, 128] {
            let input = command(args);
            let mib = input.len() as f64 / (1 << 20) as f64;
            let mut readers: Vec<(&str, Reader)> = vec![("reader", incremental)];
            if with_baseline {
                readers.push(("baseline", baseline));
            }
            for (name, f) in readers {
                let times: Vec<f64> = (0..runs).map(|_| f(&input, args)).collect();
                println!("{name:>10} {args:>6} {mib:>12.1} {:>12.4}", median(times));
            }
        }
    }

    /// Verbatim copy of `parse_command` from kmb-node/src/resp.rs before issue 13.
    mod old {
        use kmb_node::resp::{ProtocolError, ARGS_MAX, ARG_SIZE_MAX, INLINE_SIZE_MAX};

        fn error<T>(message: impl Into<String>) -> Result<T, ProtocolError> {
            Err(ProtocolError(message.into()))
        }

        fn line_end(buf: &[u8], start: usize) -> Option<usize> {
            buf.get(start..)?
                .windows(2)
                .position(|w| w == b"\r\n")
                .map(|i| start + i)
        }

        fn parse_int(bytes: &[u8], what: &str) -> Result<i64, ProtocolError> {
            std::str::from_utf8(bytes)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .map_or_else(|| error(format!("invalid {what}")), Ok)
        }

        pub type Parsed = (Vec<Vec<u8>>, usize);

        pub fn parse_command(buf: &[u8]) -> Result<Option<Parsed>, ProtocolError> {
            let Some(&first) = buf.first() else {
                return Ok(None);
            };
            if first != b'*' {
                return parse_inline(buf);
            }
            let Some(end) = line_end(buf, 1) else {
                return if buf.len() > 32 {
                    error("array header too long")
                } else {
                    Ok(None)
                };
            };
            let count = parse_int(&buf[1..end], "multibulk length")?;
            if count > ARGS_MAX as i64 {
                return error("invalid multibulk length");
            }
            let mut pos = end + 2;
            let mut args = Vec::with_capacity(count.max(0) as usize);
            for _ in 0..count.max(0) {
                match buf.get(pos) {
                    None => return Ok(None),
                    Some(b'$') => {}
                    Some(&c) => return error(format!("expected '$', got '{}'", c as char)),
                }
                let Some(end) = line_end(buf, pos + 1) else {
                    return if buf.len() - pos > 32 {
                        error("bulk header too long")
                    } else {
                        Ok(None)
                    };
                };
                let len = parse_int(&buf[pos + 1..end], "bulk length")?;
                if !(0..=ARG_SIZE_MAX as i64).contains(&len) {
                    return error("invalid bulk length");
                }
                let start = end + 2;
                let stop = start + len as usize;
                if buf.len() < stop + 2 {
                    return Ok(None);
                }
                if &buf[stop..stop + 2] != b"\r\n" {
                    return error("bulk string not terminated by CRLF");
                }
                args.push(buf[start..stop].to_vec());
                pos = stop + 2;
            }
            Ok(Some((args, pos)))
        }

        fn parse_inline(buf: &[u8]) -> Result<Option<Parsed>, ProtocolError> {
            let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
                return if buf.len() > INLINE_SIZE_MAX {
                    error("too big inline request")
                } else {
                    Ok(None)
                };
            };
            let line = &buf[..newline];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let mut args = Vec::new();
            for word in line.split(|b| b.is_ascii_whitespace()) {
                if !word.is_empty() {
                    if args.len() == ARGS_MAX {
                        return error("too many arguments");
                    }
                    args.push(word.to_vec());
                }
            }
            Ok(Some((args, newline + 1)))
        }
    }
}
