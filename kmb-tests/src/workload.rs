//! The workload: each simulated client is a task on its own madsim node driving the real
//! client library (`kmb_node::client`) over simulated TCP, recording every invocation and
//! completion — what the client *saw*, with the op number the reply carried — as a
//! linearizability-checker history.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use kmb_node::client::{Client, ClientConfig, ClientError};
use kmb_node::resp::Value;
use lincheck::kv::{KvInput, KvOp, KvOutput, KvReply, KvValue};
use lincheck::Operation;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sim_runtime::time::{self, Duration, Instant};

use crate::swarm::Swarm;
use crate::trace::{EventKind, OpKind, Outcome};

/// Shared between the clients of one run (harness-side coordination, not node state).
#[derive(Default)]
pub struct Shared {
    /// Completed and unknown-outcome operations, in completion order.
    pub history: Mutex<Vec<KvOp>>,
    /// In-flight operations per key (bounded by `per_key_concurrency_max`).
    in_flight: Mutex<BTreeMap<u32, u32>>,
    /// Write-like operations in flight (crashes are more likely while this is high).
    pub writes_in_flight: AtomicUsize,
    /// Replies whose shape did not match their command: a protocol bug, reported as failure.
    pub malformed: Mutex<Vec<String>>,
    /// Clients that finished their requests.
    pub clients_done: AtomicUsize,
    /// Requests the hostile client sent (`Payloads::hostile`).
    pub hostile_requests: AtomicUsize,
    /// The most recent requests clients sent, exactly as encoded (at most [`SENT_KEPT`]):
    /// what [`run_replayer`] delivers again much later.
    pub sent: Mutex<std::collections::VecDeque<SentRequest>>,
    /// Old client requests delivered again (`NetSwarm::replay`, client links).
    pub replayed_requests: AtomicUsize,
    /// Each session's first requests (at most [`SESSION_HELD`], small ones), in order: a
    /// session's requests delivered late, together, after it may have been evicted.
    pub session_starts: Mutex<Vec<(u128, Vec<Vec<u8>>)>>,
    /// Sessions whose first requests were delivered again late.
    pub replayed_sessions: AtomicUsize,
    /// Client trace events (invoke, complete) with their simulated time in microseconds.
    pub trace: Mutex<Vec<(u64, EventKind)>>,
    /// The large values clients sent: a reply holding one shares its bytes (cleared when
    /// the run is over).
    pub values: Mutex<Values>,
}

/// A request as a client encoded it, kept for [`run_replayer`]: whole, or — when it ends
/// with a large value of its input (a SET's, a CAS's new value) — as the bytes before that
/// value, sharing the value itself with the history instead of holding a copy.
#[derive(Debug, Clone)]
pub struct SentRequest {
    head: Vec<u8>,
    /// The value after `head` (then `\r\n` ends the request).
    value: Option<KvValue>,
}

impl SentRequest {
    /// `request`, sent for `input`.
    pub fn new(mut request: Vec<u8>, input: &KvInput) -> SentRequest {
        let mut last: Option<KvValue> = None;
        if request.len() >= SHARED_VALUE_MIN {
            each_value(input, &mut |v| {
                let ends = request.len() >= v.len() + 2
                    && request.ends_with(b"\r\n")
                    && request[..request.len() - 2].ends_with(v.as_bytes());
                if last.is_none() && v.len() >= SHARED_VALUE_MIN && ends {
                    last = Some(v.clone());
                }
            });
        }
        if let Some(v) = &last {
            request.truncate(request.len() - v.len() - 2);
            request.shrink_to_fit();
        }
        SentRequest {
            head: request,
            value: last,
        }
    }

    /// The request's bytes, exactly as the client sent them.
    pub fn bytes(&self) -> Vec<u8> {
        match &self.value {
            None => self.head.clone(),
            Some(v) => {
                let mut out = Vec::with_capacity(self.head.len() + v.len() + 2);
                out.extend_from_slice(&self.head);
                out.extend_from_slice(v.as_bytes());
                out.extend_from_slice(b"\r\n");
                out
            }
        }
    }
}

/// Values shorter than this are not shared: a reply holding one copies it.
pub const SHARED_VALUE_MIN: usize = 1024;

/// The large values (at least [`SHARED_VALUE_MIN`] bytes) a run's clients write, by
/// content, so that a reply equal to one holds the written value itself (a reference
/// count) rather than a copy of its bytes: with large values the history's replies would
/// otherwise be a seed's peak memory. Deterministic: keyed by the xxh3-128 of the bytes,
/// compared byte for byte on a hit (the first value with a hash keeps it; a colliding one
/// is simply not shared).
#[derive(Debug, Default)]
pub struct Values {
    by_hash: BTreeMap<u128, KvValue>,
}

/// Calls `f` with every value `input` writes or compares against.
fn each_value(input: &KvInput, f: &mut impl FnMut(&KvValue)) {
    match input {
        KvInput::Set { value, .. } | KvInput::SetAt { value, .. } => f(value),
        KvInput::Cas { expected, new, .. } => {
            if let Some(e) = expected {
                f(e);
            }
            f(new);
        }
        KvInput::Txn { ops } => ops.iter().for_each(|op| each_value(op, f)),
        KvInput::Get { .. }
        | KvInput::Del { .. }
        | KvInput::IncrBy { .. }
        | KvInput::Scan { .. }
        | KvInput::Tick { .. } => {}
    }
}

impl Values {
    /// Adds the large values `input` writes or compares against.
    pub fn add_input(&mut self, input: &KvInput) {
        each_value(input, &mut |v| self.add(v));
    }

    fn add(&mut self, value: &KvValue) {
        if value.len() >= SHARED_VALUE_MIN {
            let hash = xxhash_rust::xxh3::xxh3_128(value.as_bytes());
            self.by_hash.entry(hash).or_insert_with(|| value.clone());
        }
    }

    /// The known value with these bytes, if there is one.
    pub fn get(&self, bytes: &[u8]) -> Option<KvValue> {
        if bytes.len() < SHARED_VALUE_MIN {
            return None;
        }
        let value = self.by_hash.get(&xxhash_rust::xxh3::xxh3_128(bytes))?;
        (value.as_bytes() == bytes).then(|| value.clone())
    }

    /// Forgets every value.
    pub fn clear(&mut self) {
        self.by_hash.clear();
    }

    /// How many values are known.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether no value is known.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

fn op_kind(input: &KvInput) -> OpKind {
    match input {
        KvInput::Set { .. } | KvInput::Del { .. } | KvInput::SetAt { .. } => OpKind::Write,
        KvInput::Get { .. } => OpKind::Read,
        KvInput::IncrBy { .. } | KvInput::Cas { .. } | KvInput::Tick { .. } => OpKind::Rmw,
        KvInput::Txn { .. } if !input.may_write() => OpKind::Read,
        KvInput::Txn { .. } => OpKind::Rmw,
        KvInput::Scan { .. } => OpKind::Scan,
    }
}

/// The key (or `start..end` range) an input touches: the trace's and the reports' one name
/// for what an operation is about.
pub fn key_of(input: &KvInput) -> String {
    match input {
        KvInput::Scan { start, end, .. } => format!("{start}..{end}"),
        other => other.keys().join(","),
    }
}

/// The key name for key index `i` (zero-padded so byte order equals numeric order).
pub fn key_name(i: u32) -> String {
    format!("k{i:04}")
}

/// The session id of session `session` of client number `client` in seed `seed` (a client
/// starts a new session every `Payloads::session_every` requests; session 0 otherwise).
pub fn client_id(seed: u64, client: u64, session: u64) -> u128 {
    ((seed as u128) << 64) | (((session as u128) << 8 | client as u128) + 1)
}

/// The sessions client number `client` uses in `swarm` (its ids, in order).
pub fn client_ids(swarm: &Swarm, client: u64) -> Vec<u128> {
    let sessions = match swarm.payloads.session_every {
        0 => 1,
        every => (swarm.requests_per_client as u64)
            .div_ceil(u64::from(every))
            .max(1),
    };
    (0..sessions)
        .map(|s| client_id(swarm.seed, client, s))
        .collect()
}

/// Whether the node must refuse `input` as too large for `swarm`'s geometry: the spec is that
/// a request fits iff its encoded state-machine request fits one WAL slot's body.
pub fn too_large(swarm: &Swarm, input: &KvInput) -> bool {
    crate::checkers::data_correctness::request_of(input)
        .encode()
        .len()
        > swarm.geometry.storage_config().body_size_max()
}

/// Integers in forms the kv semantics (and Redis) do not take as integers.
const ODD_INTEGERS: [&str; 9] = ["007", "+5", "-0", " 5", "5 ", "0x10", "1e3", "00", ""];

/// The size of a large SET's or CAS's value: near, at, or past the largest value `key` admits
/// in `swarm`'s geometry. The value is its tag (which keeps values distinct for the checkers)
/// padded with `x` to that size ([`pad_value`]) — when the client sends it, not in the plan: a
/// plan of large values held from the start of a run is what a seed's memory peaked at (seed
/// 269: 15 MB).
fn large_value_size(rng: &mut ChaCha8Rng, swarm: &Swarm, key: &str) -> usize {
    let empty = crate::checkers::data_correctness::request_of(&KvInput::Set {
        key: key.to_string(),
        value: KvValue::from(""),
    })
    .encode()
    .len();
    let max = swarm
        .geometry
        .storage_config()
        .body_size_max()
        .saturating_sub(empty);
    match rng.gen_range(0..6) {
        0 => max.saturating_sub(rng.gen_range(1..64)),
        1 => max,
        2 => max + rng.gen_range(1..16),
        3 => max * 2,
        4 => 100_000,
        _ => rng.gen_range(max / 2..=max),
    }
}

/// `tag` padded with `x` to `size` bytes (cut to `size`, at least 1, if longer).
fn pad_value(tag: &str, size: usize) -> String {
    let mut value = String::with_capacity(size.max(tag.len()));
    value.push_str(tag);
    value.extend(std::iter::repeat_n('x', size.saturating_sub(value.len())));
    value.truncate(size.max(1));
    value
}

/// Simulated microseconds since `start`.
pub fn micros_since(start: Instant) -> u64 {
    start.elapsed().as_micros() as u64
}

fn pick_input(rng: &mut ChaCha8Rng, swarm: &Swarm, client: u64, n: u64, key: u32) -> KvInput {
    let mix = &swarm.mix;
    let total = mix.write + mix.read + mix.rmw + mix.scan;
    let draw = rng.gen_range(0..total);
    let key_s = key_name(key);
    if draw < mix.write {
        if rng.gen_ratio(1, 10) {
            KvInput::Del { key: key_s }
        } else {
            KvInput::Set {
                key: key_s,
                value: format!("c{client}-{n}").into(),
            }
        }
    } else if draw < mix.write + mix.read {
        KvInput::Get { key: key_s }
    } else if draw < mix.write + mix.read + mix.rmw {
        if rng.gen_bool(0.5) {
            KvInput::IncrBy {
                key: key_s,
                delta: rng.gen_range(-5..=10),
            }
        } else {
            let expected = match rng.gen_range(0..3) {
                0 => None,
                1 => Some(
                    format!(
                        "c{}-{}",
                        rng.gen_range(0..swarm.client_count),
                        rng.gen_range(0..n.max(1))
                    )
                    .into(),
                ),
                _ => Some(rng.gen_range(0..20).to_string().into()),
            };
            KvInput::Cas {
                key: key_s,
                expected,
                new: format!("c{client}-{n}").into(),
            }
        }
    } else {
        let start = rng.gen_range(0..swarm.key_count);
        let end = (start + rng.gen_range(1..=16)).min(swarm.key_count);
        KvInput::Scan {
            start: key_name(start),
            end: key_name(end),
            limit: rng.gen_range(1..=20),
        }
    }
}

/// A short description of a request for reports (large values are not printed).
fn describe_size(input: &KvInput) -> String {
    let bytes = crate::checkers::data_correctness::request_of(input)
        .encode()
        .len();
    format!(
        "{} of {} ({bytes} bytes encoded)",
        op_name(input),
        key_of(input)
    )
}

fn op_name(input: &KvInput) -> &'static str {
    match input {
        KvInput::Get { .. } => "GET",
        KvInput::Set { .. } => "SET",
        KvInput::Del { .. } => "DEL",
        KvInput::IncrBy { .. } => "INCRBY",
        KvInput::Cas { .. } => "CAS",
        KvInput::Scan { .. } => "RANGE",
        KvInput::SetAt { .. } => "SET PXAT",
        KvInput::Tick { .. } => "TICK",
        KvInput::Txn { ops } => match txn_form(ops) {
            TxnForm::MSet => "MSET",
            TxnForm::MGet => "MGET",
            TxnForm::Tx => "KMB.TX",
        },
    }
}

/// Convert the client library's reply to the checker's output for `input`; `None` if the
/// reply's shape does not fit the command.
pub fn output_of(input: &KvInput, value: &Value) -> Option<KvOutput> {
    output_of_shared(input, value, &Values::default())
}

/// [`output_of`], where a value read that equals one of `values` is that value (shared, not
/// copied).
pub fn output_of_shared(input: &KvInput, value: &Value, values: &Values) -> Option<KvOutput> {
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).ok();
    let value_text = |b: &[u8]| match values.get(b) {
        Some(v) => Some(v),
        None => std::str::from_utf8(b).ok().map(KvValue::from),
    };
    Some(match (input, value) {
        (KvInput::Set { .. }, Value::Simple(s)) if s == "OK" => KvOutput::Ok,
        (KvInput::Get { .. }, Value::Null) => KvOutput::Value(None),
        (KvInput::Get { .. }, Value::Bulk(b)) => KvOutput::Value(Some(value_text(b)?)),
        (KvInput::Del { .. }, Value::Integer(n)) if *n == 0 || *n == 1 => {
            KvOutput::Deleted(*n as u64)
        }
        (KvInput::IncrBy { .. }, Value::Integer(n)) => KvOutput::Int(*n),
        (KvInput::IncrBy { .. }, Value::Error(_)) => KvOutput::Error,
        (KvInput::Cas { .. }, Value::Integer(n)) if *n == 0 || *n == 1 => {
            KvOutput::Swapped(*n == 1)
        }
        (KvInput::SetAt { .. }, Value::Simple(s)) if s == "OK" => KvOutput::Ok,
        (KvInput::Txn { ops }, value) => match (txn_form(ops), value) {
            (TxnForm::MSet, Value::Simple(s)) if s == "OK" => {
                KvOutput::Results(vec![KvOutput::Ok; ops.len()])
            }
            (TxnForm::MGet | TxnForm::Tx, Value::Array(items)) if items.len() == ops.len() => {
                KvOutput::Results(
                    ops.iter()
                        .zip(items)
                        .map(|(op, item)| output_of_shared(op, item, values))
                        .collect::<Option<Vec<_>>>()?,
                )
            }
            _ => return None,
        },
        (KvInput::Scan { .. }, Value::Array(items)) if items.len() % 2 == 0 => {
            let mut entries = Vec::new();
            for pair in items.chunks(2) {
                match (&pair[0], &pair[1]) {
                    (Value::Bulk(k), Value::Bulk(v)) => entries.push((text(k)?, value_text(v)?)),
                    _ => return None,
                }
            }
            KvOutput::Entries(entries)
        }
        _ => return None,
    })
}

/// Send `input` through the client library (one exactly-once request).
pub async fn execute(
    client: &mut Client,
    input: &KvInput,
) -> Result<kmb_node::client::Reply, ClientError> {
    match input {
        KvInput::Get { key } => client.get(key.as_bytes()).await,
        KvInput::Set { key, value } => client.set(key.as_bytes(), value.as_bytes()).await,
        KvInput::Del { key } => client.del(key.as_bytes()).await,
        KvInput::IncrBy { key, delta } => client.incrby(key.as_bytes(), *delta).await,
        KvInput::Cas { key, expected, new } => {
            client
                .cas(
                    key.as_bytes(),
                    expected.as_deref().map(str::as_bytes),
                    new.as_bytes(),
                )
                .await
        }
        KvInput::Scan { start, end, limit } => {
            client
                .range(start.as_bytes(), end.as_bytes(), *limit as u32)
                .await
        }
        KvInput::SetAt { .. } | KvInput::Tick { .. } | KvInput::Txn { .. } => {
            let args = match input {
                KvInput::Txn { ops } => txn_args(ops),
                other => command_args(other),
            };
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            client.execute(&args).await
        }
    }
}

/// One planned client operation: the key it locks (for the per-key concurrency bound), the
/// operation, and the think time after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedOp {
    pub key: u32,
    pub input: KvInput,
    pub think_us: u64,
    /// The other keys a multi-key operation names (locked with `key` for the per-key
    /// concurrency bound).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_keys: Vec<u32>,
    /// A large value's size: the input's value is its tag until [`PlannedOp::padded`] pads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_to: Option<usize>,
}

impl PlannedOp {
    /// The input as sent: a large value padded to its size.
    pub fn padded(self) -> PlannedOp {
        let Some(size) = self.pad_to else {
            return self;
        };
        let pad = |tag: KvValue| KvValue::from(pad_value(&tag, size));
        let input = match self.input {
            KvInput::Set { key, value } => KvInput::Set {
                key,
                value: pad(value),
            },
            KvInput::Cas { key, expected, new } => KvInput::Cas {
                key,
                expected,
                new: pad(new),
            },
            other => other,
        };
        PlannedOp {
            input,
            pad_to: None,
            ..self
        }
    }
}

/// A transaction over `key` and one or two others (an `MSET`, an `MGET`, or `KMB.TX` with
/// reads, writes, increments, CAS and deletes), with values unique to `(client, n)`.
fn pick_txn(
    rng: &mut ChaCha8Rng,
    swarm: &Swarm,
    client: u64,
    n: u64,
    key: u32,
) -> (KvInput, Vec<u32>) {
    let mut keys = vec![key];
    for _ in 0..rng.gen_range(1..=2) {
        let k = rng.gen_range(0..swarm.key_count);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let value = |i: usize| KvValue::from(format!("c{client}-{n}-t{i}"));
    let ops: Vec<KvInput> = match rng.gen_range(0..3) {
        0 => keys
            .iter()
            .enumerate()
            .map(|(i, &k)| KvInput::Set {
                key: key_name(k),
                value: value(i),
            })
            .collect(),
        1 => keys
            .iter()
            .map(|&k| KvInput::Get { key: key_name(k) })
            .collect(),
        _ => (0..rng.gen_range(2..=4))
            .map(|i| {
                let k = key_name(keys[rng.gen_range(0..keys.len())]);
                match rng.gen_range(0..5) {
                    0 => KvInput::Get { key: k },
                    1 => KvInput::Set {
                        key: k,
                        value: value(i),
                    },
                    2 => KvInput::IncrBy {
                        key: k,
                        delta: rng.gen_range(-3..=5),
                    },
                    3 => KvInput::Cas {
                        key: k,
                        expected: None,
                        new: value(i),
                    },
                    _ => KvInput::Del { key: k },
                }
            })
            .collect(),
    };
    keys.remove(0);
    (KvInput::Txn { ops }, keys)
}

/// How a transaction is sent: `MSET` (all sets, distinct keys), `MGET` (all gets), or the
/// general `KMB.TX`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TxnForm {
    MSet,
    MGet,
    Tx,
}

/// The form `ops` is sent in (and committed as: `checkers::data_correctness::request_of`).
pub fn txn_form(ops: &[KvInput]) -> TxnForm {
    let distinct = {
        let mut keys: Vec<_> = ops.iter().filter_map(KvInput::key).collect();
        keys.sort_unstable();
        keys.windows(2).all(|w| w[0] != w[1])
    };
    if distinct && ops.iter().all(|o| matches!(o, KvInput::Set { .. })) {
        TxnForm::MSet
    } else if ops.iter().all(|o| matches!(o, KvInput::Get { .. })) {
        TxnForm::MGet
    } else {
        TxnForm::Tx
    }
}

/// The RESP arguments of one single-key operation (inside `KMB.TX`).
fn command_args(input: &KvInput) -> Vec<Vec<u8>> {
    let b = |s: &str| s.as_bytes().to_vec();
    match input {
        KvInput::Get { key } => vec![b("GET"), b(key)],
        KvInput::Set { key, value } => vec![b("SET"), b(key), b(value)],
        KvInput::Del { key } => vec![b("DEL"), b(key)],
        KvInput::IncrBy { key, delta } => vec![b("INCRBY"), b(key), b(&delta.to_string())],
        KvInput::Cas { key, expected, new } => match expected {
            None => vec![b("CAS"), b(key), b("IFABSENT"), b(new)],
            Some(e) => vec![b("CAS"), b(key), b("IFEQ"), b(e), b(new)],
        },
        KvInput::SetAt {
            key,
            value,
            expires_at,
        } => vec![
            b("SET"),
            b(key),
            b(value),
            b("PXAT"),
            b(&expires_at.to_string()),
        ],
        KvInput::Scan { start, end, limit } => {
            vec![
                b("RANGE"),
                b(start),
                b(end),
                b("LIMIT"),
                b(&limit.to_string()),
            ]
        }
        KvInput::Tick { .. } | KvInput::Txn { .. } => Vec::new(),
    }
}

/// The RESP arguments of a transaction.
fn txn_args(ops: &[KvInput]) -> Vec<Vec<u8>> {
    let mut args: Vec<Vec<u8>> = Vec::new();
    match txn_form(ops) {
        TxnForm::MSet => {
            args.push(b"MSET".to_vec());
            for op in ops {
                if let KvInput::Set { key, value } = op {
                    args.push(key.as_bytes().to_vec());
                    args.push(value.as_bytes().to_vec());
                }
            }
        }
        TxnForm::MGet => {
            args.push(b"MGET".to_vec());
            args.extend(
                ops.iter()
                    .filter_map(|o| o.key())
                    .map(|k| k.as_bytes().to_vec()),
            );
        }
        TxnForm::Tx => {
            args.push(b"KMB.TX".to_vec());
            args.push(ops.len().to_string().into_bytes());
            for op in ops {
                let sub = command_args(op);
                args.push(sub.len().to_string().into_bytes());
                args.extend(sub);
            }
        }
    }
    args
}

/// The workload of client number `client`, as data (drawn from the seed), so it can be
/// recorded, shrunk and replayed.
pub fn plan_client(swarm: &Swarm, client: u64) -> Vec<PlannedOp> {
    let mut rng =
        ChaCha8Rng::seed_from_u64(swarm.seed.wrapping_mul(0x9E37_79B9).wrapping_add(client));
    // Payload shapes come from a stream of their own, so a seed without them plans exactly
    // what it planned before they existed.
    let mut shapes = ChaCha8Rng::seed_from_u64(
        swarm.seed.wrapping_mul(0x9E37_79B9).wrapping_add(client) ^ 0x7061_796c_6f61_6473,
    );
    // Transactions and expiring writes: a stream of its own too, replacing some planned ops.
    let mut commands = ChaCha8Rng::seed_from_u64(
        swarm.seed.wrapping_mul(0x9E37_79B9).wrapping_add(client) ^ 0x7478_6e5f_7474_6c00,
    );
    let payloads = swarm.payloads;
    let mut incr_next: Option<u32> = None;
    (0..swarm.requests_per_client as u64)
        .map(|n| {
            let key = rng.gen_range(0..swarm.key_count);
            let mut input = pick_input(&mut rng, swarm, client, n, key);
            let think_us = rng.gen_range(0..2000);
            let mut key = key;
            let mut more_keys = Vec::new();
            let mut pad_to = None;
            // Only with the enhanced workloads (`--no-enhanced-workloads`: writes and reads).
            let enhanced = swarm.mix.rmw + swarm.mix.scan > 0;
            match commands.gen_range(0..100) {
                _ if !enhanced => {}
                0..8 => {
                    (input, more_keys) = pick_txn(&mut commands, swarm, client, n, key);
                }
                8..14 => {
                    // The expiry is relative here (milliseconds); `run_client` makes it the
                    // cluster time at which the write is sent plus this.
                    input = KvInput::SetAt {
                        key: key_name(key),
                        value: format!("c{client}-{n}").into(),
                        expires_at: commands.gen_range(1..=1500),
                    };
                }
                _ => {}
            }
            if let Some(k) = incr_next.take() {
                // After a non-canonical integer, increment it.
                key = k;
                input = KvInput::IncrBy {
                    key: key_name(k),
                    delta: shapes.gen_range(-5..=10),
                };
            } else if payloads.odd_integers > 0.0 && shapes.gen_bool(payloads.odd_integers) {
                input = KvInput::Set {
                    key: key_name(key),
                    value: ODD_INTEGERS[shapes.gen_range(0..ODD_INTEGERS.len())].into(),
                };
                incr_next = Some(key);
            } else if payloads.large > 0.0 && shapes.gen_bool(payloads.large) {
                let k = key_name(key);
                pad_to = Some(large_value_size(&mut shapes, swarm, &k));
                let value = KvValue::from(format!("c{client}-{n}-"));
                input = if shapes.gen_bool(0.8) {
                    KvInput::Set { key: k, value }
                } else {
                    KvInput::Cas {
                        key: k,
                        expected: None,
                        new: value,
                    }
                };
            }
            PlannedOp {
                key,
                input,
                think_us,
                more_keys,
                pad_to,
            }
        })
        .collect()
}

/// The whole workload of a seed: one plan per client.
pub fn plan(swarm: &Swarm) -> Vec<Vec<PlannedOp>> {
    (0..swarm.client_count as u64)
        .map(|c| plan_client(swarm, c))
        .collect()
}

/// Run client number `client` to completion: its planned requests, one at a time.
pub async fn run_client(
    swarm: Swarm,
    client: u64,
    plan: Vec<PlannedOp>,
    addresses: Vec<SocketAddr>,
    shared: Arc<Shared>,
    start: Instant,
) {
    let ids = client_ids(&swarm, client);
    // Some first attempts go to a backup (which redirects): backups must see client requests.
    let config = ClientConfig {
        first_attempt_random: true,
        ..ClientConfig::default()
    };
    // What a delayed segment could deliver again (`run_replayer`): the client library keeps
    // what it sent; `held` is this session's place in `Shared::session_starts`.
    let replayed = swarm.replays_client_requests();
    let mut held: Option<usize> = None;
    let new_session = |id: u128| {
        let mut session = Client::new(addresses.clone(), id, config.clone());
        if replayed {
            session.keep_sent();
        }
        session
    };
    let mut session = new_session(ids[0]);
    for (n, planned) in plan.into_iter().enumerate() {
        let PlannedOp {
            key,
            mut input,
            think_us,
            more_keys,
            ..
        } = planned.padded();
        let mut locked = more_keys;
        locked.insert(0, key);
        let every = swarm.payloads.session_every as usize;
        if every > 0 && n > 0 && n % every == 0 {
            // A new session: a new client id, request numbers from 1.
            session = new_session(ids[n / every]);
            held = None;
        }
        // Respect the per-key concurrency bound: the search is exponential in it.
        loop {
            let admitted = {
                let mut in_flight = shared.in_flight.lock().expect("lock");
                let admitted = locked.iter().all(|k| {
                    in_flight.get(k).copied().unwrap_or(0) < swarm.per_key_concurrency_max
                });
                if admitted {
                    for k in &locked {
                        *in_flight.entry(*k).or_default() += 1;
                    }
                }
                admitted
            };
            if admitted {
                break;
            }
            time::sleep(Duration::from_millis(1)).await;
        }
        if let KvInput::SetAt { expires_at, .. } = &mut input {
            // Absolute: the time now (ms; a client's clock is not skewed) plus the delay.
            *expires_at += time::unix_micros() / 1000;
        }
        let writes = input.may_write();
        if writes {
            shared.writes_in_flight.fetch_add(1, Ordering::Relaxed);
        }
        let call = micros_since(start);
        let request = session.next_request();
        shared.trace.lock().expect("lock").push((
            call,
            EventKind::ClientInvoke {
                client,
                request,
                op: op_kind(&input),
                key: key_of(&input),
            },
        ));
        // The request limit: whatever fits a WAL slot is served, whatever does not is refused
        // with an error (and never stops a replica).
        let oversized = too_large(&swarm, &input);
        if !oversized {
            // What this writes may be read back: replies share it.
            shared.values.lock().expect("lock").add_input(&input);
        }
        let result = execute(&mut session, &input).await;
        if replayed {
            let fresh = session.take_sent();
            let mut starts = shared.session_starts.lock().expect("lock");
            let at = *held.get_or_insert_with(|| {
                starts.push((session.client_id(), Vec::new()));
                starts.len() - 1
            });
            let first = &mut starts[at].1;
            for r in &fresh {
                if first.len() < SESSION_HELD && r.len() <= 4096 {
                    first.push(r.clone());
                }
            }
            drop(starts);
            let mut sent = shared.sent.lock().expect("lock");
            sent.extend(fresh.into_iter().map(|r| SentRequest::new(r, &input)));
            while sent.len() > SENT_KEPT {
                sent.pop_front();
            }
        }
        let ret = micros_since(start);
        let (outcome, op_number, read) = match &result {
            Ok(reply) => (Outcome::Ok, Some(reply.op), reply.read),
            Err(ClientError::Failed(_) | ClientError::Rejected(_)) => {
                (Outcome::Failed, None, false)
            }
            Err(ClientError::Unknown(_)) => (Outcome::Unknown, None, false),
        };
        match (&result, oversized) {
            (Ok(reply), true) => shared.malformed.lock().expect("lock").push(format!(
                "client {client}: an over-limit {} accepted at op {}",
                describe_size(&input),
                reply.op
            )),
            (Err(ClientError::Rejected(why)), false) => {
                shared.malformed.lock().expect("lock").push(format!(
                    "client {client}: {} within the limit rejected: {why}",
                    describe_size(&input)
                ))
            }
            _ => {}
        }
        shared.trace.lock().expect("lock").push((
            ret,
            EventKind::ClientComplete {
                client,
                request,
                op: op_kind(&input),
                outcome,
                op_number,
                read,
            },
        ));
        if writes {
            shared.writes_in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        {
            let mut in_flight = shared.in_flight.lock().expect("lock");
            for k in &locked {
                *in_flight.entry(*k).or_default() -= 1;
            }
        }
        let output = match result {
            Ok(reply) => {
                let values = shared.values.lock().expect("lock");
                let output = output_of_shared(&input, &reply.value, &values);
                drop(values);
                match output {
                    Some(output) => Some(KvReply {
                        output,
                        op_number: Some(reply.op),
                        read: reply.read,
                    }),
                    None => {
                        shared.malformed.lock().expect("lock").push(format!(
                            "client {client}: {input:?} got {:?} at op {}",
                            reply.value, reply.op
                        ));
                        continue;
                    }
                }
            }
            // Certainly not executed: in no history (the trace has its completion).
            Err(ClientError::Failed(_) | ClientError::Rejected(_)) => continue,
            Err(ClientError::Unknown(_)) => None,
        };
        let ret = if output.is_some() { ret } else { u64::MAX };
        shared.history.lock().expect("lock").push(Operation {
            client,
            input,
            output,
            call,
            ret,
        });
        // A little think time keeps per-key concurrency realistic.
        time::sleep(Duration::from_micros(think_us)).await;
    }
    shared.clients_done.fetch_add(1, Ordering::Relaxed);
}

/// The session number probes use (far above any session a client's plan opens).
#[cfg(madsim)]
const PROBE_SESSION: u64 = 1 << 40;

/// After the heal: every client, on its own node, runs one SET in a new session; the failures
/// (client and why), empty if every probe was served. Probe keys (`probe-<client>`) are not in
/// the workload's key space, so the history the checkers read is unchanged.
#[cfg(madsim)]
pub async fn probe_clients(
    swarm: &Swarm,
    nodes: &[sim_runtime::sim::NodeHandle],
    addresses: Vec<SocketAddr>,
) -> Vec<String> {
    let probes: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(c, node)| {
            let id = client_id(swarm.seed, c as u64, PROBE_SESSION);
            let addresses = addresses.clone();
            node.spawn(async move {
                let mut session = Client::new(addresses, id, ClientConfig::default());
                session
                    .set(format!("probe-{c}").as_bytes(), b"after the heal")
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("client {c}: {e}"))
            })
        })
        .collect();
    let mut failures = Vec::new();
    for probe in probes {
        match probe.await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => failures.push(why),
            Err(e) => failures.push(format!("probe task failed: {e}")),
        }
    }
    failures
}

/// Requests a hostile client sends: malformed, truncated, oversized, out of protocol. None
/// touches the workload's keys (`k…`), so the history the checkers read is unchanged.
fn hostile_request(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let bulk = |args: &[&[u8]]| {
        Value::Array(args.iter().map(|a| Value::Bulk(a.to_vec())).collect()).encode()
    };
    match rng.gen_range(0..12) {
        0 => (0..rng.gen_range(1..200)).map(|_| rng.gen()).collect(),
        // A command cut off mid-argument (the connection then closes).
        1 => b"*3\r\n$3\r\nSET\r\n$2\r\nhx\r\n$10\r\nabc".to_vec(),
        2 => b"*2\r\n$3\r\nGET\r\n$-5\r\n".to_vec(),
        3 => b"*99999999\r\n".to_vec(),
        4 => b"*1\r\n$999999999999\r\n".to_vec(),
        // An inline command with no end of line, past the inline bound.
        5 => vec![b'a'; 70_000],
        6 => bulk(&[b"SET", b"hkey"]),
        7 => bulk(&[b"KMB.REQ", b"0", b"1", b"GET", b"hkey"]),
        8 => bulk(&[b"KMB.REQ", b"77", b"x", b"GET", b"hkey"]),
        9 => bulk(&[b"INCRBY", b"hkey", b"not-a-number"]),
        10 => {
            let args: Vec<&[u8]> = std::iter::once(&b"GET"[..])
                .chain(std::iter::repeat_n(&b"h"[..], 2000))
                .collect();
            bulk(&args)
        }
        // `bulk(&[b"SET", b"hkey", &vec![b'x'; 600 * 1024]])` without copying the value twice.
        _ => Value::Array(vec![
            Value::Bulk(b"SET".to_vec()),
            Value::Bulk(b"hkey".to_vec()),
            Value::Bulk(vec![b'x'; 600 * 1024]),
        ])
        .encode(),
    }
}

/// Client requests kept for [`run_replayer`].
pub const SENT_KEPT: usize = 256;
/// First requests kept per session for [`run_replayer`].
pub const SESSION_HELD: usize = 4;

/// Time-travelling client requests (issue 12; `NetSwarm::replay`, on client links): until
/// `until`, every 0.2–3 s, one of the requests clients recently sent — the same bytes, its
/// session id and request number — is delivered again, on a new connection to a random
/// replica, as a segment held in the network past the client's retries would arrive. By then
/// the request executed, was superseded, or its session was evicted: exactly-once must hold
/// (the checkers judge the history; the replayed copies are in no client's history).
///
/// Also, three times in ten, an old session's first requests (its registration first) are
/// delivered again together, in order, on one connection — after the session may have been
/// evicted (the late-registration case, docs/protocol.md "Sessions").
pub async fn run_replayer(
    shared: Arc<Shared>,
    seed: u64,
    addresses: Vec<SocketAddr>,
    until: Instant,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7265_706c_6179_2121);
    loop {
        time::sleep(Duration::from_millis(rng.gen_range(200..3000))).await;
        if Instant::now() >= until {
            return;
        }
        if rng.gen_bool(0.3) {
            // A session's first requests, in order, from the older half of the sessions.
            let held = {
                let starts = shared.session_starts.lock().expect("lock");
                if starts.len() < 2 {
                    continue;
                }
                starts[rng.gen_range(0..starts.len() / 2)].1.clone()
            };
            let target = addresses[rng.gen_range(0..addresses.len())];
            if let Ok(Ok(mut stream)) = time::timeout(
                Duration::from_millis(500),
                sim_runtime::net::TcpStream::connect(target),
            )
            .await
            {
                shared.replayed_sessions.fetch_add(1, Ordering::Relaxed);
                for request in held {
                    if stream.write_all(&request).await.is_err() || stream.flush().await.is_err() {
                        break;
                    }
                    shared.replayed_requests.fetch_add(1, Ordering::Relaxed);
                    let mut buf = [0u8; 512];
                    let _ = time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await;
                }
            }
            continue;
        }
        let request = {
            let sent = shared.sent.lock().expect("lock");
            if sent.is_empty() {
                continue;
            }
            sent[rng.gen_range(0..sent.len())].bytes()
        };
        let target = addresses[rng.gen_range(0..addresses.len())];
        if let Ok(Ok(mut stream)) = time::timeout(
            Duration::from_millis(500),
            sim_runtime::net::TcpStream::connect(target),
        )
        .await
        {
            if stream.write_all(&request).await.is_ok() && stream.flush().await.is_ok() {
                shared.replayed_requests.fetch_add(1, Ordering::Relaxed);
                let mut buf = [0u8; 512];
                let _ = time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await;
            }
        }
    }
}

/// A hostile client: until `until`, connects to a random replica, sends one hostile request,
/// reads what comes back for a moment and disconnects. The seed's other checks (no replica
/// stops outside the fault model, every client's probe is served after the heal) judge it.
pub async fn run_hostile(
    shared: Arc<Shared>,
    seed: u64,
    addresses: Vec<SocketAddr>,
    until: Instant,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x686f_7374_696c_6521);
    while Instant::now() < until {
        let target = addresses[rng.gen_range(0..addresses.len())];
        let request = hostile_request(&mut rng);
        if let Ok(Ok(mut stream)) = time::timeout(
            Duration::from_millis(500),
            sim_runtime::net::TcpStream::connect(target),
        )
        .await
        {
            shared.hostile_requests.fetch_add(1, Ordering::Relaxed);
            if stream.write_all(&request).await.is_ok() && stream.flush().await.is_ok() {
                let mut buf = [0u8; 512];
                let _ = time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
            }
        }
        time::sleep(Duration::from_millis(rng.gen_range(20..300))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a planned large value is its tag until sent, then the tag padded with `x` to its
    /// size (cut to it if the tag is longer), for a SET and a CAS alike; other ops unchanged.
    #[test]
    fn planned_large_values_are_padded_when_sent() {
        let planned = |input: KvInput, pad_to: Option<usize>| PlannedOp {
            key: 0,
            input,
            think_us: 0,
            more_keys: Vec::new(),
            pad_to,
        };
        let sent = planned(set(&KvValue::from("c1-7-")), Some(12)).padded();
        assert_eq!(sent.input, set(&KvValue::from("c1-7-xxxxxxx")));
        assert_eq!(sent.pad_to, None);
        let cas = KvInput::Cas {
            key: "k0000".into(),
            expected: None,
            new: KvValue::from("c1-8-"),
        };
        let sent = planned(cas, Some(3)).padded();
        assert!(matches!(sent.input, KvInput::Cas { ref new, .. } if &**new == "c1-"));
        let plain = planned(set(&KvValue::from("v")), None);
        assert_eq!(plain.clone().padded(), plain);
    }

    fn set(value: &KvValue) -> KvInput {
        KvInput::Set {
            key: "k0000".into(),
            value: value.clone(),
        }
    }

    #[test]
    fn a_reply_shares_a_large_written_value_and_copies_a_small_one() {
        let large: KvValue = "x".repeat(SHARED_VALUE_MIN).into();
        let small: KvValue = "y".repeat(SHARED_VALUE_MIN - 1).into();
        let mut values = Values::default();
        values.add_input(&set(&large));
        values.add_input(&set(&small));
        assert_eq!(values.len(), 1);
        let get = KvInput::Get {
            key: "k0000".into(),
        };
        let reply = |v: &KvValue| Value::Bulk(v.as_bytes().to_vec());
        let Some(KvOutput::Value(Some(got))) = output_of_shared(&get, &reply(&large), &values)
        else {
            panic!("a value");
        };
        assert!(Arc::ptr_eq(&got, &large));
        let Some(KvOutput::Value(Some(got))) = output_of_shared(&get, &reply(&small), &values)
        else {
            panic!("a value");
        };
        assert_eq!(got, small);
        assert!(!Arc::ptr_eq(&got, &small));
        // Same length, other bytes: not the known value.
        let other: KvValue = format!("z{}", &large[1..]).into();
        let out = output_of_shared(&get, &reply(&other), &values);
        assert_eq!(out, Some(KvOutput::Value(Some(other))));
        values.clear();
        assert!(values.is_empty());
    }

    #[test]
    fn a_kept_request_gives_back_its_bytes() {
        let large: KvValue = format!("c1-2-{}", "x".repeat(2 * SHARED_VALUE_MIN)).into();
        let input = set(&large);
        let encoded = Value::Array(vec![
            Value::Bulk(b"KMB.REQ".to_vec()),
            Value::Bulk(b"7".to_vec()),
            Value::Bulk(b"3".to_vec()),
            Value::Bulk(b"SET".to_vec()),
            Value::Bulk(b"k0000".to_vec()),
            Value::Bulk(large.as_bytes().to_vec()),
        ])
        .encode();
        let kept = SentRequest::new(encoded.clone(), &input);
        assert!(kept.value.is_some());
        assert!(kept.head.len() < 64);
        assert_eq!(kept.bytes(), encoded);
        // A request that does not end with the value is kept whole.
        let register = b"*4\r\n$7\r\nKMB.REQ\r\n$1\r\n7\r\n$1\r\n1\r\n$8\r\nREGISTER\r\n".to_vec();
        let kept = SentRequest::new(register.clone(), &input);
        assert!(kept.value.is_none());
        assert_eq!(kept.bytes(), register);
    }
}
