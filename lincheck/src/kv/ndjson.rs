//! kmb's NDJSON history format (see `docs/history-format.md`).

use serde::{Deserialize, Deserializer, Serialize};

use super::{KvInput, KvOp, KvOutput, KvReply, KvValue};
use crate::{Operation, ParseError};

/// The `op` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpName {
    /// `get`
    Get,
    /// `set`
    Set,
    /// `del`
    Del,
    /// `incrby`
    Incrby,
    /// `cas`
    Cas,
    /// `scan`
    Scan,
    /// `txn`: a transaction (its operations in `ops`)
    Txn,
    /// `tick`: the cluster clock reached `at` (checker-made)
    Tick,
}

impl OpName {
    /// The name as it appears in the `op` field.
    fn as_str(self) -> &'static str {
        match self {
            OpName::Get => "get",
            OpName::Set => "set",
            OpName::Del => "del",
            OpName::Incrby => "incrby",
            OpName::Cas => "cas",
            OpName::Scan => "scan",
            OpName::Txn => "txn",
            OpName::Tick => "tick",
        }
    }
}

/// The `result` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultKind {
    /// A definite, successful reply; output fields present.
    Ok,
    /// A definite error reply that depends on the state (only `incrby` on a
    /// non-integer value, or overflow); no output fields.
    Error,
    /// The operation certainly did not take effect; it is dropped by the parser.
    Fail,
    /// The outcome is unknown (timeout, lost connection): it may take effect at any
    /// time after `call`, or never.
    Unknown,
}

/// Deserializes a present field as `Some(inner)`, so that with `#[serde(default)]` an
/// absent field is `None`, `null` is `Some(None)` and `"x"` is `Some(Some("x"))`.
fn nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<KvValue>>, D::Error> {
    Option::<KvValue>::deserialize(d).map(Some)
}

/// One line of a kmb NDJSON history: one operation. Serialize it with `serde_json`
/// (or [`Record::to_line`]) to produce the format; fields that are `None` are omitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Client id.
    pub client: u64,
    /// Invocation time.
    pub call: u64,
    /// Completion time: required for `ok` / `error`, optional (ignored) otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<u64>,
    /// The operation.
    pub op: OpName,
    /// Key (`get`, `set`, `del`, `incrby`, `cas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `set`: the value written (a string). `get` with result `ok`: the value read,
    /// `null` when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    pub value: Option<Option<KvValue>>,
    /// `incrby`: the increment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<i64>,
    /// `cas`: the expected value, `null` = must be absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    pub expected: Option<Option<KvValue>>,
    /// `cas`: the new value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<KvValue>,
    /// `scan`: inclusive start key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// `scan`: exclusive end key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// `scan`: maximum number of entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// The outcome.
    pub result: ResultKind,
    /// `del` with result `ok`: 0 or 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<u64>,
    /// `incrby` with result `ok`: the new value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_value: Option<i64>,
    /// `cas` with result `ok`: whether it swapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swapped: Option<bool>,
    /// `scan` with result `ok`: `[[key, value], ...]` in ascending key order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<(String, KvValue)>>,
    /// The server's op number (result `ok` / `error`; optional for `fail`; must be
    /// absent for `unknown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_number: Option<u64>,
    /// `op_number` names the state a read saw (after that op), not an op of its own
    /// ([`KvReply::read`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read: bool,
    /// A `set` with an expiry: the cluster time (ms) at which the key disappears.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// A `tick`: the cluster time reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
    /// A `txn`: its operations, in order (each with the transaction's client, call, ret and
    /// result, and its own output fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops: Option<Vec<Record>>,
}

const INPUT_FIELDS: [&str; 8] = [
    "key", "value", "delta", "expected", "new", "start", "end", "limit",
];

impl Record {
    fn empty(client: u64, call: u64, ret: Option<u64>, op: OpName, result: ResultKind) -> Self {
        Record {
            client,
            call,
            ret,
            op,
            key: None,
            value: None,
            delta: None,
            expected: None,
            new: None,
            start: None,
            end: None,
            limit: None,
            result,
            deleted: None,
            new_value: None,
            swapped: None,
            entries: None,
            op_number: None,
            read: false,
            expires_at: None,
            at: None,
            ops: None,
        }
    }

    fn with_input(mut self, input: &KvInput) -> Self {
        match input {
            KvInput::Get { key } | KvInput::Del { key } => self.key = Some(key.clone()),
            KvInput::Set { key, value } => {
                self.key = Some(key.clone());
                self.value = Some(Some(value.clone()));
            }
            KvInput::IncrBy { key, delta } => {
                self.key = Some(key.clone());
                self.delta = Some(*delta);
            }
            KvInput::Cas { key, expected, new } => {
                self.key = Some(key.clone());
                self.expected = Some(expected.clone());
                self.new = Some(new.clone());
            }
            KvInput::Scan { start, end, limit } => {
                self.start = Some(start.clone());
                self.end = Some(end.clone());
                self.limit = Some(*limit);
            }
            KvInput::SetAt {
                key,
                value,
                expires_at,
            } => {
                self.key = Some(key.clone());
                self.value = Some(Some(value.clone()));
                self.expires_at = Some(*expires_at);
            }
            KvInput::Tick { key, at } => {
                self.key = Some(key.clone());
                self.at = Some(*at);
            }
            KvInput::Txn { ops } => {
                let (client, call, ret, result) = (self.client, self.call, self.ret, self.result);
                self.ops = Some(
                    ops.iter()
                        .map(|o| Record::empty(client, call, ret, op_name(o), result).with_input(o))
                        .collect(),
                );
            }
        }
        self
    }

    /// The record of an operation with a definite reply (`ok` / `error`) or an unknown
    /// outcome (`output: None`; `ret` is then omitted).
    pub fn from_op(op: &KvOp) -> Record {
        let name = op_name(&op.input);
        let Some(reply) = &op.output else {
            return Record::empty(op.client, op.call, None, name, ResultKind::Unknown)
                .with_input(&op.input);
        };
        let result = if reply.output == KvOutput::Error {
            ResultKind::Error
        } else {
            ResultKind::Ok
        };
        let mut r =
            Record::empty(op.client, op.call, Some(op.ret), name, result).with_input(&op.input);
        r.op_number = reply.op_number;
        r.read = reply.read;
        match &reply.output {
            KvOutput::Ok | KvOutput::Error => {}
            KvOutput::Value(v) => r.value = Some(v.clone()),
            KvOutput::Deleted(n) => r.deleted = Some(*n),
            KvOutput::Int(n) => r.new_value = Some(*n),
            KvOutput::Swapped(b) => r.swapped = Some(*b),
            KvOutput::Entries(e) => r.entries = Some(e.clone()),
            KvOutput::Results(outs) => {
                if let (KvInput::Txn { ops }, Some(records)) = (&op.input, r.ops.as_mut()) {
                    for ((sub, out), record) in ops.iter().zip(outs).zip(records.iter_mut()) {
                        let sub_op = Operation {
                            client: op.client,
                            input: sub.clone(),
                            output: Some(KvReply {
                                output: out.clone(),
                                op_number: None,
                                read: false,
                            }),
                            call: op.call,
                            ret: op.ret,
                        };
                        *record = Record::from_op(&sub_op);
                    }
                }
            }
        }
        r
    }

    /// The record of an operation that certainly did not take effect.
    pub fn failed(client: u64, call: u64, ret: Option<u64>, input: &KvInput) -> Record {
        Record::empty(client, call, ret, op_name(input), ResultKind::Fail).with_input(input)
    }

    /// The record as one JSON line (without the trailing newline).
    pub fn to_line(&self) -> String {
        // Serializing this type cannot fail: all map keys are strings.
        serde_json::to_string(self).unwrap_or_default()
    }

    fn present(&self, field: &str) -> bool {
        match field {
            "key" => self.key.is_some(),
            "value" => self.value.is_some(),
            "delta" => self.delta.is_some(),
            "expected" => self.expected.is_some(),
            "new" => self.new.is_some(),
            "start" => self.start.is_some(),
            "end" => self.end.is_some(),
            "limit" => self.limit.is_some(),
            "deleted" => self.deleted.is_some(),
            "new_value" => self.new_value.is_some(),
            "swapped" => self.swapped.is_some(),
            "entries" => self.entries.is_some(),
            "expires_at" => self.expires_at.is_some(),
            "at" => self.at.is_some(),
            "ops" => self.ops.is_some(),
            _ => false,
        }
    }

    /// Validates the record and converts it into an operation; `Ok(None)` for a
    /// `fail` record (it did not happen).
    pub fn to_op(&self) -> Result<Option<KvOp>, String> {
        self.clone().into_op()
    }

    /// [`Record::to_op`], moving the strings instead of copying them.
    fn into_op(mut self) -> Result<Option<KvOp>, String> {
        if self.op == OpName::Txn {
            return self.into_txn();
        }
        if self.ops.is_some() {
            return Err("field `ops` is only allowed for op `txn`".to_string());
        }
        if self.at.is_some() != (self.op == OpName::Tick) {
            return Err("field `at` is required for op `tick` and allowed only there".to_string());
        }
        if self.expires_at.is_some() && self.op != OpName::Set {
            return Err("field `expires_at` is only allowed for op `set`".to_string());
        }
        let (inputs, output): (&[&str], Option<&str>) = match self.op {
            OpName::Get => (&["key"], Some("value")),
            OpName::Set => (&["key", "value"], None),
            OpName::Del => (&["key"], Some("deleted")),
            OpName::Incrby => (&["key", "delta"], Some("new_value")),
            OpName::Cas => (&["key", "expected", "new"], Some("swapped")),
            OpName::Scan => (&["start", "end", "limit"], Some("entries")),
            OpName::Tick => (&["key"], None),
            OpName::Txn => (&[], None),
        };
        let op = self.op.as_str();
        let with_output = self.result == ResultKind::Ok;
        let all = INPUT_FIELDS
            .iter()
            .chain(["deleted", "new_value", "swapped", "entries"].iter());
        for &f in all {
            let wanted = inputs.contains(&f) || (with_output && output == Some(f));
            match (wanted, self.present(f)) {
                (true, false) => {
                    return Err(format!("missing field `{f}` for op `{op}`"));
                }
                (false, true) => {
                    return Err(format!(
                        "field `{f}` is not allowed for op `{op}` with result `{:?}`",
                        self.result
                    ));
                }
                _ => {}
            }
        }
        if self.result == ResultKind::Error && self.op != OpName::Incrby {
            return Err(format!(
                "result `error` is only valid for `incrby`, not `{op}`"
            ));
        }
        if self.read && self.op_number.is_none() {
            return Err("`read` needs an `op_number` (the state the read saw)".to_string());
        }
        let input = self.take_input()?;
        let ret = match self.result {
            ResultKind::Fail => return Ok(None),
            ResultKind::Unknown => {
                if self.op_number.is_some() {
                    return Err("`op_number` is not allowed with result `unknown`".to_string());
                }
                return Ok(Some(Operation {
                    client: self.client,
                    input,
                    output: None,
                    call: self.call,
                    ret: u64::MAX,
                }));
            }
            ResultKind::Ok | ResultKind::Error => self
                .ret
                .ok_or_else(|| "missing field `ret` (required for ok/error)".to_string())?,
        };
        if ret < self.call {
            return Err(format!("`ret` ({ret}) is before `call` ({})", self.call));
        }
        let output = match self.op {
            _ if self.result == ResultKind::Error => KvOutput::Error,
            OpName::Get => KvOutput::Value(self.value.take().flatten()),
            OpName::Set => KvOutput::Ok,
            OpName::Del => match self.deleted {
                Some(n @ (0 | 1)) => KvOutput::Deleted(n),
                other => return Err(format!("`deleted` must be 0 or 1, got {other:?}")),
            },
            OpName::Incrby => KvOutput::Int(self.new_value.unwrap_or_default()),
            OpName::Cas => KvOutput::Swapped(self.swapped.unwrap_or_default()),
            OpName::Scan => KvOutput::Entries(self.entries.take().unwrap_or_default()),
            OpName::Tick | OpName::Txn => KvOutput::Ok,
        };
        Ok(Some(Operation {
            client: self.client,
            input,
            output: Some(KvReply {
                output,
                op_number: self.op_number,
                read: self.read,
            }),
            call: self.call,
            ret,
        }))
    }

    /// The input, moving its fields out of the record (a get's `value` is its output
    /// and stays).
    fn take_input(&mut self) -> Result<KvInput, String> {
        let key = self.key.take().unwrap_or_default();
        Ok(match self.op {
            OpName::Get => KvInput::Get { key },
            OpName::Set => {
                let value = self
                    .value
                    .take()
                    .flatten()
                    .ok_or_else(|| "`value` of a set must be a string, not null".to_string())?;
                match self.expires_at {
                    Some(expires_at) => KvInput::SetAt {
                        key,
                        value,
                        expires_at,
                    },
                    None => KvInput::Set { key, value },
                }
            }
            OpName::Tick => KvInput::Tick {
                key,
                at: self.at.unwrap_or_default(),
            },
            OpName::Txn => return Err("a `txn` inside a `txn` is not allowed".to_string()),
            OpName::Del => KvInput::Del { key },
            OpName::Incrby => KvInput::IncrBy {
                key,
                delta: self.delta.unwrap_or_default(),
            },
            OpName::Cas => KvInput::Cas {
                key,
                expected: self.expected.take().flatten(),
                new: self.new.take().unwrap_or_default(),
            },
            OpName::Scan => KvInput::Scan {
                start: self.start.take().unwrap_or_default(),
                end: self.end.take().unwrap_or_default(),
                limit: self.limit.unwrap_or_default(),
            },
        })
    }
}

impl Record {
    /// A `txn` record: its sub-records carry the inputs and outputs; the transaction's
    /// result is theirs (all `ok`, or all `unknown`, or all `fail`).
    fn into_txn(self) -> Result<Option<KvOp>, String> {
        let records = self
            .ops
            .ok_or_else(|| "missing field `ops` for op `txn`".to_string())?;
        if records.is_empty() {
            return Err("a `txn` needs at least one operation".to_string());
        }
        let mut inputs = Vec::with_capacity(records.len());
        let mut outputs = Vec::with_capacity(records.len());
        for record in records {
            if record.result != self.result
                && !(self.result == ResultKind::Ok && record.result == ResultKind::Error)
            {
                return Err("a `txn`'s operations must have the transaction's result".to_string());
            }
            if matches!(record.op, OpName::Scan | OpName::Txn | OpName::Tick) {
                return Err(format!("a `txn` cannot hold a `{}`", record.op.as_str()));
            }
            let op = match record.result {
                // A failed transaction's operations: their inputs only.
                ResultKind::Fail => {
                    let mut r = record;
                    r.result = ResultKind::Unknown;
                    r.into_op()?
                }
                _ => record.into_op()?,
            }
            .ok_or_else(|| "a `txn` operation did not parse".to_string())?;
            inputs.push(op.input);
            outputs.push(op.output.map(|o| o.output));
        }
        let input = KvInput::Txn { ops: inputs };
        match self.result {
            ResultKind::Fail => Ok(None),
            ResultKind::Unknown => Ok(Some(Operation {
                client: self.client,
                input,
                output: None,
                call: self.call,
                ret: u64::MAX,
            })),
            ResultKind::Ok | ResultKind::Error => {
                let ret = self
                    .ret
                    .ok_or_else(|| "missing field `ret` (required for ok/error)".to_string())?;
                if ret < self.call {
                    return Err(format!("`ret` ({ret}) is before `call` ({})", self.call));
                }
                let outputs = outputs
                    .into_iter()
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        "a completed `txn` needs every operation's output".to_string()
                    })?;
                Ok(Some(Operation {
                    client: self.client,
                    input,
                    output: Some(KvReply {
                        output: KvOutput::Results(outputs),
                        op_number: self.op_number,
                        read: self.read,
                    }),
                    call: self.call,
                    ret,
                }))
            }
        }
    }
}

fn op_name(input: &KvInput) -> OpName {
    match input {
        KvInput::Txn { .. } => OpName::Txn,
        KvInput::Tick { .. } => OpName::Tick,
        KvInput::SetAt { .. } => OpName::Set,
        KvInput::Get { .. } => OpName::Get,
        KvInput::Set { .. } => OpName::Set,
        KvInput::Del { .. } => OpName::Del,
        KvInput::IncrBy { .. } => OpName::Incrby,
        KvInput::Cas { .. } => OpName::Cas,
        KvInput::Scan { .. } => OpName::Scan,
    }
}

/// Parses an NDJSON history, keeping each operation's 1-based line number. Blank lines
/// are skipped; `fail` records are validated and dropped.
pub fn parse_ndjson_with_lines(text: &str) -> Result<Vec<(usize, KvOp)>, ParseError> {
    let mut ops = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        let lineno = idx + 1;
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(line).map_err(|e| ParseError {
            line: lineno,
            message: e.to_string(),
        })?;
        let op = record.into_op().map_err(|message| ParseError {
            line: lineno,
            message,
        })?;
        if let Some(op) = op {
            ops.push((lineno, op));
        }
    }
    Ok(ops)
}

/// Parses an NDJSON history into the operations to check (`fail` records dropped).
pub fn parse_ndjson(text: &str) -> Result<Vec<KvOp>, ParseError> {
    Ok(parse_ndjson_with_lines(text)?
        .into_iter()
        .map(|(_, op)| op)
        .collect())
}

/// Renders operations as NDJSON (one [`Record`] per line, each line ending in `\n`).
pub fn write_ndjson(ops: &[KvOp]) -> String {
    let mut out = String::new();
    for op in ops {
        out.push_str(&Record::from_op(op).to_line());
        out.push('\n');
    }
    out
}
