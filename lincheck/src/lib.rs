//! Linearizability checker generic over a sequential model.
//!
//! The search is the Wing–Gong algorithm with Lowe's memoisation ("Testing for
//! linearizability", G. Lowe, 2017), as also used by Porcupine and Knossos: the history
//! is turned into a doubly linked list of call and return entries sorted by time; the
//! search repeatedly picks a pending call, steps the model with it, and removes the
//! call and its return from the list ("lifts" it). Reaching a return entry whose
//! operation has not been linearized means the current prefix cannot be extended, so
//! the search backtracks. Every configuration (set of linearized operations, model
//! state) is recorded so that no configuration is explored twice.
//!
//! # Histories
//!
//! A history is a slice of [`Operation`]s. Timestamps (`call`, `ret`) only need to be
//! comparable; two events with equal timestamps are treated as concurrent (a call at
//! time `t` overlaps a return at time `t`).
//!
//! * An operation that completed has `output: Some(_)` and a finite `ret >= call`.
//! * An operation whose outcome is unknown (timed out, connection lost, ...) has
//!   `output: None` (its `ret` is ignored and treated as `+infinity`; by convention
//!   set it to `u64::MAX`). It may have taken effect at any point after its call,
//!   or never. The model steps it with [`Model::step_unknown`].
//! * An operation that certainly **did not** take effect (a definite failure reply)
//!   must simply be left out of the history by the caller.
//!
//! # Partitioning
//!
//! A [`PartitionedModel`] maps each input to a partition key; [`check_partitioned`]
//! checks each partition independently (linearizability is compositional over
//! independent objects), and the history is linearizable iff every partition is.
//!
//! The library never reads the clock and never starts threads: it is deterministic and
//! may be called from inside a simulation.

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;
use std::hash::Hash;

pub mod gen;
mod hash;
pub mod jepsen;
pub mod kv;
mod search;

/// A sequential specification of the object under test.
pub trait Model {
    /// The state of the object. Compared and hashed to memoise the search, so keep it
    /// small and cheap to clone.
    type State: Clone + Eq + Hash;
    /// An operation's input (the request).
    type Input: fmt::Debug;
    /// An operation's output (the reply).
    type Output: fmt::Debug;

    /// The initial state.
    fn init(&self) -> Self::State;

    /// Applies `input` to `state` and checks that `output` is a legal reply.
    /// Returns `Some(next_state)` iff `output` is legal from `state`.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State>;

    /// The states `input` may lead to from `state` when its output is unknown, i.e.
    /// assuming it takes effect right now with any output legal from `state` (for a
    /// deterministic model: exactly one state). The possibility that the operation
    /// never takes effect is handled by the checker and need not be returned here.
    /// An empty vector means the operation cannot take effect from `state`.
    fn step_unknown(&self, state: &Self::State, input: &Self::Input) -> Vec<Self::State>;
}

/// A model whose operations can be split into independent partitions (e.g. by key).
pub trait PartitionedModel: Model {
    /// The partition key.
    type Key: Ord + Clone + fmt::Display;

    /// The partition `input` belongs to, or `None` if the operation is not part of any
    /// partition and is therefore **not** checked by [`check_partitioned`] (the caller
    /// must check such operations some other way, e.g. [`kv::check`] does for scans).
    fn partition(&self, input: &Self::Input) -> Option<Self::Key>;
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// The client (process) that issued the operation. Informational only.
    pub client: u64,
    /// The request.
    pub input: I,
    /// The reply; `None` if the outcome is unknown (the operation may or may not have
    /// taken effect).
    pub output: Option<O>,
    /// Invocation timestamp.
    pub call: u64,
    /// Completion timestamp; ignored (treated as +infinity) when `output` is `None`,
    /// by convention `u64::MAX` then.
    pub ret: u64,
}

/// Options for a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// Maximum number of search steps per partition; when exceeded the verdict is
    /// [`Verdict::Unknown`] (never a pass).
    pub step_cap: u64,
}

impl CheckOptions {
    /// The default step cap: 10 million steps per partition.
    pub const DEFAULT_STEP_CAP: u64 = 10_000_000;
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            step_cap: Self::DEFAULT_STEP_CAP,
        }
    }
}

/// Why a history is not linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The partition (key) in which the violation was found; for an unpartitioned
    /// check this is [`Failure::WHOLE_HISTORY`].
    pub partition: String,
    /// The longest linearizable prefix found: indices into the checked history, in
    /// the order they were linearized.
    pub prefix: Vec<usize>,
    /// Index (into the checked history) of the operation that cannot be placed after
    /// that prefix.
    pub op_index: usize,
    /// A human-readable rendering of that operation.
    pub op: String,
    /// A short explanation.
    pub reason: String,
}

impl Failure {
    /// The partition name used by [`check`] (no partitioning).
    pub const WHOLE_HISTORY: &'static str = "(whole history)";
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "partition {}: cannot place op #{} {} after a linearizable prefix of {} ops: {}",
            self.partition,
            self.op_index,
            self.op,
            self.prefix.len(),
            self.reason
        )
    }
}

/// The result of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The history is linearizable.
    Linearizable,
    /// The history is not linearizable.
    NotLinearizable(Failure),
    /// The checker could not decide (step cap reached, or a check that cannot be done
    /// honestly); this is never a pass.
    Unknown {
        /// Why.
        reason: String,
    },
}

impl Verdict {
    /// `true` iff the verdict is [`Verdict::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }

    /// Combines two verdicts over disjoint parts of a history: a violation wins, then
    /// an unknown, then linearizable. On ties, `self` wins.
    pub fn and(self, other: Verdict) -> Verdict {
        match (&self, &other) {
            (Verdict::NotLinearizable(_), _) => self,
            (_, Verdict::NotLinearizable(_)) => other,
            (Verdict::Unknown { .. }, _) => self,
            (_, Verdict::Unknown { .. }) => other,
            _ => Verdict::Linearizable,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => f.write_str("linearizable"),
            Verdict::NotLinearizable(_) => f.write_str("not linearizable"),
            Verdict::Unknown { .. } => f.write_str("unknown"),
        }
    }
}

/// Renders an operation for reports.
pub fn describe_op<I: fmt::Debug, O: fmt::Debug>(index: usize, op: &Operation<I, O>) -> String {
    match &op.output {
        Some(out) => format!(
            "[#{index} client {} call {} ret {}] {:?} -> {:?}",
            op.client, op.call, op.ret, op.input, out
        ),
        None => format!(
            "[#{index} client {} call {} ret ?] {:?} -> (unknown outcome)",
            op.client, op.call, op.input
        ),
    }
}

/// Checks that `history` is linearizable with respect to `model`, as one partition.
pub fn check<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    options: &CheckOptions,
) -> Verdict {
    let all: Vec<usize> = (0..history.len()).collect();
    let history: Vec<&Operation<M::Input, M::Output>> = history.iter().collect();
    check_subset(model, &history, &all, Failure::WHOLE_HISTORY, options)
}

/// Checks every partition of `history` independently; operations for which
/// [`PartitionedModel::partition`] returns `None` are skipped. Partitions are checked
/// in key order; the first violation found is reported, otherwise an unknown verdict
/// if any partition was undecided.
pub fn check_partitioned<M: PartitionedModel>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    options: &CheckOptions,
) -> Verdict {
    let mut parts: BTreeMap<M::Key, Vec<usize>> = BTreeMap::new();
    for (i, op) in history.iter().enumerate() {
        if let Some(key) = model.partition(&op.input) {
            parts.entry(key).or_default().push(i);
        }
    }
    let history: Vec<&Operation<M::Input, M::Output>> = history.iter().collect();
    let mut verdict = Verdict::Linearizable;
    for (key, members) in &parts {
        let v = check_subset(model, &history, members, &key.to_string(), options);
        verdict = verdict.and(v);
        if matches!(verdict, Verdict::NotLinearizable(_)) {
            break;
        }
    }
    verdict
}

pub(crate) fn check_subset<M: Model>(
    model: &M,
    history: &[&Operation<M::Input, M::Output>],
    members: &[usize],
    partition: &str,
    options: &CheckOptions,
) -> Verdict {
    for &i in members {
        let op = &history[i];
        if op.output.is_some() && op.ret < op.call {
            return Verdict::Unknown {
                reason: format!(
                    "invalid history: op #{i} returns (t={}) before its call (t={})",
                    op.ret, op.call
                ),
            };
        }
    }
    match search::search(model, history, members, options.step_cap) {
        search::Outcome::Linearizable => Verdict::Linearizable,
        search::Outcome::StepCap => Verdict::Unknown {
            reason: format!(
                "partition {partition}: step cap of {} reached",
                options.step_cap
            ),
        },
        search::Outcome::Violation { prefix, blocked } => Verdict::NotLinearizable(Failure {
            partition: partition.to_string(),
            op: describe_op(blocked, history[blocked]),
            op_index: blocked,
            reason: format!(
                "no order of the partition's {} ops works; this op returned before it \
                     could be placed after the longest linearizable prefix found",
                members.len()
            ),
            prefix,
        }),
    }
}

/// A parse error, naming the (1-based) line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests;
