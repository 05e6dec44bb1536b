//! Failure reports: what a failing seed did, in words a developer can act on.
//!
//! [`FailureReport::build`] takes the checker's [`Failure`], the seed's trace and its swarm
//! parameters and produces: the last relevant events before the failure, the faults injected in
//! the window before it, 4–7 root-cause suggestions **drawn from the trace** (they name the
//! replica, op, view and faults involved; fixed text is only a fallback when the trace is silent)
//! and the exact repro command. [`FailureReport::to_ascii`] renders it for a terminal.
//!
//! Nothing here reads the node: only the trace and the checker's verdict, and only events the
//! VOPR really records (client calls and replies, commits, view changes, state transfers,
//! crashes and restarts, the simulator's fault log, checker verdicts).
//!
//! * this file — [`Classification`], [`Failure`], the repro command, the failing operation.
//! * `report.rs` — [`FailureReport`]: build it from a trace, render it as text.
//! * `suggestions.rs` — the root-cause suggestions, per classification.

use serde::{Deserialize, Serialize};

use crate::analyzer::{ClientOp, TraceAnalyzer};
use crate::trace::{Outcome, TraceEvent};

mod report;
mod suggestions;
#[cfg(test)]
mod tests;

pub use report::FailureReport;

/// How far back "faults before the failure" reaches, simulated µs.
pub const FAULT_WINDOW_US: u64 = 2_000_000;
/// Events listed under "what happened".
pub const WHAT_HAPPENED_MAX: usize = 20;
/// Fault events listed one by one (the rest are only counted).
pub const FAULT_LINES_MAX: usize = 12;
/// Bounds on the number of suggestions per report.
pub const SUGGESTIONS_MIN: usize = 4;
pub const SUGGESTIONS_MAX: usize = 7;
/// Width of the ASCII report.
pub const REPORT_WIDTH: usize = 78;

/// What kind of invariant failed. The snake_case name is the vopr record's `failure_kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    /// A read returned a value the model (replayed from the committed log) disagrees with.
    DataCorruption,
    /// The history has no linearization.
    Linearizability,
    /// Two replicas at the same op have different state hashes.
    ReplicaDivergence,
    /// A log entry's parent checksum does not match its predecessor.
    HashChainBreak,
    /// A replica's commit history has a gap or a committed op was rewritten.
    CommitGapOrRewrite,
    /// No progress in the liveness phase.
    Liveness,
    /// A replica could not recover (or recovered wrongly) after a crash.
    RecoveryFailure,
    /// Two runs of the seed differ.
    NonDeterminism,
    /// A checkpoint does not match the state it claims to hold.
    CheckpointMismatch,
    /// Replicas wrote different bytes for the same logical content.
    StorageNondeterminism,
}

impl Classification {
    pub const ALL: [Classification; 10] = [
        Classification::DataCorruption,
        Classification::Linearizability,
        Classification::ReplicaDivergence,
        Classification::HashChainBreak,
        Classification::CommitGapOrRewrite,
        Classification::Liveness,
        Classification::RecoveryFailure,
        Classification::NonDeterminism,
        Classification::CheckpointMismatch,
        Classification::StorageNondeterminism,
    ];

    /// The snake_case name (as in NDJSON records).
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::DataCorruption => "data_corruption",
            Classification::Linearizability => "linearizability",
            Classification::ReplicaDivergence => "replica_divergence",
            Classification::HashChainBreak => "hash_chain_break",
            Classification::CommitGapOrRewrite => "commit_gap_or_rewrite",
            Classification::Liveness => "liveness",
            Classification::RecoveryFailure => "recovery_failure",
            Classification::NonDeterminism => "non_determinism",
            Classification::CheckpointMismatch => "checkpoint_mismatch",
            Classification::StorageNondeterminism => "storage_nondeterminism",
        }
    }

    /// A human title.
    pub fn title(self) -> &'static str {
        match self {
            Classification::DataCorruption => "Data corruption",
            Classification::Linearizability => "Linearizability violation",
            Classification::ReplicaDivergence => "Replica divergence",
            Classification::HashChainBreak => "Hash chain break",
            Classification::CommitGapOrRewrite => "Commit gap or rewrite",
            Classification::Liveness => "Liveness (no progress)",
            Classification::RecoveryFailure => "Recovery failure",
            Classification::NonDeterminism => "Non-determinism",
            Classification::CheckpointMismatch => "Checkpoint mismatch",
            Classification::StorageNondeterminism => "Storage non-determinism",
        }
    }

    /// Parse a classification or a checker's name (`model`, `replica_consistency`,
    /// `hash_chain`, `commit_history`, `head_progress`, `checkpoint`, `determinism`, …).
    pub fn parse(name: &str) -> Option<Classification> {
        let n = name.trim().to_ascii_lowercase().replace('-', "_");
        if let Some(c) = Classification::ALL.iter().find(|c| c.as_str() == n) {
            return Some(*c);
        }
        Some(match n.as_str() {
            "data" | "data_correctness" | "model" | "corruption" => Classification::DataCorruption,
            "linearizable" | "lincheck" => Classification::Linearizability,
            "replica_consistency" | "divergence" | "consistency" => {
                Classification::ReplicaDivergence
            }
            "hash_chain" | "hash_chain_integrity" | "chain" => Classification::HashChainBreak,
            "commit_history" | "commit_gap" | "commit_rewrite" => {
                Classification::CommitGapOrRewrite
            }
            "head_progress" | "progress" | "no_progress" => Classification::Liveness,
            "recovery" | "checkpoint_recovery" => Classification::RecoveryFailure,
            "determinism" | "nondeterminism" | "run_twice" => Classification::NonDeterminism,
            "checkpoint" => Classification::CheckpointMismatch,
            "storage_determinism" => Classification::StorageNondeterminism,
            _ => return None,
        })
    }
}

/// A checker's verdict, with what it knows about where the failure is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub checker: String,
    pub classification: Classification,
    pub message: String,
    pub replica: Option<u8>,
    pub op: Option<u64>,
    pub key: Option<String>,
}

/// The exact command that reruns `seed` verbosely with the flags the failing run had
/// (e.g. `--mutation NAME`, `--no-faults`).
pub fn repro_command(seed: u64, flags: &[String]) -> String {
    let mut cmd = format!("vopr --seed {seed} -v");
    for flag in flags {
        cmd.push(' ');
        if !flag.is_empty()
            && flag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=./:,".contains(c))
        {
            cmd.push_str(flag);
        } else {
            cmd.push('\'');
            cmd.push_str(&flag.replace('\'', r"'\''"));
            cmd.push('\'');
        }
    }
    cmd
}

/// The client operation a failure is about: the one whose reply carried the failure's op
/// number (on its key, if given); else the last completed operation on the failure's key before
/// the failure; else the last operation on that key. `None` without an op or a key.
pub fn failing_op(events: &[TraceEvent], failure: &Failure) -> Option<ClientOp> {
    let a = TraceAnalyzer::new(events);
    let ops = a.client_ops();
    let key_ok = |op: &ClientOp| key_matches(failure.key.as_deref(), &op.key);
    if let Some(n) = failure.op {
        if let Some(op) = ops.iter().find(|op| op.op_number == Some(n) && key_ok(op)) {
            return Some(op.clone());
        }
    }
    let key = failure.key.as_deref()?;
    let at_us = a.first_violation().map_or(a.end_us(), |v| v.at_us);
    let on_key: Vec<&ClientOp> = ops.iter().filter(|op| op.key == key).collect();
    // The latest acknowledged reply, else the latest completion, else the latest call.
    let completed = |ok_only: bool| {
        on_key
            .iter()
            .filter(|op| op.complete_us.is_some_and(|t| t <= at_us))
            .filter(|op| !ok_only || op.outcome == Some(Outcome::Ok))
            .max_by_key(|op| op.complete_us)
            .copied()
    };
    completed(true)
        .or_else(|| completed(false))
        .or_else(|| on_key.last().copied())
        .cloned()
}

/// Whether `op_key` is the failure's key (any key if the failure names none).
pub(crate) fn key_matches(key: Option<&str>, op_key: &str) -> bool {
    key.is_none_or(|k| k == op_key)
}
