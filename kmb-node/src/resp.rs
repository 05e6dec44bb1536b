//! RESP2, the Redis serialization protocol: an incremental command parser and reply encoder.
//!
//! Hand-written because it is small and must be total over untrusted bytes with our own limits
//! (the crates on offer are either client-side or pull in an async framework of their own).
//! Accepts arrays of bulk strings (what every client library sends) and inline commands (what a
//! person types over telnet). Every malformed input is an error value, never a panic; after a
//! protocol error the connection is closed because the stream cannot be re-synchronised.

/// Upper bound on the number of arguments in one command.
pub const ARGS_MAX: usize = 1024;
/// Upper bound on one argument's length.
pub const ARG_SIZE_MAX: usize = 512 * 1024;
/// Upper bound on an inline command line.
pub const INLINE_SIZE_MAX: usize = 64 * 1024;

/// A protocol error: the message to send (after `-ERR Protocol error: `) before closing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Protocol error: {}", self.0)
    }
}

fn error<T>(message: impl Into<String>) -> Result<T, ProtocolError> {
    Err(ProtocolError(message.into()))
}

/// Find `\r\n` from `start`; returns the index of `\r`.
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

/// A parsed command's arguments and the bytes it used.
pub type Parsed = (Vec<Vec<u8>>, usize);

/// Parse one command from the front of `buf`.
///
/// `Ok(None)`: more bytes are needed. `Ok(Some((args, consumed)))`: a complete command of
/// `consumed` bytes (an empty inline line yields an empty `args`, to be skipped).
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

/// A reply value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `+OK`-style status.
    Simple(String),
    /// `-ERR ...`: the full error line without the leading `-`.
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    /// The null bulk string (`$-1`): an absent value.
    Null,
    Array(Vec<Value>),
}

impl Value {
    /// `+OK`.
    pub fn ok() -> Value {
        Value::Simple("OK".into())
    }

    /// An `ERR` error with `message`.
    pub fn err(message: impl std::fmt::Display) -> Value {
        Value::Error(format!("ERR {message}"))
    }

    /// Append the RESP2 encoding of `self` to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Simple(s) => {
                out.push(b'+');
                out.extend(s.bytes().filter(|&b| b != b'\r' && b != b'\n'));
                out.extend_from_slice(b"\r\n");
            }
            Value::Error(s) => {
                out.push(b'-');
                out.extend(s.bytes().filter(|&b| b != b'\r' && b != b'\n'));
                out.extend_from_slice(b"\r\n");
            }
            Value::Integer(i) => out.extend_from_slice(format!(":{i}\r\n").as_bytes()),
            Value::Bulk(b) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Value::Null => out.extend_from_slice(b"$-1\r\n"),
            Value::Array(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    item.encode_into(out);
                }
            }
        }
    }

    /// The RESP2 encoding of `self`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

/// Parse one reply from the front of `buf` (used by the client library).
///
/// `Ok(None)`: more bytes are needed.
pub fn parse_value(buf: &[u8]) -> Result<Option<(Value, usize)>, ProtocolError> {
    parse_value_depth(buf, 0)
}

fn parse_value_depth(buf: &[u8], depth: usize) -> Result<Option<(Value, usize)>, ProtocolError> {
    if depth > 8 {
        return error("reply nested too deeply");
    }
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let Some(end) = line_end(buf, 1) else {
        return Ok(None);
    };
    let line = &buf[1..end];
    let text = || String::from_utf8_lossy(line).into_owned();
    let next = end + 2;
    match kind {
        b'+' => Ok(Some((Value::Simple(text()), next))),
        b'-' => Ok(Some((Value::Error(text()), next))),
        b':' => Ok(Some((Value::Integer(parse_int(line, "integer")?), next))),
        b'$' => {
            let len = parse_int(line, "bulk length")?;
            if len == -1 {
                return Ok(Some((Value::Null, next)));
            }
            if !(0..=64 << 20).contains(&len) {
                return error("invalid bulk length");
            }
            let stop = next + len as usize;
            if buf.len() < stop + 2 {
                return Ok(None);
            }
            Ok(Some((Value::Bulk(buf[next..stop].to_vec()), stop + 2)))
        }
        b'*' => {
            let count = parse_int(line, "array length")?;
            if count == -1 {
                return Ok(Some((Value::Null, next)));
            }
            if !(0..=1 << 20).contains(&count) {
                return error("invalid array length");
            }
            let mut pos = next;
            let mut items = Vec::new();
            for _ in 0..count {
                match parse_value_depth(&buf[pos..], depth + 1)? {
                    None => return Ok(None),
                    Some((v, used)) => {
                        items.push(v);
                        pos += used;
                    }
                }
            }
            Ok(Some((Value::Array(items), pos)))
        }
        other => error(format!("unexpected reply type '{}'", other as char)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    /// Goal: a client's array command parses, and partial input asks for more.
    #[test]
    fn parse_command_array_complete_and_partial() {
        let cmd = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
        assert_eq!(
            parse_command(cmd),
            Ok(Some((args(&["SET", "k", "hello"]), cmd.len())))
        );
        for cut in 0..cmd.len() {
            assert_eq!(parse_command(&cmd[..cut]), Ok(None), "cut at {cut}");
        }
    }

    /// Goal: inline commands split on whitespace; blank lines give no arguments.
    #[test]
    fn parse_command_inline() {
        assert_eq!(
            parse_command(b"PING  hi\r\nrest"),
            Ok(Some((args(&["PING", "hi"]), 10)))
        );
        assert_eq!(parse_command(b"\r\n"), Ok(Some((vec![], 2))));
    }

    /// Goal: malformed input is a protocol error, not a panic or a hang.
    #[test]
    fn parse_command_malformed_is_error() {
        for bad in [
            &b"*x\r\n"[..],
            b"*1\r\n+PING\r\n",
            b"*1\r\n$-5\r\n",
            b"*1\r\n$3\r\nPINGX\r\n",
            b"*99999999\r\n",
            b"*1\r\n$99999999999\r\n",
        ] {
            assert!(
                parse_command(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// Goal: arbitrary bytes never panic the parsers.
    #[test]
    fn parsers_total_over_garbage() {
        let mut x: u64 = 0x9E3779B97F4A7C15;
        for _ in 0..20_000 {
            let len = (x % 40) as usize;
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(b"*$:+-\r\n0123456789abc"[(x % 20) as usize]);
            }
            let _ = parse_command(&buf);
            let _ = parse_value(&buf);
        }
    }

    /// Goal: every reply value round-trips through encode and parse.
    #[test]
    fn value_roundtrip() {
        let v = Value::Array(vec![
            Value::ok(),
            Value::err("boom"),
            Value::Integer(-7),
            Value::Bulk(b"a\r\nb".to_vec()),
            Value::Null,
            Value::Array(vec![]),
        ]);
        let bytes = v.encode();
        assert_eq!(parse_value(&bytes), Ok(Some((v, bytes.len()))));
    }
}
