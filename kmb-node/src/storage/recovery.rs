//! Recovery decisions: a pure function over the bytes read from disk (no I/O).
//!
//! The engine reads the superblock copies, every redundant header, every prepare slot and the
//! checkpoint, then calls [`select_superblock`] and [`recover`]. Everything here is
//! deterministic and unit-tested with hand-built byte layouts. The decision table is
//! documented in `docs/storage-format.md` and mirrored by [`decide`].

use crate::entry::View;
use std::collections::BTreeSet;

use crate::entry::{Checksum, Entry, Header, HeaderError, HEADER_SIZE};

use super::format::{verify_checkpoint, Superblock, SuperblockError, SUPERBLOCK_SIZE};

/// What was read for one WAL slot. `None` means the read failed (e.g. a latent sector error):
/// it is treated exactly like corrupt content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotRead {
    /// The 128-byte redundant header from the headers ring.
    pub header: Option<Vec<u8>>,
    /// Bytes from the start of the prepare slot: at least the entry header, and the body if
    /// the header declared one that fits the slot.
    pub prepare: Option<Vec<u8>>,
}

/// The redundant header copy of a slot, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderCopy {
    /// All zeros: never written.
    Blank,
    /// Unreadable, torn or rotten.
    Corrupt,
    /// A valid header that does not belong here (wrong slot for its op, or another cluster).
    Misdirected(Header),
    /// A valid header for this slot (of some op ≡ slot mod slot_count).
    Valid(Header),
}

/// The prepare (header + body) of a slot, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrepareCopy {
    Blank,
    Corrupt,
    Misdirected(Header),
    /// The header verifies and belongs here, the body does not verify (torn or rotten).
    BodyCorrupt(Header),
    Valid(Entry),
}

/// Both copies of one slot, classified without knowledge of the log window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotEvidence {
    pub header: HeaderCopy,
    pub prepare: PrepareCopy,
}

/// Whether a verified header may live in `slot` of this cluster (the misdirected-write check).
pub fn belongs(header: &Header, slot: usize, slot_count: u32, cluster: u64) -> bool {
    header.cluster == cluster && header.op % slot_count as u64 == slot as u64
}

/// Classify both copies of `slot` (pure).
pub fn classify(
    slot: usize,
    slot_count: u32,
    slot_size: u32,
    cluster: u64,
    read: &SlotRead,
) -> SlotEvidence {
    let header = match read.header.as_deref().map(Header::decode) {
        None => HeaderCopy::Corrupt,
        Some(Err(HeaderError::Blank)) => HeaderCopy::Blank,
        Some(Err(HeaderError::Corrupt)) => HeaderCopy::Corrupt,
        Some(Ok(h)) if belongs(&h, slot, slot_count, cluster) => HeaderCopy::Valid(h),
        Some(Ok(h)) => HeaderCopy::Misdirected(h),
    };
    let prepare = match read.prepare.as_deref() {
        None => PrepareCopy::Corrupt,
        Some(bytes) if bytes.len() < HEADER_SIZE => PrepareCopy::Corrupt,
        Some(bytes) => match Header::decode(&bytes[..HEADER_SIZE]) {
            Err(HeaderError::Blank) => PrepareCopy::Blank,
            Err(HeaderError::Corrupt) => PrepareCopy::Corrupt,
            Ok(h) if HEADER_SIZE + h.size as usize > slot_size as usize => PrepareCopy::Corrupt,
            Ok(h) if !belongs(&h, slot, slot_count, cluster) => PrepareCopy::Misdirected(h),
            Ok(h) => match Entry::decode(bytes) {
                Ok(entry) if entry.header == h => PrepareCopy::Valid(entry),
                // Mutation `body-checksum-unchecked` (simulator): the body is taken unverified.
                #[cfg(madsim)]
                _ if bytes.len() >= HEADER_SIZE + h.size as usize
                    && crate::mutation::is(crate::mutation::Mutation::BodyChecksumUnchecked) =>
                {
                    crate::mutation::bit(crate::mutation::Mutation::BodyChecksumUnchecked);
                    let body = bytes[HEADER_SIZE..HEADER_SIZE + h.size as usize].to_vec();
                    PrepareCopy::Valid(Entry { header: h, body })
                }
                _ => PrepareCopy::BodyCorrupt(h),
            },
        },
    };
    SlotEvidence { header, prepare }
}

/// The part of the superblock that recovery decisions depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub checkpoint_op: u64,
    pub slot_count: u32,
    pub log_view: View,
    pub log_view_head: u64,
}

impl Window {
    pub fn from_superblock(sb: &Superblock) -> Window {
        Window {
            checkpoint_op: sb.checkpoint.op,
            slot_count: sb.config.slot_count,
            log_view: sb.log_view,
            log_view_head: sb.log_view_head,
        }
    }

    /// The first op the WAL may hold.
    pub fn first(&self) -> u64 {
        self.checkpoint_op + 1
    }

    /// The last op the WAL may hold.
    pub fn last(&self) -> u64 {
        self.checkpoint_op + self.slot_count as u64
    }

    /// Whether a verified header is part of the current log: inside the window, and not part
    /// of a suffix truncated by a view change (op above `log_view_head` with an older view).
    pub fn current(&self, h: &Header) -> bool {
        let in_view = h.op <= self.log_view_head || h.view >= self.log_view;
        // Mutation `recovery-ignores-log-view-head` (simulator).
        #[cfg(madsim)]
        let in_view = in_view || {
            use crate::mutation::{self, Mutation};
            let on = mutation::is(Mutation::RecoveryIgnoresLogViewHead);
            if on {
                mutation::bit(Mutation::RecoveryIgnoresLogViewHead);
            }
            on
        };
        h.op >= self.first() && h.op <= self.last() && in_view
    }

    /// Whether a header claims an op beyond the window (the slot was reused past a checkpoint
    /// this superblock does not know: the entry this window expects there is gone).
    pub fn future(&self, h: &Header) -> bool {
        h.op > self.last()
    }
}

/// What recovery concludes about op `op` from its slot's evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotDecision {
    /// The prepare holds a verified entry for this op. `header_ok` is false if the redundant
    /// header copy must be rewritten.
    Intact { entry: Entry, header_ok: bool },
    /// The op was durably written (its redundant header, written only after its prepare was
    /// synced, says so) but no verified prepare holds it: repair from a peer. `header` is the
    /// verified header when known (its checksum verifies the repair).
    Faulty { header: Option<Header> },
    /// The prepare is damaged (corrupt, torn, misdirected over) and nothing proves the op was
    /// ever durable: a torn tail if nothing newer is durable, otherwise faulty.
    Damaged,
    /// Cleanly never written for this op (blank, or an older lap / truncated suffix).
    Absent,
}

/// Whether the slot's redundant header copy proves that no entry of the current window was
/// ever durably completed in it: the copy is blank or a verified header of an older lap (or
/// of a truncated suffix). A redundant header is written only after its prepare is synced, and
/// a fault turns a header into a corrupt or misdirected copy, never into a verified stale one;
/// so with at most one fault per entry (the storage fault model), an op whose slot says this
/// was never acknowledged by this replica — whatever its prepare copy holds.
pub fn header_never_written(evidence: &SlotEvidence, window: &Window) -> bool {
    match &evidence.header {
        HeaderCopy::Blank => true,
        HeaderCopy::Valid(h) => !window.current(h) && !window.future(h),
        HeaderCopy::Corrupt | HeaderCopy::Misdirected(_) => false,
    }
}

/// The decision table for one op (pure). See `docs/storage-format.md`.
pub fn decide(op: u64, evidence: &SlotEvidence, window: &Window) -> SlotDecision {
    let header_names = match &evidence.header {
        HeaderCopy::Valid(h) if h.op == op && window.current(h) => Some(*h),
        _ => None,
    };
    let future = matches!(&evidence.header, HeaderCopy::Valid(h) if window.future(h))
        || matches!(&evidence.prepare,
            PrepareCopy::Valid(Entry { header: h, .. }) | PrepareCopy::BodyCorrupt(h)
                if window.future(h));
    if let PrepareCopy::Valid(entry) = &evidence.prepare {
        if entry.header.op == op && window.current(&entry.header) {
            return match header_names {
                Some(h) if h.checksum == entry.header.checksum => SlotDecision::Intact {
                    entry: entry.clone(),
                    header_ok: true,
                },
                // The header copy names a newer version of this op: its prepare was lost.
                Some(h) if h.view > entry.header.view => SlotDecision::Faulty { header: Some(h) },
                _ => SlotDecision::Intact {
                    entry: entry.clone(),
                    header_ok: false,
                },
            };
        }
    }
    if let Some(h) = header_names {
        return SlotDecision::Faulty { header: Some(h) };
    }
    if future {
        return SlotDecision::Faulty { header: None };
    }
    let stale = |h: &Header| !window.current(h) && !window.future(h);
    let header_clean = header_never_written(evidence, window);
    let prepare_clean = match &evidence.prepare {
        PrepareCopy::Blank => true,
        PrepareCopy::Valid(e) => stale(&e.header),
        _ => false,
    };
    if header_clean && prepare_clean {
        SlotDecision::Absent
    } else {
        SlotDecision::Damaged
    }
}

/// The checkpoint the superblock references, as loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointState {
    /// No checkpoint yet (op 0: the state is empty).
    Empty,
    /// The verified blob.
    Loaded(Vec<u8>),
    /// Referenced by the durable superblock but unreadable: state transfer from a peer.
    Faulty,
}

/// Everything recovery concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// The newest valid superblock.
    pub superblock: Superblock,
    /// The checkpoint it references.
    pub checkpoint: CheckpointState,
    /// The longest run of verified entries from `checkpoint.op + 1` whose `parent` links
    /// verify, starting from the checkpoint's entry checksum.
    pub log: Vec<Entry>,
    /// Ops that may be committed but are unreadable here (or are holes below the durable head):
    /// repair them from peers. Never reported as blank.
    pub faulty: Vec<u64>,
    /// The ops of `faulty` that this replica provably never made durable (Damaged or Absent,
    /// and the redundant header copy blank or stale: [`header_never_written`]), so never
    /// acknowledged: the view change may count them as nacks (`docs/protocol.md`, "Nacks").
    pub never_written: Vec<u64>,
    /// Verified entries after the first faulty op, in op order; consecutive ones link (the run
    /// stops at the first break). Not yet part of the log: the caller repairs the holes and
    /// accepts these only if the repaired entries link to them (`after_gap[0].parent` is the
    /// checksum the entry before it must have).
    pub after_gap: Vec<Entry>,
    /// Ops whose prepares were torn while in flight at the crash (never acknowledged):
    /// discarded, together with everything after the first of them.
    pub torn: Vec<u64>,
    /// The highest op named by any verified, current header (redundant copy or prepare).
    pub head_op: u64,
    /// Slots in which a misdirected write was found (in either copy).
    pub misdirected_slots: Vec<usize>,
    /// Slots whose redundant header must be rewritten (entries returned in `log` or
    /// `after_gap` whose header copy is stale, blank or corrupt).
    pub header_repairs: Vec<usize>,
}

/// What one start's storage recovery reported, as the node publishes it for the VOPR's
/// checkers (`inspect::recovery_report`): the durable view and checkpoint of the superblock,
/// the ops recovered intact and the ops reported faulty (written, unreadable).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The durable view (superblock).
    pub view: View,
    /// The checkpoint the superblock references.
    pub checkpoint_op: u64,
    /// Ops recovered intact.
    pub present: BTreeSet<u64>,
    /// Ops reported faulty (written, unreadable).
    pub faulty: BTreeSet<u64>,
}

impl Recovery {
    /// The op of the last entry of `log` (the checkpoint op if the log is empty).
    pub fn log_head(&self) -> u64 {
        self.log
            .last()
            .map_or(self.superblock.checkpoint.op, |e| e.header.op)
    }
}

/// Pick the newest valid superblock copy (pure). Returns it and whether every copy already
/// holds exactly it (if not, the engine rewrites all copies).
pub fn select_superblock(copies: &[Option<Vec<u8>>]) -> Option<(Superblock, bool)> {
    let decoded: Vec<Result<Superblock, SuperblockError>> = copies
        .iter()
        .enumerate()
        .map(|(i, c)| match c {
            Some(bytes) if bytes.len() == SUPERBLOCK_SIZE => Superblock::decode(bytes, i as u8),
            _ => Err(SuperblockError::Corrupt),
        })
        .collect();
    let newest = decoded
        .iter()
        .filter_map(|d| d.as_ref().ok())
        .max_by_key(|sb| sb.sequence)
        .copied()?;
    let all = decoded.iter().all(|d| d.as_ref().ok() == Some(&newest));
    Some((newest, all))
}

/// Load the checkpoint `sb` references from `bytes` (pure; `None` = read failed).
pub fn load_checkpoint(sb: &Superblock, bytes: Option<&[u8]>) -> CheckpointState {
    if sb.checkpoint.offset == 0 {
        return CheckpointState::Empty;
    }
    match bytes.and_then(|b| verify_checkpoint(b, &sb.identity, &sb.checkpoint)) {
        Some(blob) => CheckpointState::Loaded(blob),
        None => CheckpointState::Faulty,
    }
}

/// Rebuild the log from what was read (pure). `slots[i]` is what was read for slot `i`.
pub fn recover(
    superblock: Superblock,
    checkpoint: CheckpointState,
    slots: &[SlotRead],
) -> Recovery {
    let config = superblock.config;
    let cluster = superblock.identity.cluster;
    let window = Window::from_superblock(&superblock);
    let n = config.slot_count as u64;
    let evidence: Vec<SlotEvidence> = (0..config.slot_count as usize)
        .map(|slot| {
            let unread = SlotRead::default();
            let read = slots.get(slot).unwrap_or(&unread);
            classify(slot, config.slot_count, config.slot_size, cluster, read)
        })
        .collect();

    let mut misdirected_slots = Vec::new();
    let mut head_op = superblock.checkpoint.op;
    // Highest op proven durable: ops up to `log_view_head` were synced before the superblock
    // was written, and a redundant header is written only after its prepare was synced.
    let mut durable_max = superblock.log_view_head;
    for (slot, ev) in evidence.iter().enumerate() {
        if matches!(ev.header, HeaderCopy::Misdirected(_))
            || matches!(ev.prepare, PrepareCopy::Misdirected(_))
        {
            misdirected_slots.push(slot);
        }
        if let HeaderCopy::Valid(h) = &ev.header {
            if window.current(h) {
                durable_max = durable_max.max(h.op);
                head_op = head_op.max(h.op);
            } else if window.future(h) {
                durable_max = window.last();
            }
        }
        match &ev.prepare {
            PrepareCopy::Valid(Entry { header: h, .. }) | PrepareCopy::BodyCorrupt(h)
                if window.current(h) =>
            {
                head_op = head_op.max(h.op);
            }
            _ => {}
        }
    }

    let mut log = Vec::new();
    let mut faulty = Vec::new();
    let mut never_written = Vec::new();
    let mut after_gap: Vec<Entry> = Vec::new();
    let mut torn = Vec::new();
    let mut header_repairs = Vec::new();
    let mut parent = superblock.checkpoint.entry_checksum;
    // `None` while still extending `log`; `Some(expected parent)` once past a hole.
    let mut gap: Option<Option<Checksum>> = None;
    let mut stopped_at = None;

    for op in window.first()..=window.last() {
        let slot = (op % n) as usize;
        let decision = decide(op, &evidence[slot], &window);
        // Mutations (simulator only): an op that is faulty (damaged or unreadable, and proven
        // durable) is either taken for a torn tail (`recovery-truncates-at-bad-checksum`: it and
        // everything after it dropped) or reported as blank (`corrupt-as-blank`: neither in the
        // log nor faulty; the scan goes on past it).
        #[cfg(madsim)]
        {
            use crate::mutation::{self, Mutation};
            let is_faulty = match decision {
                SlotDecision::Faulty { .. } => true,
                SlotDecision::Damaged | SlotDecision::Absent => op <= durable_max,
                SlotDecision::Intact { .. } => false,
            };
            let corrupt = is_faulty && !matches!(decision, SlotDecision::Absent);
            if corrupt && mutation::is(Mutation::RecoveryTruncatesAtBadChecksum) {
                mutation::bit(Mutation::RecoveryTruncatesAtBadChecksum);
                torn.push(op);
                stopped_at = Some(op);
                break;
            }
            if corrupt && mutation::is(Mutation::CorruptAsBlank) {
                mutation::bit(Mutation::CorruptAsBlank);
                gap = Some(None);
                continue;
            }
        }
        match decision {
            SlotDecision::Intact { entry, header_ok } => {
                let links = match gap {
                    None => entry.header.parent == parent,
                    Some(None) => true,
                    Some(Some(p)) => p == entry.header.parent,
                };
                if !links {
                    // A verified entry of a superseded history: the log ends here.
                    stopped_at = Some(op);
                    break;
                }
                if !header_ok {
                    header_repairs.push(slot);
                }
                match gap {
                    None => {
                        parent = entry.checksum();
                        log.push(entry);
                    }
                    Some(_) => {
                        gap = Some(Some(entry.checksum()));
                        after_gap.push(entry);
                    }
                }
            }
            SlotDecision::Faulty { .. } => {
                // The header copy may be a stale version of this op (its newer write lost),
                // so it does not decide which entries after the hole belong: the repaired
                // entry's checksum must equal `after_gap[0].parent` (checked by the caller).
                faulty.push(op);
                gap = Some(None);
            }
            SlotDecision::Damaged | SlotDecision::Absent if op <= durable_max => {
                faulty.push(op);
                if header_never_written(&evidence[slot], &window) {
                    never_written.push(op);
                }
                gap = Some(None);
            }
            SlotDecision::Damaged => {
                // The torn-tail rule: damaged, and nothing at or after it was ever durable.
                torn.push(op);
                stopped_at = Some(op);
                break;
            }
            SlotDecision::Absent => {
                stopped_at = Some(op);
                break;
            }
        }
    }
    if let Some(stop) = stopped_at {
        for op in stop + 1..=window.last() {
            if decide(op, &evidence[(op % n) as usize], &window) == SlotDecision::Damaged {
                torn.push(op);
            }
        }
    }

    Recovery {
        superblock,
        checkpoint,
        log,
        faulty,
        never_written,
        after_gap,
        torn,
        head_op,
        misdirected_slots,
        header_repairs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{EntryFields, Operation};
    use crate::storage::format::{CheckpointRef, Identity, StorageConfig};

    const CLUSTER: u64 = 5;
    const N: u32 = 8;
    const SLOT: u32 = 1024;

    fn sb(checkpoint_op: u64, entry_checksum: Checksum, log_view: View, head: u64) -> Superblock {
        Superblock {
            sequence: 1,
            identity: Identity {
                cluster: CLUSTER,
                replica: 0,
                replica_count: 1,
            },
            config: StorageConfig {
                slot_count: N,
                slot_size: SLOT,
            },
            view: log_view,
            log_view,
            log_view_head: head,
            checkpoint: CheckpointRef {
                op: checkpoint_op,
                entry_checksum,
                offset: 0,
                size: 0,
                checksum: 0,
            },
        }
    }

    fn entry(op: u64, parent: Checksum, view: View, body: &[u8]) -> Entry {
        Entry::new(
            EntryFields {
                cluster: CLUSTER,
                replica: 0,
                view,
                op,
                commit: 0,
                parent,
                client: 1,
                request: op,
                operation: Operation::Request,
                timestamp: 0,
            },
            body.to_vec(),
        )
    }

    /// A chain of entries 1..=count in view `view`.
    fn chain(count: u64, view: View) -> Vec<Entry> {
        let mut parent = Entry::root(CLUSTER).checksum();
        (1..=count)
            .map(|op| {
                let e = entry(op, parent, view, format!("body {op}").as_bytes());
                parent = e.checksum();
                e
            })
            .collect()
    }

    /// A disk where each entry is fully written (prepare + header copy).
    fn disk(entries: &[Entry]) -> Vec<SlotRead> {
        let mut slots = vec![
            SlotRead {
                header: Some(vec![0; HEADER_SIZE]),
                prepare: Some(vec![0; 512]),
            };
            N as usize
        ];
        for e in entries {
            let slot = (e.header.op % N as u64) as usize;
            slots[slot].header = Some(e.header.encode().to_vec());
            slots[slot].prepare = Some(e.encode());
        }
        slots
    }

    fn root() -> Checksum {
        Entry::root(CLUSTER).checksum()
    }

    fn ops(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.header.op).collect()
    }

    fn rot(bytes: &mut Option<Vec<u8>>, at: usize) {
        if let Some(b) = bytes {
            b[at] ^= 0x10;
        }
    }

    /// Goal: each row of the per-slot decision table, from hand-built copies.
    #[test]
    fn decision_table() {
        let e = chain(3, 1);
        let w = Window::from_superblock(&sb(0, root(), 1, 0));
        let good = |e: &Entry| SlotRead {
            header: Some(e.header.encode().to_vec()),
            prepare: Some(e.encode()),
        };
        let classify3 = |r: &SlotRead| classify(3, N, SLOT, CLUSTER, r);
        let blank_h = Some(vec![0u8; HEADER_SIZE]);
        let blank_p = Some(vec![0u8; 512]);
        let mut torn_body = e[2].encode();
        let last = torn_body.len() - 1;
        torn_body[last] ^= 1;
        let mut corrupt_header = e[2].header.encode().to_vec();
        corrupt_header[40] ^= 1;
        let newer = entry(3, e[1].checksum(), 2, b"newer version");
        let misplaced = entry(4, e[2].checksum(), 1, b"op 4");
        let other_cluster = Entry::new(
            EntryFields {
                cluster: CLUSTER + 1,
                ..EntryFields {
                    cluster: 0,
                    replica: 0,
                    view: 1,
                    op: 3,
                    commit: 0,
                    parent: 0,
                    client: 0,
                    request: 0,
                    operation: Operation::Request,
                    timestamp: 0,
                }
            },
            vec![1, 2, 3],
        );
        let stale_lap = entry(3 + N as u64, 0, 1, b"future lap");
        let old = e[2].clone();

        type Row = (&'static str, SlotRead, SlotDecision);
        let rows: Vec<Row> = vec![
            (
                "both intact and equal",
                good(&e[2]),
                SlotDecision::Intact {
                    entry: e[2].clone(),
                    header_ok: true,
                },
            ),
            (
                "prepare intact, header copy blank (header write lost)",
                SlotRead {
                    header: blank_h.clone(),
                    prepare: Some(e[2].encode()),
                },
                SlotDecision::Intact {
                    entry: e[2].clone(),
                    header_ok: false,
                },
            ),
            (
                "prepare intact, header copy corrupt",
                SlotRead {
                    header: Some(corrupt_header.clone()),
                    prepare: Some(e[2].encode()),
                },
                SlotDecision::Intact {
                    entry: e[2].clone(),
                    header_ok: false,
                },
            ),
            (
                "prepare intact, header copy unreadable",
                SlotRead {
                    header: None,
                    prepare: Some(e[2].encode()),
                },
                SlotDecision::Intact {
                    entry: e[2].clone(),
                    header_ok: false,
                },
            ),
            (
                "prepare body torn, header copy valid: faulty",
                SlotRead {
                    header: Some(e[2].header.encode().to_vec()),
                    prepare: Some(torn_body.clone()),
                },
                SlotDecision::Faulty {
                    header: Some(e[2].header),
                },
            ),
            (
                "prepare unreadable, header copy valid: faulty",
                SlotRead {
                    header: Some(e[2].header.encode().to_vec()),
                    prepare: None,
                },
                SlotDecision::Faulty {
                    header: Some(e[2].header),
                },
            ),
            (
                "prepare blank, header copy valid (prepare misdirected away): faulty",
                SlotRead {
                    header: Some(e[2].header.encode().to_vec()),
                    prepare: blank_p.clone(),
                },
                SlotDecision::Faulty {
                    header: Some(e[2].header),
                },
            ),
            (
                "header copy names a newer view of the op than the prepare: faulty",
                SlotRead {
                    header: Some(newer.header.encode().to_vec()),
                    prepare: Some(old.encode()),
                },
                SlotDecision::Faulty {
                    header: Some(newer.header),
                },
            ),
            (
                "prepare newer than header copy: intact",
                SlotRead {
                    header: Some(old.header.encode().to_vec()),
                    prepare: Some(newer.encode()),
                },
                SlotDecision::Intact {
                    entry: newer.clone(),
                    header_ok: false,
                },
            ),
            (
                "prepare body torn, header copy blank: damaged",
                SlotRead {
                    header: blank_h.clone(),
                    prepare: Some(torn_body.clone()),
                },
                SlotDecision::Damaged,
            ),
            (
                "both corrupt: damaged",
                SlotRead {
                    header: Some(corrupt_header.clone()),
                    prepare: Some(vec![7; 512]),
                },
                SlotDecision::Damaged,
            ),
            (
                "prepare misdirected here (wrong op for slot), header blank: damaged",
                SlotRead {
                    header: blank_h.clone(),
                    prepare: Some(misplaced.encode()),
                },
                SlotDecision::Damaged,
            ),
            (
                "prepare from another cluster: damaged",
                SlotRead {
                    header: blank_h.clone(),
                    prepare: Some(other_cluster.encode()),
                },
                SlotDecision::Damaged,
            ),
            (
                "header copy misdirected here, prepare intact: intact",
                SlotRead {
                    header: Some(misplaced.header.encode().to_vec()),
                    prepare: Some(e[2].encode()),
                },
                SlotDecision::Intact {
                    entry: e[2].clone(),
                    header_ok: false,
                },
            ),
            (
                "both blank: absent",
                SlotRead {
                    header: blank_h.clone(),
                    prepare: blank_p.clone(),
                },
                SlotDecision::Absent,
            ),
            (
                "header copy from a future lap: faulty",
                SlotRead {
                    header: Some(stale_lap.header.encode().to_vec()),
                    prepare: blank_p.clone(),
                },
                SlotDecision::Faulty { header: None },
            ),
        ];
        for (name, read, want) in rows {
            assert_eq!(decide(3, &classify3(&read), &w), want, "{name}");
        }

        // An older lap in both copies is absent for the op the window expects there.
        let w_lap = Window::from_superblock(&sb(8, 0, 1, 8));
        let lap = classify3(&good(&e[2]));
        assert_eq!(decide(11, &lap, &w_lap), SlotDecision::Absent, "older lap");

        // A truncated suffix (op above log_view_head, view below log_view) is absent.
        let w_trunc = Window::from_superblock(&sb(0, root(), 2, 2));
        assert_eq!(
            decide(3, &classify3(&good(&e[2])), &w_trunc),
            SlotDecision::Absent,
            "truncated suffix"
        );
        // ... but an entry of the new view above the head is current.
        assert!(matches!(
            decide(3, &classify3(&good(&newer)), &w_trunc),
            SlotDecision::Intact { .. }
        ));
    }

    /// Goal: the log-level outcomes: clean log, torn tail, mid-log corruption, holes, chain
    /// breaks, misdirection, truncation.
    #[test]
    fn recover_table() {
        let e = chain(6, 1);
        struct Case {
            name: &'static str,
            slots: Vec<SlotRead>,
            superblock: Superblock,
            log: Vec<u64>,
            faulty: Vec<u64>,
            after_gap: Vec<u64>,
            torn: Vec<u64>,
        }
        let base = sb(0, root(), 1, 0);
        let mut cases = Vec::new();

        cases.push(Case {
            name: "empty store",
            slots: disk(&[]),
            superblock: base,
            log: vec![],
            faulty: vec![],
            after_gap: vec![],
            torn: vec![],
        });
        cases.push(Case {
            name: "clean log",
            slots: disk(&e),
            superblock: base,
            log: vec![1, 2, 3, 4, 5, 6],
            faulty: vec![],
            after_gap: vec![],
            torn: vec![],
        });

        // Torn tail: last prepare torn in flight, its header copy never written.
        let mut s = disk(&e[..5]);
        let mut p = e[5].encode();
        let at = p.len() - 1;
        p[at] ^= 0xff;
        s[6].prepare = Some(p);
        cases.push(Case {
            name: "torn tail",
            slots: s,
            superblock: base,
            log: vec![1, 2, 3, 4, 5],
            faulty: vec![],
            after_gap: vec![],
            torn: vec![6],
        });

        // Same torn prepare, but its header copy made it: the op was durable → faulty.
        let mut s = disk(&e);
        rot(&mut s[6].prepare, 130);
        cases.push(Case {
            name: "corrupt head with valid header copy is faulty, not torn",
            slots: s,
            superblock: base,
            log: vec![1, 2, 3, 4, 5],
            faulty: vec![6],
            after_gap: vec![],
            torn: vec![],
        });

        // Mid-log rot (both copies of op 3 damaged) with newer durable headers → faulty.
        let mut s = disk(&e);
        rot(&mut s[3].prepare, 130);
        rot(&mut s[3].header, 20);
        cases.push(Case {
            name: "mid-log corruption in both copies is faulty",
            slots: s,
            superblock: base,
            log: vec![1, 2],
            faulty: vec![3],
            after_gap: vec![4, 5, 6],
            torn: vec![],
        });

        // Latent error on prepare 2.
        let mut s = disk(&e);
        s[2].prepare = None;
        cases.push(Case {
            name: "latent read error mid-log",
            slots: s,
            superblock: base,
            log: vec![1],
            faulty: vec![2],
            after_gap: vec![3, 4, 5, 6],
            torn: vec![],
        });

        // Prepare 4 misdirected away (slot keeps blank), header copy landed: faulty.
        let mut s = disk(&e);
        s[4].prepare = Some(vec![0; 512]);
        cases.push(Case {
            name: "lost prepare with durable header copy",
            slots: s,
            superblock: base,
            log: vec![1, 2, 3],
            faulty: vec![4],
            after_gap: vec![5, 6],
            torn: vec![],
        });

        // Prepare 5 landed in slot 2's place (misdirected write over op 2).
        let mut s = disk(&e);
        s[2].prepare = Some(e[4].encode());
        cases.push(Case {
            name: "misdirected prepare over op 2",
            slots: s,
            superblock: base,
            log: vec![1],
            faulty: vec![2],
            after_gap: vec![3, 4, 5, 6],
            torn: vec![],
        });

        // A hole below the durable head (both copies blank, newer header durable).
        let mut s = disk(&e);
        s[3] = SlotRead {
            header: Some(vec![0; HEADER_SIZE]),
            prepare: Some(vec![0; 512]),
        };
        cases.push(Case {
            name: "hole below durable head",
            slots: s,
            superblock: base,
            log: vec![1, 2],
            faulty: vec![3],
            after_gap: vec![4, 5, 6],
            torn: vec![],
        });

        // In-flight batch: 5 torn, 6 intact (prepare only): both discarded after the tear.
        let mut s = disk(&e[..4]);
        let mut p = e[4].encode();
        p[0] ^= 1;
        s[5].prepare = Some(p);
        s[6].prepare = Some(e[5].encode());
        cases.push(Case {
            name: "torn in flight batch",
            slots: s,
            superblock: base,
            log: vec![1, 2, 3, 4],
            faulty: vec![],
            after_gap: vec![],
            torn: vec![5],
        });

        // Chain break: op 4 from another history (same op, different parent).
        let mut s = disk(&e);
        let foreign = entry(4, 12345, 1, b"other history");
        s[4] = SlotRead {
            header: Some(foreign.header.encode().to_vec()),
            prepare: Some(foreign.encode()),
        };
        cases.push(Case {
            name: "chain break ends the log",
            slots: s,
            superblock: base,
            log: vec![1, 2, 3],
            faulty: vec![],
            after_gap: vec![],
            torn: vec![],
        });

        // Truncated suffix of view 1 after a view change to 2 at head 3.
        cases.push(Case {
            name: "truncated suffix not resurrected",
            slots: disk(&e),
            superblock: sb(0, root(), 2, 3),
            log: vec![1, 2, 3],
            faulty: vec![],
            after_gap: vec![],
            torn: vec![],
        });

        // Op at the superblock's durable head is blank: faulty, not absent.
        cases.push(Case {
            name: "superblock head proves durability",
            slots: disk(&e[..2]),
            superblock: sb(0, root(), 1, 3),
            log: vec![1, 2],
            faulty: vec![3],
            after_gap: vec![],
            torn: vec![],
        });

        // Checkpoint at 4: the log resumes from entry 4's checksum; ops ≤ 4 are old laps.
        let mut long = chain(12, 1);
        let s = disk(&long);
        let cp = sb(4, long[3].checksum(), 1, 0);
        cases.push(Case {
            name: "after checkpoint and wrap",
            slots: s,
            superblock: cp,
            log: vec![5, 6, 7, 8, 9, 10, 11, 12],
            faulty: vec![],
            after_gap: vec![],
            torn: vec![],
        });
        long.truncate(9);
        cases.push(Case {
            name: "after checkpoint, partially wrapped",
            slots: disk(&long),
            superblock: cp,
            log: vec![5, 6, 7, 8, 9],
            faulty: vec![],
            after_gap: vec![],
            torn: vec![],
        });

        for c in cases {
            let r = recover(c.superblock, CheckpointState::Empty, &c.slots);
            assert_eq!(ops(&r.log), c.log, "{}: log", c.name);
            assert_eq!(r.faulty, c.faulty, "{}: faulty", c.name);
            assert_eq!(ops(&r.after_gap), c.after_gap, "{}: after_gap", c.name);
            assert_eq!(r.torn, c.torn, "{}: torn", c.name);
            for e in r.log.iter().chain(&r.after_gap) {
                assert!(e.is_valid(), "{}", c.name);
            }
        }
    }

    /// Goal: superblock selection picks the newest valid copy and survives torn/rotten ones.
    #[test]
    fn superblock_selection() {
        let old = sb(0, root(), 1, 0);
        let new = Superblock {
            sequence: 2,
            view: 3,
            ..old
        };
        let enc = |s: &Superblock, i: u8| Some(s.encode(i).to_vec());
        // Update interrupted after copy 1.
        let copies = vec![enc(&new, 0), enc(&new, 1), enc(&old, 2), enc(&old, 3)];
        assert_eq!(select_superblock(&copies), Some((new, false)));
        // Newest copy torn: older one wins.
        let mut torn = new.encode(0).to_vec();
        torn[300] = 9;
        let copies = vec![Some(torn), enc(&old, 1), enc(&old, 2), enc(&old, 3)];
        assert_eq!(select_superblock(&copies), Some((old, false)));
        // Misdirected copy (copy 0's bytes at copy 2) is ignored.
        let copies = vec![enc(&new, 0), enc(&new, 1), enc(&new, 0), None];
        assert_eq!(select_superblock(&copies), Some((new, false)));
        let copies = vec![enc(&new, 0), enc(&new, 1), enc(&new, 2), enc(&new, 3)];
        assert_eq!(select_superblock(&copies), Some((new, true)));
        assert_eq!(
            select_superblock(&[None, None, Some(vec![0; 512]), None]),
            None
        );
    }
}
