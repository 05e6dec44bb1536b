//! The key-value state machine. Pure: no I/O, no clock, no randomness.
//!
//! Commands ([`Request`]) arrive as the bodies of committed log entries and are applied in op
//! order by [`KvState::apply`], which returns the [`Reply`] the client sees. Reads (GET, SCAN)
//! go through the log like writes, so every reply is linearizable and carries the op number it
//! was ordered at (the core adds the op number; this module does not know it).
//!
//! **Time** comes from the log, never from a clock: the primary stamps each entry with a
//! cluster timestamp (`entry::Header::timestamp`, milliseconds since the Unix epoch) and
//! [`KvState::apply`] takes it in an [`ApplyContext`]. The state's own clock is the largest
//! timestamp applied so far, so it never goes backwards whatever a primary's clock does. Before
//! each command every key whose expiry time is at or before that clock is removed, so every
//! replica and every replay of the log expire the same keys at the same op.
//!
//! **Versions** (for `WATCH`): a present key's version is `2·op + 1` for the op that last wrote
//! it; an absent key's is `2·op` for the last op that removed *any* key (a delete, an expiry, a
//! flush). A version read from any replica's applied state is never newer than the cluster's,
//! so a transaction that finds every watched version unchanged inside its own log entry knows
//! no watched key changed since the versions were read (a spurious abort is possible, a missed
//! change is not).
//!
//! Encodings are hand-written little-endian; every decoder is total (returns a
//! [`DecodeError`], never panics) and rejects trailing bytes, so one value has one encoding.

use std::collections::{BTreeMap, BTreeSet};

use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

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
/// Most keys one multi-key command names, and most commands in one transaction or batch.
pub const KEYS_MAX: usize = 4096;
/// Most bytes of values a multi-key read (`MGET`) or `KEYS` returns; beyond it the command
/// answers an error instead (every reply is kept in the client table until the client's next
/// request, so replies are bounded).
pub const REPLY_BYTES_MAX: usize = 1 << 20;

/// Most bytes the replies of one transaction or batch may take: a command whose reply could
/// go beyond what is left is not executed and answers an error (the client table keeps each
/// reply, at most 4 MiB encoded: `core::snapshot`).
pub const MULTI_REPLY_BYTES_MAX: usize = 2 << 20;

const SNAPSHOT_MAGIC: [u8; 4] = *b"KMBK";
const SNAPSHOT_VERSION: u16 = 2;

/// What `SET` requires of the key's current state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetCondition {
    Always,
    /// `NX`: only if absent.
    IfAbsent,
    /// `XX`: only if present.
    IfPresent,
}

/// What `SET` does to the key's expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetExpiry {
    /// No option: the key no longer expires.
    Clear,
    /// `KEEPTTL`.
    Keep,
    /// `EX`/`PX`: this many milliseconds after the op's timestamp (positive).
    In(u64),
    /// `EXAT`/`PXAT`: at this Unix time in milliseconds (positive).
    At(u64),
}

/// When `EXPIRE`-family commands set the expiry (milliseconds; may be zero or negative, which
/// removes the key at once, as in Redis).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpireWhen {
    In(i64),
    At(i64),
}

/// `EXPIRE`'s `NX | XX | GT | LT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpireCondition {
    Always,
    /// Only if the key has no expiry.
    Nx,
    /// Only if it has one.
    Xx,
    /// Only if the new time is later (no expiry counts as infinitely late).
    Gt,
    /// Only if the new time is earlier.
    Lt,
}

/// What `TTL`-family commands report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TtlKind {
    /// `TTL`: seconds left, rounded to the nearest (as Redis: `(ms + 500) / 1000`).
    Seconds,
    /// `PTTL`.
    Millis,
    /// `EXPIRETIME`: Unix seconds.
    AtSeconds,
    /// `PEXPIRETIME`.
    AtMillis,
}

/// A client command.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// Set `key` to `value`, clearing any expiry. Replies [`Reply::Ok`].
    Set { key: Vec<u8>, value: Vec<u8> },
    /// Read `key`. Replies [`Reply::Value`].
    Get { key: Vec<u8> },
    /// Delete `key`. Replies [`Reply::Bool`]: whether it existed.
    Del { key: Vec<u8> },
    /// Add `delta` to the decimal integer at `key` (absent = 0). Replies [`Reply::Integer`]
    /// with the new value, or [`Reply::Error`] (and no change) if the value is not a decimal
    /// `i64` or the sum overflows. Keeps the key's expiry.
    IncrBy { key: Vec<u8>, delta: i64 },
    /// If `key` holds `expected` (`None`: is absent), set it to `new` (clearing any expiry).
    /// Replies [`Reply::Bool`]: whether it was set.
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
    /// `SET` with options. Replies: with `get`, [`Reply::Value`] of the old value (whether or
    /// not the condition let it set); otherwise [`Reply::Ok`] if set, `Value(None)` if not.
    SetWith {
        key: Vec<u8>,
        value: Vec<u8>,
        condition: SetCondition,
        expiry: SetExpiry,
        get: bool,
    },
    /// `DEL`/`UNLINK` of several keys: [`Reply::Integer`], how many existed.
    DelKeys { keys: Vec<Vec<u8>> },
    /// `EXISTS`: [`Reply::Integer`], how many of the names exist (a repeated name counts again).
    Exists { keys: Vec<Vec<u8>> },
    /// `MGET`: [`Reply::Array`] of [`Reply::Value`].
    MGet { keys: Vec<Vec<u8>> },
    /// `MSET` (`only_if_none`: `MSETNX`), atomic. [`Reply::Ok`], or for `MSETNX`
    /// [`Reply::Bool`]: whether it set (only if none of the keys existed).
    MSet {
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
        only_if_none: bool,
    },
    /// `GETDEL`: [`Reply::Value`] of the removed value.
    GetDel { key: Vec<u8> },
    /// `APPEND`: [`Reply::Integer`], the new length (keeps the expiry).
    Append { key: Vec<u8>, value: Vec<u8> },
    /// `INCRBYFLOAT` (`delta` is finite): [`Reply::Value`] of the new value, formatted as the
    /// shortest decimal that reads back as the same `f64` (keeps the expiry).
    IncrByFloat { key: Vec<u8>, delta: f64 },
    /// `EXPIRE`/`PEXPIRE`/`EXPIREAT`/`PEXPIREAT`: [`Reply::Integer`] 1 if set, 0 if the key
    /// is absent or the condition failed.
    Expire {
        key: Vec<u8>,
        when: ExpireWhen,
        condition: ExpireCondition,
    },
    /// `PERSIST`: [`Reply::Integer`] 1 if an expiry was removed.
    Persist { key: Vec<u8> },
    /// `TTL`/`PTTL`/`EXPIRETIME`/`PEXPIRETIME`: [`Reply::Integer`], -2 absent, -1 no expiry.
    Ttl { key: Vec<u8>, kind: TtlKind },
    /// `DBSIZE`: [`Reply::Integer`].
    DbSize,
    /// `FLUSHDB`/`FLUSHALL`: [`Reply::Ok`].
    Flush,
    /// `KEYS pattern`: [`Reply::Array`] of [`Reply::Value`], in key order, or an error if
    /// more than [`SCAN_LIMIT_MAX`] keys or [`REPLY_BYTES_MAX`] bytes would be returned.
    Keys { pattern: Vec<u8> },
    /// `SCAN cursor [MATCH p] [COUNT n]`: visits keys in the order of a 64-bit hash of the
    /// key, `count` of them (at most [`SCAN_LIMIT_MAX`]) from `cursor` on (0 starts).
    /// [`Reply::Array`] of the next cursor ([`Reply::Integer`] as unsigned, 0 when done) and
    /// the array of the visited keys that match. A key present for the whole iteration is
    /// returned at least once (the hash order does not move with inserts and deletes).
    ScanCursor {
        cursor: u64,
        pattern: Option<Vec<u8>>,
        count: u32,
    },
    /// `MULTI … EXEC`: if every watched key still has the version read at `WATCH`, the
    /// commands run in order as one op ([`Reply::Array`] of their replies); else nothing runs
    /// ([`Reply::Aborted`]). Commands are plain commands (no `Multi`, `Batch`, `Register`).
    Multi {
        watches: Vec<(Vec<u8>, u64)>,
        commands: Vec<Request>,
    },
    /// Pipelined commands of one connection, run in order as one op: [`Reply::Array`] of their
    /// replies. Elements are plain commands or `Multi`.
    Batch { commands: Vec<Request> },
}

// Equality is reflexive: the one float, `IncrByFloat::delta`, is finite (the parser and the
// decoder refuse NaN and infinities).
impl Eq for Request {}

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

/// A float as `INCRBYFLOAT` reads one: a decimal or exponent form, finite, no spaces (Redis
/// refuses `inf`, `nan` and surrounding space too).
pub fn parse_float(bytes: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(bytes).ok()?;
    if s.is_empty()
        || s.bytes()
            .any(|b| !(b.is_ascii_digit() || b"+-.eE".contains(&b)))
    {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// The canonical text of a float result: Rust's shortest round-trip form (`3`, `0.1`,
/// `1.5e300` as `15` followed by 299 zeros): the same bytes on every replica and platform.
pub fn format_float(f: f64) -> String {
    let f = if f == 0.0 { 0.0 } else { f };
    format!("{f}")
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
            Request::Set { value, .. }
            | Request::Cas { new: value, .. }
            | Request::SetWith { value, .. }
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
            "request too large (a key may have at most {KEY_SIZE_MAX} bytes, a value {VALUE_SIZE_MAX}, a command {KEYS_MAX} keys)"
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
    /// The replies of a multi-key read, a transaction or a batch, in order.
    Array(Vec<Reply>),
    /// A transaction not executed because a watched key changed (RESP: a null array).
    Aborted,
}

fn read_key(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    Ok(r.bytes(KEY_SIZE_MAX)?.to_vec())
}

fn read_value(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    Ok(r.bytes(VALUE_SIZE_MAX)?.to_vec())
}

fn read_keys(r: &mut Reader<'_>) -> Result<Vec<Vec<u8>>, DecodeError> {
    let n = r.count(KEYS_MAX, 4)?;
    (0..n).map(|_| read_key(r)).collect()
}

fn write_keys(w: &mut Writer, keys: &[Vec<u8>]) {
    w.u32(keys.len() as u32);
    for k in keys {
        w.bytes(k);
    }
}

/// How deep requests nest: a batch may hold transactions, a transaction plain commands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nesting {
    Top,
    InBatch,
    InMulti,
}

impl Request {
    /// Whether a key exceeds [`KEY_SIZE_MAX`], a value [`VALUE_SIZE_MAX`], or a command
    /// names more than [`KEYS_MAX`] keys or commands: such a request encodes, but
    /// [`Request::decode`] refuses it.
    pub fn exceeds_bounds(&self) -> bool {
        let key = |k: &Vec<u8>| k.len() > KEY_SIZE_MAX;
        let value = |v: &Vec<u8>| v.len() > VALUE_SIZE_MAX;
        let keys = |ks: &Vec<Vec<u8>>| ks.len() > KEYS_MAX || ks.iter().any(key);
        match self {
            Request::Set { key: k, value: v }
            | Request::SetWith {
                key: k, value: v, ..
            }
            | Request::Append { key: k, value: v } => key(k) || value(v),
            Request::Get { key: k }
            | Request::Del { key: k }
            | Request::IncrBy { key: k, .. }
            | Request::GetDel { key: k }
            | Request::IncrByFloat { key: k, .. }
            | Request::Expire { key: k, .. }
            | Request::Persist { key: k }
            | Request::Ttl { key: k, .. } => key(k),
            Request::Cas {
                key: k,
                expected,
                new,
            } => key(k) || expected.as_ref().is_some_and(value) || value(new),
            Request::Scan { start, end, .. } => key(start) || key(end),
            Request::Register | Request::DbSize | Request::Flush => false,
            Request::DelKeys { keys: ks }
            | Request::Exists { keys: ks }
            | Request::MGet { keys: ks } => keys(ks),
            Request::MSet { pairs, .. } => {
                pairs.len() > KEYS_MAX || pairs.iter().any(|(k, v)| key(k) || value(v))
            }
            Request::Keys { pattern } => key(pattern),
            Request::ScanCursor { pattern, .. } => pattern.as_ref().is_some_and(key),
            Request::Multi { watches, commands } => {
                watches.len() > KEYS_MAX
                    || watches.iter().any(|(k, _)| key(k))
                    || commands.len() > KEYS_MAX
                    || commands.iter().any(Request::exceeds_bounds)
            }
            Request::Batch { commands } => {
                commands.len() > KEYS_MAX || commands.iter().any(Request::exceeds_bounds)
            }
        }
    }

    /// Encode (tag byte, then `u32`-length-prefixed fields).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode_into(&mut w);
        w.buf
    }

    fn encode_into(&self, w: &mut Writer) {
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
            Request::SetWith {
                key,
                value,
                condition,
                expiry,
                get,
            } => {
                w.u8(8);
                w.bytes(key);
                w.bytes(value);
                w.u8(match condition {
                    SetCondition::Always => 0,
                    SetCondition::IfAbsent => 1,
                    SetCondition::IfPresent => 2,
                });
                match expiry {
                    SetExpiry::Clear => w.u8(0),
                    SetExpiry::Keep => w.u8(1),
                    SetExpiry::In(ms) => {
                        w.u8(2);
                        w.u64(*ms);
                    }
                    SetExpiry::At(ms) => {
                        w.u8(3);
                        w.u64(*ms);
                    }
                }
                w.u8(u8::from(*get));
            }
            Request::DelKeys { keys } => {
                w.u8(9);
                write_keys(w, keys);
            }
            Request::Exists { keys } => {
                w.u8(10);
                write_keys(w, keys);
            }
            Request::MGet { keys } => {
                w.u8(11);
                write_keys(w, keys);
            }
            Request::MSet {
                pairs,
                only_if_none,
            } => {
                w.u8(12);
                w.u8(u8::from(*only_if_none));
                w.u32(pairs.len() as u32);
                for (k, v) in pairs {
                    w.bytes(k);
                    w.bytes(v);
                }
            }
            Request::GetDel { key } => {
                w.u8(13);
                w.bytes(key);
            }
            Request::Append { key, value } => {
                w.u8(14);
                w.bytes(key);
                w.bytes(value);
            }
            Request::IncrByFloat { key, delta } => {
                w.u8(15);
                w.bytes(key);
                w.u64(delta.to_bits());
            }
            Request::Expire {
                key,
                when,
                condition,
            } => {
                w.u8(16);
                w.bytes(key);
                match when {
                    ExpireWhen::In(ms) => {
                        w.u8(0);
                        w.i64(*ms);
                    }
                    ExpireWhen::At(ms) => {
                        w.u8(1);
                        w.i64(*ms);
                    }
                }
                w.u8(match condition {
                    ExpireCondition::Always => 0,
                    ExpireCondition::Nx => 1,
                    ExpireCondition::Xx => 2,
                    ExpireCondition::Gt => 3,
                    ExpireCondition::Lt => 4,
                });
            }
            Request::Persist { key } => {
                w.u8(17);
                w.bytes(key);
            }
            Request::Ttl { key, kind } => {
                w.u8(18);
                w.bytes(key);
                w.u8(match kind {
                    TtlKind::Seconds => 0,
                    TtlKind::Millis => 1,
                    TtlKind::AtSeconds => 2,
                    TtlKind::AtMillis => 3,
                });
            }
            Request::DbSize => w.u8(19),
            Request::Flush => w.u8(20),
            Request::Keys { pattern } => {
                w.u8(21);
                w.bytes(pattern);
            }
            Request::ScanCursor {
                cursor,
                pattern,
                count,
            } => {
                w.u8(22);
                w.u64(*cursor);
                match pattern {
                    None => w.u8(0),
                    Some(p) => {
                        w.u8(1);
                        w.bytes(p);
                    }
                }
                w.u32(*count);
            }
            Request::Multi { watches, commands } => {
                w.u8(23);
                w.u32(watches.len() as u32);
                for (k, version) in watches {
                    w.bytes(k);
                    w.u64(*version);
                }
                w.u32(commands.len() as u32);
                for c in commands {
                    c.encode_into(w);
                }
            }
            Request::Batch { commands } => {
                w.u8(24);
                w.u32(commands.len() as u32);
                for c in commands {
                    c.encode_into(w);
                }
            }
        }
    }

    /// Decode; total. Keys longer than [`KEY_SIZE_MAX`], values longer than
    /// [`VALUE_SIZE_MAX`], more than [`KEYS_MAX`] keys or commands, and nesting other than a
    /// batch of transactions of plain commands are rejected.
    pub fn decode(bytes: &[u8]) -> Result<Request, DecodeError> {
        let mut r = Reader::new(bytes);
        let request = Request::decode_from(&mut r, Nesting::Top)?;
        r.finish()?;
        Ok(request)
    }

    fn decode_from(r: &mut Reader<'_>, nesting: Nesting) -> Result<Request, DecodeError> {
        let request = match r.u8()? {
            1 => Request::Set {
                key: read_key(r)?,
                value: read_value(r)?,
            },
            2 => Request::Get { key: read_key(r)? },
            3 => Request::Del { key: read_key(r)? },
            4 => Request::IncrBy {
                key: read_key(r)?,
                delta: r.i64()?,
            },
            5 => {
                let key = read_key(r)?;
                let expected = if r.bool()? {
                    Some(read_value(r)?)
                } else {
                    None
                };
                Request::Cas {
                    key,
                    expected,
                    new: read_value(r)?,
                }
            }
            6 => Request::Scan {
                start: read_key(r)?,
                end: read_key(r)?,
                limit: r.u32()?,
            },
            7 if nesting == Nesting::Top => Request::Register,
            8 => {
                let key = read_key(r)?;
                let value = read_value(r)?;
                let condition = match r.u8()? {
                    0 => SetCondition::Always,
                    1 => SetCondition::IfAbsent,
                    2 => SetCondition::IfPresent,
                    _ => return Err(DecodeError::Invalid("set condition")),
                };
                let expiry = match r.u8()? {
                    0 => SetExpiry::Clear,
                    1 => SetExpiry::Keep,
                    2 => SetExpiry::In(r.u64()?),
                    3 => SetExpiry::At(r.u64()?),
                    _ => return Err(DecodeError::Invalid("set expiry")),
                };
                Request::SetWith {
                    key,
                    value,
                    condition,
                    expiry,
                    get: r.bool()?,
                }
            }
            9 => Request::DelKeys {
                keys: read_keys(r)?,
            },
            10 => Request::Exists {
                keys: read_keys(r)?,
            },
            11 => Request::MGet {
                keys: read_keys(r)?,
            },
            12 => {
                let only_if_none = r.bool()?;
                let n = r.count(KEYS_MAX, 8)?;
                let mut pairs = Vec::with_capacity(n);
                for _ in 0..n {
                    pairs.push((read_key(r)?, read_value(r)?));
                }
                Request::MSet {
                    pairs,
                    only_if_none,
                }
            }
            13 => Request::GetDel { key: read_key(r)? },
            14 => Request::Append {
                key: read_key(r)?,
                value: read_value(r)?,
            },
            15 => {
                let key = read_key(r)?;
                let delta = f64::from_bits(r.u64()?);
                if !delta.is_finite() {
                    return Err(DecodeError::Invalid("float increment"));
                }
                Request::IncrByFloat { key, delta }
            }
            16 => {
                let key = read_key(r)?;
                let when = match r.u8()? {
                    0 => ExpireWhen::In(r.i64()?),
                    1 => ExpireWhen::At(r.i64()?),
                    _ => return Err(DecodeError::Invalid("expire time")),
                };
                let condition = match r.u8()? {
                    0 => ExpireCondition::Always,
                    1 => ExpireCondition::Nx,
                    2 => ExpireCondition::Xx,
                    3 => ExpireCondition::Gt,
                    4 => ExpireCondition::Lt,
                    _ => return Err(DecodeError::Invalid("expire condition")),
                };
                Request::Expire {
                    key,
                    when,
                    condition,
                }
            }
            17 => Request::Persist { key: read_key(r)? },
            18 => {
                let key = read_key(r)?;
                let kind = match r.u8()? {
                    0 => TtlKind::Seconds,
                    1 => TtlKind::Millis,
                    2 => TtlKind::AtSeconds,
                    3 => TtlKind::AtMillis,
                    _ => return Err(DecodeError::Invalid("ttl kind")),
                };
                Request::Ttl { key, kind }
            }
            19 => Request::DbSize,
            20 => Request::Flush,
            21 => Request::Keys {
                pattern: read_key(r)?,
            },
            22 => {
                let cursor = r.u64()?;
                let pattern = if r.bool()? { Some(read_key(r)?) } else { None };
                Request::ScanCursor {
                    cursor,
                    pattern,
                    count: r.u32()?,
                }
            }
            23 if nesting != Nesting::InMulti => {
                let n = r.count(KEYS_MAX, 12)?;
                let mut watches = Vec::with_capacity(n);
                for _ in 0..n {
                    watches.push((read_key(r)?, r.u64()?));
                }
                let n = r.count(KEYS_MAX, 1)?;
                let mut commands = Vec::with_capacity(n);
                for _ in 0..n {
                    commands.push(Request::decode_from(r, Nesting::InMulti)?);
                }
                Request::Multi { watches, commands }
            }
            24 if nesting == Nesting::Top => {
                let n = r.count(KEYS_MAX, 1)?;
                let mut commands = Vec::with_capacity(n);
                for _ in 0..n {
                    commands.push(Request::decode_from(r, Nesting::InBatch)?);
                }
                Request::Batch { commands }
            }
            _ => return Err(DecodeError::Invalid("request tag")),
        };
        Ok(request)
    }

    /// Whether the command only reads.
    pub fn is_read(&self) -> bool {
        match self {
            Request::Get { .. }
            | Request::Scan { .. }
            | Request::Exists { .. }
            | Request::MGet { .. }
            | Request::Ttl { .. }
            | Request::DbSize
            | Request::Keys { .. }
            | Request::ScanCursor { .. } => true,
            Request::Multi { watches, commands } => {
                watches.is_empty() && commands.iter().all(Request::is_read)
            }
            Request::Batch { commands } => commands.iter().all(Request::is_read),
            _ => false,
        }
    }
}

impl Reply {
    /// Encode (tag byte, then fields).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode_into(&mut w);
        w.buf
    }

    /// The length of [`Reply::encode`]'s bytes, without encoding.
    pub fn encoded_len(&self) -> usize {
        match self {
            Reply::Ok | Reply::Aborted => 1,
            Reply::Value(None) => 2,
            Reply::Value(Some(v)) => 2 + 4 + v.len(),
            Reply::Integer(_) => 9,
            Reply::Bool(_) => 2,
            Reply::Entries(entries) => {
                5 + entries
                    .iter()
                    .map(|(k, v)| 8 + k.len() + v.len())
                    .sum::<usize>()
            }
            Reply::Error(message) => 5 + message.len(),
            Reply::Array(items) => 5 + items.iter().map(Reply::encoded_len).sum::<usize>(),
        }
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
            Reply::Array(items) => {
                w.u8(7);
                w.u32(items.len() as u32);
                for item in items {
                    item.encode_into(w);
                }
            }
            Reply::Aborted => w.u8(8),
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
        Reply::decode_nested(r, 0)
    }

    fn decode_nested(r: &mut Reader<'_>, depth: usize) -> Result<Reply, DecodeError> {
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
            // A batch of transactions of multi-key reads nests three deep.
            7 if depth < 3 => {
                let n = r.count(KEYS_MAX, 1)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(Reply::decode_nested(r, depth + 1)?);
                }
                Reply::Array(items)
            }
            8 => Reply::Aborted,
            _ => return Err(DecodeError::Invalid("reply tag")),
        })
    }
}

/// The planted bugs of this module (`crate::mutation`; simulator only).
#[derive(Clone, Copy)]
enum Planted {
    SetKeepsTtl,
    MultiPartial,
}

#[cfg(madsim)]
impl Planted {
    fn mutation(self) -> crate::mutation::Mutation {
        match self {
            Planted::SetKeepsTtl => crate::mutation::Mutation::SetKeepsTtl,
            Planted::MultiPartial => crate::mutation::Mutation::MultiPartial,
        }
    }
}

/// Whether the planted bug is active (never outside the simulator).
fn planted(p: Planted) -> bool {
    #[cfg(madsim)]
    return crate::mutation::is(p.mutation());
    #[cfg(not(madsim))]
    {
        let _ = p;
        false
    }
}

/// The planted bug changed an outcome.
fn bitten(p: Planted) {
    #[cfg(madsim)]
    crate::mutation::bit(p.mutation());
    #[cfg(not(madsim))]
    let _ = p;
}

/// What [`KvState::apply`] needs to know of the op it applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ApplyContext {
    /// The op number.
    pub op: u64,
    /// The entry's cluster timestamp (milliseconds since the Unix epoch).
    pub timestamp: u64,
}

/// One key's value, expiry and version.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Item {
    value: Vec<u8>,
    /// Unix time in milliseconds at which the key disappears.
    expires_at: Option<u64>,
    /// The op that last wrote it.
    modified: u64,
}

/// The replicated key-value state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvState {
    map: BTreeMap<Vec<u8>, Item>,
    /// `(expires_at, key)` of every key with an expiry.
    expiring: BTreeSet<(u64, Vec<u8>)>,
    /// `(scan_hash(key), key)` of every key: the order `SCAN` visits.
    hashed: BTreeSet<(u64, Vec<u8>)>,
    /// The largest timestamp applied (milliseconds): the state's clock.
    clock: u64,
    /// The last op that removed a key (delete, expiry, flush): absent keys' version.
    removed: u64,
    /// The wrapping sum of every key's [`item_hash`]: kept up to date by every insert and
    /// removal, so [`KvState::digest`] costs nothing per op whatever the state's size (the
    /// simulator publishes a state hash at every commit; hashing the whole snapshot each time
    /// cost time in proportion to the state).
    items_digest: u128,
}

/// One key's contribution to [`KvState::digest`].
fn item_hash(key: &[u8], item: &Item) -> u128 {
    let mut b = Vec::with_capacity(key.len() + item.value.len() + 24);
    b.extend_from_slice(&(key.len() as u32).to_le_bytes());
    b.extend_from_slice(key);
    b.extend_from_slice(&item.value);
    b.extend_from_slice(&item.expires_at.unwrap_or(0).to_le_bytes());
    b.extend_from_slice(&item.modified.to_le_bytes());
    xxh3_128(&b)
}

/// The hash that orders `SCAN`: never 0 (cursor 0 means "start" and "done").
fn scan_hash(key: &[u8]) -> u64 {
    xxh3_64(key).max(1)
}

impl KvState {
    /// An empty state.
    pub fn new() -> KvState {
        KvState::default()
    }

    /// Number of keys (expired keys are removed at the next op applied).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Number of keys with an expiry.
    pub fn expiring(&self) -> usize {
        self.expiring.len()
    }

    /// The state's clock: the largest timestamp applied.
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// Read a key without going through the log (for tests and checkers, not for clients).
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(|i| i.value.as_slice())
    }

    /// A key's expiry time, if it has one (tests and checkers).
    pub fn expires_at(&self, key: &[u8]) -> Option<u64> {
        self.map.get(key).and_then(|i| i.expires_at)
    }

    /// The key's version for `WATCH` (module documentation).
    pub fn version(&self, key: &[u8]) -> u64 {
        match self.map.get(key) {
            Some(item) => item.modified * 2 + 1,
            None => self.removed * 2,
        }
    }

    fn insert(&mut self, key: &[u8], value: Vec<u8>, expires_at: Option<u64>, op: u64) {
        let item = Item {
            value,
            expires_at,
            modified: op,
        };
        self.items_digest = self.items_digest.wrapping_add(item_hash(key, &item));
        let old = self.map.insert(key.to_vec(), item);
        if let Some(old) = &old {
            self.items_digest = self.items_digest.wrapping_sub(item_hash(key, old));
        }
        match old {
            Some(old) => {
                if old.expires_at != expires_at {
                    if let Some(t) = old.expires_at {
                        self.expiring.remove(&(t, key.to_vec()));
                    }
                    if let Some(t) = expires_at {
                        self.expiring.insert((t, key.to_vec()));
                    }
                }
            }
            None => {
                self.hashed.insert((scan_hash(key), key.to_vec()));
                if let Some(t) = expires_at {
                    self.expiring.insert((t, key.to_vec()));
                }
            }
        }
    }

    fn remove(&mut self, key: &[u8], op: u64) -> Option<Vec<u8>> {
        let item = self.map.remove(key)?;
        self.items_digest = self.items_digest.wrapping_sub(item_hash(key, &item));
        self.hashed.remove(&(scan_hash(key), key.to_vec()));
        if let Some(t) = item.expires_at {
            self.expiring.remove(&(t, key.to_vec()));
        }
        self.removed = op;
        Some(item.value)
    }

    fn set_expiry(&mut self, key: &[u8], expires_at: Option<u64>, op: u64) {
        if let Some(item) = self.map.get(key) {
            let value = item.value.clone();
            self.insert(key, value, expires_at, op);
        }
    }

    /// Remove every key whose expiry is at or before the clock.
    fn expire(&mut self, op: u64) {
        while let Some((t, key)) = self.expiring.first().cloned() {
            if t > self.clock {
                break;
            }
            crate::mark!("key_expired");
            self.remove(&key, op);
        }
    }

    /// Whether [`KvState::read`] answers `request` when the wall clock reads `now`
    /// (milliseconds): it only reads, its answer does not name the clock (`TTL` does), and no
    /// key it could read has an expiry at or before `now` — a key the next entry would expire,
    /// so that the answer would depend on when the read is ordered.
    pub fn readable(&self, request: &Request, now: u64) -> bool {
        let due = |k: &Vec<u8>| {
            self.map
                .get(k)
                .and_then(|i| i.expires_at)
                .is_some_and(|t| t <= now)
        };
        let mut due_keys = self
            .expiring
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, k)| k);
        match request {
            Request::Get { key } => !due(key),
            Request::Exists { keys } | Request::MGet { keys } => !keys.iter().any(due),
            Request::Scan { start, end, .. } => !due_keys.any(|k| k >= start && k < end),
            Request::DbSize | Request::Keys { .. } | Request::ScanCursor { .. } => {
                due_keys.next().is_none()
            }
            Request::Batch { commands } => commands
                .iter()
                .all(|c| !matches!(c, Request::Batch { .. }) && self.readable(c, now)),
            _ => false,
        }
    }

    /// A read served without a log entry (`core/read.rs`): the reply to `request` in the
    /// current state, or `None` unless [`KvState::readable`] at `now`. The same replies as
    /// [`KvState::apply`] would give at the state's clock (a batch within the same reply
    /// budget), with nothing changed.
    pub fn read(&self, request: &Request, now: u64) -> Option<Reply> {
        if !self.readable(request, now) {
            return None;
        }
        match request {
            Request::Batch { commands } => {
                let mut budget = MULTI_REPLY_BYTES_MAX;
                let mut replies = Vec::with_capacity(commands.len());
                for c in commands {
                    let reply = match self.over_budget(c, budget) {
                        Some(refused) => refused,
                        None => self.query(c)?,
                    };
                    budget = budget.saturating_sub(reply.encoded_len());
                    replies.push(reply);
                }
                Some(Reply::Array(replies))
            }
            other => self.query(other),
        }
    }

    /// Apply one command at `ctx` (its op and timestamp). Deterministic: the same state,
    /// request and context give the same state and reply on every replica.
    pub fn apply(&mut self, request: &Request, ctx: ApplyContext) -> Reply {
        self.clock = self.clock.max(ctx.timestamp);
        self.expire(ctx.op);
        self.execute(request, ctx.op)
    }

    /// The reply to a command that only reads the state (at its clock), or `None` for any
    /// other: shared by [`KvState::apply`] and [`KvState::read`].
    fn query(&self, request: &Request) -> Option<Reply> {
        let now = self.clock;
        let reply = match request {
            Request::Get { key } => Reply::Value(self.get(key).map(<[u8]>::to_vec)),
            Request::Scan { start, end, limit } => {
                let mut entries = Vec::new();
                if start < end {
                    let limit = (*limit).min(SCAN_LIMIT_MAX) as usize;
                    let mut bytes = 0usize;
                    for (k, item) in self.map.range(start.clone()..end.clone()) {
                        if entries.len() >= limit || bytes >= SCAN_BYTES_MAX {
                            break;
                        }
                        bytes += k.len() + item.value.len();
                        entries.push((k.clone(), item.value.clone()));
                    }
                }
                Reply::Entries(entries)
            }
            Request::Exists { keys } => {
                Reply::Integer(keys.iter().filter(|k| self.map.contains_key(*k)).count() as i64)
            }
            Request::MGet { keys } => {
                let bytes: usize = keys
                    .iter()
                    .filter_map(|k| self.get(k))
                    .map(<[u8]>::len)
                    .sum();
                if bytes > REPLY_BYTES_MAX {
                    return Some(Reply::Error(format!(
                        "reply too large ({bytes} bytes of values, max {REPLY_BYTES_MAX}): ask for fewer keys"
                    )));
                }
                Reply::Array(
                    keys.iter()
                        .map(|k| Reply::Value(self.get(k).map(<[u8]>::to_vec)))
                        .collect(),
                )
            }
            Request::Ttl { key, kind } => match self.map.get(key) {
                None => Reply::Integer(-2),
                Some(Item {
                    expires_at: None, ..
                }) => Reply::Integer(-1),
                Some(Item {
                    expires_at: Some(t),
                    ..
                }) => {
                    let left = t.saturating_sub(now);
                    Reply::Integer(match kind {
                        TtlKind::Seconds => left.saturating_add(500) as i64 / 1000,
                        TtlKind::Millis => left as i64,
                        TtlKind::AtSeconds => (t / 1000) as i64,
                        TtlKind::AtMillis => *t as i64,
                    })
                }
            },
            Request::DbSize => Reply::Integer(self.map.len() as i64),
            Request::Keys { pattern } => {
                let mut keys = Vec::new();
                let mut bytes = 0;
                for k in self.map.keys() {
                    if crate::glob::glob_match(pattern, k, false) {
                        bytes += k.len();
                        keys.push(Reply::Value(Some(k.clone())));
                        if keys.len() > SCAN_LIMIT_MAX as usize || bytes > REPLY_BYTES_MAX {
                            return Some(Reply::Error(format!(
                                "KEYS would return more than {SCAN_LIMIT_MAX} keys or {REPLY_BYTES_MAX} bytes (kmb bounds replies): use SCAN"
                            )));
                        }
                    }
                }
                Reply::Array(keys)
            }
            Request::ScanCursor {
                cursor,
                pattern,
                count,
            } => {
                let count = (*count).clamp(1, SCAN_LIMIT_MAX) as usize;
                let mut keys = Vec::new();
                let mut next = 0;
                for (visited, (h, k)) in self.hashed.range((*cursor, Vec::new())..).enumerate() {
                    if visited == count {
                        next = *h;
                        break;
                    }
                    if pattern
                        .as_ref()
                        .is_none_or(|p| crate::glob::glob_match(p, k, false))
                    {
                        keys.push(Reply::Value(Some(k.clone())));
                    }
                }
                // Keys sharing the stopping hash are visited again by the next call: a SCAN
                // may return a key twice, as Redis's may.
                Reply::Array(vec![Reply::Integer(next as i64), Reply::Array(keys)])
            }
            _ => return None,
        };
        Some(reply)
    }

    fn execute(&mut self, request: &Request, op: u64) -> Reply {
        let now = self.clock;
        match request {
            Request::Set { key, value } => {
                // Mutation `set-keeps-ttl` (simulator): a plain SET keeps the old expiry.
                let expires_at = if planted(Planted::SetKeepsTtl) {
                    let kept = self.expires_at(key);
                    if kept.is_some() {
                        bitten(Planted::SetKeepsTtl);
                    }
                    kept
                } else {
                    None
                };
                self.insert(key, value.clone(), expires_at, op);
                Reply::Ok
            }
            Request::Del { key } => Reply::Bool(self.remove(key, op).is_some()),
            Request::IncrBy { key, delta } => {
                let current = match self.get(key) {
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
                        let expires_at = self.expires_at(key);
                        self.insert(key, v.to_string().into_bytes(), expires_at, op);
                        Reply::Integer(v)
                    }
                    None => Reply::Error("increment would overflow".to_string()),
                }
            }
            Request::Cas { key, expected, new } => {
                if self.get(key) == expected.as_deref() {
                    self.insert(key, new.clone(), None, op);
                    Reply::Bool(true)
                } else {
                    Reply::Bool(false)
                }
            }
            Request::Register => Reply::Ok,
            Request::SetWith {
                key,
                value,
                condition,
                expiry,
                get,
            } => {
                let old = self.map.get(key);
                let allowed = match condition {
                    SetCondition::Always => true,
                    SetCondition::IfAbsent => old.is_none(),
                    SetCondition::IfPresent => old.is_some(),
                };
                let old_value = old.map(|i| i.value.clone());
                let expires_at = match *expiry {
                    SetExpiry::Clear => None,
                    SetExpiry::Keep => old.and_then(|i| i.expires_at),
                    SetExpiry::In(ms) => match now.checked_add(ms) {
                        Some(t) => Some(t),
                        None => return Reply::Error("invalid expire time in 'set' command".into()),
                    },
                    SetExpiry::At(ms) => Some(ms),
                };
                if allowed {
                    if expires_at.is_some_and(|t| t <= now) {
                        // An absolute time already past: set and expire at once, as Redis.
                        self.remove(key, op);
                    } else {
                        self.insert(key, value.clone(), expires_at, op);
                    }
                }
                match (get, allowed) {
                    (true, _) => Reply::Value(old_value),
                    (false, true) => Reply::Ok,
                    (false, false) => Reply::Value(None),
                }
            }
            Request::DelKeys { keys } => {
                let n = keys.iter().filter(|k| self.remove(k, op).is_some()).count();
                Reply::Integer(n as i64)
            }
            Request::MSet {
                pairs,
                only_if_none,
            } => {
                if *only_if_none && pairs.iter().any(|(k, _)| self.map.contains_key(k)) {
                    return Reply::Bool(false);
                }
                for (k, v) in pairs {
                    self.insert(k, v.clone(), None, op);
                }
                if *only_if_none {
                    Reply::Bool(true)
                } else {
                    Reply::Ok
                }
            }
            Request::GetDel { key } => Reply::Value(self.remove(key, op)),
            Request::Append { key, value } => {
                let (mut new, expires_at) = match self.map.get(key) {
                    Some(item) => (item.value.clone(), item.expires_at),
                    None => (Vec::new(), None),
                };
                if new.len() + value.len() > VALUE_SIZE_MAX {
                    return Reply::Error(format!(
                        "string exceeds maximum allowed size ({VALUE_SIZE_MAX} bytes)"
                    ));
                }
                new.extend_from_slice(value);
                let len = new.len() as i64;
                self.insert(key, new, expires_at, op);
                Reply::Integer(len)
            }
            Request::IncrByFloat { key, delta } => {
                let current = match self.get(key) {
                    None => 0.0,
                    Some(bytes) => match parse_float(bytes) {
                        Some(f) => f,
                        None => return Reply::Error("value is not a valid float".to_string()),
                    },
                };
                let sum = current + delta;
                if !sum.is_finite() {
                    return Reply::Error("increment would produce NaN or Infinity".to_string());
                }
                let text = format_float(sum).into_bytes();
                let expires_at = self.expires_at(key);
                self.insert(key, text.clone(), expires_at, op);
                Reply::Value(Some(text))
            }
            Request::Expire {
                key,
                when,
                condition,
            } => {
                let Some(item) = self.map.get(key) else {
                    return Reply::Integer(0);
                };
                let at = match *when {
                    ExpireWhen::In(ms) => (now as i64).checked_add(ms),
                    ExpireWhen::At(ms) => Some(ms),
                };
                let Some(at) = at else {
                    return Reply::Error("invalid expire time in 'expire' command".into());
                };
                let current = item.expires_at;
                let allowed = match condition {
                    ExpireCondition::Always => true,
                    ExpireCondition::Nx => current.is_none(),
                    ExpireCondition::Xx => current.is_some(),
                    ExpireCondition::Gt => current.is_some_and(|c| at > c as i64),
                    ExpireCondition::Lt => current.is_none_or(|c| at < c as i64),
                };
                if !allowed {
                    return Reply::Integer(0);
                }
                if at <= now as i64 {
                    self.remove(key, op);
                } else {
                    self.set_expiry(key, Some(at as u64), op);
                }
                Reply::Integer(1)
            }
            Request::Persist { key } => match self.expires_at(key) {
                Some(_) => {
                    self.set_expiry(key, None, op);
                    Reply::Integer(1)
                }
                None => Reply::Integer(0),
            },
            Request::Flush => {
                if !self.map.is_empty() {
                    self.map.clear();
                    self.expiring.clear();
                    self.hashed.clear();
                    self.items_digest = 0;
                    self.removed = op;
                }
                Reply::Ok
            }
            Request::Multi { watches, commands } => {
                let mut budget = MULTI_REPLY_BYTES_MAX;
                self.execute_multi(watches, commands, op, &mut budget)
            }
            Request::Batch { commands } => {
                let mut budget = MULTI_REPLY_BYTES_MAX;
                let mut replies = Vec::with_capacity(commands.len());
                for c in commands {
                    replies.push(match c {
                        // A transaction in a batch shares the batch's reply budget.
                        Request::Multi { watches, commands } => {
                            self.execute_multi(watches, commands, op, &mut budget)
                        }
                        other => self.execute_bounded(other, op, &mut budget),
                    });
                }
                Reply::Array(replies)
            }
            // Everything else only reads.
            read => self
                .query(read)
                .unwrap_or_else(|| Reply::Error("not a command of the state machine".to_string())),
        }
    }

    /// A transaction: nothing if a watched key's version moved, else its commands in order
    /// within the reply `budget`.
    fn execute_multi(
        &mut self,
        watches: &[(Vec<u8>, u64)],
        commands: &[Request],
        op: u64,
        budget: &mut usize,
    ) -> Reply {
        if watches.iter().any(|(k, v)| self.version(k) != *v) {
            crate::mark!("transaction_aborted_by_watch");
            return Reply::Aborted;
        }
        // Mutation `multi-partial` (simulator): a transaction stops at its first error
        // reply, keeping what ran before it (not all-or-nothing as documented: Redis runs
        // every queued command; an error reply is that command's only).
        let partial = planted(Planted::MultiPartial);
        let mut replies = Vec::with_capacity(commands.len());
        for (i, c) in commands.iter().enumerate() {
            let reply = self.execute_bounded(c, op, budget);
            let stop = partial && matches!(reply, Reply::Error(_));
            replies.push(reply);
            if stop {
                if i + 1 < commands.len() {
                    bitten(Planted::MultiPartial);
                }
                break;
            }
        }
        Reply::Array(replies)
    }

    /// One command of a transaction or batch: executed only if the largest reply it could
    /// give fits what is left of `budget` (every reply stays in the client table until the
    /// client's next request, and a checkpoint holds it: replies are bounded); otherwise it
    /// changes nothing and answers an error saying so.
    fn execute_bounded(&mut self, c: &Request, op: u64, budget: &mut usize) -> Reply {
        if let Some(refused) = self.over_budget(c, *budget) {
            return refused;
        }
        let reply = self.execute(c, op);
        *budget = budget.saturating_sub(reply.encoded_len());
        reply
    }

    /// The error that replaces `c`'s reply if the largest reply it could give exceeds what
    /// is left of the `budget`.
    fn over_budget(&self, c: &Request, budget: usize) -> Option<Reply> {
        (self.reply_bound(c) > budget).then(|| {
            Reply::Error(format!(
                "not executed: the replies of this transaction or pipeline would exceed {MULTI_REPLY_BYTES_MAX} bytes"
            ))
        })
    }

    /// An upper bound on the encoded size of `c`'s reply in the current state.
    fn reply_bound(&self, c: &Request) -> usize {
        const SMALL: usize = ERROR_SIZE_MAX + 16;
        let value = |k: &Vec<u8>| self.get(k).map_or(0, <[u8]>::len) + SMALL;
        match c {
            Request::Get { key }
            | Request::GetDel { key }
            | Request::SetWith { key, get: true, .. } => value(key),
            Request::MGet { keys } => keys.iter().map(value).sum(),
            Request::Scan { .. } => SCAN_BYTES_MAX + KEY_SIZE_MAX + VALUE_SIZE_MAX + SMALL,
            Request::Keys { .. } => REPLY_BYTES_MAX + KEY_SIZE_MAX + SMALL,
            Request::ScanCursor { count, .. } => {
                (*count).clamp(1, SCAN_LIMIT_MAX) as usize * (KEY_SIZE_MAX + 8) + SMALL
            }
            Request::Multi { commands, .. } | Request::Batch { commands } => {
                commands.iter().map(|c| self.reply_bound(c)).sum()
            }
            _ => SMALL,
        }
    }

    /// Canonical encoding: magic, version, clock, last removal op, count, then per key in
    /// key order: key, value, expiry (0 = none), last-modified op.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut w = Writer {
            buf: Vec::with_capacity(self.snapshot_len()),
        };
        self.encode_snapshot_into(&mut w);
        w.buf
    }

    /// The length of [`KvState::encode_snapshot`]'s bytes, without encoding them.
    pub fn snapshot_len(&self) -> usize {
        let items: usize = self
            .map
            .iter()
            .map(|(k, item)| 4 + k.len() + 4 + item.value.len() + 8 + 8)
            .sum();
        SNAPSHOT_MAGIC.len() + 2 + 8 + 8 + 8 + items
    }

    /// Append [`KvState::encode_snapshot`]'s bytes to `w`.
    pub(crate) fn encode_snapshot_into(&self, w: &mut Writer) {
        w.raw(&SNAPSHOT_MAGIC);
        w.u16(SNAPSHOT_VERSION);
        w.u64(self.clock);
        w.u64(self.removed);
        w.u64(self.map.len() as u64);
        for (k, item) in &self.map {
            w.bytes(k);
            w.bytes(&item.value);
            w.u64(item.expires_at.unwrap_or(0));
            w.u64(item.modified);
        }
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
        let mut state = KvState {
            clock: r.u64()?,
            removed: r.u64()?,
            ..KvState::default()
        };
        let n = r.u64()?;
        if n.saturating_mul(24) > r.remaining() as u64 {
            return Err(DecodeError::Truncated);
        }
        let mut last: Option<Vec<u8>> = None;
        for _ in 0..n {
            let k = read_key(&mut r)?;
            let v = read_value(&mut r)?;
            let expires_at = match r.u64()? {
                0 => None,
                t => Some(t),
            };
            let modified = r.u64()?;
            if last.as_ref().is_some_and(|l| *l >= k) {
                return Err(DecodeError::Invalid("kv snapshot key order"));
            }
            state.insert(&k, v, expires_at, modified);
            last = Some(k);
        }
        r.finish()?;
        Ok(state)
    }

    /// xxh3-128 of the canonical snapshot encoding: equal states hash equal on every replica.
    /// Costs time in proportion to the state; [`KvState::digest`] does not.
    pub fn state_hash(&self) -> u128 {
        xxh3_128(&self.encode_snapshot())
    }

    /// A digest of the whole state (every key's value, expiry and version, the clock, the
    /// last removal), maintained incrementally: equal states have equal digests on every
    /// replica, and a state differing in any key differs in its digest but for a 2^-128
    /// accident (a sum of independent 128-bit hashes).
    pub fn digest(&self) -> u128 {
        self.digest_of(self.items_digest)
    }

    fn digest_of(&self, items: u128) -> u128 {
        let mut b = [0u8; 40];
        b[..16].copy_from_slice(&items.to_le_bytes());
        b[16..24].copy_from_slice(&self.clock.to_le_bytes());
        b[24..32].copy_from_slice(&self.removed.to_le_bytes());
        b[32..40].copy_from_slice(&(self.map.len() as u64).to_le_bytes());
        xxh3_128(&b)
    }

    /// [`KvState::digest`] computed from scratch (checks the incremental one).
    pub fn digest_recomputed(&self) -> u128 {
        let items = self
            .map
            .iter()
            .fold(0u128, |sum, (k, item)| sum.wrapping_add(item_hash(k, item)));
        self.digest_of(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ap(s: &mut KvState, r: &Request) -> Reply {
        s.apply(
            r,
            ApplyContext {
                op: 1,
                timestamp: 0,
            },
        )
    }

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
            assert_eq!(reply.encoded_len(), reply.encode().len(), "{reply:?}");
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
        ap(
            &mut state,
            &Request::Set {
                key: k("a"),
                value: k("1"),
            },
        );
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
        assert_eq!(
            ap(&mut s, &Request::Get { key: k("a") }),
            Reply::Value(None)
        );
        assert_eq!(
            ap(
                &mut s,
                &Request::Set {
                    key: k("a"),
                    value: k("1")
                }
            ),
            Reply::Ok
        );
        assert_eq!(
            ap(&mut s, &Request::Get { key: k("a") }),
            Reply::Value(Some(k("1")))
        );
        assert_eq!(ap(&mut s, &Request::Del { key: k("a") }), Reply::Bool(true));
        assert_eq!(
            ap(&mut s, &Request::Del { key: k("a") }),
            Reply::Bool(false)
        );
        assert!(s.is_empty());
    }

    /// Goal: INCRBY treats absent as 0; non-integers and overflow are errors without change.
    #[test]
    fn apply_incrby_non_integer_or_overflow_is_error_without_change() {
        let mut s = KvState::new();
        let incr = |delta| Request::IncrBy { key: k("n"), delta };
        assert_eq!(ap(&mut s, &incr(5)), Reply::Integer(5));
        assert_eq!(ap(&mut s, &incr(-7)), Reply::Integer(-2));
        assert_eq!(s.get(b"n"), Some(&b"-2"[..]));
        ap(
            &mut s,
            &Request::Set {
                key: k("n"),
                value: k(&i64::MAX.to_string()),
            },
        );
        assert!(matches!(ap(&mut s, &incr(1)), Reply::Error(_)));
        assert_eq!(s.get(b"n"), Some(i64::MAX.to_string().as_bytes()));
        ap(
            &mut s,
            &Request::Set {
                key: k("n"),
                value: k("abc"),
            },
        );
        assert!(matches!(ap(&mut s, &incr(1)), Reply::Error(_)));
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
            ap(
                &mut s,
                &Request::Set {
                    key: k("n"),
                    value: k(odd),
                },
            );
            let reply = ap(
                &mut s,
                &Request::IncrBy {
                    key: k("n"),
                    delta: 1,
                },
            );
            assert_eq!(
                reply,
                Reply::Error("value is not an integer".into()),
                "{odd:?}"
            );
            assert_eq!(s.get(b"n"), Some(odd.as_bytes()), "{odd:?} unchanged");
        }
        for (canonical, after) in [("0", 1), ("-7", -6), ("10", 11)] {
            ap(
                &mut s,
                &Request::Set {
                    key: k("n"),
                    value: k(canonical),
                },
            );
            let reply = ap(
                &mut s,
                &Request::IncrBy {
                    key: k("n"),
                    delta: 1,
                },
            );
            assert_eq!(reply, Reply::Integer(after), "{canonical}");
        }
        ap(
            &mut s,
            &Request::Set {
                key: k("n"),
                value: k(&i64::MIN.to_string()),
            },
        );
        let reply = ap(
            &mut s,
            &Request::IncrBy {
                key: k("n"),
                delta: 1,
            },
        );
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
        assert_eq!(ap(&mut s, &cas(Some("x"), "1")), Reply::Bool(false));
        assert_eq!(ap(&mut s, &cas(None, "1")), Reply::Bool(true));
        assert_eq!(ap(&mut s, &cas(None, "2")), Reply::Bool(false));
        assert_eq!(ap(&mut s, &cas(Some("1"), "2")), Reply::Bool(true));
        assert_eq!(s.get(b"a"), Some(&b"2"[..]));
    }

    /// Goal: SCAN is ordered, half-open, limited, and empty for an inverted range.
    #[test]
    fn apply_scan_is_ordered_half_open_and_limited() {
        let mut s = KvState::new();
        for key in ["d", "a", "c", "b", "e"] {
            ap(
                &mut s,
                &Request::Set {
                    key: k(key),
                    value: k(key),
                },
            );
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
            keys(ap(&mut s, &scan("b", "e", 100))),
            vec![k("b"), k("c"), k("d")]
        );
        assert_eq!(keys(ap(&mut s, &scan("a", "z", 2))), vec![k("a"), k("b")]);
        assert!(keys(ap(&mut s, &scan("z", "a", 2))).is_empty());
        assert!(keys(ap(&mut s, &scan("b", "b", 2))).is_empty());
    }

    /// Goal: a snapshot round-trips, and the state hash depends only on content.
    #[test]
    fn snapshot_roundtrip_and_hash_is_canonical() {
        let mut a = KvState::new();
        let mut b = KvState::new();
        for (key, value) in [("x", "1"), ("y", "2")] {
            ap(
                &mut a,
                &Request::Set {
                    key: k(key),
                    value: k(value),
                },
            );
        }
        for (key, value) in [("y", "2"), ("x", "1")] {
            ap(
                &mut b,
                &Request::Set {
                    key: k(key),
                    value: k(value),
                },
            );
        }
        assert_eq!(a.state_hash(), b.state_hash());
        assert_eq!(
            KvState::decode_snapshot(&a.encode_snapshot()),
            Ok(a.clone())
        );
        ap(&mut b, &Request::Del { key: k("x") });
        assert_ne!(a.state_hash(), b.state_hash());
    }

    /// Goal: `snapshot_len` is the exact length of the encoding (the checkpoint encoder sizes
    /// its one buffer by it), and the checkpoint snapshot holds the kv encoding behind a
    /// `u64` length, as `blob` writes it.
    #[test]
    fn snapshot_len_is_exact_and_checkpoint_embeds_the_encoding() {
        let mut s = KvState::new();
        assert_eq!(s.snapshot_len(), s.encode_snapshot().len());
        for i in 0..50u32 {
            ap(
                &mut s,
                &Request::Set {
                    key: k(&format!("key{i}")),
                    value: "v".repeat(i as usize).into_bytes(),
                },
            );
        }
        ap(&mut s, &Request::Del { key: k("key7") });
        let bytes = s.encode_snapshot();
        assert_eq!(s.snapshot_len(), bytes.len());
        let clients = crate::core::snapshot::ClientTable::new();
        let checkpoint = crate::core::snapshot::encode(&s, &clients, 42);
        let mut w = Writer::new();
        w.raw(&checkpoint[..14]);
        w.blob(&bytes);
        assert_eq!(&checkpoint[..w.buf.len()], &w.buf[..]);
        assert_eq!(
            crate::core::snapshot::decode(&checkpoint).map(|(kv, _)| kv),
            Ok(s.clone())
        );
        assert_eq!(crate::core::snapshot::timestamp(&checkpoint), Some(42));
        // The first format (version 1, no timestamp) still decodes: a data file written
        // before it keeps its checkpoint.
        let mut v1 = checkpoint[..4].to_vec();
        v1.extend_from_slice(&1u16.to_le_bytes());
        v1.extend_from_slice(&checkpoint[14..]);
        assert_eq!(crate::core::snapshot::decode(&v1).map(|(kv, _)| kv), Ok(s));
        assert_eq!(crate::core::snapshot::timestamp(&v1), None);
        let mut v3 = checkpoint.clone();
        v3[4] = 3;
        assert!(
            crate::core::snapshot::decode(&v3).is_err(),
            "unknown version"
        );
    }

    fn at(op: u64, timestamp: u64) -> ApplyContext {
        ApplyContext { op, timestamp }
    }

    fn set_with(
        key: &str,
        value: &str,
        condition: SetCondition,
        expiry: SetExpiry,
        get: bool,
    ) -> Request {
        Request::SetWith {
            key: k(key),
            value: k(value),
            condition,
            expiry,
            get,
        }
    }

    fn every_new_request() -> Vec<Request> {
        let plain = vec![
            set_with("a", "1", SetCondition::IfAbsent, SetExpiry::In(5), true),
            set_with("a", "1", SetCondition::IfPresent, SetExpiry::At(9), false),
            set_with("a", "1", SetCondition::Always, SetExpiry::Keep, false),
            Request::DelKeys {
                keys: vec![k("a"), k("b")],
            },
            Request::Exists {
                keys: vec![k("a"), k("a")],
            },
            Request::MGet { keys: vec![k("a")] },
            Request::MSet {
                pairs: vec![(k("a"), k("1")), (k("b"), k("2"))],
                only_if_none: true,
            },
            Request::GetDel { key: k("a") },
            Request::Append {
                key: k("a"),
                value: k("xy"),
            },
            Request::IncrByFloat {
                key: k("f"),
                delta: 0.1,
            },
            Request::Expire {
                key: k("a"),
                when: ExpireWhen::In(-3),
                condition: ExpireCondition::Gt,
            },
            Request::Expire {
                key: k("a"),
                when: ExpireWhen::At(77),
                condition: ExpireCondition::Nx,
            },
            Request::Persist { key: k("a") },
            Request::Ttl {
                key: k("a"),
                kind: TtlKind::AtMillis,
            },
            Request::DbSize,
            Request::Flush,
            Request::Keys { pattern: k("a*") },
            Request::ScanCursor {
                cursor: 7,
                pattern: Some(k("*")),
                count: 10,
            },
            Request::ScanCursor {
                cursor: 0,
                pattern: None,
                count: 10,
            },
        ];
        let multi = Request::Multi {
            watches: vec![(k("a"), 3)],
            commands: plain.clone(),
        };
        let mut all = plain.clone();
        all.push(multi.clone());
        all.push(Request::Batch {
            commands: vec![plain[0].clone(), multi],
        });
        all
    }

    /// Goal: the new requests and replies round-trip, and every truncation or trailing byte
    /// is an error.
    #[test]
    fn new_requests_and_replies_roundtrip() {
        for request in every_new_request() {
            let bytes = request.encode();
            assert_eq!(Request::decode(&bytes), Ok(request.clone()));
            for len in 0..bytes.len() {
                assert!(Request::decode(&bytes[..len]).is_err());
            }
        }
        for reply in [
            Reply::Aborted,
            Reply::Array(vec![
                Reply::Ok,
                Reply::Array(vec![Reply::Integer(3), Reply::Aborted]),
            ]),
            Reply::Array(vec![
                Reply::Entries(vec![(k("a"), k("bc"))]),
                Reply::Error("e".into()),
            ]),
        ] {
            assert_eq!(reply.encoded_len(), reply.encode().len(), "{reply:?}");
            assert_eq!(Reply::decode(&reply.encode()), Ok(reply));
        }
    }

    /// Goal: nesting other than a batch of transactions of plain commands does not decode,
    /// nor does a registration inside either, nor a non-finite float increment.
    #[test]
    fn decode_refuses_bad_nesting_and_non_finite_floats() {
        let multi = Request::Multi {
            watches: vec![],
            commands: vec![Request::DbSize],
        };
        let bad = [
            Request::Multi {
                watches: vec![],
                commands: vec![multi.clone()],
            },
            Request::Batch {
                commands: vec![Request::Batch { commands: vec![] }],
            },
            Request::Multi {
                watches: vec![],
                commands: vec![Request::Register],
            },
            Request::Batch {
                commands: vec![Request::Register],
            },
            Request::IncrByFloat {
                key: k("f"),
                delta: f64::NAN,
            },
            Request::IncrByFloat {
                key: k("f"),
                delta: f64::INFINITY,
            },
        ];
        for request in bad {
            assert!(Request::decode(&request.encode()).is_err(), "{request:?}");
        }
        let deep = Reply::Array(vec![Reply::Array(vec![Reply::Array(vec![Reply::Array(
            vec![],
        )])])]);
        assert!(Reply::decode(&deep.encode()).is_err());
    }

    /// Goal: a key expires at the op whose timestamp reaches its expiry time — on every
    /// replica alike, as the time is the log's — and a clock going backwards changes nothing.
    #[test]
    fn expiry_follows_the_log_timestamps() {
        let mut s = KvState::new();
        s.apply(
            &set_with(
                "lock",
                "me",
                SetCondition::IfAbsent,
                SetExpiry::In(30_000),
                false,
            ),
            at(1, 1_000),
        );
        assert_eq!(s.expires_at(b"lock"), Some(31_000));
        let ttl = Request::Ttl {
            key: k("lock"),
            kind: TtlKind::Millis,
        };
        assert_eq!(s.apply(&ttl, at(2, 11_000)), Reply::Integer(20_000));
        // A primary whose clock is behind: the state's clock stays at 11 s.
        assert_eq!(s.apply(&ttl, at(3, 5_000)), Reply::Integer(20_000));
        assert_eq!(
            s.apply(
                &Request::Ttl {
                    key: k("lock"),
                    kind: TtlKind::Seconds
                },
                at(4, 11_001)
            ),
            Reply::Integer(20)
        );
        // TTL rounds to the nearest second, as Redis: 19.4 s left is 19.
        assert_eq!(
            s.apply(
                &Request::Ttl {
                    key: k("lock"),
                    kind: TtlKind::Seconds
                },
                at(4, 11_600)
            ),
            Reply::Integer(19)
        );
        // NX fails while the lock is held, succeeds once it expired.
        let take = set_with(
            "lock",
            "you",
            SetCondition::IfAbsent,
            SetExpiry::In(1_000),
            false,
        );
        assert_eq!(s.apply(&take, at(5, 30_999)), Reply::Value(None));
        assert_eq!(s.apply(&take, at(6, 31_000)), Reply::Ok);
        assert_eq!(s.get(b"lock"), Some(&b"you"[..]));
        // Expiry removes the key before the next op whatever it touches.
        s.apply(&Request::DbSize, at(7, 40_000));
        assert!(s.is_empty());
        assert_eq!(s.expiring(), 0);
        assert_eq!(s.apply(&ttl, at(8, 40_000)), Reply::Integer(-2));
    }

    /// Goal: SET clears an expiry, KEEPTTL, INCRBY and APPEND keep it, PERSIST removes it,
    /// EXPIRE's conditions and a past time behave as Redis's.
    #[test]
    fn expiry_options_behave_as_redis() {
        let mut s = KvState::new();
        let expire = |when, condition| Request::Expire {
            key: k("a"),
            when,
            condition,
        };
        s.apply(
            &set_with("a", "1", SetCondition::Always, SetExpiry::In(100), false),
            at(1, 0),
        );
        s.apply(
            &Request::IncrBy {
                key: k("a"),
                delta: 1,
            },
            at(2, 0),
        );
        s.apply(
            &Request::Append {
                key: k("a"),
                value: k("0"),
            },
            at(3, 0),
        );
        assert_eq!(s.expires_at(b"a"), Some(100));
        assert_eq!(s.get(b"a"), Some(&b"20"[..]));
        s.apply(
            &set_with("a", "x", SetCondition::Always, SetExpiry::Keep, false),
            at(4, 0),
        );
        assert_eq!(s.expires_at(b"a"), Some(100));
        s.apply(
            &Request::Set {
                key: k("a"),
                value: k("y"),
            },
            at(5, 0),
        );
        assert_eq!(s.expires_at(b"a"), None);
        for (when, condition, op, set) in [
            (ExpireWhen::In(50), ExpireCondition::Xx, 6, 0),
            (ExpireWhen::In(50), ExpireCondition::Nx, 7, 1),
            (ExpireWhen::In(40), ExpireCondition::Gt, 8, 0),
            (ExpireWhen::In(60), ExpireCondition::Gt, 9, 1),
            (ExpireWhen::In(70), ExpireCondition::Lt, 10, 0),
        ] {
            assert_eq!(
                s.apply(&expire(when, condition), at(op, 0)),
                Reply::Integer(set),
                "{condition:?}"
            );
        }
        assert_eq!(s.expires_at(b"a"), Some(60));
        assert_eq!(
            s.apply(&Request::Persist { key: k("a") }, at(11, 0)),
            Reply::Integer(1)
        );
        assert_eq!(
            s.apply(&Request::Persist { key: k("a") }, at(12, 0)),
            Reply::Integer(0)
        );
        assert_eq!(
            s.apply(
                &expire(ExpireWhen::In(0), ExpireCondition::Always),
                at(13, 0)
            ),
            Reply::Integer(1)
        );
        assert!(s.is_empty());
        assert_eq!(
            s.apply(
                &expire(ExpireWhen::In(10), ExpireCondition::Always),
                at(14, 0)
            ),
            Reply::Integer(0)
        );
        // EXAT in the past: set and gone.
        let past = set_with("b", "1", SetCondition::Always, SetExpiry::At(5), true);
        assert_eq!(s.apply(&past, at(15, 10)), Reply::Value(None));
        assert_eq!(s.get(b"b"), None);
        // SET … GET answers the old value whether or not the condition let it set.
        s.apply(
            &Request::Set {
                key: k("c"),
                value: k("old"),
            },
            at(16, 10),
        );
        let get_nx = set_with("c", "new", SetCondition::IfAbsent, SetExpiry::Clear, true);
        assert_eq!(s.apply(&get_nx, at(17, 10)), Reply::Value(Some(k("old"))));
        assert_eq!(s.get(b"c"), Some(&b"old"[..]));
        let ttls = |s: &mut KvState, kind| s.apply(&Request::Ttl { key: k("c"), kind }, at(18, 10));
        assert_eq!(ttls(&mut s, TtlKind::Seconds), Reply::Integer(-1));
        s.apply(
            &set_with(
                "c",
                "v",
                SetCondition::IfPresent,
                SetExpiry::At(12_345),
                false,
            ),
            at(19, 10),
        );
        assert_eq!(ttls(&mut s, TtlKind::AtSeconds), Reply::Integer(12));
        assert_eq!(ttls(&mut s, TtlKind::AtMillis), Reply::Integer(12_345));
    }

    /// Goal: multi-key commands: counts, atomic MSETNX, MGET, GETDEL, DBSIZE, FLUSH.
    #[test]
    fn multi_key_commands() {
        let mut s = KvState::new();
        let mset = |pairs: &[(&str, &str)], nx| Request::MSet {
            pairs: pairs.iter().map(|(a, b)| (k(a), k(b))).collect(),
            only_if_none: nx,
        };
        assert_eq!(
            s.apply(&mset(&[("a", "1"), ("b", "2")], false), at(1, 0)),
            Reply::Ok
        );
        assert_eq!(
            s.apply(&mset(&[("c", "3"), ("a", "9")], true), at(2, 0)),
            Reply::Bool(false)
        );
        assert_eq!(s.get(b"c"), None, "MSETNX sets nothing when one key exists");
        assert_eq!(
            s.apply(&mset(&[("c", "3"), ("d", "4")], true), at(3, 0)),
            Reply::Bool(true)
        );
        assert_eq!(
            s.apply(
                &Request::MGet {
                    keys: vec![k("a"), k("x"), k("d")]
                },
                at(4, 0)
            ),
            Reply::Array(vec![
                Reply::Value(Some(k("1"))),
                Reply::Value(None),
                Reply::Value(Some(k("4")))
            ])
        );
        assert_eq!(
            s.apply(
                &Request::Exists {
                    keys: vec![k("a"), k("a"), k("x")]
                },
                at(5, 0)
            ),
            Reply::Integer(2)
        );
        assert_eq!(
            s.apply(
                &Request::DelKeys {
                    keys: vec![k("a"), k("x"), k("b")]
                },
                at(6, 0)
            ),
            Reply::Integer(2)
        );
        assert_eq!(
            s.apply(&Request::GetDel { key: k("c") }, at(7, 0)),
            Reply::Value(Some(k("3")))
        );
        assert_eq!(s.apply(&Request::DbSize, at(8, 0)), Reply::Integer(1));
        assert_eq!(s.apply(&Request::Flush, at(9, 0)), Reply::Ok);
        assert!(s.is_empty());
    }

    /// Goal: INCRBYFLOAT reads floats, refuses non-floats and infinities, and writes the
    /// shortest round-trip form.
    #[test]
    fn incrbyfloat_is_deterministic() {
        let mut s = KvState::new();
        let incr = |delta| Request::IncrByFloat { key: k("f"), delta };
        assert_eq!(s.apply(&incr(0.1), at(1, 0)), Reply::Value(Some(k("0.1"))));
        assert_eq!(
            s.apply(&incr(0.2), at(2, 0)),
            Reply::Value(Some(k("0.30000000000000004")))
        );
        s.apply(
            &Request::Set {
                key: k("f"),
                value: k("5.0e3"),
            },
            at(3, 0),
        );
        assert_eq!(
            s.apply(&incr(-5000.0), at(4, 0)),
            Reply::Value(Some(k("0")))
        );
        s.apply(
            &Request::Set {
                key: k("f"),
                value: k("1.7976931348623157e308"),
            },
            at(5, 0),
        );
        assert!(matches!(
            s.apply(&incr(1.7976931348623157e308), at(6, 0)),
            Reply::Error(_)
        ));
        for bad in ["inf", "nan", " 1", "abc", ""] {
            s.apply(
                &Request::Set {
                    key: k("f"),
                    value: k(bad),
                },
                at(7, 0),
            );
            assert!(
                matches!(s.apply(&incr(1.0), at(8, 0)), Reply::Error(_)),
                "{bad:?}"
            );
        }
    }

    /// Goal: a transaction runs all its commands at one op, or none if a watched key's
    /// version moved — including by a delete, an expiry or a flush elsewhere.
    #[test]
    fn transactions_are_all_or_nothing_and_watches_see_every_change() {
        let mut s = KvState::new();
        s.apply(
            &Request::Set {
                key: k("a"),
                value: k("1"),
            },
            at(1, 0),
        );
        let v = s.version(b"a");
        let tx = |watches: Vec<(Vec<u8>, u64)>| Request::Multi {
            watches,
            commands: vec![
                Request::IncrBy {
                    key: k("a"),
                    delta: 1,
                },
                Request::Set {
                    key: k("s"),
                    value: k("x"),
                },
                Request::IncrBy {
                    key: k("s"),
                    delta: 1,
                },
                Request::Get { key: k("a") },
            ],
        };
        let reply = s.apply(&tx(vec![(k("a"), v)]), at(2, 0));
        assert_eq!(
            reply,
            Reply::Array(vec![
                Reply::Integer(2),
                Reply::Ok,
                Reply::Error("value is not an integer".into()),
                Reply::Value(Some(k("2"))),
            ])
        );
        // The version moved: a second EXEC with the old version aborts and changes nothing.
        let before = s.clone();
        assert_eq!(s.apply(&tx(vec![(k("a"), v)]), at(3, 0)), Reply::Aborted);
        assert_eq!(s.get(b"a"), before.get(b"a"));
        // An absent watched key: any removal in the keyspace moves its version.
        let absent = s.version(b"nope");
        s.apply(&Request::Del { key: k("s") }, at(4, 0));
        assert_ne!(s.version(b"nope"), absent);
        // An expiry moves the watched key's version too.
        s.apply(
            &Request::Expire {
                key: k("a"),
                when: ExpireWhen::In(10),
                condition: ExpireCondition::Always,
            },
            at(5, 100),
        );
        let v = s.version(b"a");
        s.apply(&Request::DbSize, at(6, 110));
        assert_ne!(s.version(b"a"), v);
        // A present version never equals an absent one.
        assert_eq!(s.version(b"a") % 2, 0);
        s.apply(
            &Request::Set {
                key: k("a"),
                value: k("1"),
            },
            at(7, 110),
        );
        assert_eq!(s.version(b"a") % 2, 1);
    }

    /// Goal: a batch runs each command in order at one op and answers each.
    #[test]
    fn batch_answers_each_command_in_order() {
        let mut s = KvState::new();
        let batch = Request::Batch {
            commands: vec![
                Request::Set {
                    key: k("a"),
                    value: k("1"),
                },
                Request::Get { key: k("a") },
                Request::Multi {
                    watches: vec![(k("a"), 0)],
                    commands: vec![Request::DbSize],
                },
                Request::IncrBy {
                    key: k("a"),
                    delta: 2,
                },
            ],
        };
        assert_eq!(
            s.apply(&batch, at(1, 0)),
            Reply::Array(vec![
                Reply::Ok,
                Reply::Value(Some(k("1"))),
                Reply::Aborted,
                Reply::Integer(3)
            ])
        );
    }

    /// Goal: SCAN visits every key present throughout exactly by the hash order, whatever is
    /// inserted and deleted between calls; MATCH filters; KEYS is bounded.
    #[test]
    fn scan_cursor_returns_every_stable_key() {
        let mut s = KvState::new();
        for i in 0..300 {
            s.apply(
                &Request::Set {
                    key: k(&format!("k{i}")),
                    value: k("v"),
                },
                at(1, 0),
            );
        }
        let mut cursor = 0;
        let mut seen = std::collections::BTreeSet::new();
        let mut op = 2;
        loop {
            let reply = s.apply(
                &Request::ScanCursor {
                    cursor,
                    pattern: None,
                    count: 17,
                },
                at(op, 0),
            );
            let Reply::Array(parts) = reply else { panic!() };
            let (Reply::Integer(next), Reply::Array(keys)) = (&parts[0], &parts[1]) else {
                panic!()
            };
            for key in keys {
                let Reply::Value(Some(key)) = key else {
                    panic!()
                };
                seen.insert(key.clone());
            }
            // Churn between calls: new keys and deletions of other new keys.
            s.apply(
                &Request::Set {
                    key: k(&format!("new{op}")),
                    value: k("v"),
                },
                at(op, 0),
            );
            s.apply(
                &Request::Del {
                    key: k(&format!("new{}", op - 1)),
                },
                at(op, 0),
            );
            op += 1;
            cursor = *next as u64;
            if cursor == 0 {
                break;
            }
        }
        for i in 0..300 {
            assert!(seen.contains(&k(&format!("k{i}"))), "k{i} missed");
        }
        let matched = s.apply(
            &Request::ScanCursor {
                cursor: 0,
                pattern: Some(k("k1?")),
                count: 1000,
            },
            at(op, 0),
        );
        let Reply::Array(parts) = matched else {
            panic!()
        };
        assert_eq!(
            parts[1],
            Reply::Array({
                let mut v: Vec<_> = (10..20).map(|i| format!("k{i}")).collect();
                v.sort_by_key(|key| scan_hash(key.as_bytes()));
                v.into_iter()
                    .map(|key| Reply::Value(Some(k(&key))))
                    .collect()
            })
        );
        assert!(
            matches!(s.apply(&Request::Keys { pattern: k("*") }, at(op, 0)), Reply::Array(ref v) if v.len() > 300)
        );
        for i in 0..800 {
            s.apply(
                &Request::Set {
                    key: k(&format!("m{i}")),
                    value: k("v"),
                },
                at(op, 0),
            );
        }
        assert!(matches!(
            s.apply(&Request::Keys { pattern: k("*") }, at(op, 0)),
            Reply::Error(_)
        ));
        assert!(
            matches!(s.apply(&Request::Keys { pattern: k("k1?") }, at(op, 0)), Reply::Array(ref v) if v.len() == 10)
        );
    }

    /// Goal: the snapshot keeps expiries, versions, the clock and the last removal, so a
    /// replica restored from it answers TTL and WATCH as the others do.
    #[test]
    fn snapshot_keeps_expiry_versions_and_clock() {
        let mut s = KvState::new();
        s.apply(
            &set_with("a", "1", SetCondition::Always, SetExpiry::In(500), false),
            at(3, 1_000),
        );
        s.apply(
            &Request::Set {
                key: k("b"),
                value: k("2"),
            },
            at(4, 1_000),
        );
        s.apply(&Request::Del { key: k("b") }, at(5, 1_000));
        let restored = KvState::decode_snapshot(&s.encode_snapshot()).unwrap();
        assert_eq!(restored, s);
        assert_eq!(restored.version(b"a"), s.version(b"a"));
        assert_eq!(restored.version(b"zz"), 10);
        assert_eq!(restored.clock(), 1_000);
        assert_eq!(restored.expires_at(b"a"), Some(1_500));
    }

    /// Goal: a transaction's replies stay bounded: a read whose reply would overflow the
    /// budget is not executed and says so, and the client table can hold the result.
    #[test]
    fn transaction_replies_are_bounded() {
        let mut s = KvState::new();
        let big = vec![b'x'; VALUE_SIZE_MAX];
        for i in 0..40 {
            s.apply(
                &Request::Set {
                    key: k(&format!("b{i}")),
                    value: big.clone(),
                },
                at(1, 0),
            );
        }
        let gets: Vec<Request> = (0..40)
            .map(|i| Request::GetDel {
                key: k(&format!("b{i}")),
            })
            .collect();
        let Reply::Array(replies) = s.apply(
            &Request::Multi {
                watches: vec![],
                commands: gets,
            },
            at(2, 0),
        ) else {
            panic!()
        };
        let refused = replies
            .iter()
            .filter(|r| matches!(r, Reply::Error(_)))
            .count();
        assert!(refused > 0 && refused < 40, "{refused}");
        // A refused GETDEL deleted nothing.
        assert_eq!(s.len(), refused);
        let encoded = Reply::Array(replies).encode().len();
        assert!(
            encoded <= MULTI_REPLY_BYTES_MAX + 40 * (ERROR_SIZE_MAX + 16),
            "{encoded}"
        );
    }

    /// Goal: the incremental digest equals the recomputed one after every kind of change,
    /// equal states have equal digests whatever the order of their making, and any change
    /// moves it.
    #[test]
    fn digest_is_incremental_and_canonical() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(15);
        let mut s = KvState::new();
        for op in 1..2_000u64 {
            let key = k(&format!("k{}", rng.gen_range(0..20)));
            let request = match rng.gen_range(0..7) {
                0 => Request::Del { key },
                1 => Request::Flush,
                2 => set_with(
                    "x",
                    "1",
                    SetCondition::Always,
                    SetExpiry::In(rng.gen_range(1..50)),
                    false,
                ),
                3 => Request::Expire {
                    key,
                    when: ExpireWhen::In(rng.gen_range(-5..50)),
                    condition: ExpireCondition::Always,
                },
                4 => Request::Append { key, value: k("z") },
                _ => Request::Set {
                    key,
                    value: k(&op.to_string()),
                },
            };
            let before = s.digest();
            let snapshot = s.encode_snapshot();
            s.apply(&request, at(op, op * 3));
            assert_eq!(s.digest(), s.digest_recomputed(), "op {op}: {request:?}");
            assert_eq!(
                s.digest() == before,
                s.encode_snapshot() == snapshot,
                "op {op}: {request:?}"
            );
        }
        let restored = KvState::decode_snapshot(&s.encode_snapshot()).unwrap();
        assert_eq!(restored.digest(), s.digest());
    }
}
