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

/// Parse one command from the front of `buf` (a one-shot use of [`CommandReader`]).
///
/// `Ok(None)`: more bytes are needed. `Ok(Some((args, consumed)))`: a complete command of
/// `consumed` bytes (an empty inline line yields an empty `args`, to be skipped).
pub fn parse_command(buf: &[u8]) -> Result<Option<Parsed>, ProtocolError> {
    let mut reader = CommandReader::new(usize::MAX);
    reader.feed(buf);
    Ok(reader.next_command()?.map(|args| (args, reader.consumed())))
}

/// Where a [`CommandReader`] is inside the command it is reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadState {
    /// Between commands.
    Idle,
    /// Inside an array: `remaining` bulk strings still to read, the next starts with `$`.
    Header { remaining: usize },
    /// Inside a bulk string of `len` bytes (its bytes so far are in `current`).
    Bulk { remaining: usize, len: usize },
}

/// Bytes of a bulk argument reserved up front; the rest grows as bytes actually arrive, so a
/// header announcing a large argument costs nothing until its bytes are sent.
const BULK_RESERVE_MAX: usize = 64 * 1024;

/// Array and bulk header lines (`*1024\r\n`, `$524288\r\n`) are shorter than this, with room
/// to spare. A longer one is an error whether or not its `\r\n` has arrived yet, so the outcome
/// does not depend on how the input was cut into reads.
const HEADER_SIZE_MAX: usize = 32;

/// An incremental RESP command reader: bytes go in as they arrive ([`CommandReader::feed`]),
/// complete commands come out ([`CommandReader::next_command`]).
///
/// Linear in its input: the parse state survives between reads, a bulk argument's bytes are
/// copied once into the argument and never looked at again, and a line terminator is searched
/// for only in bytes not searched before. Holds at most one command's arguments plus the bytes
/// not yet parsed; a command larger than `buffered_max` bytes is a protocol error.
#[derive(Debug)]
pub struct CommandReader {
    /// Received bytes; those before `start` are consumed.
    buf: Vec<u8>,
    start: usize,
    /// Bytes after `start` already searched for a line terminator.
    scanned: usize,
    state: ReadState,
    /// Arguments of the command in progress.
    args: Vec<Vec<u8>>,
    /// The bulk argument in progress.
    current: Vec<u8>,
    /// Bytes of the command in progress consumed so far.
    command_bytes: usize,
    /// Bytes consumed since the reader was made.
    consumed: usize,
    buffered_max: usize,
}

impl CommandReader {
    /// A reader that refuses a command (or unparsed input) larger than `buffered_max` bytes.
    pub fn new(buffered_max: usize) -> CommandReader {
        CommandReader {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            state: ReadState::Idle,
            args: Vec::new(),
            current: Vec::new(),
            command_bytes: 0,
            consumed: 0,
            buffered_max,
        }
    }

    /// Append received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            // At most half the buffer moves, and only bytes not yet consumed: amortised O(1)
            // per byte.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes consumed since the reader was made (the end of the last command returned).
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// Bytes held for the command in progress: its arguments so far and the unparsed input.
    pub fn buffered(&self) -> usize {
        self.command_bytes + (self.buf.len() - self.start)
    }

    /// Whether no command is in progress and no unparsed byte is held.
    pub fn is_idle(&self) -> bool {
        self.state == ReadState::Idle && self.start == self.buf.len()
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.command_bytes += n;
        self.consumed += n;
        self.scanned = 0;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// The index (in the available bytes) of the `\r` of the first `\r\n` at or after `from`;
    /// remembers how far it looked so no byte is searched twice.
    fn find_crlf(&mut self, from: usize) -> Option<usize> {
        let avail = &self.buf[self.start..];
        let begin = from.max(self.scanned);
        let found = avail
            .get(begin..)?
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|i| begin + i);
        if found.is_none() {
            // The last byte may be a `\r` whose `\n` has not arrived.
            self.scanned = avail.len().saturating_sub(1).max(begin);
        }
        found
    }

    fn finish(&mut self) -> Vec<Vec<u8>> {
        self.state = ReadState::Idle;
        self.command_bytes = 0;
        std::mem::take(&mut self.args)
    }

    fn check_size(&self) -> Result<(), ProtocolError> {
        if self.buffered() > self.buffered_max {
            return error(format!(
                "command larger than the limit of {} bytes",
                self.buffered_max
            ));
        }
        Ok(())
    }

    /// The next complete command, `Ok(None)` if more bytes are needed. An empty inline line
    /// yields an empty command (to be skipped). After an error the reader must be dropped.
    pub fn next_command(&mut self) -> Result<Option<Vec<Vec<u8>>>, ProtocolError> {
        loop {
            self.check_size()?;
            match self.state {
                ReadState::Idle => {
                    let Some(&first) = self.available().first() else {
                        return Ok(None);
                    };
                    if first != b'*' {
                        return self.inline();
                    }
                    let Some(end) = self.find_crlf(1) else {
                        return if self.available().len() > HEADER_SIZE_MAX {
                            error("array header too long")
                        } else {
                            Ok(None)
                        };
                    };
                    if end >= HEADER_SIZE_MAX {
                        return error("array header too long");
                    }
                    let count = parse_int(&self.available()[1..end], "multibulk length")?;
                    if count > ARGS_MAX as i64 {
                        return error("invalid multibulk length");
                    }
                    self.consume(end + 2);
                    if count <= 0 {
                        return Ok(Some(self.finish()));
                    }
                    self.args = Vec::with_capacity(count as usize);
                    self.state = ReadState::Header {
                        remaining: count as usize,
                    };
                }
                ReadState::Header { remaining } => {
                    match self.available().first() {
                        None => return Ok(None),
                        Some(b'$') => {}
                        Some(&c) => return error(format!("expected '$', got '{}'", c as char)),
                    }
                    let Some(end) = self.find_crlf(1) else {
                        return if self.available().len() > HEADER_SIZE_MAX {
                            error("bulk header too long")
                        } else {
                            Ok(None)
                        };
                    };
                    if end >= HEADER_SIZE_MAX {
                        return error("bulk header too long");
                    }
                    let len = parse_int(&self.available()[1..end], "bulk length")?;
                    if !(0..=ARG_SIZE_MAX as i64).contains(&len) {
                        return error("invalid bulk length");
                    }
                    let len = len as usize;
                    self.consume(end + 2);
                    if self.command_bytes.saturating_add(len) > self.buffered_max {
                        return error(format!(
                            "command larger than the limit of {} bytes",
                            self.buffered_max
                        ));
                    }
                    self.current = Vec::with_capacity(len.min(BULK_RESERVE_MAX));
                    self.state = ReadState::Bulk { remaining, len };
                }
                ReadState::Bulk { remaining, len } => {
                    let need = len - self.current.len();
                    if need > 0 {
                        let take = need.min(self.available().len());
                        if take == 0 {
                            return Ok(None);
                        }
                        let from = self.start;
                        self.current.extend_from_slice(&self.buf[from..from + take]);
                        self.consume(take);
                        if take < need {
                            return Ok(None);
                        }
                    }
                    let Some(terminator) = self.available().get(..2) else {
                        return Ok(None);
                    };
                    if terminator != b"\r\n" {
                        return error("bulk string not terminated by CRLF");
                    }
                    self.consume(2);
                    let arg = std::mem::take(&mut self.current);
                    self.args.push(arg);
                    if remaining == 1 {
                        return Ok(Some(self.finish()));
                    }
                    self.state = ReadState::Header {
                        remaining: remaining - 1,
                    };
                }
            }
        }
    }

    fn inline(&mut self) -> Result<Option<Vec<Vec<u8>>>, ProtocolError> {
        let begin = self.scanned;
        let found = self.available()[begin..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| begin + i);
        let Some(newline) = found else {
            let len = self.available().len();
            self.scanned = len;
            return if len > INLINE_SIZE_MAX {
                error("too big inline request")
            } else {
                Ok(None)
            };
        };
        if newline > INLINE_SIZE_MAX {
            return error("too big inline request");
        }
        let args = split_inline(&self.available()[..newline])?;
        self.consume(newline + 1);
        self.command_bytes = 0;
        Ok(Some(args))
    }
}

/// The words of an inline command line (without its `\n`).
fn split_inline(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
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
    Ok(args)
}

/// Which reply encoding a connection speaks: RESP2 (the default) or RESP3 (after `HELLO 3`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

impl Protocol {
    /// The protocol version number `HELLO` names (2 or 3).
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// A reply value.
///
/// The RESP3-only kinds (`Map`, `Set`, `Boolean`, `Double`, `Verbatim`) are encoded as Redis
/// itself downgrades them on a RESP2 connection: a map as a flat array of key, value, …, a set
/// as an array, a boolean as the integer 1 or 0, a double and a verbatim string as a bulk
/// string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `+OK`-style status.
    Simple(String),
    /// `-ERR ...`: the full error line without the leading `-` (the same in RESP2 and RESP3).
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    /// The null bulk string (`$-1`, RESP3 `_`): an absent value.
    Null,
    /// The null array (`*-1`, RESP3 `_`): an `EXEC` whose watched keys changed.
    NullArray,
    Array(Vec<Value>),
    /// RESP3 map (`%`): ordered key–value pairs.
    Map(Vec<(Value, Value)>),
    /// RESP3 set (`~`).
    Set(Vec<Value>),
    /// RESP3 boolean (`#t` / `#f`).
    Boolean(bool),
    /// RESP3 double (`,`), held as its decimal text (`1.5`, `inf`, `-inf`, `nan`).
    Double(String),
    /// RESP3 verbatim string (`=`): a three-letter format (`txt`, `mkd`) and the text.
    Verbatim(String, Vec<u8>),
}

/// Append `s` as one line (line breaks removed: a status, error or double is one line).
fn push_line(out: &mut Vec<u8>, kind: u8, s: &str) {
    out.push(kind);
    out.extend(s.bytes().filter(|&b| b != b'\r' && b != b'\n'));
    out.extend_from_slice(b"\r\n");
}

fn push_bulk(out: &mut Vec<u8>, kind: u8, b: &[u8]) {
    // Room for all of it at once (kind, length, two line ends, the bytes).
    out.reserve(1 + 20 + 2 + b.len() + 2);
    push_len(out, kind, b.len());
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

fn push_len(out: &mut Vec<u8>, kind: u8, n: usize) {
    out.push(kind);
    push_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Append `n` in decimal (what `n.to_string()` gives, without allocating it).
fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A verbatim string's format: exactly three bytes, none of them `:` or a line break.
fn verbatim_format(format: &str) -> [u8; 3] {
    let mut f = *b"txt";
    if format.len() == 3 && format.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        f.copy_from_slice(format.as_bytes());
    }
    f
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

    /// A bulk string of text.
    pub fn text(s: impl Into<String>) -> Value {
        Value::Bulk(s.into().into_bytes())
    }

    /// Append the RESP2 encoding of `self` to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        self.encode_as(Protocol::Resp2, out)
    }

    /// Append the encoding of `self` in `protocol` to `out`.
    pub fn encode_as(&self, protocol: Protocol, out: &mut Vec<u8>) {
        let resp3 = protocol == Protocol::Resp3;
        match self {
            Value::Simple(s) => push_line(out, b'+', s),
            Value::Error(s) => push_line(out, b'-', s),
            Value::Integer(i) => push_line(out, b':', &i.to_string()),
            Value::Bulk(b) => push_bulk(out, b'$', b),
            Value::Null if resp3 => out.extend_from_slice(b"_\r\n"),
            Value::Null => out.extend_from_slice(b"$-1\r\n"),
            Value::NullArray if resp3 => out.extend_from_slice(b"_\r\n"),
            Value::NullArray => out.extend_from_slice(b"*-1\r\n"),
            Value::Array(items) | Value::Set(items) => {
                let kind = if resp3 && matches!(self, Value::Set(_)) {
                    b'~'
                } else {
                    b'*'
                };
                push_len(out, kind, items.len());
                for item in items {
                    item.encode_as(protocol, out);
                }
            }
            Value::Map(pairs) => {
                if resp3 {
                    push_len(out, b'%', pairs.len());
                } else {
                    push_len(out, b'*', pairs.len() * 2);
                }
                for (k, v) in pairs {
                    k.encode_as(protocol, out);
                    v.encode_as(protocol, out);
                }
            }
            Value::Boolean(b) if resp3 => push_line(out, b'#', if *b { "t" } else { "f" }),
            Value::Boolean(b) => push_line(out, b':', if *b { "1" } else { "0" }),
            Value::Double(d) if resp3 => push_line(out, b',', d),
            Value::Double(d) => {
                let d: Vec<u8> = d.bytes().filter(|&b| b != b'\r' && b != b'\n').collect();
                push_bulk(out, b'$', &d)
            }
            Value::Verbatim(format, text) if resp3 => {
                let mut body = verbatim_format(format).to_vec();
                body.push(b':');
                body.extend_from_slice(text);
                push_bulk(out, b'=', &body)
            }
            Value::Verbatim(_, text) => push_bulk(out, b'$', text),
        }
    }

    /// The RESP2 encoding of `self`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// The encoding of `self` in `protocol`.
    pub fn encode_with(&self, protocol: Protocol) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_as(protocol, &mut out);
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
        b'*' | b'~' | b'%' => {
            let count = parse_int(line, "array length")?;
            if count == -1 && kind == b'*' {
                return Ok(Some((Value::NullArray, next)));
            }
            if !(0..=1 << 20).contains(&count) {
                return error("invalid array length");
            }
            let elements = if kind == b'%' { count * 2 } else { count };
            let mut pos = next;
            let mut items = Vec::new();
            for _ in 0..elements {
                match parse_value_depth(&buf[pos..], depth + 1)? {
                    None => return Ok(None),
                    Some((v, used)) => {
                        items.push(v);
                        pos += used;
                    }
                }
            }
            let value = match kind {
                b'*' => Value::Array(items),
                b'~' => Value::Set(items),
                _ => {
                    let mut pairs = Vec::with_capacity(items.len() / 2);
                    let mut items = items.into_iter();
                    while let (Some(k), Some(v)) = (items.next(), items.next()) {
                        pairs.push((k, v));
                    }
                    Value::Map(pairs)
                }
            };
            Ok(Some((value, pos)))
        }
        b'_' if line.is_empty() => Ok(Some((Value::Null, next))),
        b'#' => match line {
            b"t" => Ok(Some((Value::Boolean(true), next))),
            b"f" => Ok(Some((Value::Boolean(false), next))),
            _ => error("invalid boolean"),
        },
        b',' => Ok(Some((Value::Double(text()), next))),
        b'=' => {
            let len = parse_int(line, "verbatim length")?;
            if !(4..=64 << 20).contains(&len) {
                return error("invalid verbatim length");
            }
            let stop = next + len as usize;
            if buf.len() < stop + 2 {
                return Ok(None);
            }
            let body = &buf[next..stop];
            if body[3] != b':' || !body[..3].iter().all(|&b| b.is_ascii_graphic() && b != b':') {
                return error("invalid verbatim format");
            }
            let format = String::from_utf8_lossy(&body[..3]).into_owned();
            Ok(Some((
                Value::Verbatim(format, body[4..].to_vec()),
                stop + 2,
            )))
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

    /// Goal: lengths are written as `to_string` writes them.
    #[test]
    fn push_decimal_is_to_string() {
        let mut n = 1usize;
        for v in [
            0,
            1,
            9,
            10,
            99,
            100,
            4096,
            1 << 20,
            usize::MAX - 1,
            usize::MAX,
        ]
        .into_iter()
        .chain(std::iter::from_fn(|| {
            n = n.checked_mul(7)?;
            Some(n)
        })) {
            let mut out = vec![b'x'];
            push_decimal(&mut out, v);
            assert_eq!(out, format!("x{v}").into_bytes());
        }
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

    /// Feed `stream` to a fresh reader in the given chunks; every command it yields.
    fn read_chunks(chunks: &[&[u8]], limit: usize) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        let mut reader = CommandReader::new(limit);
        let mut out = Vec::new();
        for chunk in chunks {
            reader.feed(chunk);
            while let Some(command) = reader.next_command()? {
                out.push(command);
            }
        }
        assert!(reader.is_idle(), "input left over");
        Ok(out)
    }

    const STREAMS: &[(&[u8], &[&[&str]])] = &[
        (
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n",
            &[&["SET", "k", "hello"]],
        ),
        (
            b"*2\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\nPING  hi\r\n*0\r\n\r\n*1\r\n$0\r\n\r\n",
            &[&["GET", "a\r\nb"], &["PING", "hi"], &[], &[], &[""]],
        ),
        (
            b"ECHO x\n*1\r\n$12\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n*-1\r\n",
            &[&["ECHO", "x"], &["\r\n\r\n\r\n\r\n\r\n\r\n"], &[]],
        ),
    ];

    /// Goal: a command split at any byte offset (and fed a byte at a time) reads the same as
    /// the whole stream: the parse state survives between reads.
    #[test]
    fn reader_chunk_boundaries_at_every_offset() {
        for (stream, expected) in STREAMS {
            let expected: Vec<Vec<Vec<u8>>> = expected.iter().map(|c| args(c)).collect();
            assert_eq!(read_chunks(&[stream], usize::MAX), Ok(expected.clone()));
            for cut in 0..=stream.len() {
                let (a, b) = stream.split_at(cut);
                assert_eq!(
                    read_chunks(&[a, b], usize::MAX),
                    Ok(expected.clone()),
                    "cut at {cut}"
                );
                for cut2 in cut..=stream.len() {
                    let (b1, b2) = b.split_at(cut2 - cut);
                    assert_eq!(
                        read_chunks(&[a, b1, b2], usize::MAX),
                        Ok(expected.clone()),
                        "cuts at {cut} and {cut2}"
                    );
                }
            }
            let bytes: Vec<&[u8]> = stream.chunks(1).collect();
            assert_eq!(read_chunks(&bytes, usize::MAX), Ok(expected));
        }
    }

    /// Goal: malformed input is an error whatever the chunking.
    #[test]
    fn reader_malformed_is_error_at_every_offset() {
        for bad in [
            &b"*1\r\n$3\r\nPINGX\r\n"[..],
            b"*2\r\n$1\r\na\r\n+x\r\n",
            b"*1\r\n$-5\r\n",
            b"*1\r\n$0123456789012345678901234567890123456789\r\n",
        ] {
            for cut in 0..=bad.len() {
                let (a, b) = bad.split_at(cut);
                assert!(read_chunks(&[a, b], usize::MAX).is_err(), "cut at {cut}");
            }
        }
    }

    /// Goal: a header line padded past the limit (leading zeros) is refused however the input
    /// is cut into reads; before, a whole read accepted what a byte-at-a-time read refused
    /// (found by the `resp` fuzz target: fuzz/regressions/resp/).
    #[test]
    fn reader_long_header_refused_at_every_offset() {
        let zeros = "0".repeat(HEADER_SIZE_MAX);
        let long_bulk = format!("*1\r\n${zeros}3\r\nabc\r\n");
        let long_array = format!("*{zeros}1\r\n$3\r\nabc\r\n");
        for bad in [long_bulk.as_bytes(), long_array.as_bytes()] {
            for cut in 0..=bad.len() {
                let (a, b) = bad.split_at(cut);
                let err = read_chunks(&[a, b], usize::MAX).unwrap_err();
                assert!(err.0.contains("header too long"), "cut at {cut}: {err}");
            }
            let bytes: Vec<&[u8]> = bad.chunks(1).collect();
            assert!(read_chunks(&bytes, usize::MAX).is_err());
        }
        // The longest accepted header: 31 bytes before its CRLF.
        let ok = format!("*1\r\n${}3\r\nabc\r\n", "0".repeat(HEADER_SIZE_MAX - 3));
        assert_eq!(
            read_chunks(&[ok.as_bytes()], usize::MAX).map(|c| c.len()),
            Ok(1)
        );
        for cut in 0..=ok.len() {
            let (a, b) = ok.as_bytes().split_at(cut);
            assert_eq!(read_chunks(&[a, b], usize::MAX).map(|c| c.len()), Ok(1));
        }
    }

    /// Goal: a command larger than the reader's limit is refused as soon as it is known to be
    /// (at the bulk header), and an announced argument reserves no more than a bounded amount.
    #[test]
    fn reader_refuses_command_over_limit() {
        let err = read_chunks(&[b"*2\r\n$3\r\nSET\r\n$200\r\n"], 100).unwrap_err();
        assert!(err.0.contains("limit of 100 bytes"), "{err}");
        let long = vec![b'a'; 300];
        let err = read_chunks(&[&long], 100).unwrap_err();
        assert!(err.0.contains("limit of 100 bytes"), "{err}");
        let mut reader = CommandReader::new(usize::MAX);
        reader.feed(b"*1\r\n$524288\r\nab");
        assert_eq!(reader.next_command(), Ok(None));
        assert!(reader.current.capacity() <= BULK_RESERVE_MAX);
        assert_eq!(reader.buffered(), b"*1\r\n$524288\r\nab".len());
    }

    /// Goal: an inline line longer than the limit is refused even when it arrives in pieces.
    #[test]
    fn reader_refuses_long_inline_line() {
        let line = vec![b'a'; INLINE_SIZE_MAX + 10];
        let chunks: Vec<&[u8]> = line.chunks(1000).collect();
        assert!(read_chunks(&chunks, usize::MAX).is_err());
        let mut ok = vec![b'a'; INLINE_SIZE_MAX - 10];
        ok.extend_from_slice(b" b\r\n");
        let chunks: Vec<&[u8]> = ok.chunks(1000).collect();
        assert_eq!(read_chunks(&chunks, usize::MAX).map(|c| c.len()), Ok(1));
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
    /// Goal: RESP3 kinds encode as RESP3 defines them, and as Redis downgrades them in RESP2.
    #[test]
    fn resp3_encoding_and_resp2_downgrade() {
        let cases: Vec<(Value, &str, &str)> = vec![
            (Value::Null, "_\r\n", "$-1\r\n"),
            (Value::Boolean(true), "#t\r\n", ":1\r\n"),
            (Value::Boolean(false), "#f\r\n", ":0\r\n"),
            (Value::Double("1.5".into()), ",1.5\r\n", "$3\r\n1.5\r\n"),
            (
                Value::Map(vec![(Value::text("a"), Value::Integer(1))]),
                "%1\r\n$1\r\na\r\n:1\r\n",
                "*2\r\n$1\r\na\r\n:1\r\n",
            ),
            (
                Value::Set(vec![Value::Simple("x".into())]),
                "~1\r\n+x\r\n",
                "*1\r\n+x\r\n",
            ),
            (
                Value::Verbatim("txt".into(), b"hi\r\n".to_vec()),
                "=8\r\ntxt:hi\r\n\r\n",
                "$4\r\nhi\r\n\r\n",
            ),
            (Value::err("boom"), "-ERR boom\r\n", "-ERR boom\r\n"),
            (Value::Integer(-3), ":-3\r\n", ":-3\r\n"),
            (
                Value::Array(vec![Value::Null, Value::Bulk(b"v".to_vec())]),
                "*2\r\n_\r\n$1\r\nv\r\n",
                "*2\r\n$-1\r\n$1\r\nv\r\n",
            ),
        ];
        for (value, resp3, resp2) in cases {
            assert_eq!(
                String::from_utf8_lossy(&value.encode_with(Protocol::Resp3)),
                resp3,
                "{value:?}"
            );
            assert_eq!(
                String::from_utf8_lossy(&value.encode_with(Protocol::Resp2)),
                resp2,
                "{value:?}"
            );
            assert_eq!(value.encode(), resp2.as_bytes());
        }
        // A verbatim format that is not three plain characters is written as `txt`.
        assert!(Value::Verbatim("a:b".into(), b"x".to_vec())
            .encode_with(Protocol::Resp3)
            .starts_with(b"=5\r\ntxt:"));
    }

    /// Goal: every RESP3 value round-trips through its RESP3 encoding and the reply parser.
    #[test]
    fn resp3_roundtrip() {
        let v = Value::Array(vec![
            Value::Map(vec![
                (Value::text("proto"), Value::Integer(3)),
                (Value::text("modules"), Value::Array(vec![])),
            ]),
            Value::Set(vec![Value::text("a")]),
            Value::Boolean(true),
            Value::Double("-inf".into()),
            Value::Verbatim("txt".into(), b"# Server\r\n".to_vec()),
            Value::Null,
        ]);
        let bytes = v.encode_with(Protocol::Resp3);
        assert_eq!(parse_value(&bytes), Ok(Some((v, bytes.len()))));
        for cut in 0..bytes.len() {
            assert_eq!(parse_value(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(parse_value(b"#x\r\n").is_err());
        assert!(parse_value(b"=3\r\nabc\r\n").is_err());
        assert!(parse_value(b"=5\r\nab:cd\r\n").is_err());
    }
}
