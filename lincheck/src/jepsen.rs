//! Jepsen etcd histories: a single register with read / write / cas.
//!
//! Line format: `INFO  jepsen.util - PROCESS\t:TYPE\t:F\tVALUE` (fields may also be
//! separated by runs of spaces), TYPE one of `invoke`, `ok`, `fail`, `info`, F one of
//! `read`, `write`, `cas`. Invocations and completions are matched per process.
//!
//! * `:ok` completes the process's pending invocation; a read's value is taken from the
//!   completion (`nil` = absent), a cas that completes `:ok` succeeded.
//! * `:fail` means the operation certainly did not take effect: it is dropped.
//! * `:info` means the outcome is unknown: the operation may take effect at any time
//!   after its invocation, or never. An invocation that never completes (end of the
//!   log) is treated the same way.
//!
//! Timestamps are line numbers (0-based), so an operation's call and return are the
//! lines of its invocation and completion.

use std::collections::HashMap;

use crate::{Model, Operation, ParseError};

/// A register operation's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterInput {
    /// Read the register.
    Read,
    /// Write a value.
    Write(i64),
    /// Compare-and-set: if the register holds `.0`, set it to `.1`.
    Cas(i64, i64),
}

/// A register operation's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterOutput {
    /// The value read (`None` = the register was never written).
    Read(Option<i64>),
    /// A write completed.
    Write,
    /// Whether a cas succeeded.
    Cas(bool),
}

/// A register operation.
pub type RegisterOp = Operation<RegisterInput, RegisterOutput>;

/// The sequential register model; the state is the value (`None` until written).
#[derive(Debug, Clone, Copy, Default)]
pub struct Register;

impl Register {
    fn apply(state: Option<i64>, input: RegisterInput) -> (RegisterOutput, Option<i64>) {
        match input {
            RegisterInput::Read => (RegisterOutput::Read(state), state),
            RegisterInput::Write(v) => (RegisterOutput::Write, Some(v)),
            RegisterInput::Cas(from, to) => {
                if state == Some(from) {
                    (RegisterOutput::Cas(true), Some(to))
                } else {
                    (RegisterOutput::Cas(false), state)
                }
            }
        }
    }
}

impl Model for Register {
    type State = Option<i64>;
    type Input = RegisterInput;
    type Output = RegisterOutput;

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(
        &self,
        state: &Option<i64>,
        input: &RegisterInput,
        output: &RegisterOutput,
    ) -> Option<Option<i64>> {
        let (expected, next) = Register::apply(*state, *input);
        (expected == *output).then_some(next)
    }

    fn step_unknown(&self, state: &Option<i64>, input: &RegisterInput) -> Vec<Option<i64>> {
        vec![Register::apply(*state, *input).1]
    }
}

fn parse_int(s: &str) -> Option<i64> {
    s.parse().ok()
}

fn parse_value(f: &str, value: &str) -> Result<RegisterInput, String> {
    match f {
        "read" => Ok(RegisterInput::Read),
        "write" => parse_int(value)
            .map(RegisterInput::Write)
            .ok_or_else(|| format!("bad write value {value:?}")),
        "cas" => {
            let inner = value
                .strip_prefix('[')
                .and_then(|v| v.strip_suffix(']'))
                .ok_or_else(|| format!("bad cas value {value:?}"))?;
            let mut parts = inner.split_whitespace();
            match (
                parts.next().and_then(parse_int),
                parts.next().and_then(parse_int),
                parts.next(),
            ) {
                (Some(a), Some(b), None) => Ok(RegisterInput::Cas(a, b)),
                _ => Err(format!("bad cas value {value:?}")),
            }
        }
        other => Err(format!("unknown function :{other}")),
    }
}

struct Pending {
    input: RegisterInput,
    call: u64,
}

/// Parses a Jepsen etcd log into register operations (in invocation order).
pub fn parse(text: &str) -> Result<Vec<RegisterOp>, ParseError> {
    let mut ops: Vec<(u64, RegisterOp)> = Vec::new();
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    for (idx, line) in text.lines().enumerate() {
        let lineno = idx + 1;
        let err = |message: String| ParseError {
            line: lineno,
            message,
        };
        if line.trim().is_empty() {
            continue;
        }
        let rest = line
            .split_once("jepsen.util - ")
            .map(|(_, r)| r)
            .ok_or_else(|| err("expected `jepsen.util - ` in line".to_string()))?;
        let mut fields = rest.split_whitespace();
        let process: u64 = fields
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| err("bad process id".to_string()))?;
        let kind = fields
            .next()
            .and_then(|t| t.strip_prefix(':'))
            .ok_or_else(|| err("missing :type".to_string()))?;
        let f = fields
            .next()
            .and_then(|t| t.strip_prefix(':'))
            .ok_or_else(|| err("missing :f".to_string()))?;
        let value = fields.collect::<Vec<_>>().join(" ");
        let time = idx as u64;
        match kind {
            "invoke" => {
                let input = parse_value(f, &value).map_err(err)?;
                if pending.contains_key(&process) {
                    return Err(err(format!(
                        "process {process} invokes while an operation is pending"
                    )));
                }
                pending.insert(process, Pending { input, call: time });
            }
            "ok" | "fail" | "info" => {
                let p = pending.remove(&process).ok_or_else(|| {
                    err(format!(
                        "process {process} completes with no pending invocation"
                    ))
                })?;
                let fname = match p.input {
                    RegisterInput::Read => "read",
                    RegisterInput::Write(_) => "write",
                    RegisterInput::Cas(..) => "cas",
                };
                if fname != f {
                    return Err(err(format!(
                        "completion :{f} does not match pending :{fname} of process {process}"
                    )));
                }
                let output = match kind {
                    "fail" => continue,
                    "info" => None,
                    _ => Some(match p.input {
                        RegisterInput::Read => RegisterOutput::Read(if value == "nil" {
                            None
                        } else {
                            Some(
                                parse_int(&value)
                                    .ok_or_else(|| err(format!("bad read value {value:?}")))?,
                            )
                        }),
                        RegisterInput::Write(_) => RegisterOutput::Write,
                        RegisterInput::Cas(..) => RegisterOutput::Cas(true),
                    }),
                };
                let ret = if output.is_some() { time } else { u64::MAX };
                ops.push((
                    p.call,
                    Operation {
                        client: process,
                        input: p.input,
                        output,
                        call: p.call,
                        ret,
                    },
                ));
            }
            other => return Err(err(format!("unknown type :{other}"))),
        }
    }
    for (process, p) in pending {
        ops.push((
            p.call,
            Operation {
                client: process,
                input: p.input,
                output: None,
                call: p.call,
                ret: u64::MAX,
            },
        ));
    }
    ops.sort_by_key(|(call, _)| *call);
    Ok(ops.into_iter().map(|(_, op)| op).collect())
}
