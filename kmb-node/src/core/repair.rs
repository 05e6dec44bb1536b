//! Repair (Protocol-Aware Recovery, VRR §4 hash-chained variant): missing headers are asked
//! for top-down and accepted only as their successor's `parent`; missing bodies are asked for
//! by checksum. Any replica answers from memory.

use super::log::span;
use super::message::{Body, HEADERS_MAX};
use super::replica::Replica;
use super::Status;
use crate::entry::{Checksum, Entry, Header};

/// At most this many RequestPrepare repairs per round.
const REPAIR_BODIES_MAX: usize = 64;
/// At most this many header gaps asked about per round.
const REPAIR_GAPS_MAX: usize = 4;

impl Replica {
    fn repair_targets(&self) -> Vec<u8> {
        if self.status == Status::Normal && self.primary() != self.config.replica {
            vec![self.primary()]
        } else {
            self.others().collect()
        }
    }

    pub(super) fn send_repairs(&mut self) {
        if self.status == Status::Recovering || self.halted.is_some() {
            return;
        }
        let targets = self.repair_targets();
        let mut requests = Vec::new();
        // Header gaps: an op without a slot below an op with one (verifiable via `parent`).
        let mut gaps = 0;
        let mut upper = self.op;
        let lowest = self.commit_min + 1;
        let present: Vec<u64> = span(&self.slots, lowest, self.op)
            .rev()
            .map(|(&o, _)| o)
            .collect();
        for &o in present.iter().chain(std::iter::once(&self.commit_min)) {
            if o + 1 < upper && self.slots.contains_key(&upper) {
                let op_max = upper - 1;
                let op_min = op_max.saturating_sub(HEADERS_MAX as u64 - 1).max(o + 1);
                requests.push(Body::RequestHeaders { op_min, op_max });
                gaps += 1;
                if gaps >= REPAIR_GAPS_MAX {
                    break;
                }
            }
            upper = o;
        }
        // Missing bodies of known headers.
        let missing: Vec<(u64, Checksum)> = span(&self.slots, lowest, self.op)
            .filter(|(&o, s)| s.body.is_none() && self.ring_allows(o))
            .take(REPAIR_BODIES_MAX)
            .map(|(&o, s)| (o, s.header.checksum))
            .collect();
        for (op, checksum) in missing {
            self.repair_inflight.insert(op);
            requests.push(Body::RequestPrepare { op, checksum });
        }
        for body in requests {
            for &to in &targets {
                self.send(to, body.clone());
            }
        }
    }

    /// A body offered as repair: accept only if its checksum is the one the log expects.
    pub(super) fn accept_repair(&mut self, entry: Entry) {
        let o = entry.header.op;
        if o <= self.commit_min || o > self.op || !self.ring_allows(o) {
            return;
        }
        let accepted = match self.slots.get(&o) {
            Some(s) => s.header.checksum == entry.header.checksum && s.body.is_none(),
            None => self
                .slots
                .get(&(o + 1))
                .is_some_and(|u| u.header.parent == entry.header.checksum),
        };
        // Mutation `repair-accepts-unchained` (simulator): skip the check above.
        #[cfg(madsim)]
        let accepted = accepted || {
            use crate::mutation::{self, Mutation};
            let on = mutation::is(Mutation::RepairAcceptsUnchained);
            if on {
                mutation::bit(Mutation::RepairAcceptsUnchained);
            }
            on
        };
        if !accepted {
            return;
        }
        crate::mark!("repair_entry_accepted");
        self.put_entry(entry);
        self.clean_chain();
        self.repair_inflight.remove(&o);
        if self.repair_inflight.is_empty() {
            self.send_repairs();
        }
    }

    /// Answer a RequestPrepare from memory if the entry with that checksum is held.
    pub(super) fn on_request_prepare(&mut self, from: u8, op: u64, checksum: Checksum) {
        if let Some(entry) = self.entry(op) {
            if entry.header.checksum == checksum {
                let body = Body::Prepare {
                    view: self.view,
                    commit: self.commit_max,
                    entry,
                };
                self.send(from, body);
            }
        }
    }

    /// Answer a RequestHeaders with the headers held in the range (at most [`HEADERS_MAX`], the
    /// highest ones), unverified: the asker checks them against its hash chain.
    pub(super) fn on_request_headers(&mut self, from: u8, op_min: u64, op_max: u64) {
        let op_max = op_max.min(self.op);
        if op_min > op_max {
            return;
        }
        let op_min = op_min.max(op_max - (op_max - op_min).min(HEADERS_MAX as u64 - 1));
        let headers: Vec<Header> = span(&self.slots, op_min, op_max)
            .map(|(_, s)| s.header)
            .collect();
        if !headers.is_empty() {
            self.send(from, Body::Headers { headers });
        }
    }

    pub(super) fn on_headers(&mut self, from: u8, mut headers: Vec<Header>) {
        if self.status == Status::Recovering {
            return;
        }
        headers.sort_by_key(|h| std::cmp::Reverse(h.op));
        let mut inserted = false;
        for h in headers {
            if h.cluster != self.config.cluster || h.op <= self.commit_min || h.op >= self.op {
                continue;
            }
            let expected = self.slots.get(&(h.op + 1)).map(|u| u.header.parent);
            if expected != Some(h.checksum) {
                continue;
            }
            if self
                .slots
                .get(&h.op)
                .is_some_and(|s| s.header.checksum == h.checksum)
            {
                continue;
            }
            self.put_header(h);
            inserted = true;
        }
        if inserted {
            self.clean_chain();
            let _ = from;
            self.send_repairs();
        }
    }
}
