//! The key-value model for kmb's own histories.
//!
//! Keys and values are UTF-8 strings: keys `String`, values [`KvValue`] (shared, so a
//! history's replies and the model's states hold the written value's bytes, not copies).
//! Operations:
//!
//! | input | output |
//! |---|---|
//! | `Get { key }` | `Value(Option<KvValue>)` (`None` = absent) |
//! | `Set { key, value }` | `Ok` |
//! | `Del { key }` | `Deleted(n)`, `n` = 1 if the key existed, else 0 |
//! | `IncrBy { key, delta }` | `Int(new value)`, or `Error` if the value is not an integer or the sum overflows |
//! | `Cas { key, expected, new }` | `Swapped(true)` iff the current value equals `expected` (`None` = absent); then the value becomes `new` |
//! | `Scan { start, end, limit }` | `Entries(pairs)`: the present keys `start <= key < end` in ascending order, at most `limit` |
//!
//! An absent key counts as 0 for `IncrBy`. A value is an integer iff it is the
//! canonical decimal rendering of an `i64` (what `i64::to_string` produces: optional
//! `-`, no `+`, no leading zeros, no spaces); `IncrBy` stores its result that way.
//!
//! [`check`] verifies a history in two parts:
//!
//! 1. **Per key**: all single-key operations are partitioned by key and each key is
//!    checked for linearizability with the search (unknown outcomes allowed).
//! 2. **Op numbers** (covers scans, which span keys): every kmb reply carries the op
//!    number at which the server ordered the operation (unique across the history).
//!    Using the completed operations that carry one, the checker verifies that
//!    (a) op numbers are unique and respect real-time order (if `a` returned before
//!    `b` was invoked then `op(a) < op(b)`), and (b) replaying those operations in
//!    op-number order through the full model reproduces every output, scans included.
//!
//!    Operations with an unknown outcome have no op number, yet may have taken effect
//!    anywhere after their call. A key written by an unknown-outcome operation `u` is
//!    *uncertain* for every completed operation `x` with `u.call <= x.ret` (only those
//!    could be ordered after `u`). The replay checks nothing on uncertain keys: a
//!    single-key op on an uncertain key is skipped (the per-key check covers it), and a
//!    scan is checked only on its certain keys — every returned certain key must hold
//!    the returned value, and every certain key present in the replay that the scan
//!    must have returned (within the range, and not beyond its last entry when the
//!    limit was reached) must be there. Entries on uncertain keys are accepted as they
//!    are. This is sound (no false alarms) but may miss violations on those keys.
//!
//!    If a completed write has no op number, the order of writes is unknown, so the
//!    replay is skipped: the verdict is [`Verdict::Unknown`] if the history has a
//!    completed scan, otherwise the per-key verdict stands. A completed scan without
//!    an op number cannot be checked either: [`Verdict::Unknown`].

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::{
    check_subset, describe_op, CheckOptions, Failure, Model, Operation, PartitionedModel, Verdict,
};

mod ndjson;
pub(crate) mod ordered;

pub use ndjson::{parse_ndjson, parse_ndjson_with_lines, write_ndjson, OpName, Record, ResultKind};

/// A value: an immutable string shared by reference count, so that cloning one (a reply
/// that equals a written value, a model state, a replayed store) copies no bytes.
/// Serialized as a plain string.
pub type KvValue = std::sync::Arc<str>;

/// The canonical decimal rendering of `n` as a value (one allocation, like
/// `n.to_string()`).
pub(crate) fn int_value(n: i64) -> KvValue {
    use std::io::Write;
    let mut buf = [0u8; 20]; // i64::MIN is 20 characters
    let mut w = &mut buf[..];
    write!(w, "{n}").expect("an i64 fits 20 bytes");
    let len = 20 - w.len();
    KvValue::from(std::str::from_utf8(&buf[..len]).expect("ASCII digits"))
}

/// A key-value request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvInput {
    /// Read a key.
    Get {
        /// The key.
        key: String,
    },
    /// Write a key.
    Set {
        /// The key.
        key: String,
        /// The value written.
        value: KvValue,
    },
    /// Delete a key.
    Del {
        /// The key.
        key: String,
    },
    /// Add `delta` to the integer value of a key (absent = 0).
    IncrBy {
        /// The key.
        key: String,
        /// The increment.
        delta: i64,
    },
    /// Compare-and-set.
    Cas {
        /// The key.
        key: String,
        /// The value the key must hold (`None` = must be absent).
        expected: Option<KvValue>,
        /// The new value.
        new: KvValue,
    },
    /// Ordered range read of `start <= key < end`, at most `limit` entries.
    Scan {
        /// Inclusive lower bound.
        start: String,
        /// Exclusive upper bound.
        end: String,
        /// Maximum number of entries.
        limit: u64,
    },
    /// Single-key operations (no scans, no transactions) applied in order as one atomic
    /// operation (`MULTI … EXEC`, `MSET`, `MGET`); the output is [`KvOutput::Results`].
    Txn {
        /// The operations, in order.
        ops: Vec<KvInput>,
    },
    /// Write a key that expires at cluster time `expires_at` (`SET key value PXAT t`,
    /// milliseconds): absent for every operation the cluster orders at time `t` or later.
    SetAt {
        /// The key.
        key: String,
        /// The value written.
        value: KvValue,
        /// The expiry time (cluster milliseconds).
        expires_at: u64,
    },
    /// The cluster's clock reached `at` (milliseconds): a key whose expiry is at or before
    /// it is gone from here on. Not a client request: a checker adds one per expiry time,
    /// completed at the real time the clock reached it (see [`check`]).
    Tick {
        /// The key.
        key: String,
        /// The cluster time reached.
        at: u64,
    },
}

impl KvInput {
    /// The key of a single-key operation (a transaction whose operations all name one key
    /// included); `None` for a scan or a transaction over several keys.
    pub fn key(&self) -> Option<&str> {
        match self {
            KvInput::Get { key }
            | KvInput::Set { key, .. }
            | KvInput::Del { key }
            | KvInput::IncrBy { key, .. }
            | KvInput::Cas { key, .. }
            | KvInput::SetAt { key, .. }
            | KvInput::Tick { key, .. } => Some(key),
            KvInput::Scan { .. } => None,
            KvInput::Txn { ops } => {
                let first = ops.first()?.key()?;
                ops.iter().all(|o| o.key() == Some(first)).then_some(first)
            }
        }
    }

    /// Every key the operation names (a scan names none).
    pub fn keys(&self) -> Vec<&str> {
        match self {
            KvInput::Txn { ops } => {
                let mut keys: Vec<&str> = ops.iter().filter_map(KvInput::key).collect();
                keys.sort_unstable();
                keys.dedup();
                keys
            }
            other => other.key().into_iter().collect(),
        }
    }

    /// `true` for operations that may change the store (everything but get and scan).
    pub fn may_write(&self) -> bool {
        match self {
            KvInput::Get { .. } | KvInput::Scan { .. } => false,
            KvInput::Txn { ops } => ops.iter().any(KvInput::may_write),
            _ => true,
        }
    }

    /// Whether the operation involves expiry (its key needs the timed model).
    pub fn is_timed(&self) -> bool {
        match self {
            KvInput::SetAt { .. } | KvInput::Tick { .. } => true,
            KvInput::Txn { ops } => ops.iter().any(KvInput::is_timed),
            _ => false,
        }
    }

    /// The operations of `self` on `key`, as one operation: a transaction's projection.
    pub fn project(&self, key: &str) -> Option<KvInput> {
        match self {
            KvInput::Txn { ops } => {
                let ops: Vec<KvInput> = ops
                    .iter()
                    .filter(|o| o.key() == Some(key))
                    .cloned()
                    .collect();
                (!ops.is_empty()).then_some(KvInput::Txn { ops })
            }
            other => (other.key() == Some(key)).then(|| other.clone()),
        }
    }
}

/// A key-value reply (without the op number).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvOutput {
    /// Reply to `Set`.
    Ok,
    /// Reply to `Get` (`None` = absent).
    Value(Option<KvValue>),
    /// Reply to `Del`: 1 if the key existed, else 0.
    Deleted(u64),
    /// Reply to a successful `IncrBy`: the new value.
    Int(i64),
    /// Error reply to `IncrBy` (value not an integer, or overflow).
    Error,
    /// Reply to `Cas`: whether it swapped.
    Swapped(bool),
    /// Reply to `Scan`.
    Entries(Vec<(String, KvValue)>),
    /// Reply to `Txn`: each operation's output, in order.
    Results(Vec<KvOutput>),
}

impl KvOutput {
    /// A transaction's output restricted to the operations on `key` (as
    /// [`KvInput::project`] restricts its input).
    pub fn project(&self, input: &KvInput, key: &str) -> Option<KvOutput> {
        match (input, self) {
            (KvInput::Txn { ops }, KvOutput::Results(outs)) if ops.len() == outs.len() => {
                Some(KvOutput::Results(
                    ops.iter()
                        .zip(outs)
                        .filter(|(o, _)| o.key() == Some(key))
                        .map(|(_, out)| out.clone())
                        .collect(),
                ))
            }
            (KvInput::Txn { .. }, _) => None,
            _ => Some(self.clone()),
        }
    }
}

/// A completed kmb reply: the output plus the op number at which the server ordered
/// the operation (`None` if the reply carried none).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KvReply {
    /// The output.
    pub output: KvOutput,
    /// The server's op number for this operation.
    pub op_number: Option<u64>,
    /// A read the server answered without an op of its own: `op_number` names the state it
    /// read — the state after that op, which is another operation's (kmb's reads served
    /// without a log entry). Reads may share an op number with each other and with the write
    /// at that op; they order after it and before the next.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read: bool,
}

/// A key-value operation as checked by [`check`].
pub type KvOp = Operation<KvInput, KvReply>;

enum Effect {
    Keep,
    Put(KvValue),
    Remove,
}

/// The integer `s` is the canonical rendering of (see the module documentation).
pub(crate) fn parse_canonical_int(s: &str) -> Option<i64> {
    // Optional `-`, then digits without a leading zero, or `0` alone (not `-0`); what
    // does not fit an i64 fails to parse.
    let digits = s.strip_prefix('-').unwrap_or(s);
    let canonical = match digits.as_bytes() {
        [] => false,
        [b'0'] => digits.len() == s.len(),
        [first, ..] => *first != b'0' && digits.bytes().all(|b| b.is_ascii_digit()),
    };
    if canonical {
        s.parse().ok()
    } else {
        None
    }
}

/// Applies a single-key operation to the current value of its key. Scans are not
/// single-key operations: the result for them is `(Entries([]), Keep)`.
fn apply_key(cur: Option<&KvValue>, input: &KvInput) -> (KvOutput, Effect) {
    match input {
        KvInput::Get { .. } => (KvOutput::Value(cur.cloned()), Effect::Keep),
        KvInput::Set { value, .. } => (KvOutput::Ok, Effect::Put(value.clone())),
        KvInput::Del { .. } => match cur {
            Some(_) => (KvOutput::Deleted(1), Effect::Remove),
            None => (KvOutput::Deleted(0), Effect::Keep),
        },
        KvInput::IncrBy { delta, .. } => {
            let base = match cur {
                None => Some(0),
                Some(s) => parse_canonical_int(s),
            };
            match base.and_then(|b| b.checked_add(*delta)) {
                Some(n) => (KvOutput::Int(n), Effect::Put(int_value(n))),
                None => (KvOutput::Error, Effect::Keep),
            }
        }
        KvInput::Cas { expected, new, .. } => {
            if cur.map(|v| &**v) == expected.as_deref() {
                (KvOutput::Swapped(true), Effect::Put(new.clone()))
            } else {
                (KvOutput::Swapped(false), Effect::Keep)
            }
        }
        KvInput::Scan { .. } => (KvOutput::Entries(Vec::new()), Effect::Keep),
        // Without a clock (the untimed model and the untimed replay): a write that expires
        // is a write, and the clock does nothing. Keys with expiry use [`apply_timed`].
        KvInput::SetAt { value, .. } => (KvOutput::Ok, Effect::Put(value.clone())),
        KvInput::Tick { .. } => (KvOutput::Ok, Effect::Keep),
        KvInput::Txn { ops } => {
            let mut value = cur.cloned();
            let mut outs = Vec::with_capacity(ops.len());
            for op in ops {
                let (out, effect) = apply_key(value.as_ref(), op);
                outs.push(out);
                match effect {
                    Effect::Keep => {}
                    Effect::Put(v) => value = Some(v),
                    Effect::Remove => value = None,
                }
            }
            let effect = match value {
                v if v.as_deref() == cur.map(|v| &**v) => Effect::Keep,
                Some(v) => Effect::Put(v),
                None => Effect::Remove,
            };
            (KvOutput::Results(outs), effect)
        }
    }
}

/// One key's state in the timed model: its value, its expiry, and the latest cluster time
/// the key has seen (from ticks).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TimedValue {
    /// The value (`None` = absent).
    pub value: Option<KvValue>,
    /// The expiry time, if the key has one.
    pub expires_at: Option<u64>,
    /// The latest tick applied.
    pub now: u64,
}

/// Applies a single-key operation (a one-key transaction included) to a key's timed state:
/// `SET` and a successful `CAS` clear the expiry, `INCRBY` keeps it, `SetAt` sets it (and
/// removes the key at once when the time has already passed), a tick removes the key when
/// its expiry is reached.
pub fn apply_timed(state: &TimedValue, input: &KvInput) -> (KvOutput, TimedValue) {
    let mut next = state.clone();
    let out = match input {
        KvInput::Tick { at, .. } => {
            next.now = next.now.max(*at);
            if next.expires_at.is_some_and(|t| t <= next.now) {
                next.value = None;
                next.expires_at = None;
            }
            KvOutput::Ok
        }
        KvInput::SetAt {
            value, expires_at, ..
        } => {
            if *expires_at <= next.now {
                next.value = None;
                next.expires_at = None;
            } else {
                next.value = Some(value.clone());
                next.expires_at = Some(*expires_at);
            }
            KvOutput::Ok
        }
        KvInput::Txn { ops } => {
            let mut outs = Vec::with_capacity(ops.len());
            for op in ops {
                let (out, after) = apply_timed(&next, op);
                outs.push(out);
                next = after;
            }
            KvOutput::Results(outs)
        }
        other => {
            let (out, effect) = apply_key(next.value.as_ref(), other);
            match effect {
                Effect::Keep => {}
                Effect::Put(v) => {
                    if !matches!(other, KvInput::IncrBy { .. }) {
                        next.expires_at = None;
                    }
                    next.value = Some(v);
                }
                Effect::Remove => {
                    next.value = None;
                    next.expires_at = None;
                }
            }
            out
        }
    };
    (out, next)
}

/// The full sequential specification with time: the store, each key's expiry, and the
/// cluster clock. [`TimedStore::apply`] takes the time each operation is ordered at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimedStore {
    /// Present keys and their values.
    pub values: BTreeMap<String, KvValue>,
    /// Expiry times of the keys that have one.
    pub expiry: BTreeMap<String, u64>,
    /// The largest time applied.
    pub now: u64,
}

impl TimedStore {
    /// Applies `input` ordered at cluster time `now` (milliseconds; the clock never goes
    /// back): first every key whose expiry is at or before the clock goes, then the
    /// operation runs (with [`apply_timed`]'s rules; scans as [`apply`]'s).
    pub fn apply(&mut self, input: &KvInput, now: u64) -> KvOutput {
        self.now = self.now.max(now);
        let due: Vec<String> = self
            .expiry
            .iter()
            .filter(|(_, &t)| t <= self.now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.values.remove(&key);
            self.expiry.remove(&key);
        }
        match input {
            KvInput::Scan { .. } => apply(&mut self.values, input),
            KvInput::Txn { ops } => {
                KvOutput::Results(ops.iter().map(|op| self.apply_single(op)).collect())
            }
            single => self.apply_single(single),
        }
    }

    /// One single-key operation on its key's timed state.
    fn apply_single(&mut self, input: &KvInput) -> KvOutput {
        let key = input.key().unwrap_or_default().to_string();
        let state = TimedValue {
            value: self.values.get(&key).cloned(),
            expires_at: self.expiry.get(&key).copied(),
            now: self.now,
        };
        let (out, after) = apply_timed(&state, input);
        match after.value {
            Some(v) => self.values.insert(key.clone(), v),
            None => self.values.remove(&key),
        };
        match after.expires_at {
            Some(t) => self.expiry.insert(key, t),
            None => self.expiry.remove(&key),
        };
        out
    }
}

/// The full sequential specification: applies `input` to `store` and returns the
/// output.
pub fn apply(store: &mut BTreeMap<String, KvValue>, input: &KvInput) -> KvOutput {
    match input {
        KvInput::Scan { start, end, limit } => {
            if start >= end {
                return KvOutput::Entries(Vec::new());
            }
            let limit = usize::try_from(*limit).unwrap_or(usize::MAX);
            KvOutput::Entries(
                store
                    .range::<str, _>((
                        std::ops::Bound::Included(start.as_str()),
                        std::ops::Bound::Excluded(end.as_str()),
                    ))
                    .take(limit)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        }
        KvInput::Txn { ops } => KvOutput::Results(ops.iter().map(|o| apply(store, o)).collect()),
        _ => {
            let key = input.key().unwrap_or_default();
            let (out, effect) = apply_key(store.get(key), input);
            match effect {
                Effect::Keep => {}
                Effect::Put(v) => {
                    store.insert(key.to_string(), v);
                }
                Effect::Remove => {
                    store.remove(key);
                }
            }
            out
        }
    }
}

/// The per-key model: the state is the key's value; partitions are keys; scans belong
/// to no partition (they are checked by the op-number replay of [`check`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct KvKeyModel;

impl Model for KvKeyModel {
    type State = Option<KvValue>;
    type Input = KvInput;
    type Output = KvReply;

    fn init(&self) -> Option<KvValue> {
        None
    }

    fn step(
        &self,
        state: &Option<KvValue>,
        input: &KvInput,
        output: &KvReply,
    ) -> Option<Option<KvValue>> {
        if matches!(input, KvInput::Scan { .. }) {
            return None;
        }
        let (expected, effect) = apply_key(state.as_ref(), input);
        (expected == output.output).then(|| next_state(state, effect))
    }

    fn step_unknown(&self, state: &Option<KvValue>, input: &KvInput) -> Vec<Option<KvValue>> {
        if matches!(input, KvInput::Scan { .. }) {
            return vec![state.clone()];
        }
        let (_, effect) = apply_key(state.as_ref(), input);
        vec![next_state(state, effect)]
    }
}

fn next_state(state: &Option<KvValue>, effect: Effect) -> Option<KvValue> {
    match effect {
        Effect::Keep => state.clone(),
        Effect::Put(v) => Some(v),
        Effect::Remove => None,
    }
}

impl PartitionedModel for KvKeyModel {
    type Key = String;

    fn partition(&self, input: &KvInput) -> Option<String> {
        input.key().map(str::to_string)
    }
}

/// The per-key model with expiry: the state is the key's [`TimedValue`]. Used for keys
/// with an expiring write ([`KvInput::SetAt`]); time enters through [`KvInput::Tick`]
/// operations, one per expiry time, which [`check`] adds to the history.
#[derive(Debug, Clone, Copy, Default)]
pub struct KvTimedKeyModel;

impl Model for KvTimedKeyModel {
    type State = TimedValue;
    type Input = KvInput;
    type Output = KvReply;

    fn init(&self) -> TimedValue {
        TimedValue::default()
    }

    fn step(&self, state: &TimedValue, input: &KvInput, output: &KvReply) -> Option<TimedValue> {
        if matches!(input, KvInput::Scan { .. }) {
            return None;
        }
        let (expected, next) = apply_timed(state, input);
        (expected == output.output).then_some(next)
    }

    fn step_unknown(&self, state: &TimedValue, input: &KvInput) -> Vec<TimedValue> {
        if matches!(input, KvInput::Scan { .. }) {
            return vec![state.clone()];
        }
        vec![apply_timed(state, input).1]
    }
}

impl PartitionedModel for KvTimedKeyModel {
    type Key = String;

    fn partition(&self, input: &KvInput) -> Option<String> {
        input.key().map(str::to_string)
    }
}

/// Every multi-key transaction's per-key projections (same call, return and op number; the
/// projection of an unknown-outcome transaction is unknown), to be appended to the history:
/// each key's part of a transaction is checked with that key.
fn projections(history: &[&KvOp]) -> Vec<KvOp> {
    let multi = |op: &KvOp| matches!(op.input, KvInput::Txn { .. }) && op.input.key().is_none();
    let mut out = Vec::new();
    for op in history.iter().filter(|op| multi(op)) {
        for key in op.input.keys() {
            let Some(input) = op.input.project(key) else {
                continue;
            };
            let output = match &op.output {
                None => None,
                Some(reply) => match reply.output.project(&op.input, key) {
                    Some(output) => Some(KvReply {
                        output,
                        op_number: reply.op_number,
                        read: reply.read,
                    }),
                    // A reply whose shape does not fit: keep it whole, so the key's
                    // check reports it.
                    None => Some(reply.clone()),
                },
            };
            out.push(Operation {
                client: op.client,
                input,
                output,
                call: op.call,
                ret: op.ret,
            });
        }
    }
    out
}

/// The partition name of failures found by the op-number checks.
pub const OP_NUMBER_PARTITION: &str = "(op-number order)";

/// Checks a kmb history: per-key linearizability, then the op-number checks (real-time
/// order and replay, which is what checks scans). See the module documentation.
pub fn check(history: &[KvOp], options: &CheckOptions) -> Verdict {
    check_refs(&history.iter().collect::<Vec<_>>(), options)
}

/// [`check`] of a history given as references: a caller that adds operations of its own
/// (ticks) checks its history and them without copying the history, which with large
/// values is megabytes.
pub fn check_refs(history: &[&KvOp], options: &CheckOptions) -> Verdict {
    let per_key = check_keys(history, options);
    if matches!(per_key, Verdict::NotLinearizable(_)) {
        return per_key;
    }
    per_key.and(check_op_numbers(history))
}

/// Part 1 of [`check`]: every key on its own, in key order, stopping at the first
/// violation. A key whose completed ops all carry op numbers consistent with real time
/// is checked in that order, placing only its unknown-outcome ops; any other key gets
/// the general search.
pub fn check_keys(history: &[&KvOp], options: &CheckOptions) -> Verdict {
    let projections = projections(history);
    let mut all = history.to_vec();
    all.extend(&projections);
    let history = &all[..];
    let mut parts: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, op) in history.iter().enumerate() {
        if let Some(key) = op.input.key() {
            parts.entry(key).or_default().push(i);
        }
    }
    let mut verdict = Verdict::Linearizable;
    for (key, members) in &parts {
        let v = check_key(history, members, key, options);
        verdict = verdict.and(v);
        if matches!(verdict, Verdict::NotLinearizable(_)) {
            break;
        }
    }
    verdict
}

fn check_key(history: &[&KvOp], members: &[usize], key: &str, options: &CheckOptions) -> Verdict {
    if let Some(&i) = members
        .iter()
        .find(|&&i| history[i].output.is_some() && history[i].ret < history[i].call)
    {
        return Verdict::Unknown {
            reason: format!(
                "invalid history: op #{i} returns (t={}) before its call (t={})",
                history[i].ret, history[i].call
            ),
        };
    }
    if members.iter().any(|&i| history[i].input.is_timed()) {
        return check_subset(&KvTimedKeyModel, history, members, key, options);
    }
    match ordered::check_key(history, members, options.step_cap) {
        ordered::KeyOutcome::Linearizable => Verdict::Linearizable,
        ordered::KeyOutcome::Violation {
            prefix,
            blocked,
            unknowns,
        } => Verdict::NotLinearizable(Failure {
            partition: key.to_string(),
            op: describe_op(blocked, history[blocked]),
            op_index: blocked,
            reason: format!(
                "no placement of the key's {unknowns} unknown-outcome ops into the op-number \
                 order of its completed ops makes this reply legal"
            ),
            prefix,
        }),
        ordered::KeyOutcome::StepCap => Verdict::Unknown {
            reason: format!(
                "partition {key}: step cap of {} reached (op-number order)",
                options.step_cap
            ),
        },
        ordered::KeyOutcome::NotApplicable => {
            check_subset(&KvKeyModel, history, members, key, options)
        }
    }
}

fn numbered_failure(
    history: &[&KvOp],
    prefix: Vec<usize>,
    index: usize,
    reason: String,
) -> Verdict {
    Verdict::NotLinearizable(Failure {
        partition: OP_NUMBER_PARTITION.to_string(),
        prefix,
        op_index: index,
        op: describe_op(index, history[index]),
        reason,
    })
}

/// The op-number checks alone (part 2 of [`check`]): uniqueness and real-time order of
/// op numbers, and the replay in op-number order (which checks scans).
pub fn check_op_numbers(history: &[&KvOp]) -> Verdict {
    // Completed ops with an op number, sorted by position: `(op number, read)` — a read
    // answered without an op of its own ([`KvReply::read`]) sees the state after its op
    // number, so it sorts after the op with that number and before the next; reads may share
    // a position.
    let mut numbered: Vec<((u64, bool), usize)> = history
        .iter()
        .enumerate()
        .filter_map(|(i, op)| {
            let reply = op.output.as_ref()?;
            Some(((reply.op_number?, reply.read), i))
        })
        .collect();
    if numbered.is_empty() {
        return Verdict::Linearizable;
    }
    numbered.sort_unstable();
    for (pos, w) in numbered.windows(2).enumerate() {
        if w[0].0 == w[1].0 && !w[0].0 .1 {
            return numbered_failure(
                history,
                numbered[..pos].iter().map(|&(_, i)| i).collect(),
                w[1].1,
                format!("op number {} is also used by op #{}", w[1].0 .0, w[0].1),
            );
        }
    }
    let prefix_before = |num: u64| -> Vec<usize> {
        numbered
            .iter()
            .take_while(|&&((n, _), _)| n < num)
            .map(|&(_, i)| i)
            .collect()
    };

    // (a) Real time: if a.ret < b.call then pos(a) < pos(b) (or both are reads of the same
    // state). By return, then position; by call, then return, then position.
    let mut by_ret: Vec<(u64, (u64, bool), usize)> = numbered
        .iter()
        .map(|&(n, i)| (history[i].ret, n, i))
        .collect();
    by_ret.sort_unstable();
    let mut by_call: Vec<(u64, u64, (u64, bool), usize)> = by_ret
        .iter()
        .map(|&(r, n, i)| (history[i].call, r, n, i))
        .collect();
    by_call.sort_unstable();
    let by_ret: Vec<usize> = by_ret.into_iter().map(|(_, _, i)| i).collect();
    let by_call: Vec<usize> = by_call.into_iter().map(|(_, _, _, i)| i).collect();
    let position = |i: usize| {
        history[i]
            .output
            .as_ref()
            .and_then(|r| Some((r.op_number?, r.read)))
            .unwrap_or((0, false))
    };
    let describe_position = |(n, read): (u64, bool)| {
        if read {
            format!("a read of the state after op {n}")
        } else {
            format!("op number {n}")
        }
    };
    let mut ptr = 0;
    let mut max: Option<((u64, bool), usize)> = None;
    for &b in &by_call {
        while ptr < by_ret.len() && history[by_ret[ptr]].ret < history[b].call {
            let a = by_ret[ptr];
            let p = position(a);
            if !matches!(max, Some((m, _)) if m >= p) {
                max = Some((p, a));
            }
            ptr += 1;
        }
        let pb = position(b);
        if let Some((pa, a)) = max {
            if pa > pb || (pa == pb && !pa.1) {
                return numbered_failure(
                    history,
                    prefix_before(pb.0),
                    b,
                    format!(
                        "real-time order violated: op #{a} ({}) returned at {} \
                         before this op ({}) was called at {}",
                        describe_position(pa),
                        history[a].ret,
                        describe_position(pb),
                        history[b].call
                    ),
                );
            }
        }
    }

    // (b) Replay in op-number order.
    let has_completed_scan = history
        .iter()
        .any(|o| matches!(o.input, KvInput::Scan { .. }) && o.output.is_some());
    for (i, op) in history.iter().enumerate() {
        let Some(reply) = &op.output else { continue };
        // Ticks are the checker's (the clock), never ordered by the server.
        if reply.op_number.is_some() || matches!(op.input, KvInput::Tick { .. }) {
            continue;
        }
        if matches!(op.input, KvInput::Scan { .. }) {
            return Verdict::Unknown {
                reason: format!("scan #{i} has no op number, so it cannot be checked"),
            };
        }
        if op.input.may_write() {
            if has_completed_scan {
                return Verdict::Unknown {
                    reason: format!(
                        "completed write #{i} has no op number, so scans cannot be checked"
                    ),
                };
            }
            return Verdict::Linearizable;
        }
    }
    // Earliest call of an unknown-outcome write, per key.
    let mut uncertain_from: HashMap<&str, u64> = HashMap::new();
    for op in history.iter().filter(|op| op.output.is_none()) {
        if op.input.may_write() {
            for key in op.input.keys() {
                let e = uncertain_from.entry(key).or_insert(op.call);
                *e = (*e).min(op.call);
            }
        }
    }
    // Keys with expiry: the replay has no clock, so they are left to the per-key check.
    let timed: std::collections::HashSet<&str> = history
        .iter()
        .filter(|op| op.input.is_timed())
        .flat_map(|op| op.input.keys())
        .collect();
    let mut store: BTreeMap<String, KvValue> = BTreeMap::new();
    for (pos, &((num, _), i)) in numbered.iter().enumerate() {
        let op = &history[i];
        let Some(reply) = &op.output else { continue };
        let uncertain = |key: &str| {
            timed.contains(key) || uncertain_from.get(key).is_some_and(|&c| c <= op.ret)
        };
        let result = match (&op.input, &reply.output) {
            (KvInput::Scan { start, end, limit }, KvOutput::Entries(actual)) => {
                check_scan(&store, start, end, *limit, actual, &uncertain)
            }
            (KvInput::Scan { .. }, other) => Err(format!("a scan cannot reply {other:?}")),
            (KvInput::Txn { ops }, actual) => {
                let expected = apply(&mut store, &op.input);
                match (&expected, actual) {
                    (KvOutput::Results(want), KvOutput::Results(got)) if want.len() == got.len() => {
                        match ops.iter().zip(want.iter().zip(got)).position(|(o, (w, g))| {
                            w != g && !uncertain(o.key().unwrap_or_default())
                        }) {
                            Some(j) => Err(format!(
                                "replaying in op-number order gives {:?} for the transaction's operation {j} ({:?}), but the reply was {:?}",
                                want[j], ops[j], got[j]
                            )),
                            None => Ok(()),
                        }
                    }
                    _ => Err(format!(
                        "replaying in op-number order gives {expected:?}, but the reply was {actual:?}"
                    )),
                }
            }
            (input, actual) => {
                let expected = apply(&mut store, input);
                if expected != *actual && !uncertain(input.key().unwrap_or_default()) {
                    Err(format!(
                        "replaying in op-number order gives {expected:?}, but the reply was {actual:?}"
                    ))
                } else {
                    Ok(())
                }
            }
        };
        if let Err(reason) = result {
            return numbered_failure(
                history,
                numbered[..pos].iter().map(|&(_, i)| i).collect(),
                i,
                format!("op number {num}: {reason}"),
            );
        }
    }
    Verdict::Linearizable
}

/// Checks a scan's reply against the replayed store, ignoring uncertain keys.
fn check_scan(
    store: &BTreeMap<String, KvValue>,
    start: &str,
    end: &str,
    limit: u64,
    actual: &[(String, KvValue)],
    uncertain: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    if actual.len() as u64 > limit {
        return Err(format!(
            "scan returned {} entries, more than its limit {limit}",
            actual.len()
        ));
    }
    for (k, _) in actual {
        if k.as_str() < start || k.as_str() >= end {
            return Err(format!(
                "scan returned key {k:?} outside [{start:?}, {end:?})"
            ));
        }
    }
    for w in actual.windows(2) {
        if w[0].0 >= w[1].0 {
            return Err(format!(
                "scan returned keys out of order: {:?} then {:?}",
                w[0].0, w[1].0
            ));
        }
    }
    for (k, v) in actual {
        if uncertain(k) {
            continue;
        }
        match store.get(k) {
            Some(sv) if sv == v => {}
            other => {
                return Err(format!(
                    "scan returned {k:?} = {v:?}, but replaying in op-number order gives {:?}",
                    other
                ))
            }
        }
    }
    if start >= end || limit == 0 {
        return Ok(());
    }
    // Keys the scan must have returned: up to its last entry if the limit was reached,
    // otherwise the whole range.
    let full = actual.len() as u64 == limit;
    let last = actual.last().map(|(k, _)| k.as_str());
    let range = store.range::<str, _>((
        std::ops::Bound::Included(start),
        std::ops::Bound::Excluded(end),
    ));
    for (k, v) in range {
        if full && Some(k.as_str()) > last {
            break;
        }
        if uncertain(k) {
            continue;
        }
        if actual
            .binary_search_by(|(ak, _)| ak.as_str().cmp(k))
            .is_err()
        {
            return Err(format!(
                "scan is missing key {k:?} (= {v:?}), present when replaying in op-number order"
            ));
        }
    }
    Ok(())
}
