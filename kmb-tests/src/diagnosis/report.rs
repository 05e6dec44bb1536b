//! The report of one failing seed: built from the checker's verdict and the trace, rendered
//! as boxed text for a terminal.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::suggestions::{fallback_suggestions, Ctx};
use super::{
    repro_command, Failure, FAULT_LINES_MAX, FAULT_WINDOW_US, REPORT_WIDTH, SUGGESTIONS_MAX,
    SUGGESTIONS_MIN, WHAT_HAPPENED_MAX,
};
use crate::analyzer::TraceAnalyzer;
use crate::trace::{format_us, TraceEvent};

/// The post-mortem of one failing seed. See the module docs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FailureReport {
    pub seed: u64,
    pub failure: Failure,
    pub params: Value,
    /// Simulated time of the failure: the first violation in the trace, else its last event.
    pub failed_at_us: u64,
    /// The last relevant events up to (and including) the failure, one line each.
    pub what_happened: Vec<String>,
    pub fault_window_us: u64,
    /// Fault counts by kind in the window before the failure.
    pub fault_counts: BTreeMap<String, usize>,
    /// The last fault events of that window, one line each.
    pub faults_before: Vec<String>,
    pub suggestions: Vec<String>,
    pub repro_command: String,
    /// How many events the trace held.
    pub trace_event_count: usize,
}

impl FailureReport {
    /// Build the report. `repro_flags` are the vopr flags to repeat in the repro command.
    pub fn build(
        seed: u64,
        failure: &Failure,
        events: &[TraceEvent],
        params: &Value,
        repro_flags: &[String],
    ) -> FailureReport {
        let a = TraceAnalyzer::new(events);
        let failed_at_us = a.first_violation().map_or(a.end_us(), |v| v.at_us);
        let ctx = Ctx::new(a, failure, failed_at_us);

        let up_to = a.between(0, failed_at_us);
        let relevant: Vec<&TraceEvent> = up_to
            .iter()
            .filter(|e| ctx.is_relevant(e))
            .collect::<Vec<_>>();
        let what_happened = relevant
            .iter()
            .skip(relevant.len().saturating_sub(WHAT_HAPPENED_MAX))
            .map(|e| e.to_string())
            .collect();

        let faults = a.faults_before(failed_at_us, FAULT_WINDOW_US);
        let faults_before = faults
            .iter()
            .skip(faults.len().saturating_sub(FAULT_LINES_MAX))
            .map(|e| e.to_string())
            .collect();
        let fault_counts = a.fault_counts_before(failed_at_us, FAULT_WINDOW_US, None);

        let mut suggestions = ctx.suggestions();
        let fallbacks = fallback_suggestions(failure.classification);
        let mut fallback = fallbacks.iter();
        while suggestions.len() < SUGGESTIONS_MIN {
            match fallback.next() {
                Some(s) => suggestions.push((*s).to_string()),
                None => break,
            }
        }
        suggestions.truncate(SUGGESTIONS_MAX);
        assert!(suggestions.len() >= SUGGESTIONS_MIN);

        FailureReport {
            seed,
            failure: failure.clone(),
            params: params.clone(),
            failed_at_us,
            what_happened,
            fault_window_us: FAULT_WINDOW_US,
            fault_counts,
            faults_before,
            suggestions,
            repro_command: repro_command(seed, repro_flags),
            trace_event_count: events.len(),
        }
    }

    /// The report as boxed, sectioned text for a terminal.
    pub fn to_ascii(&self) -> String {
        let w = REPORT_WIDTH;
        let rule = format!("+{}+\n", "=".repeat(w - 2));
        let thin = format!("+{}+\n", "-".repeat(w - 2));
        let mut out = String::new();
        let boxed = |out: &mut String, text: &str| {
            for line in wrap(text, w - 4) {
                let _ = writeln!(out, "| {line:<width$} |", width = w - 4);
            }
        };
        out.push_str(&rule);
        boxed(
            &mut out,
            &format!(
                "VOPR FAILURE REPORT   seed {}   at {} (simulated)",
                self.seed,
                format_us(self.failed_at_us)
            ),
        );
        out.push_str(&thin);
        boxed(
            &mut out,
            &format!(
                "classification: {} ({})",
                self.failure.classification.title(),
                self.failure.classification.as_str()
            ),
        );
        boxed(
            &mut out,
            &format!("checker:        {}", self.failure.checker),
        );
        let mut focus = Vec::new();
        if let Some(r) = self.failure.replica {
            focus.push(format!("replica {r}"));
        }
        if let Some(op) = self.failure.op {
            focus.push(format!("op {op}"));
        }
        if let Some(k) = &self.failure.key {
            focus.push(format!("key {k}"));
        }
        if !focus.is_empty() {
            boxed(&mut out, &format!("where:          {}", focus.join(", ")));
        }
        out.push_str(&rule);

        section(&mut out, "FAILURE");
        for line in wrap(&self.failure.message, w - 2) {
            let _ = writeln!(out, "  {line}");
        }

        if let Some(params) = summarize_params(&self.params) {
            section(&mut out, "PARAMETERS");
            for line in wrap(&params, w - 2) {
                let _ = writeln!(out, "  {line}");
            }
        }

        section(
            &mut out,
            &format!(
                "WHAT HAPPENED (last {} relevant of {} traced events)",
                self.what_happened.len(),
                self.trace_event_count
            ),
        );
        if self.what_happened.is_empty() {
            out.push_str("  (no trace: rerun with --enable-trace)\n");
        }
        for line in &self.what_happened {
            let _ = writeln!(out, "  {line}");
        }

        section(
            &mut out,
            &format!(
                "FAULTS IN THE {} BEFORE THE FAILURE",
                format_us(self.fault_window_us)
            ),
        );
        if self.fault_counts.is_empty() {
            out.push_str("  none traced\n");
        } else {
            let counts: Vec<String> = self
                .fault_counts
                .iter()
                .map(|(k, n)| format!("{k} x{n}"))
                .collect();
            for line in wrap(&counts.join(", "), w - 2) {
                let _ = writeln!(out, "  {line}");
            }
            for line in &self.faults_before {
                let _ = writeln!(out, "  {line}");
            }
        }

        section(&mut out, "SUGGESTIONS");
        for (i, s) in self.suggestions.iter().enumerate() {
            for (j, line) in wrap(s, w - 6).into_iter().enumerate() {
                if j == 0 {
                    let _ = writeln!(out, "  {:>2}. {line}", i + 1);
                } else {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }

        section(&mut out, "REPRODUCE");
        let _ = writeln!(out, "  {}", self.repro_command);
        out.push_str(&rule);
        out
    }
}

fn section(out: &mut String, title: &str) {
    let _ = writeln!(
        out,
        "\n-- {title} {}",
        "-".repeat(REPORT_WIDTH.saturating_sub(title.len() + 4))
    );
}

/// Greedy word wrap; words longer than `width` get a line of their own.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        if paragraph.chars().count() <= width {
            lines.push(paragraph.trim_end().to_string());
            continue;
        }
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    if lines.is_empty() {
        lines.push(String::new());
    }
    lines
}

/// `replica_count=3 client_count=4 …`: the top-level scalars of the swarm parameters.
fn summarize_params(params: &Value) -> Option<String> {
    let map = params.as_object()?;
    let parts: Vec<String> = map
        .iter()
        .filter_map(|(k, v)| match v {
            Value::Bool(_) | Value::Number(_) | Value::String(_) => Some(format!("{k}={v}")),
            _ => None,
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}
