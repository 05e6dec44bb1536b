//! The log and its hash chain (VRR §4's log, hash-chained as in TigerBeetle: every entry names
//! its parent's checksum, so a log is verified from its head down; Protocol-Aware Recovery: a
//! header contradicted by its successor's `parent` is stale, and a contradiction of the
//! committed prefix halts). Slots, prefixes, truncation, and installing an authoritative log.
//!
//! The log lives in memory as `slots`: for every op after the durable checkpoint whose header
//! is known, the header, and the body if present. A slot without a body, or an op without a
//! slot, is repaired from peers; a repaired header or body is accepted only if it matches the
//! hash chain (the successor's `parent`, or the header installed from the primary).

use crate::entry::View;
use std::collections::btree_map::Range;
use std::collections::BTreeMap;

use super::message::{LogSummary, HEADERS_MAX};
use super::replica::Replica;
use super::Effect;
use crate::entry::{Checksum, Entry, Header};

/// One op of the in-memory log.
#[derive(Clone, Debug)]
pub(super) struct Slot {
    pub(super) header: Header,
    pub(super) body: Option<Vec<u8>>,
    /// The body is known durable in the local WAL.
    pub(super) durable: bool,
}

/// Why a log could not be installed.
pub(super) enum InstallError {
    /// The message is malformed or contradicts committed state: dropped.
    Conflict,
    /// The head's header is not included (the sender's head is its checkpoint): state
    /// transfer is needed first.
    MissingHead,
}

/// Slots with ops in `lo..=hi` (empty if `lo > hi`, where `BTreeMap::range` would panic).
pub(super) fn span(slots: &BTreeMap<u64, Slot>, lo: u64, hi: u64) -> Range<'_, u64, Slot> {
    if lo > hi {
        slots.range(lo..lo)
    } else {
        slots.range(lo..=hi)
    }
}

impl Replica {
    pub(super) fn checksum_at(&self, op: u64) -> Option<Checksum> {
        if let Some(slot) = self.slots.get(&op) {
            return Some(slot.header.checksum);
        }
        if let Some(cp) = &self.checkpoint_inflight {
            if cp.op == op {
                return Some(cp.checksum);
            }
        }
        (op == self.checkpoint.op).then_some(self.checkpoint.checksum)
    }

    /// The cluster time of the entry at `op` as far as this replica knows it: its header's
    /// stamp, or for a checkpoint op whose entry the log no longer holds the stamp its snapshot
    /// records (`snapshot::timestamp`; not the kv clock alone, which counts only applied ops);
    /// never below the state's clock.
    pub(super) fn timestamp_at(&self, op: u64) -> u64 {
        if let Some(slot) = self.slots.get(&op) {
            return slot.header.timestamp;
        }
        let recorded = [Some(&self.checkpoint), self.checkpoint_inflight.as_ref()]
            .into_iter()
            .flatten()
            .filter(|cp| cp.op == op)
            .filter_map(|cp| super::snapshot::timestamp(&cp.snapshot))
            .max();
        self.kv.clock().max(recorded.unwrap_or(0))
    }

    pub(super) fn ring_allows(&self, op: u64) -> bool {
        op <= self.checkpoint.op + self.config.slot_count
    }

    pub(super) fn log_synced(&self) -> bool {
        self.dirty.is_empty() && !self.dirty_truncate && self.sync_inflight.is_none()
    }

    pub(super) fn forget_durability(&mut self, op: u64) {
        self.dirty.remove(&op);
        if let Some((_, syncing)) = &mut self.sync_inflight {
            syncing.remove(&op);
        }
    }

    pub(super) fn remove_slot(&mut self, op: u64) {
        invariant!(op > self.commit_min);
        self.slots.remove(&op);
        self.forget_durability(op);
    }

    /// Store a header-only slot (replacing a different one).
    pub(super) fn put_header(&mut self, header: Header) {
        invariant!(header.op > self.commit_min);
        if self
            .slots
            .get(&header.op)
            .is_some_and(|s| s.header.checksum == header.checksum)
        {
            return;
        }
        self.remove_slot(header.op);
        self.slots.insert(
            header.op,
            Slot {
                header,
                body: None,
                durable: false,
            },
        );
    }

    /// Store an entry (header and body) and write it to the WAL.
    pub(super) fn put_entry(&mut self, entry: Entry) {
        let op = entry.header.op;
        invariant!(op > self.commit_min && self.ring_allows(op));
        invariant!(
            entry.body.len() <= self.config.body_size_max,
            "an entry larger than a WAL slot reached the log"
        );
        self.forget_durability(op);
        self.held_max = self.held_max.max(op);
        self.never_written.remove(&op);
        self.slots.insert(
            op,
            Slot {
                header: entry.header,
                body: Some(entry.body.clone()),
                durable: false,
            },
        );
        self.dirty.insert(op);
        self.effects.push(Effect::WriteEntries(vec![entry]));
    }

    pub(super) fn truncate_after(&mut self, op: u64) {
        invariant!(op >= self.commit_min);
        if self.op <= op {
            return;
        }
        let removed: Vec<u64> = self.slots.range(op + 1..).map(|(&o, _)| o).collect();
        for o in removed {
            self.remove_slot(o);
        }
        self.op = op;
        self.dirty_truncate = true;
        self.truncation_unpublished = true;
        self.effects.push(Effect::TruncateLogAfter(op));
    }

    /// Whether every op from `commit_min + 1` to the head has a header chained to its
    /// predecessor (the log is connected to the committed prefix).
    pub(super) fn chain_to_head(&self) -> bool {
        let Some(mut prev) = self.checksum_at(self.commit_min) else {
            return false;
        };
        let mut expect = self.commit_min + 1;
        for (&o, slot) in span(&self.slots, self.commit_min + 1, self.op) {
            if o != expect || slot.header.parent != prev {
                return false;
            }
            prev = slot.header.checksum;
            expect += 1;
        }
        expect == self.op + 1
    }

    /// The highest op such that every op from `commit_min + 1` up to it is present, chained
    /// and durable here.
    pub(super) fn durable_prefix(&self) -> u64 {
        self.chained_prefix(true)
    }

    /// The highest op such that every op from `commit_min + 1` up to it is present and
    /// chained here, and, if `durable`, known durable (`false` only for the mutation
    /// `prepare-ok-before-sync`: written, not yet synced, bodies count too).
    pub(super) fn chained_prefix(&self, durable: bool) -> u64 {
        let Some(mut prev) = self.checksum_at(self.commit_min) else {
            return self.commit_min;
        };
        let mut done = self.commit_min;
        for (&o, slot) in span(&self.slots, self.commit_min + 1, self.op) {
            if o != done + 1
                || slot.header.parent != prev
                || slot.body.is_none()
                || (durable && !slot.durable)
            {
                break;
            }
            prev = slot.header.checksum;
            done = o;
        }
        done
    }

    /// The lowest op from which every slot up to the head is present and chained: the entries
    /// the head's hash chain vouches for (`op + 1` if the head's header is missing). An entry
    /// below a hole may be stale (an older view's entry a lost write left in its slot, found
    /// intact at restart): chaining from the committed prefix does not make it this view's.
    pub(super) fn head_chain_floor(&self) -> u64 {
        let mut floor = self.op + 1;
        let mut parent: Option<Checksum> = None;
        for (&o, slot) in span(&self.slots, self.commit_min + 1, self.op).rev() {
            if o + 1 != floor || parent.is_some_and(|p| p != slot.header.checksum) {
                break;
            }
            parent = Some(slot.header.parent);
            floor = o;
        }
        floor
    }

    /// Remove headers that the hash chain from the head contradicts (stale entries from an
    /// older view). A contradiction of the committed prefix by a log connected to the head
    /// halts: it proves a committed entry was lost or corrupted beyond the fault bound.
    pub(super) fn clean_chain(&mut self) {
        let mut stale = Vec::new();
        let mut upper: Option<&Slot> = None;
        for (&o, slot) in span(&self.slots, self.commit_min + 1, self.op).rev() {
            if let Some(u) = upper {
                if u.header.op == o + 1 && u.header.parent != slot.header.checksum {
                    stale.push(o);
                    upper = None;
                    continue;
                }
            }
            upper = Some(slot);
        }
        for o in stale {
            self.remove_slot(o);
        }
        let first = self.commit_min + 1;
        if let (Some(slot), Some(c)) = (self.slots.get(&first), self.checksum_at(self.commit_min)) {
            if slot.header.parent != c {
                if self.chain_from(first) {
                    let reason = format!(
                        "log chained to the head contradicts committed op {}",
                        self.commit_min
                    );
                    self.halt(reason);
                } else {
                    self.remove_slot(first);
                }
            }
        }
    }

    /// Whether slots `from..=op` are all present and chained.
    pub(super) fn chain_from(&self, from: u64) -> bool {
        let mut prev: Option<Checksum> = None;
        let mut expect = from;
        for (&o, slot) in span(&self.slots, from, self.op) {
            if o != expect || prev.is_some_and(|p| p != slot.header.parent) {
                return false;
            }
            prev = Some(slot.header.checksum);
            expect += 1;
        }
        expect == self.op + 1
    }

    /// The last (at most [`HEADERS_MAX`]) headers of the log up to the head, ascending.
    pub(super) fn suffix_headers(&self) -> Vec<Header> {
        let mut headers: Vec<Header> = span(&self.slots, 0, self.op)
            .rev()
            .filter(|(&o, _)| o > 0)
            .take(HEADERS_MAX)
            .map(|(_, s)| s.header)
            .collect();
        headers.reverse();
        headers
    }

    /// This replica's log as DoViewChange, StartView and RecoveryResponse carry it, with
    /// `headers` (its suffix, or none); `None` if the head's checksum is unknown.
    pub(super) fn own_log(&self, headers: Vec<Header>) -> Option<LogSummary> {
        Some(LogSummary {
            op: self.op,
            op_checksum: self.checksum_at(self.op)?,
            commit: self.commit_max,
            checkpoint_op: self.checkpoint.op,
            headers,
        })
    }

    /// A received log's headers are of this cluster, ascending, above op 0, at most the head,
    /// and the head's (if included) has the head's checksum.
    pub(super) fn valid_log(&self, log: &LogSummary) -> bool {
        let mut last = 0;
        for h in &log.headers {
            if h.cluster != self.config.cluster
                || h.op == 0
                || h.op > log.op
                || h.op <= last
                || (h.op == log.op && h.checksum != log.op_checksum)
            {
                return false;
            }
            last = h.op;
        }
        true
    }

    /// Adopt the log of `view` from an authoritative source: the chosen DoViewChange, a
    /// StartView, or the primary's RecoveryResponse.
    ///
    /// Entries above `log.op` that were prepared in `view` itself are kept: only the primary of
    /// `view` prepares in it, so they extend the log being installed (a StartView delayed or
    /// duplicated by the network, or one answering an older RequestStartView, carries an older
    /// head of the same log). Truncating them would also be refused by storage: a truncation
    /// is made durable by a `log_view` above the view of every dropped entry.
    pub(super) fn install_log(&mut self, view: View, log: &LogSummary) -> Result<(), InstallError> {
        let (op, op_checksum, headers) = (log.op, log.op_checksum, &log.headers);
        if !self.valid_log(log) || op < self.commit_min {
            return Err(InstallError::Conflict);
        }
        if op == self.commit_min && self.checksum_at(op) != Some(op_checksum) {
            return Err(InstallError::Conflict);
        }
        for h in headers.iter().filter(|h| h.op <= self.commit_min) {
            if self.checksum_at(h.op).is_some_and(|c| c != h.checksum) {
                return Err(InstallError::Conflict);
            }
        }
        // The sender's head may be its checkpoint (no header to send): fine if we hold it.
        if op > self.commit_min
            && !headers.iter().any(|h| h.op == op)
            && self.checksum_at(op) != Some(op_checksum)
        {
            return Err(InstallError::MissingHead);
        }
        let keep = span(&self.slots, op + 1, self.op)
            .rev()
            .find(|(_, s)| s.header.view == view)
            .map_or(op, |(&o, _)| o);
        self.install_view = view;
        self.truncate_after(keep);
        self.op = keep;
        let commit_min = self.commit_min;
        for h in headers.iter().filter(|h| h.op > commit_min) {
            self.put_header(*h);
        }
        self.clean_chain();
        Ok(())
    }
}
