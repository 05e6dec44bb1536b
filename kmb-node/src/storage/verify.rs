//! The offline verifier's verdict (`kmb-node verify` / `inspect`): a pure report over an
//! [`Examination`] of a data file.
//!
//! Damage (a non-zero exit) is what a healthy file never shows: a corrupt, blank or
//! misdirected superblock copy, a faulty op (durable but unreadable: a start would have to
//! repair it from a peer), a misdirected write, a corrupt redundant header, an unreadable
//! checkpoint or a break in the hash chain. What a crash legitimately leaves behind — a stale
//! superblock copy, a torn in-flight prepare, a redundant header not yet written — is reported
//! as a note: the next start repairs it without help.

use super::engine::Examination;
use super::format::SuperblockError;
use super::recovery::{CheckpointState, HeaderCopy, PrepareCopy, SlotEvidence};

/// The verifier's findings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// What the file holds, one fact per line.
    pub summary: Vec<String>,
    /// Repaired at the next start without a peer.
    pub notes: Vec<String>,
    /// Damage, one problem per line (empty: the file verifies).
    pub damage: Vec<String>,
}

fn ops_list(ops: &[u64]) -> String {
    const SHOWN: usize = 10;
    let mut s: Vec<String> = ops.iter().take(SHOWN).map(u64::to_string).collect();
    if ops.len() > SHOWN {
        s.push(format!("… ({} in all)", ops.len()));
    }
    s.join(", ")
}

/// Check everything an [`Examination`] found.
pub fn verify(ex: &Examination) -> Report {
    let mut report = Report::default();
    let r = &ex.recovery;
    let sb = &r.superblock;
    report.summary.push(format!(
        "identity: cluster {}, replica {} of {}",
        sb.identity.cluster, sb.identity.replica, sb.identity.replica_count
    ));
    report.summary.push(format!(
        "geometry: {} WAL slots of {} bytes; file {} bytes",
        sb.config.slot_count, sb.config.slot_size, ex.len
    ));

    // Superblock copies.
    let mut current = 0;
    for (i, copy) in ex.copies.iter().enumerate() {
        match copy {
            Ok(c) if c == sb => current += 1,
            Ok(c) => report.notes.push(format!(
                "superblock copy {i} is stale (sequence {} < {}): a write interrupted by a \
                 crash, rewritten at the next start",
                c.sequence, sb.sequence
            )),
            Err(SuperblockError::Blank) => {
                report.damage.push(format!("superblock copy {i} is blank"))
            }
            Err(SuperblockError::Corrupt) => report.damage.push(format!(
                "superblock copy {i} is corrupt (unreadable or checksum mismatch)"
            )),
            Err(SuperblockError::Misdirected) => report.damage.push(format!(
                "superblock copy {i} holds another copy's bytes (misdirected write)"
            )),
        }
    }
    report.summary.push(format!(
        "superblock: sequence {}, view {}, log_view {}, log_view_head {}; {current} of {} \
         copies current",
        sb.sequence,
        sb.view,
        sb.log_view,
        sb.log_view_head,
        ex.copies.len()
    ));

    // Checkpoint.
    match &r.checkpoint {
        CheckpointState::Empty => report
            .summary
            .push("checkpoint: none yet (op 0)".to_string()),
        CheckpointState::Loaded(blob) => report.summary.push(format!(
            "checkpoint: op {}, {} bytes, checksum verified",
            sb.checkpoint.op,
            blob.len()
        )),
        CheckpointState::Faulty => report.damage.push(format!(
            "the checkpoint at op {} ({} bytes at offset {}) is unreadable or fails its checksum",
            sb.checkpoint.op, sb.checkpoint.size, sb.checkpoint.offset
        )),
    }

    // The log and its hash chain (recovery only returns linked entries: re-checked here).
    let mut parent = sb.checkpoint.entry_checksum;
    for (expected_op, e) in (sb.checkpoint.op + 1..).zip(&r.log) {
        if e.header.parent != parent || e.header.op != expected_op {
            report.damage.push(format!(
                "hash chain broken at op {}: its parent does not match the entry before it",
                e.header.op
            ));
            break;
        }
        parent = e.checksum();
    }
    match (r.log.first(), r.log.last()) {
        (Some(first), Some(last)) => report.summary.push(format!(
            "log: ops {}..={} ({} entries), hash chain intact from the checkpoint",
            first.header.op,
            last.header.op,
            r.log.len()
        )),
        _ => report
            .summary
            .push("log: empty after the checkpoint".to_string()),
    }
    if !r.faulty.is_empty() {
        report.damage.push(format!(
            "{} op(s) written durably but unreadable (rotten, misdirected over or lost): {} — a \
             start repairs them from a peer; a single replica cannot",
            r.faulty.len(),
            ops_list(&r.faulty)
        ));
    }
    if !r.after_gap.is_empty() {
        let ops: Vec<u64> = r.after_gap.iter().map(|e| e.header.op).collect();
        report.summary.push(format!(
            "after the faulty op(s): {} verified entries ({})",
            ops.len(),
            ops_list(&ops)
        ));
    }
    for &slot in &r.misdirected_slots {
        report.damage.push(format!(
            "WAL slot {slot} holds an entry written for another slot or cluster (misdirected \
             write)"
        ));
    }
    for (slot, ev) in ex.evidence.iter().enumerate() {
        if ev.header == HeaderCopy::Corrupt {
            report.damage.push(format!(
                "WAL slot {slot}: the redundant header is corrupt (unreadable or checksum \
                 mismatch)"
            ));
        }
    }
    if !r.torn.is_empty() {
        report.notes.push(format!(
            "op {} torn or damaged past the last durable op (a write in flight at a crash, never \
             acknowledged): discarded at the next start",
            ops_list(&r.torn)
        ));
    }
    let stale_headers = r.header_repairs.len()
        - ex.evidence
            .iter()
            .enumerate()
            .filter(|(slot, ev)| {
                ev.header == HeaderCopy::Corrupt && r.header_repairs.contains(slot)
            })
            .count();
    if stale_headers > 0 {
        report.notes.push(format!(
            "{stale_headers} redundant header(s) not yet written for verified entries: \
             rewritten at the next start"
        ));
    }
    report
}

fn header_text(h: &HeaderCopy) -> String {
    match h {
        HeaderCopy::Blank => "blank".into(),
        HeaderCopy::Corrupt => "CORRUPT".into(),
        HeaderCopy::Misdirected(h) => format!("MISDIRECTED op {} view {}", h.op, h.view),
        HeaderCopy::Valid(h) => format!("op {} view {}", h.op, h.view),
    }
}

fn prepare_text(p: &PrepareCopy) -> String {
    match p {
        PrepareCopy::Blank => "blank".into(),
        PrepareCopy::Corrupt => "CORRUPT".into(),
        PrepareCopy::Misdirected(h) => format!("MISDIRECTED op {} view {}", h.op, h.view),
        PrepareCopy::BodyCorrupt(h) => format!("op {} view {}: BODY CORRUPT", h.op, h.view),
        PrepareCopy::Valid(e) => format!(
            "op {} view {} {:?} {} bytes",
            e.header.op, e.header.view, e.header.operation, e.header.size
        ),
    }
}

/// The detail `kmb-node inspect` prints after the summary: each superblock copy and each
/// non-blank WAL slot.
pub fn inspect(ex: &Examination) -> Vec<String> {
    let mut lines = Vec::new();
    for (i, copy) in ex.copies.iter().enumerate() {
        lines.push(match copy {
            Ok(sb) => format!(
                "superblock copy {i}: sequence {} view {} log_view {} checkpoint op {}",
                sb.sequence, sb.view, sb.log_view, sb.checkpoint.op
            ),
            Err(e) => format!("superblock copy {i}: {e:?}"),
        });
    }
    lines.push(format!(
        "{:>6}  {:<32}  prepare",
        "slot", "redundant header"
    ));
    let blank = SlotEvidence {
        header: HeaderCopy::Blank,
        prepare: PrepareCopy::Blank,
    };
    let mut blanks = 0;
    for (slot, ev) in ex.evidence.iter().enumerate() {
        if *ev == blank {
            blanks += 1;
            continue;
        }
        lines.push(format!(
            "{slot:>6}  {:<32}  {}",
            header_text(&ev.header),
            prepare_text(&ev.prepare)
        ));
    }
    lines.push(format!("({blanks} blank slots not shown)"));
    lines
}
