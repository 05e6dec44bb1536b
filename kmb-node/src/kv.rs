//! The key-value state machine. Pure: no I/O, no clock, no randomness.
//!
//! Commands ([`Request`]) arrive as the bodies of committed log entries and are applied in op
//! order by [`KvState::apply`], which returns the [`Reply`] the client sees. Reads (GET, SCAN)
//! go through the log like writes, so every reply is linearizable and carries the op number it
//! was ordered at (the core adds the op number; this module does not know it).
//!
//! Encodings are hand-written little-endian; every decoder is total (returns a
//! [`DecodeError`], never panics) and rejects trailing bytes, so one value has one encoding.

use std::collections::BTreeMap;

use xxhash_rust::xxh3::xxh3_128;

pub use crate::core::codec::DecodeError;
use crate::core::codec::{Reader, Writer};

/// Longest key in bytes.
pub const KEY_SIZE_MAX: usize = 1024;
/// Longest value in bytes.
pub const VALUE_SIZE_MAX: usize = 64 * 1024;
/// A SCAN returns at most this many pairs, whatever limit it asks for.
pub const SCAN_LIMIT_MAX: u32 = 1000;
/// A SCAN stops adding pairs once its reply holds this many key and value bytes.
pub const SCAN_BYTES_MAX: usize = 1 << 20;
/// Longest error message in a reply.
pub const ERROR_SIZE_MAX: usize = 1024;
/// Largest snapshot [`KvState::decode_snapshot`] accepts.
pub const SNAPSHOT_SIZE_MAX: usize = 256 << 20;

const SNAPSHOT_MAGIC: [u8; 4] = *b"KMBK";
const SNAPSHOT_VERSION: u16 = 1;

/// A client command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Set `key` to `value`. Replies [`Reply::Ok`].
    Set { key: Vec<u8>, value: Vec<u8> },
    /// Read `key`. Replies [`Reply::Value`].
    Get { key: Vec<u8> },
    /// Delete `key`. Replies [`Reply::Bool`]: whether it existed.
    Del { key: Vec<u8> },
    /// Add `delta` to the decimal integer at `key` (absent = 0). Replies [`Reply::Integer`]
    /// with the new value, or [`Reply::Error`] (and no change) if the value is not a decimal
    /// `i64` or the sum overflows.
    IncrBy { key: Vec<u8>, delta: i64 },
    /// If `key` holds `expected` (`None`: is absent), set it to `new`. Replies
    /// [`Reply::Bool`]: whether it was set.
    Cas {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    },
    /// Pairs with `start <= key < end` in key order, at most `min(limit, SCAN_LIMIT_MAX)` of
    /// them and stopping after [`SCAN_BYTES_MAX`] bytes. Replies [`Reply::Entries`].
    Scan {
        start: Vec<u8>,
        end: Vec<u8>,
        limit: u32,
    },
    /// Open a client session: no state change, replies [`Reply::Ok`]. The core executes a
    /// request of a client that is not in its client table only if it is this (a session's
    /// first request, or its first after an eviction); any other gets [`SESSION_EVICTED`].
    Register,
}

/// How [`SESSION_EVICTED`] reaches a client (`commands::reply_value` prefixes `ERR `).
pub const EVICTED_PREFIX: &str = "ERR session evicted";

/// The reply to a request whose client is not in the client table (evicted, or never
/// registered): the request was not executed now, though an earlier attempt of it may have
/// been, before the eviction. The client library turns it into an unknown outcome (or, when
/// no earlier attempt was sent, registers again and retries); `docs/protocol.md`.
pub const SESSION_EVICTED: &str =
    "session evicted: this client id is not in the client table (evicted or never registered); register again";

/// An integer in its canonical decimal form only (what `i64::to_string` writes: no sign
/// but a leading `-`, no leading zeros, no `-0`, no spaces), as Redis and the documented
/// semantics take integers: `007`, `+5`, `-0` are strings, not integers.
fn parse_canonical(s: &str) -> Option<i64> {
    let n: i64 = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}

/// Admission: the encoded request if it fits one WAL slot's body (`body_max` bytes, from the
/// data file's geometry: `StorageConfig::body_size_max`) and the decoder's bounds; otherwise
/// the client's error text (the glue prefixes `ERR `). The one request-size limit: the RESP
/// reader, the decoder and the core's bounds all lie at or above it.
pub fn admit(request: &Request, body_max: usize) -> Result<Vec<u8>, String> {
    let body = request.encode();
    if body.len() > body_max {
        let excess = body.len() - body_max;
        return Err(match request {
            Request::Set { value, .. } | Request::Cas { new: value, .. }
                if value.len() >= excess =>
            {
                format!("value too large (max {} bytes)", value.len() - excess)
            }
            _ => format!(
                "request too large ({} bytes encoded, max {body_max} bytes)",
                body.len()
            ),
        });
    }
    if request.exceeds_bounds() {
        return Err(format!(
            "request too large (a key may have at most {KEY_SIZE_MAX} bytes, a value {VALUE_SIZE_MAX})"
        ));
    }
    Ok(body)
}

/// The outcome of a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Ok,
    Value(Option<Vec<u8>>),
    Integer(i64),
    Bool(bool),
    Entries(Vec<(Vec<u8>, Vec<u8>)>),
    Error(String),
}

fn read_key(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    Ok(r.bytes(KEY_SIZE_MAX)?.to_vec())
}

fn read_value(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    Ok(r.bytes(VALUE_SIZE_MAX)?.to_vec())
}

impl Request {
    /// Whether a key exceeds [`KEY_SIZE_MAX`] or a value [`VALUE_SIZE_MAX`]: such a request
    /// encodes, but [`Request::decode`] refuses it.
    pub fn exceeds_bounds(&self) -> bool {
        let key = |k: &Vec<u8>| k.len() > KEY_SIZE_MAX;
        let value = |v: &Vec<u8>| v.len() > VALUE_SIZE_MAX;
        match self {
            Request::Set { key: k, value: v } => key(k) || value(v),
            Request::Get { key: k } | Request::Del { key: k } | Request::IncrBy { key: k, .. } => {
                key(k)
            }
            Request::Cas {
                key: k,
                expected,
                new,
            } => key(k) || expected.as_ref().is_some_and(value) || value(new),
            Request::Scan { start, end, .. } => key(start) || key(end),
            Request::Register => false,
        }
    }

    /// Encode (tag byte, then `u32`-length-prefixed fields).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Request::Set { key, value } => {
                w.u8(1);
                w.bytes(key);
                w.bytes(value);
            }
            Request::Get { key } => {
                w.u8(2);
                w.bytes(key);
            }
            Request::Del { key } => {
                w.u8(3);
                w.bytes(key);
            }
            Request::IncrBy { key, delta } => {
                w.u8(4);
                w.bytes(key);
                w.i64(*delta);
            }
            Request::Cas { key, expected, new } => {
                w.u8(5);
                w.bytes(key);
                match expected {
                    None => w.u8(0),
                    Some(v) => {
                        w.u8(1);
                        w.bytes(v);
                    }
                }
                w.bytes(new);
            }
            Request::Scan { start, end, limit } => {
                w.u8(6);
                w.bytes(start);
                w.bytes(end);
                w.u32(*limit);
            }
            Request::Register => w.u8(7),
        }
        w.buf
    }

    /// Decode; total. Keys longer than [`KEY_SIZE_MAX`] or values longer than
    /// [`VALUE_SIZE_MAX`] are rejected.
    pub fn decode(bytes: &[u8]) -> Result<Request, DecodeError> {
        let mut r = Reader::new(bytes);
        let request = match r.u8()? {
            1 => Request::Set {
                key: read_key(&mut r)?,
                value: read_value(&mut r)?,
            },
            2 => Request::Get {
                key: read_key(&mut r)?,
            },
            3 => Request::Del {
                key: read_key(&mut r)?,
            },
            4 => Request::IncrBy {
                key: read_key(&mut r)?,
                delta: r.i64()?,
            },
            5 => {
                let key = read_key(&mut r)?;
                let expected = if r.bool()? {
                    Some(read_value(&mut r)?)
                } else {
                    None
                };
                Request::Cas {
                    key,
                    expected,
                    new: read_value(&mut r)?,
                }
            }
            6 => Request::Scan {
                start: read_key(&mut r)?,
                end: read_key(&mut r)?,
                limit: r.u32()?,
            },
            7 => Request::Register,
            _ => return Err(DecodeError::Invalid("request tag")),
        };
        r.finish()?;
        Ok(request)
    }

    /// Whether the command only reads.
    pub fn is_read(&self) -> bool {
        matches!(self, Request::Get { .. } | Request::Scan { .. })
    }
}

impl Reply {
    /// Encode (tag byte, then fields).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode_into(&mut w);
        w.buf
    }

    pub(crate) fn encode_into(&self, w: &mut Writer) {
        match self {
            Reply::Ok => w.u8(1),
            Reply::Value(v) => {
                w.u8(2);
                match v {
                    None => w.u8(0),
                    Some(v) => {
                        w.u8(1);
                        w.bytes(v);
                    }
                }
            }
            Reply::Integer(i) => {
                w.u8(3);
                w.i64(*i);
            }
            Reply::Bool(b) => {
                w.u8(4);
                w.u8(u8::from(*b));
            }
            Reply::Entries(entries) => {
                w.u8(5);
                w.u32(entries.len() as u32);
                for (k, v) in entries {
                    w.bytes(k);
                    w.bytes(v);
                }
            }
            Reply::Error(message) => {
                w.u8(6);
                w.bytes(message.as_bytes());
            }
        }
    }

    /// Decode; total.
    pub fn decode(bytes: &[u8]) -> Result<Reply, DecodeError> {
        let mut r = Reader::new(bytes);
        let reply = Reply::decode_from(&mut r)?;
        r.finish()?;
        Ok(reply)
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Reply, DecodeError> {
        Ok(match r.u8()? {
            1 => Reply::Ok,
            2 => Reply::Value(if r.bool()? {
                Some(read_value(r)?)
            } else {
                None
            }),
            3 => Reply::Integer(r.i64()?),
            4 => Reply::Bool(r.bool()?),
            5 => {
                let n = r.count(SCAN_LIMIT_MAX as usize, 8)?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    entries.push((read_key(r)?, read_value(r)?));
                }
                Reply::Entries(entries)
            }
            6 => {
                let bytes = r.bytes(ERROR_SIZE_MAX)?;
                let message = std::str::from_utf8(bytes)
                    .map_err(|_| DecodeError::Invalid("error message utf-8"))?;
                Reply::Error(message.to_string())
            }
            _ => return Err(DecodeError::Invalid("reply tag")),
        })
    }
}

/// The replicated key-value state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvState {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl KvState {
    /// An empty state.
    pub fn new() -> KvState {
        KvState::default()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Read a key without going through the log (for tests and checkers, not for clients).
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    /// Apply one command. Deterministic: the same state and request give the same state and
    /// reply on every replica.
    pub fn apply(&mut self, request: &Request) -> Reply {
        match request {
            Request::Set { key, value } => {
                self.map.insert(key.clone(), value.clone());
                Reply::Ok
            }
            Request::Get { key } => Reply::Value(self.map.get(key).cloned()),
            Request::Del { key } => Reply::Bool(self.map.remove(key).is_some()),
            Request::IncrBy { key, delta } => {
                let current = match self.map.get(key) {
                    None => 0,
                    Some(bytes) => {
                        match std::str::from_utf8(bytes).ok().and_then(parse_canonical) {
                            Some(v) => v,
                            None => return Reply::Error("value is not an integer".to_string()),
                        }
                    }
                };
                match current.checked_add(*delta) {
                    Some(v) => {
                        self.map.insert(key.clone(), v.to_string().into_bytes());
                        Reply::Integer(v)
                    }
                    None => Reply::Error("increment would overflow".to_string()),
                }
            }
            Request::Cas { key, expected, new } => {
                if self.map.get(key) == expected.as_ref() {
                    self.map.insert(key.clone(), new.clone());
                    Reply::Bool(true)
                } else {
                    Reply::Bool(false)
                }
            }
            Request::Scan { start, end, limit } => {
                let mut entries = Vec::new();
                if start < end {
                    let limit = (*limit).min(SCAN_LIMIT_MAX) as usize;
                    let mut bytes = 0usize;
                    for (k, v) in self.map.range(start.clone()..end.clone()) {
                        if entries.len() >= limit || bytes >= SCAN_BYTES_MAX {
                            break;
                        }
                        bytes += k.len() + v.len();
                        entries.push((k.clone(), v.clone()));
                    }
                }
                Reply::Entries(entries)
            }
            Request::Register => Reply::Ok,
        }
    }

    /// Canonical encoding: magic, version, count, then (key, value) pairs in key order.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(&SNAPSHOT_MAGIC);
        w.u16(SNAPSHOT_VERSION);
        w.u64(self.map.len() as u64);
        for (k, v) in &self.map {
            w.bytes(k);
            w.bytes(v);
        }
        w.buf
    }

    /// Decode a snapshot; total. Keys must be strictly ascending (the encoding is canonical).
    pub fn decode_snapshot(bytes: &[u8]) -> Result<KvState, DecodeError> {
        if bytes.len() > SNAPSHOT_SIZE_MAX {
            return Err(DecodeError::TooLarge);
        }
        let mut r = Reader::new(bytes);
        if r.raw(4)? != SNAPSHOT_MAGIC {
            return Err(DecodeError::Invalid("kv snapshot magic"));
        }
        if r.u16()? != SNAPSHOT_VERSION {
            return Err(DecodeError::Invalid("kv snapshot version"));
        }
        let n = r.u64()?;
        if n.saturating_mul(8) > r.remaining() as u64 {
            return Err(DecodeError::Truncated);
        }
        let mut map = BTreeMap::new();
        let mut last: Option<Vec<u8>> = None;
        for _ in 0..n {
            let k = read_key(&mut r)?;
            let v = read_value(&mut r)?;
            if last.as_ref().is_some_and(|l| *l >= k) {
                return Err(DecodeError::Invalid("kv snapshot key order"));
            }
            last = Some(k.clone());
            map.insert(k, v);
        }
        r.finish()?;
        Ok(KvState { map })
    }

    /// xxh3-128 of the canonical snapshot encoding: equal states hash equal on every replica.
    pub fn state_hash(&self) -> u128 {
        xxh3_128(&self.encode_snapshot())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    fn all_requests() -> Vec<Request> {
        vec![
            Request::Set {
                key: k("a"),
                value: k("1"),
            },
            Request::Get { key: k("a") },
            Request::Del { key: k("a") },
            Request::IncrBy {
                key: k("n"),
                delta: -5,
            },
            Request::Cas {
                key: k("a"),
                expected: None,
                new: k("x"),
            },
            Request::Cas {
                key: k("a"),
                expected: Some(k("x")),
                new: k("y"),
            },
            Request::Scan {
                start: k("a"),
                end: k("z"),
                limit: 10,
            },
        ]
    }

    fn all_replies() -> Vec<Reply> {
        vec![
            Reply::Ok,
            Reply::Value(None),
            Reply::Value(Some(k("v"))),
            Reply::Integer(-3),
            Reply::Bool(true),
            Reply::Entries(vec![(k("a"), k("1")), (k("b"), k("2"))]),
            Reply::Error("boom".to_string()),
        ]
    }

    /// Goal: every request and reply variant round-trips through its encoding.
    #[test]
    fn request_reply_roundtrip_is_identical() {
        for request in all_requests() {
            assert_eq!(Request::decode(&request.encode()), Ok(request));
        }
        for reply in all_replies() {
            assert_eq!(Reply::decode(&reply.encode()), Ok(reply));
        }
    }

    /// Goal: every truncation and every trailing byte of a valid encoding is an error.
    #[test]
    fn request_truncated_or_trailing_is_error() {
        for request in all_requests() {
            let bytes = request.encode();
            for len in 0..bytes.len() {
                assert!(Request::decode(&bytes[..len]).is_err());
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(Request::decode(&longer), Err(DecodeError::Trailing));
        }
        for reply in all_replies() {
            let bytes = reply.encode();
            for len in 0..bytes.len() {
                assert!(Reply::decode(&bytes[..len]).is_err());
            }
        }
    }

    /// Goal: decoding random bytes and bit-flipped encodings never panics.
    #[test]
    fn decode_random_bytes_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..64);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if !bytes.is_empty() && rng.gen_bool(0.7) {
                bytes[0] = rng.gen_range(0..8);
            }
            let _ = Request::decode(&bytes);
            let _ = Reply::decode(&bytes);
            let _ = KvState::decode_snapshot(&bytes);
        }
        let mut state = KvState::new();
        state.apply(&Request::Set {
            key: k("a"),
            value: k("1"),
        });
        let snapshot = state.encode_snapshot();
        for bit in 0..snapshot.len() * 8 {
            let mut b = snapshot.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            let _ = KvState::decode_snapshot(&b);
        }
    }

    /// Goal: an oversized key is rejected by the decoder.
    #[test]
    fn request_key_too_long_is_rejected() {
        let request = Request::Get {
            key: vec![1; KEY_SIZE_MAX + 1],
        };
        assert_eq!(
            Request::decode(&request.encode()),
            Err(DecodeError::TooLarge)
        );
    }

    /// Goal: SET, GET and DEL behave as a map.
    #[test]
    fn apply_set_get_del_behaves_as_map() {
        let mut s = KvState::new();
        assert_eq!(s.apply(&Request::Get { key: k("a") }), Reply::Value(None));
        assert_eq!(
            s.apply(&Request::Set {
                key: k("a"),
                value: k("1")
            }),
            Reply::Ok
        );
        assert_eq!(
            s.apply(&Request::Get { key: k("a") }),
            Reply::Value(Some(k("1")))
        );
        assert_eq!(s.apply(&Request::Del { key: k("a") }), Reply::Bool(true));
        assert_eq!(s.apply(&Request::Del { key: k("a") }), Reply::Bool(false));
        assert!(s.is_empty());
    }

    /// Goal: INCRBY treats absent as 0; non-integers and overflow are errors without change.
    #[test]
    fn apply_incrby_non_integer_or_overflow_is_error_without_change() {
        let mut s = KvState::new();
        let incr = |delta| Request::IncrBy { key: k("n"), delta };
        assert_eq!(s.apply(&incr(5)), Reply::Integer(5));
        assert_eq!(s.apply(&incr(-7)), Reply::Integer(-2));
        assert_eq!(s.get(b"n"), Some(&b"-2"[..]));
        s.apply(&Request::Set {
            key: k("n"),
            value: k(&i64::MAX.to_string()),
        });
        assert!(matches!(s.apply(&incr(1)), Reply::Error(_)));
        assert_eq!(s.get(b"n"), Some(i64::MAX.to_string().as_bytes()));
        s.apply(&Request::Set {
            key: k("n"),
            value: k("abc"),
        });
        assert!(matches!(s.apply(&incr(1)), Reply::Error(_)));
        assert_eq!(s.get(b"n"), Some(&b"abc"[..]));
    }

    /// Goal: INCRBY takes only canonical integers (as Redis, the documented semantics and
    /// lincheck's model do): `007`, `+5`, `-0`, spaces, hex and exponents are strings and the
    /// increment errors without change; canonical ones, `i64::MIN` included, increment.
    #[test]
    fn apply_incrby_refuses_non_canonical_integers() {
        let mut s = KvState::new();
        for odd in [
            "007", "+5", "-0", " 5", "5 ", "0x10", "1e3", "00", "", "--1",
        ] {
            s.apply(&Request::Set {
                key: k("n"),
                value: k(odd),
            });
            let reply = s.apply(&Request::IncrBy {
                key: k("n"),
                delta: 1,
            });
            assert_eq!(
                reply,
                Reply::Error("value is not an integer".into()),
                "{odd:?}"
            );
            assert_eq!(s.get(b"n"), Some(odd.as_bytes()), "{odd:?} unchanged");
        }
        for (canonical, after) in [("0", 1), ("-7", -6), ("10", 11)] {
            s.apply(&Request::Set {
                key: k("n"),
                value: k(canonical),
            });
            let reply = s.apply(&Request::IncrBy {
                key: k("n"),
                delta: 1,
            });
            assert_eq!(reply, Reply::Integer(after), "{canonical}");
        }
        s.apply(&Request::Set {
            key: k("n"),
            value: k(&i64::MIN.to_string()),
        });
        let reply = s.apply(&Request::IncrBy {
            key: k("n"),
            delta: 1,
        });
        assert_eq!(reply, Reply::Integer(i64::MIN + 1));
    }

    /// Goal: admission takes exactly what fits one WAL slot's body and names the largest
    /// value that would have fitted; keys beyond the decoder's bound are refused too.
    #[test]
    fn admit_takes_what_fits_a_slot_and_names_the_limit() {
        let set = |n: usize| Request::Set {
            key: k("key"),
            value: vec![b'x'; n],
        };
        let overhead = set(0).encode().len();
        let max = 4096 - 128;
        let fits = max - overhead;
        assert_eq!(admit(&set(fits), max), Ok(set(fits).encode()));
        assert_eq!(
            admit(&set(fits + 1), max),
            Err(format!("value too large (max {fits} bytes)"))
        );
        assert_eq!(
            admit(&set(100_000), max),
            Err(format!("value too large (max {fits} bytes)"))
        );
        let get = Request::Get {
            key: vec![b'k'; 70_000],
        };
        assert!(admit(&get, max)
            .unwrap_err()
            .starts_with("request too large (70"));
        let long_key = Request::Get {
            key: vec![b'k'; KEY_SIZE_MAX + 1],
        };
        assert!(admit(&long_key, 1 << 20)
            .unwrap_err()
            .contains("a key may have at most 1024 bytes"));
    }

    /// Goal: CAS sets only when the current value (or absence) matches.
    #[test]
    fn apply_cas_matches_expected_only() {
        let mut s = KvState::new();
        let cas = |expected: Option<&str>, new: &str| Request::Cas {
            key: k("a"),
            expected: expected.map(k),
            new: k(new),
        };
        assert_eq!(s.apply(&cas(Some("x"), "1")), Reply::Bool(false));
        assert_eq!(s.apply(&cas(None, "1")), Reply::Bool(true));
        assert_eq!(s.apply(&cas(None, "2")), Reply::Bool(false));
        assert_eq!(s.apply(&cas(Some("1"), "2")), Reply::Bool(true));
        assert_eq!(s.get(b"a"), Some(&b"2"[..]));
    }

    /// Goal: SCAN is ordered, half-open, limited, and empty for an inverted range.
    #[test]
    fn apply_scan_is_ordered_half_open_and_limited() {
        let mut s = KvState::new();
        for key in ["d", "a", "c", "b", "e"] {
            s.apply(&Request::Set {
                key: k(key),
                value: k(key),
            });
        }
        let scan = |start: &str, end: &str, limit| Request::Scan {
            start: k(start),
            end: k(end),
            limit,
        };
        let keys = |r: Reply| match r {
            Reply::Entries(e) => e.into_iter().map(|(k, _)| k).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            keys(s.apply(&scan("b", "e", 100))),
            vec![k("b"), k("c"), k("d")]
        );
        assert_eq!(keys(s.apply(&scan("a", "z", 2))), vec![k("a"), k("b")]);
        assert!(keys(s.apply(&scan("z", "a", 2))).is_empty());
        assert!(keys(s.apply(&scan("b", "b", 2))).is_empty());
    }

    /// Goal: a snapshot round-trips, and the state hash depends only on content.
    #[test]
    fn snapshot_roundtrip_and_hash_is_canonical() {
        let mut a = KvState::new();
        let mut b = KvState::new();
        for (key, value) in [("x", "1"), ("y", "2")] {
            a.apply(&Request::Set {
                key: k(key),
                value: k(value),
            });
        }
        for (key, value) in [("y", "2"), ("x", "1")] {
            b.apply(&Request::Set {
                key: k(key),
                value: k(value),
            });
        }
        assert_eq!(a.state_hash(), b.state_hash());
        assert_eq!(
            KvState::decode_snapshot(&a.encode_snapshot()),
            Ok(a.clone())
        );
        b.apply(&Request::Del { key: k("x") });
        assert_ne!(a.state_hash(), b.state_hash());
    }
}
