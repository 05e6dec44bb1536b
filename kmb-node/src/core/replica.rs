//! The replica: Viewstamped Replication Revisited made durable the TigerBeetle way.
//!
//! Pure: [`Replica::step`] handles one [`Input`] and returns the [`Effect`]s to execute in
//! order. Durability is part of the effects: the replica never acts on a write (PrepareOk,
//! counting itself, DoViewChange, StartView, reusing WAL space) before the glue has reported
//! it durable with [`Input::Synced`], [`Input::SuperblockSynced`] or
//! [`Input::CheckpointDone`]. See `docs/protocol.md`.
//!
//! The log lives in memory as `slots`: for every op after the durable checkpoint whose header
//! is known, the header, and the body if present. A slot without a body, or an op without a
//! slot, is repaired from peers; a repaired header or body is accepted only if it matches the
//! hash chain (the successor's `parent`, or the header installed from the primary).

use std::collections::{BTreeMap, BTreeSet};

use xxhash_rust::xxh3::xxh3_128;

use super::message::{Body, Message, HEADERS_MAX};
use super::snapshot::{self, ClientEntry, ClientTable, SNAPSHOT_SIZE_MAX};
use super::{CheckpointState, Config, DurableState, Effect, Input, Status};
use crate::entry::{Checksum, Entry, EntryFields, Header, Operation, BODY_SIZE_MAX};
use crate::kv::{self, KvState};

/// At most this many RequestPrepare repairs per round.
const REPAIR_BODIES_MAX: usize = 64;
/// At most this many header gaps asked about per round.
const REPAIR_GAPS_MAX: usize = 4;

#[derive(Clone, Debug)]
struct Slot {
    header: Header,
    body: Option<Vec<u8>>,
    /// The body is known durable in the local WAL.
    durable: bool,
}

#[derive(Clone, Debug)]
struct LogSummary {
    view: u32,
    log_view: u32,
    op: u64,
    op_checksum: Checksum,
    commit: u64,
    checkpoint_op: u64,
    headers: Vec<Header>,
    /// DoViewChange only (empty otherwise): per header, whether the sender holds its body
    /// intact and durably.
    bodies: Vec<bool>,
    /// DoViewChange only (`u64::MAX` otherwise: no claim): see [`Body::DoViewChange`].
    held_max: u64,
    /// DoViewChange only: see [`Body::DoViewChange`].
    never_written: Vec<u64>,
}

/// Why a log could not be installed.
enum InstallError {
    /// The message is malformed or contradicts committed state: dropped.
    Conflict,
    /// The head's header is not included (the sender's head is its checkpoint): state
    /// transfer is needed first.
    MissingHead,
}

/// One replica's protocol state. See the module docs.
pub struct Replica {
    config: Config,
    status: Status,
    halted: Option<String>,
    effects: Vec<Effect>,
    tick: u64,

    view: u32,
    /// The view whose log this replica has completely and durably installed (in memory;
    /// `superblock` says what is durable).
    log_view: u32,
    superblock: (u32, u32),
    superblock_inflight: Option<(u32, u32)>,

    checkpoint: CheckpointState,
    checkpoint_inflight: Option<CheckpointState>,
    /// The durable checkpoint is unreadable (`DurableState::checkpoint_faulty`): `checkpoint`
    /// holds only its op and checksum (the snapshot is a placeholder) and `kv`/`clients` are
    /// empty, not the state at `commit_min`, until a peer's checkpoint is accepted (then in
    /// `checkpoint_inflight`); cleared when that one is durable (`CheckpointDone`).
    checkpoint_faulty: bool,
    /// Rotates the peer asked for a checkpoint while `checkpoint_faulty`.
    state_transfer_peer: u8,
    /// The authoritative log being installed (chosen DVC, StartView, primary's
    /// RecoveryResponse) has its head at the sender's checkpoint, beyond this replica's log
    /// (`InstallError::MissingHead`): its (op, checksum), and for a StartView/RecoveryResponse
    /// the log to join. A StateTransfer of exactly that checkpoint is accepted in any status
    /// (it is verified by the authoritative head), then the install is retried.
    head_checkpoint_wanted: Option<(u64, Checksum)>,
    pending_join: Option<(u8, LogSummary)>,

    slots: BTreeMap<u64, Slot>,
    op: u64,
    commit_min: u64,
    commit_max: u64,
    kv: KvState,
    clients: ClientTable,

    /// Ops written since the last Sync request.
    dirty: BTreeSet<u64>,
    dirty_truncate: bool,
    /// The highest op this replica ever wrote a body for, or recovered from its disk (intact
    /// or faulty). Anything above it was never durable here, so never acknowledged.
    held_max: u64,
    /// Recovered-faulty ops that storage proves were never durable here (their redundant
    /// header copy was never written), removed once written.
    never_written: BTreeSet<u64>,
    /// A `TruncateLogAfter` was issued since the last superblock write that published it.
    /// Storage makes a truncation durable with the next superblock write and requires its
    /// `log_view` to exceed the view of every dropped entry (so recovery cannot resurrect the
    /// dropped suffix): until then the superblock is written only with `log_view >=
    /// install_view` (the view whose log, installed, dropped them).
    truncation_unpublished: bool,
    /// The view whose log this replica last installed (a StartView, RecoveryResponse or the
    /// chosen DoViewChange): once that log is complete and durable it may claim it as its
    /// `log_view`, even after moving on to a later view change (see
    /// [`Self::try_advance_log_view`]).
    install_view: u32,
    /// (op echoed, ops covered) of the outstanding Sync.
    sync_inflight: Option<(u64, BTreeSet<u64>)>,
    syncing_truncate: bool,

    /// Primary: highest op each replica acknowledged in this view.
    ack_op: Vec<u64>,
    /// Backup: the last op acknowledged in this view.
    acked_op: Option<u64>,

    svc_from: BTreeSet<u8>,
    dvcs: BTreeMap<u8, LogSummary>,
    dvc_sent: bool,
    vc_installed: bool,
    /// Primary-elect after the install: the chosen DVC's suffix headers (the canonical log the
    /// nack rule judges against).
    vc_headers: Vec<Header>,

    primary_contact_tick: u64,
    heartbeat_due: u64,
    prepare_due: u64,
    repair_due: u64,
    view_change_due: u64,
    resend_due: u64,
    state_transfer_due: u64,
    repair_inflight: BTreeSet<u64>,

    rng: u64,
    nonce: u64,
    recovery_replies: BTreeMap<u8, LogSummary>,

    commits: Vec<(u64, Checksum)>,
}

/// Slots with ops in `lo..=hi` (empty if `lo > hi`, where `BTreeMap::range` would panic).
fn span(
    slots: &BTreeMap<u64, Slot>,
    lo: u64,
    hi: u64,
) -> std::collections::btree_map::Range<'_, u64, Slot> {
    if lo > hi {
        slots.range(lo..lo)
    } else {
        slots.range(lo..=hi)
    }
}

/// Views and op numbers in messages are bounded far below overflow, so that no arithmetic on
/// them (`view + 1`, `op + 1`, `checkpoint + slot_count`) can overflow.
const VIEW_MAX: u32 = u32::MAX / 2;
const OP_MAX: u64 = 1 << 60;

fn numbers_in_range(body: &Body) -> bool {
    let headers_ok =
        |headers: &[Header]| headers.iter().all(|h| h.op < OP_MAX && h.view < VIEW_MAX);
    match body {
        Body::Prepare {
            view,
            commit,
            entry,
        } => *view < VIEW_MAX && *commit < OP_MAX && headers_ok(&[entry.header]),
        Body::PrepareOk { view, op, .. } => *view < VIEW_MAX && *op < OP_MAX,
        Body::Commit {
            view,
            commit,
            checkpoint_op,
        } => *view < VIEW_MAX && *commit < OP_MAX && *checkpoint_op < OP_MAX,
        Body::StartViewChange { view } | Body::RequestStartView { view } => *view < VIEW_MAX,
        Body::DoViewChange {
            view,
            op,
            commit,
            checkpoint_op,
            headers,
            ..
        }
        | Body::StartView {
            view,
            op,
            commit,
            checkpoint_op,
            headers,
            ..
        }
        | Body::RecoveryResponse {
            view,
            op,
            commit,
            checkpoint_op,
            headers,
            ..
        } => {
            *view < VIEW_MAX
                && *op < OP_MAX
                && *commit < OP_MAX
                && *checkpoint_op < OP_MAX
                && headers_ok(headers)
        }
        Body::Recovery { .. } => true,
        Body::RequestStateTransfer { op_min } => *op_min < OP_MAX,
        Body::RequestPrepare { op, .. } => *op < OP_MAX,
        Body::RequestHeaders { op_min, op_max } => *op_min < OP_MAX && *op_max < OP_MAX,
        Body::Headers { headers } => headers_ok(headers),
        Body::StateTransfer {
            view,
            checkpoint_op,
            ..
        } => *view < VIEW_MAX && *checkpoint_op < OP_MAX,
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Replica {
    /// Build a replica from its configuration and what storage recovered. Start-up effects
    /// (e.g. Recovery messages) are returned by [`Replica::poll_effects`] or the first step.
    ///
    /// Panics if `config.validate()` fails (a programming error; validate first). An
    /// inconsistent `durable` state does not panic: the replica starts halted.
    pub fn new(config: Config, durable: DurableState) -> Replica {
        if let Err(e) = config.validate() {
            panic!("invalid config: {e}");
        }
        let n = config.replica_count as usize;
        let root = Entry::root(config.cluster);
        // An unreadable checkpoint still anchors the log (its op and entry checksum are in
        // the superblock); its state is missing until a peer's checkpoint replaces it.
        let (op, checksum) = durable.checkpoint_faulty.unwrap_or((0, root.checksum()));
        let checkpoint = durable.checkpoint.clone().unwrap_or(CheckpointState {
            op,
            checksum,
            snapshot: snapshot::empty(),
        });
        let mut rng = config.seed;
        let nonce = splitmix64(&mut rng);
        let mut replica = Replica {
            status: Status::Normal,
            halted: None,
            effects: Vec::new(),
            tick: 0,
            view: durable.view,
            log_view: durable.log_view,
            superblock: (durable.view, durable.log_view),
            superblock_inflight: None,
            checkpoint_inflight: None,
            checkpoint_faulty: durable.checkpoint_faulty.is_some(),
            state_transfer_peer: 0,
            head_checkpoint_wanted: None,
            pending_join: None,
            slots: BTreeMap::new(),
            op: checkpoint.op,
            commit_min: checkpoint.op,
            commit_max: checkpoint.op,
            kv: KvState::new(),
            clients: ClientTable::new(),
            dirty: BTreeSet::new(),
            held_max: 0,
            never_written: BTreeSet::new(),
            dirty_truncate: false,
            truncation_unpublished: false,
            install_view: durable.log_view,
            sync_inflight: None,
            syncing_truncate: false,
            ack_op: vec![0; n],
            acked_op: None,
            svc_from: BTreeSet::new(),
            dvcs: BTreeMap::new(),
            dvc_sent: false,
            vc_installed: false,
            vc_headers: Vec::new(),
            primary_contact_tick: 0,
            heartbeat_due: config.heartbeat_ticks,
            prepare_due: config.prepare_ticks,
            repair_due: config.repair_ticks,
            view_change_due: config.view_change_ticks,
            resend_due: config.heartbeat_ticks,
            state_transfer_due: 0,
            repair_inflight: BTreeSet::new(),
            rng,
            nonce,
            recovery_replies: BTreeMap::new(),
            commits: Vec::new(),
            checkpoint,
            config,
        };
        if let Err(reason) = replica.load(durable) {
            replica.halt(reason);
        }
        replica
    }

    fn load(&mut self, durable: DurableState) -> Result<(), String> {
        let cluster = self.config.cluster;
        if durable.log_view > durable.view {
            return Err("recovered log_view exceeds view".to_string());
        }
        if durable.checkpoint.is_some() && durable.checkpoint_faulty.is_some() {
            return Err("recovered checkpoint is both loaded and faulty".to_string());
        }
        let (kv, clients) = snapshot::decode(&self.checkpoint.snapshot)
            .map_err(|e| format!("checkpoint snapshot does not decode: {e}"))?;
        self.kv = kv;
        self.clients = clients;
        let cp = self.checkpoint.op;
        if cp == 0 {
            let root = Entry::root(cluster);
            self.slots.insert(
                0,
                Slot {
                    header: root.header,
                    body: Some(root.body),
                    durable: true,
                },
            );
        }
        for entry in durable.entries {
            let h = entry.header;
            if h.cluster != cluster || h.op <= cp || !entry.is_valid() {
                return Err(format!("recovered entry at op {} is invalid", h.op));
            }
            if self.slots.range(h.op..).next().is_some() {
                return Err("recovered entries are not ascending".to_string());
            }
            self.slots.insert(
                h.op,
                Slot {
                    header: h,
                    body: Some(entry.body),
                    durable: true,
                },
            );
            self.op = self.op.max(h.op);
        }
        let faulty: BTreeSet<u64> = durable.faulty.iter().copied().filter(|&o| o > cp).collect();
        for &o in &faulty {
            if self.slots.contains_key(&o) {
                return Err(format!("op {o} is both intact and faulty"));
            }
        }
        // Adjacent intact entries must chain.
        let mut prev: Option<(u64, Checksum)> = Some((cp, self.checkpoint.checksum));
        for (&o, slot) in &self.slots {
            if let Some((p, c)) = prev {
                if p + 1 == o && slot.header.parent != c {
                    return Err(format!("recovered log is not hash-chained at op {o}"));
                }
            }
            prev = Some((o, slot.header.checksum));
        }
        let head_faulty = faulty.last().is_some_and(|&f| f > self.op);
        if let Some(&f) = faulty.last() {
            self.op = self.op.max(f);
        }
        self.held_max = self.op.max(cp);
        self.never_written = durable
            .never_written
            .iter()
            .copied()
            .filter(|o| faulty.contains(o))
            .collect();
        // Replay what the contiguous prefix proves committed.
        let mut commit_max = cp;
        let mut o = cp + 1;
        while let Some(slot) = self.slots.get(&o) {
            commit_max = commit_max.max(slot.header.commit.min(o - 1));
            o += 1;
        }
        self.commit_max = commit_max;
        if !self.checkpoint_faulty {
            self.commit_ops_unchecked();
        }

        if self.checkpoint_faulty {
            // Protocol-Aware Recovery: the checkpoint is corrupt, not absent. No state to
            // apply to, serve or vote with: obtain a peer's checkpoint first (then recover
            // the log like a replica with a faulty head).
            if self.config.replica_count == 1 {
                return Err(format!(
                    "single replica with an unreadable checkpoint at op {}: no peer to \
                     repair it from",
                    self.checkpoint.op
                ));
            }
            self.status = Status::Recovering;
            self.request_checkpoint_repair();
        } else if !durable.restarted {
            self.status = Status::Normal;
        } else if head_faulty {
            if self.config.replica_count == 1 {
                return Err("single replica with an unreadable log head: cannot repair".into());
            }
            self.status = Status::Recovering;
            self.broadcast(Body::Recovery { nonce: self.nonce });
        } else if self.log_view < self.view
            || self.config.primary_of(self.view) == self.config.replica
        {
            // A restarted primary may have lost its unsynced pipeline: never resume as primary.
            let view = if self.log_view < self.view {
                self.view
            } else {
                self.view + 1
            };
            self.start_view_change(view);
        } else {
            self.status = Status::Normal;
            self.send_repairs();
        }
        self.progress();
        Ok(())
    }

    // ---------------------------------------------------------------- inspection

    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn view(&self) -> u32 {
        self.view
    }
    pub fn log_view(&self) -> u32 {
        self.log_view
    }
    pub fn status(&self) -> Status {
        self.status
    }
    /// The head op number.
    pub fn op(&self) -> u64 {
        self.op
    }
    /// The highest op applied here (0 while the state is missing: an unreadable checkpoint
    /// not yet replaced by a peer's, the state is the empty state of op 0).
    pub fn commit(&self) -> u64 {
        if self.state_missing() {
            0
        } else {
            self.commit_min
        }
    }
    /// The highest op known committed in the cluster.
    pub fn commit_max(&self) -> u64 {
        self.commit_max
    }
    /// The durable checkpoint op.
    pub fn checkpoint_op(&self) -> u64 {
        self.checkpoint.op
    }
    pub fn is_primary(&self) -> bool {
        self.status == Status::Normal && self.config.primary_of(self.view) == self.config.replica
    }
    pub fn halted(&self) -> Option<&str> {
        self.halted.as_deref()
    }
    /// Checksum of the entry at `op`, if known (header present, or the checkpoint's).
    pub fn log_checksum_at(&self, op: u64) -> Option<Checksum> {
        self.checksum_at(op)
    }
    /// The header of the log entry at `op`, if known (for inspection).
    pub fn header_at(&self, op: u64) -> Option<Header> {
        self.slots.get(&op).map(|slot| slot.header)
    }
    /// The entry at `op`, if its body is present.
    pub fn entry(&self, op: u64) -> Option<Entry> {
        let slot = self.slots.get(&op)?;
        Some(Entry {
            header: slot.header,
            body: slot.body.clone()?,
        })
    }
    pub fn kv(&self) -> &KvState {
        &self.kv
    }
    pub fn clients(&self) -> &ClientTable {
        &self.clients
    }
    /// xxh3-128 of the snapshot encoding (kv state + client table) at `commit()`.
    pub fn state_hash(&self) -> u128 {
        xxh3_128(&snapshot::encode(&self.kv, &self.clients))
    }
    /// The (op, checksum) pairs applied since the last call.
    pub fn take_commits(&mut self) -> Vec<(u64, Checksum)> {
        std::mem::take(&mut self.commits)
    }
    /// Effects queued outside `step` (at construction).
    pub fn poll_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    // ---------------------------------------------------------------- input

    /// Handle one input; return the effects to execute, in order.
    pub fn step(&mut self, input: Input) -> Vec<Effect> {
        if self.halted.is_none() {
            match input {
                Input::Message { from, message } => self.on_message(from, message),
                Input::Tick => self.on_tick(),
                Input::ClientRequest {
                    client,
                    request,
                    body,
                } => self.on_client_request(client, request, body),
                Input::Synced { op } => self.on_synced(op),
                Input::SuperblockSynced { view, log_view } => {
                    if self.superblock_inflight == Some((view, log_view)) {
                        self.superblock_inflight = None;
                        self.superblock = (view, log_view);
                    }
                }
                Input::CheckpointDone { op } => self.on_checkpoint_done(op),
            }
            if self.halted.is_none() {
                self.progress();
            }
        }
        std::mem::take(&mut self.effects)
    }

    // ---------------------------------------------------------------- helpers

    fn halt(&mut self, reason: String) {
        if self.halted.is_none() {
            self.effects.push(Effect::Halt(reason.clone()));
            self.halted = Some(reason);
        }
    }

    fn primary(&self) -> u8 {
        self.config.primary_of(self.view)
    }

    fn is_primary_elect(&self) -> bool {
        self.status == Status::ViewChange && self.primary() == self.config.replica
    }

    fn others(&self) -> impl Iterator<Item = u8> {
        let me = self.config.replica;
        (0..self.config.replica_count).filter(move |&r| r != me)
    }

    fn send(&mut self, to: u8, body: Body) {
        debug_assert_ne!(to, self.config.replica);
        let message = Message::new(self.config.cluster, self.config.replica, body);
        self.effects.push(Effect::Send { to, message });
    }

    fn broadcast(&mut self, body: Body) {
        let others: Vec<u8> = self.others().collect();
        for to in others {
            self.send(to, body.clone());
        }
    }

    fn checksum_at(&self, op: u64) -> Option<Checksum> {
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

    fn ring_allows(&self, op: u64) -> bool {
        op <= self.checkpoint.op + self.config.slot_count
    }

    fn log_synced(&self) -> bool {
        self.dirty.is_empty() && !self.dirty_truncate && self.sync_inflight.is_none()
    }

    fn forget_durability(&mut self, op: u64) {
        self.dirty.remove(&op);
        if let Some((_, syncing)) = &mut self.sync_inflight {
            syncing.remove(&op);
        }
    }

    fn remove_slot(&mut self, op: u64) {
        debug_assert!(op > self.commit_min);
        self.slots.remove(&op);
        self.forget_durability(op);
    }

    /// Store a header-only slot (replacing a different one).
    fn put_header(&mut self, header: Header) {
        debug_assert!(header.op > self.commit_min);
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
    fn put_entry(&mut self, entry: Entry) {
        let op = entry.header.op;
        debug_assert!(op > self.commit_min && self.ring_allows(op));
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

    fn truncate_after(&mut self, op: u64) {
        debug_assert!(op >= self.commit_min);
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
    fn chain_to_head(&self) -> bool {
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
    fn durable_prefix(&self) -> u64 {
        let Some(mut prev) = self.checksum_at(self.commit_min) else {
            return self.commit_min;
        };
        let mut done = self.commit_min;
        for (&o, slot) in span(&self.slots, self.commit_min + 1, self.op) {
            if o != done + 1 || slot.header.parent != prev || slot.body.is_none() || !slot.durable {
                break;
            }
            prev = slot.header.checksum;
            done = o;
        }
        done
    }

    /// Mutation `prepare-ok-before-sync` (simulator only): like [`Self::durable_prefix`] but
    /// counting written, not yet synced, bodies.
    #[cfg(madsim)]
    fn written_prefix(&self) -> u64 {
        let Some(mut prev) = self.checksum_at(self.commit_min) else {
            return self.commit_min;
        };
        let mut done = self.commit_min;
        for (&o, slot) in span(&self.slots, self.commit_min + 1, self.op) {
            if o != done + 1 || slot.header.parent != prev || slot.body.is_none() {
                break;
            }
            prev = slot.header.checksum;
            done = o;
        }
        done
    }

    /// Remove headers that the hash chain from the head contradicts (stale entries from an
    /// older view). A contradiction of the committed prefix by a log connected to the head
    /// halts: it proves a committed entry was lost or corrupted beyond the fault bound.
    fn clean_chain(&mut self) {
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
    fn chain_from(&self, from: u64) -> bool {
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

    fn suffix_headers(&self) -> Vec<Header> {
        let mut headers: Vec<Header> = span(&self.slots, 0, self.op)
            .rev()
            .filter(|(&o, _)| o > 0)
            .take(HEADERS_MAX)
            .map(|(_, s)| s.header)
            .collect();
        headers.reverse();
        headers
    }

    fn valid_headers(&self, op: u64, op_checksum: Checksum, headers: &[Header]) -> bool {
        let mut last = 0;
        for h in headers {
            if h.cluster != self.config.cluster
                || h.op == 0
                || h.op > op
                || h.op <= last
                || (h.op == op && h.checksum != op_checksum)
            {
                return false;
            }
            last = h.op;
        }
        true
    }

    /// Adopt a log (head `op`, suffix `headers`) of `view` from an authoritative source: the
    /// chosen DoViewChange, a StartView, or the primary's RecoveryResponse.
    ///
    /// Entries above `op` that were prepared in `view` itself are kept: only the primary of
    /// `view` prepares in it, so they extend the log being installed (a StartView delayed or
    /// duplicated by the network, or one answering an older RequestStartView, carries an older
    /// head of the same log). Truncating them would also be refused by storage: a truncation
    /// is made durable by a `log_view` above the view of every dropped entry.
    fn install_log(
        &mut self,
        view: u32,
        op: u64,
        op_checksum: Checksum,
        headers: &[Header],
    ) -> Result<(), InstallError> {
        if !self.valid_headers(op, op_checksum, headers) || op < self.commit_min {
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

    // ---------------------------------------------------------------- durability

    fn on_synced(&mut self, op: u64) {
        if self.sync_inflight.as_ref().is_some_and(|(o, _)| *o == op) {
            let (_, ops) = self.sync_inflight.take().expect("checked");
            for o in ops {
                if let Some(slot) = self.slots.get_mut(&o) {
                    slot.durable = true;
                }
            }
            self.syncing_truncate = false;
        }
    }

    fn maybe_sync(&mut self) {
        if self.sync_inflight.is_none() && (!self.dirty.is_empty() || self.dirty_truncate) {
            let ops = std::mem::take(&mut self.dirty);
            self.syncing_truncate = self.dirty_truncate;
            self.dirty_truncate = false;
            self.sync_inflight = Some((self.op, ops));
            self.effects.push(Effect::Sync { op: self.op });
        }
    }

    fn maybe_write_superblock(&mut self) {
        let desired = (self.view, self.log_view);
        if self.truncation_unpublished && desired.1 < self.install_view {
            return;
        }
        if self.superblock_inflight.is_none() && self.superblock != desired {
            self.truncation_unpublished = false;
            self.superblock_inflight = Some(desired);
            self.effects.push(Effect::WriteSuperblock {
                view: desired.0,
                log_view: desired.1,
            });
        }
    }

    fn on_checkpoint_done(&mut self, op: u64) {
        if self
            .checkpoint_inflight
            .as_ref()
            .is_some_and(|c| c.op == op)
        {
            self.checkpoint = self.checkpoint_inflight.take().expect("checked");
            self.checkpoint_faulty = false;
            let kept = self.slots.split_off(&op);
            for o in self.slots.keys() {
                self.dirty.remove(o);
                if let Some((_, syncing)) = &mut self.sync_inflight {
                    syncing.remove(o);
                }
            }
            self.slots = kept;
        }
    }

    fn maybe_checkpoint(&mut self) {
        if self.checkpoint_inflight.is_some()
            || self.checkpoint_faulty
            || self.commit_min < self.checkpoint.op + self.config.checkpoint_interval
        {
            return;
        }
        let Some(checksum) = self.checksum_at(self.commit_min) else {
            return;
        };
        let snapshot = snapshot::encode(&self.kv, &self.clients);
        #[cfg(madsim)]
        let snapshot = {
            use crate::mutation::{self, Mutation};
            if mutation::is(Mutation::ClientTableNotCheckpointed) {
                mutation::bit(Mutation::ClientTableNotCheckpointed);
                snapshot::encode(&self.kv, &ClientTable::new())
            } else {
                snapshot
            }
        };
        let cp = CheckpointState {
            op: self.commit_min,
            checksum,
            snapshot: snapshot.clone(),
        };
        self.checkpoint_inflight = Some(cp);
        self.effects.push(Effect::Checkpoint {
            op: self.commit_min,
            checksum,
            snapshot,
        });
    }

    // ---------------------------------------------------------------- progress

    /// Everything that may follow from a state change, in a fixed order.
    fn progress(&mut self) {
        self.try_install_dvcs();
        self.truncate_nacked();
        self.commit_ops();
        self.try_advance_log_view();
        self.try_finish_view_change();
        self.try_ack();
        self.try_commit_primary();
        self.commit_ops();
        self.maybe_checkpoint();
        self.try_send_dvc();
        self.maybe_write_superblock();
        self.maybe_sync();
    }

    fn may_commit(&self) -> bool {
        (self.status == Status::Normal && self.log_view == self.view)
            || (self.is_primary_elect() && self.vc_installed && self.chain_to_head())
    }

    fn commit_ops(&mut self) {
        if self.halted.is_none() && self.commit_min < self.commit_max && self.may_commit() {
            let floor = self.head_chain_floor();
            self.commit_ops_from(floor);
        }
    }

    /// The lowest op from which every slot up to the head is present and chained: the entries
    /// the head's hash chain vouches for (`op + 1` if the head's header is missing). An entry
    /// below a hole may be stale (an older view's entry a lost write left in its slot, found
    /// intact at restart): chaining from the committed prefix does not make it this view's.
    fn head_chain_floor(&self) -> u64 {
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

    /// Apply the entries up to `commit_max` (restart: the chained prefix whose headers prove
    /// their predecessors committed).
    fn commit_ops_unchecked(&mut self) {
        self.commit_ops_from(0);
    }

    /// Apply entries in order up to `commit_max`, each chained from the previous one and at
    /// or above `floor` (see [`Self::head_chain_floor`]).
    fn commit_ops_from(&mut self, floor: u64) {
        while self.commit_min < self.commit_max.min(self.op) {
            let o = self.commit_min + 1;
            if o < floor {
                break;
            }
            let Some(prev) = self.checksum_at(self.commit_min) else {
                break;
            };
            let Some(slot) = self.slots.get(&o) else {
                break;
            };
            let Some(body) = slot.body.clone() else {
                break;
            };
            let header = slot.header;
            if header.parent != prev {
                break;
            }
            self.commit_min = o;
            self.commits.push((o, header.checksum));
            self.effects.push(Effect::Commit {
                op: o,
                checksum: header.checksum,
            });
            self.apply(header, &body);
        }
    }

    fn apply(&mut self, header: Header, body: &[u8]) {
        if header.operation != Operation::Request {
            return;
        }
        let (client, request) = (header.client, header.request);
        let reply = match self.clients.get(client) {
            Some(e) if e.request > request => None,
            Some(e) if e.request == request => Some((e.op, e.reply.clone())),
            _ => {
                let reply = match kv::Request::decode(body) {
                    Ok(r) => self.kv.apply(&r),
                    Err(_) => kv::Reply::Error("malformed request".to_string()),
                };
                self.clients.insert(
                    client,
                    ClientEntry {
                        request,
                        op: header.op,
                        reply: reply.clone(),
                    },
                    self.config.clients_max,
                );
                Some((header.op, reply))
            }
        };
        if let (Some((op, reply)), true) = (reply, self.is_primary()) {
            self.effects.push(Effect::Reply {
                client,
                request,
                op,
                reply,
            });
        }
    }

    /// Claim the installed log as `log_view` once it is complete, chained and durable: the
    /// current view's in normal status (or as the primary-elect that installed the chosen
    /// log); in a view change, the view whose log was last installed (`install_view`). The
    /// latter lets a backup whose StartView install was cut short by a new view change finish
    /// it (repairing from anyone) and then publish its truncation and vote: otherwise, if
    /// more than f replicas were caught that way, no DoViewChange quorum could ever form in a
    /// healed cluster (issue 17).
    fn try_advance_log_view(&mut self) {
        let installing =
            self.status == Status::Normal || (self.is_primary_elect() && self.vc_installed);
        let target = if installing {
            self.view
        } else if self.status == Status::ViewChange {
            self.install_view.min(self.view)
        } else {
            return;
        };
        if self.log_view < target
            && self.log_synced()
            && self.chain_to_head()
            && self.durable_prefix() == self.op
        {
            self.log_view = target;
        }
    }

    fn active(&self) -> bool {
        self.log_view == self.view && self.superblock == (self.view, self.view)
    }

    fn try_finish_view_change(&mut self) {
        if self.is_primary_elect() && self.vc_installed && self.active() {
            self.status = Status::Normal;
            self.ack_op = vec![0; self.config.replica_count as usize];
            self.heartbeat_due = self.tick + self.config.heartbeat_ticks;
            self.prepare_due = self.tick + self.config.prepare_ticks;
            self.dvcs.clear();
            self.svc_from.clear();
            let others: Vec<u8> = self.others().collect();
            for to in others {
                self.send_start_view(to);
            }
        }
    }

    fn send_start_view(&mut self, to: u8) {
        let Some(op_checksum) = self.checksum_at(self.op) else {
            return;
        };
        let body = Body::StartView {
            view: self.view,
            op: self.op,
            op_checksum,
            commit: self.commit_max,
            checkpoint_op: self.checkpoint.op,
            headers: self.suffix_headers(),
        };
        self.send(to, body);
    }

    fn try_ack(&mut self) {
        if self.status != Status::Normal || self.primary() == self.config.replica || !self.active()
        {
            return;
        }
        let d = self.durable_prefix();
        #[cfg(madsim)]
        let d = {
            use crate::mutation::{self, Mutation};
            let written = self.written_prefix();
            if mutation::is(Mutation::PrepareOkBeforeSync) && written > d {
                mutation::bit(Mutation::PrepareOkBeforeSync);
                written
            } else {
                d
            }
        };
        if d == 0 || self.acked_op.is_some_and(|a| a >= d) {
            return;
        }
        let Some(checksum) = self.checksum_at(d) else {
            return;
        };
        self.acked_op = Some(d);
        let body = Body::PrepareOk {
            view: self.view,
            op: d,
            checksum,
        };
        self.send(self.primary(), body);
    }

    fn try_commit_primary(&mut self) {
        if !self.is_primary() || !self.active() {
            return;
        }
        let mut acks = self.ack_op.clone();
        acks[self.config.replica as usize] = self.durable_prefix();
        acks.sort_unstable_by(|a, b| b.cmp(a));
        let committed = acks[self.config.quorum() - 1];
        #[cfg(madsim)]
        let committed = {
            use crate::mutation::{self, Mutation};
            let own = self.durable_prefix();
            if mutation::is(Mutation::CommitBeforeQuorum) && own > committed {
                mutation::bit(Mutation::CommitBeforeQuorum);
                own
            } else {
                committed
            }
        };
        if committed > self.commit_max {
            self.commit_max = committed;
        }
    }

    // ---------------------------------------------------------------- view change

    fn start_view_change(&mut self, view: u32) {
        debug_assert!(view > self.view || self.status != Status::ViewChange);
        self.view = view;
        self.status = Status::ViewChange;
        self.svc_from = BTreeSet::from([self.config.replica]);
        self.dvcs.clear();
        self.dvc_sent = false;
        self.vc_installed = false;
        self.vc_headers.clear();
        self.acked_op = None;
        self.head_checkpoint_wanted = None;
        self.pending_join = None;
        self.view_change_due = self.tick + self.config.view_change_ticks;
        self.resend_due = self.tick + self.config.heartbeat_ticks;
        self.recovery_replies.clear();
        self.broadcast(Body::StartViewChange { view });
    }

    fn own_summary(&self) -> Option<LogSummary> {
        let headers = self.suffix_headers();
        Some(LogSummary {
            view: self.view,
            log_view: self.superblock.1,
            op: self.op,
            op_checksum: self.checksum_at(self.op)?,
            commit: self.commit_max,
            checkpoint_op: self.checkpoint.op,
            bodies: self.bodies_of(&headers),
            headers,
            held_max: self.held_max,
            never_written: self
                .never_written
                .range(self.commit_max + 1..)
                .copied()
                .take(HEADERS_MAX)
                .collect(),
        })
    }

    /// Per header (of this replica's own slots): whether the body is held intact and durably.
    fn bodies_of(&self, headers: &[Header]) -> Vec<bool> {
        headers
            .iter()
            .map(|h| {
                self.slots.get(&h.op).is_some_and(|s| {
                    s.header.checksum == h.checksum && s.body.is_some() && s.durable
                })
            })
            .collect()
    }

    fn dvc_body(s: &LogSummary) -> Body {
        Body::DoViewChange {
            view: s.view,
            log_view: s.log_view,
            op: s.op,
            op_checksum: s.op_checksum,
            commit: s.commit,
            checkpoint_op: s.checkpoint_op,
            headers: s.headers.clone(),
            bodies: s.bodies.clone(),
            held_max: s.held_max,
            never_written: s.never_written.clone(),
        }
    }

    fn try_send_dvc(&mut self) {
        // Mutation `view-not-synced-before-dvc` (simulator only): a backup sends its
        // DoViewChange without waiting for the new view to be durable in the superblock.
        #[cfg(madsim)]
        if self.status == Status::ViewChange
            && !self.dvc_sent
            && self.svc_from.len() >= self.config.quorum()
            && self.superblock.0 < self.view
            && self.log_synced()
            && self.primary() != self.config.replica
            && crate::mutation::is(crate::mutation::Mutation::ViewNotSyncedBeforeDvc)
        {
            if let Some(summary) = self.own_summary() {
                crate::mutation::bit(crate::mutation::Mutation::ViewNotSyncedBeforeDvc);
                self.dvc_sent = true;
                let body = Self::dvc_body(&summary);
                self.send(self.primary(), body);
            }
            return;
        }
        if self.status != Status::ViewChange
            || self.dvc_sent
            || self.svc_from.len() < self.config.quorum()
            || self.superblock.0 < self.view
            || !self.log_synced()
        {
            return;
        }
        let Some(summary) = self.own_summary() else {
            return;
        };
        self.dvc_sent = true;
        if self.primary() == self.config.replica {
            self.dvcs.insert(self.config.replica, summary);
            self.try_install_dvcs();
            self.progress_after_install();
        } else {
            let body = Self::dvc_body(&summary);
            self.send(self.primary(), body);
        }
    }

    fn progress_after_install(&mut self) {
        if self.vc_installed {
            self.commit_ops();
            self.try_advance_log_view();
        }
    }

    fn try_install_dvcs(&mut self) {
        if !self.is_primary_elect()
            || self.vc_installed
            || self.dvcs.len() < self.config.quorum()
            || !self.dvcs.contains_key(&self.config.replica)
        {
            return;
        }
        let me = self.config.replica;
        let (&best_from, best) = self
            .dvcs
            .iter()
            .max_by_key(|(&r, s)| (s.log_view, s.op, r == me, std::cmp::Reverse(r)))
            .expect("quorum is not empty");
        let best = best.clone();
        #[cfg(madsim)]
        let (best_from, best) = {
            use crate::mutation::{self, Mutation};
            if mutation::is(Mutation::ViewChangeLongestLog) {
                let (&longest_from, longest) = self
                    .dvcs
                    .iter()
                    .max_by_key(|(&r, s)| (s.op, r == me, std::cmp::Reverse(r)))
                    .expect("quorum is not empty");
                if longest_from != best_from {
                    mutation::bit(Mutation::ViewChangeLongestLog);
                }
                (longest_from, longest.clone())
            } else {
                (best_from, best)
            }
        };
        let commit = self.dvcs.values().map(|s| s.commit).max().unwrap_or(0);
        if best_from != me {
            match self.install_log(self.view, best.op, best.op_checksum, &best.headers) {
                Ok(()) => {}
                Err(InstallError::Conflict) => {
                    self.halt(format!(
                        "view {}: the chosen log (op {}) contradicts committed op {}",
                        self.view, best.op, self.commit_min
                    ));
                    return;
                }
                Err(InstallError::MissingHead) => {
                    self.head_checkpoint_wanted = Some((best.op, best.op_checksum));
                    self.request_state_transfer(best_from, best.checkpoint_op);
                    return;
                }
            }
        }
        self.vc_installed = true;
        self.install_view = self.view;
        self.vc_headers = best.headers;
        self.commit_max = self.commit_max.max(commit);
        self.truncate_nacked();
        let lagging: Vec<(u8, u64)> = self
            .dvcs
            .iter()
            .map(|(&r, s)| (r, s.checkpoint_op))
            .filter(|&(r, _)| r != me)
            .collect();
        for (r, cp) in lagging {
            self.maybe_request_state_transfer(r, cp);
        }
        self.send_repairs();
    }

    /// Whether `dvc` proves its sender never held (so never acknowledged) the entry `checksum`
    /// at `op`: the op is beyond the sender's head, or the sender holds a different entry
    /// there with its body intact. A header without a body (faulty or not yet repaired), a
    /// hole, or an op below the sender's header suffix proves nothing.
    fn nacks(dvc: &LogSummary, op: u64, checksum: Checksum) -> bool {
        if op > dvc.op || op > dvc.held_max || dvc.never_written.binary_search(&op).is_ok() {
            return true;
        }
        match dvc.headers.binary_search_by_key(&op, |h| h.op) {
            Ok(i) => dvc.headers[i].checksum != checksum && dvc.bodies.get(i) == Some(&true),
            Err(_) => false,
        }
    }

    /// Nacks (TigerBeetle, Protocol-Aware Recovery): the primary-elect, having installed the
    /// chosen log, truncates it before the first op whose body it lacks (or whose header too:
    /// then the entry is the one the successor's `parent` names, if known), that no DVC holds,
    /// and that at least `replica_count - quorum + 1` DVC senders (itself included) nack:
    /// the replicas left cannot form the quorum a commit needs, so neither that op nor any
    /// later one (an acknowledgement covers the whole prefix) was committed.
    fn truncate_nacked(&mut self) {
        if !self.is_primary_elect()
            || !self.vc_installed
            || self.status != Status::ViewChange
            || self.halted.is_some()
        {
            return;
        }
        let n = self.config.replica_count as usize;
        let quorum_nack = n - self.config.quorum() + 1;
        let canonical = |op: u64| -> Option<Checksum> {
            let at = |o: u64| {
                self.vc_headers
                    .binary_search_by_key(&o, |h| h.op)
                    .ok()
                    .map(|i| self.vc_headers[i])
            };
            at(op)
                .map(|h| h.checksum)
                .or_else(|| at(op + 1).map(|h| h.parent))
        };
        let holds = |d: &LogSummary, op: u64, c: Checksum| {
            d.headers
                .binary_search_by_key(&op, |h| h.op)
                .is_ok_and(|i| d.headers[i].checksum == c && d.bodies.get(i) == Some(&true))
        };
        let mut cut = None;
        for op in self.commit_max + 1..=self.op {
            // The entry the chosen log has at `op`, and the new head below it, must both be
            // known from that log (its own headers, or its successor's `parent`).
            let Some(c) = canonical(op) else {
                continue;
            };
            if self
                .slots
                .get(&op)
                .is_some_and(|s| s.header.checksum == c && s.body.is_some())
                || self.dvcs.values().any(|d| holds(d, op, c))
            {
                continue;
            }
            let below = op - 1;
            let head_known = below == self.commit_min
                || self.vc_headers.iter().any(|h| {
                    h.op == below
                        && self.slots.get(&below).map(|s| s.header.checksum) == Some(h.checksum)
                });
            if !head_known {
                continue;
            }
            let nacks = self.dvcs.values().filter(|d| Self::nacks(d, op, c)).count();
            if nacks >= quorum_nack {
                cut = Some(below);
                break;
            }
        }
        if let Some(head) = cut {
            self.truncate_after(head);
            self.repair_inflight.retain(|&o| o <= head);
        }
    }

    // ---------------------------------------------------------------- repair

    fn repair_targets(&self) -> Vec<u8> {
        if self.status == Status::Normal && self.primary() != self.config.replica {
            vec![self.primary()]
        } else {
            self.others().collect()
        }
    }

    fn send_repairs(&mut self) {
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

    fn maybe_request_state_transfer(&mut self, from: u8, peer_checkpoint_op: u64) {
        if peer_checkpoint_op <= self.commit_min
            || self.checkpoint_inflight.is_some()
            || self.tick < self.state_transfer_due
        {
            return;
        }
        let present = span(&self.slots, self.commit_min + 1, peer_checkpoint_op)
            .filter(|(_, s)| s.body.is_some())
            .count() as u64;
        if present == peer_checkpoint_op - self.commit_min {
            return;
        }
        self.request_state_transfer(from, peer_checkpoint_op);
    }

    /// Ask `from` for its checkpoint (rate limited), whatever the local log holds: the log
    /// `from` sent cannot be installed without it (its head is its checkpoint).
    fn request_state_transfer(&mut self, from: u8, peer_checkpoint_op: u64) {
        if peer_checkpoint_op <= self.commit_min
            || self.checkpoint_inflight.is_some()
            || self.tick < self.state_transfer_due
        {
            return;
        }
        self.state_transfer_due = self.tick + self.config.repair_ticks;
        let op_min = self.commit_min + 1;
        self.send(from, Body::RequestStateTransfer { op_min });
    }

    /// The local checkpoint is unreadable and no peer's has been accepted yet: `kv` and
    /// `clients` are not the state at `commit_min`.
    fn state_missing(&self) -> bool {
        self.checkpoint_faulty && self.checkpoint_inflight.is_none()
    }

    /// Ask the next peer (round robin, one per `repair_ticks`) for a checkpoint at an op at
    /// or above the unreadable local one.
    fn request_checkpoint_repair(&mut self) {
        let others: Vec<u8> = self.others().collect();
        let Some(&to) = others.get(self.state_transfer_peer as usize % others.len().max(1)) else {
            return;
        };
        self.state_transfer_peer = self.state_transfer_peer.wrapping_add(1);
        let op_min = self.checkpoint.op;
        self.send(to, Body::RequestStateTransfer { op_min });
    }

    /// Answer a RequestStateTransfer: the durable checkpoint if it is at `op_min` or above,
    /// else a snapshot of the applied state (every op up to `commit_min` is committed) if that
    /// is; nothing from a replica without usable state.
    fn on_request_state_transfer(&mut self, from: u8, op_min: u64) {
        if self.status == Status::Recovering || self.checkpoint_faulty {
            return;
        }
        let (op, checksum, snapshot) = if self.checkpoint.op > 0 && self.checkpoint.op >= op_min {
            (
                self.checkpoint.op,
                self.checkpoint.checksum,
                self.checkpoint.snapshot.clone(),
            )
        } else if self.commit_min > self.checkpoint.op && self.commit_min >= op_min {
            let Some(checksum) = self.checksum_at(self.commit_min) else {
                return;
            };
            (
                self.commit_min,
                checksum,
                snapshot::encode(&self.kv, &self.clients),
            )
        } else {
            return;
        };
        if snapshot.len() <= SNAPSHOT_SIZE_MAX {
            let body = Body::StateTransfer {
                view: self.view,
                checkpoint_op: op,
                checkpoint_checksum: checksum,
                snapshot,
            };
            self.send(from, body);
        }
    }

    /// A body offered as repair: accept only if its checksum is the one the log expects.
    fn accept_repair(&mut self, entry: Entry) {
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
        if !accepted {
            return;
        }
        self.put_entry(entry);
        self.clean_chain();
        self.repair_inflight.remove(&o);
        if self.repair_inflight.is_empty() {
            self.send_repairs();
        }
    }

    // ---------------------------------------------------------------- messages

    fn on_message(&mut self, from: u8, message: Message) {
        if message.cluster != self.config.cluster
            || message.replica != from
            || from >= self.config.replica_count
            || from == self.config.replica
            || !numbers_in_range(&message.body)
        {
            return;
        }
        match message.body {
            Body::Prepare {
                view,
                commit,
                entry,
            } => self.on_prepare(from, view, commit, entry),
            Body::PrepareOk { view, op, checksum } => self.on_prepare_ok(from, view, op, checksum),
            Body::Commit {
                view,
                commit,
                checkpoint_op,
            } => self.on_commit(from, view, commit, checkpoint_op),
            Body::StartViewChange { view } => self.on_start_view_change(from, view),
            Body::DoViewChange {
                view,
                log_view,
                op,
                op_checksum,
                commit,
                checkpoint_op,
                headers,
                bodies,
                held_max,
                never_written,
            } => self.on_do_view_change(
                from,
                LogSummary {
                    view,
                    log_view,
                    op,
                    op_checksum,
                    commit,
                    checkpoint_op,
                    headers,
                    bodies,
                    held_max,
                    never_written,
                },
            ),
            Body::StartView {
                view,
                op,
                op_checksum,
                commit,
                checkpoint_op,
                headers,
            } => self.on_start_view(
                from,
                LogSummary {
                    view,
                    log_view: view,
                    op,
                    op_checksum,
                    commit,
                    checkpoint_op,
                    headers,
                    bodies: Vec::new(),
                    held_max: u64::MAX,
                    never_written: Vec::new(),
                },
            ),
            Body::RequestStartView { view } => {
                if self.is_primary() && view == self.view {
                    self.send_start_view(from);
                }
            }
            Body::Recovery { nonce } => self.on_recovery(from, nonce),
            Body::RecoveryResponse {
                view,
                nonce,
                op,
                op_checksum,
                commit,
                checkpoint_op,
                headers,
            } => {
                if self.status == Status::Recovering && nonce == self.nonce {
                    let summary = LogSummary {
                        view,
                        log_view: view,
                        op,
                        op_checksum,
                        commit,
                        checkpoint_op,
                        headers,
                        bodies: Vec::new(),
                        held_max: u64::MAX,
                        never_written: Vec::new(),
                    };
                    self.on_recovery_response(from, summary);
                }
            }
            Body::RequestPrepare { op, checksum } => {
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
            Body::RequestHeaders { op_min, op_max } => {
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
            Body::Headers { headers } => self.on_headers(from, headers),
            Body::RequestStateTransfer { op_min } => self.on_request_state_transfer(from, op_min),
            Body::StateTransfer {
                view: _,
                checkpoint_op,
                checkpoint_checksum,
                snapshot,
            } => self.on_state_transfer(checkpoint_op, checkpoint_checksum, snapshot),
        }
    }

    fn on_prepare(&mut self, from: u8, view: u32, commit: u64, entry: Entry) {
        let h = entry.header;
        if h.cluster != self.config.cluster
            || h.op == 0
            || h.operation == Operation::Root
            || !entry.is_valid()
        {
            return;
        }
        let from_primary = from == self.config.primary_of(view);
        if view == self.view
            && from_primary
            && self.status == Status::Normal
            && self.primary() != self.config.replica
        {
            self.primary_contact_tick = self.tick;
            self.commit_max = self.commit_max.max(commit);
            self.on_prepare_normal(entry);
        } else if view > self.view && from_primary {
            self.request_start_view(from, view);
        } else if self.status != Status::Recovering {
            self.accept_repair(entry);
        }
    }

    fn request_start_view(&mut self, from: u8, view: u32) {
        let eligible = match self.status {
            Status::Recovering => view >= self.superblock.0 && !self.state_missing(),
            _ => view > self.view,
        };
        if eligible {
            self.send(from, Body::RequestStartView { view });
        }
    }

    fn on_prepare_normal(&mut self, entry: Entry) {
        let h = entry.header;
        let o = h.op;
        if o <= self.commit_min {
            self.acked_op = None; // a retransmission: acknowledge again
            return;
        }
        if o <= self.op {
            match self.slots.get(&o) {
                Some(s) if s.header.checksum == h.checksum => {
                    if s.body.is_none() {
                        self.accept_repair(entry);
                    } else {
                        self.acked_op = None;
                    }
                }
                Some(_) if o == self.op => {
                    self.put_entry(entry);
                    self.clean_chain();
                }
                Some(_) => {}
                None => self.accept_repair(entry),
            }
            return;
        }
        if !self.ring_allows(o) {
            return;
        }
        let gap = o > self.op + 1;
        self.op = o;
        self.put_entry(entry);
        self.clean_chain();
        if gap {
            self.send_repairs();
        }
    }

    fn on_prepare_ok(&mut self, from: u8, view: u32, op: u64, checksum: Checksum) {
        if self.is_primary()
            && view == self.view
            && op <= self.op
            && self.checksum_at(op) == Some(checksum)
        {
            let ack = &mut self.ack_op[from as usize];
            *ack = (*ack).max(op);
        }
    }

    fn on_commit(&mut self, from: u8, view: u32, commit: u64, checkpoint_op: u64) {
        if from != self.config.primary_of(view) {
            return;
        }
        if view == self.view && self.status == Status::Normal && from != self.config.replica {
            self.primary_contact_tick = self.tick;
            self.commit_max = self.commit_max.max(commit);
            self.maybe_request_state_transfer(from, checkpoint_op);
        } else if view > self.view || self.status == Status::Recovering {
            self.request_start_view(from, view);
        }
    }

    fn on_start_view_change(&mut self, from: u8, view: u32) {
        if self.status == Status::Recovering {
            return;
        }
        if view > self.view {
            self.start_view_change(view);
        }
        if view == self.view && self.status == Status::ViewChange {
            self.svc_from.insert(from);
        }
    }

    fn on_do_view_change(&mut self, from: u8, dvc: LogSummary) {
        if self.status == Status::Recovering
            || self.config.primary_of(dvc.view) != self.config.replica
            || dvc.log_view > dvc.view
            || !self.valid_headers(dvc.op, dvc.op_checksum, &dvc.headers)
            || dvc.bodies.len() != dvc.headers.len()
        {
            return;
        }
        if dvc.view > self.view {
            self.start_view_change(dvc.view);
        }
        if dvc.view != self.view {
            return;
        }
        match self.status {
            Status::ViewChange => {
                self.svc_from.insert(from);
                // After the install, a late DVC still counts toward nacks (its log is not
                // considered for the choice: any quorum suffices for that).
                self.dvcs.insert(from, dvc);
            }
            Status::Normal => self.send_start_view(from),
            Status::Recovering => {}
        }
    }

    fn on_start_view(&mut self, from: u8, sv: LogSummary) {
        if from != self.config.primary_of(sv.view) || self.state_missing() {
            return;
        }
        let accept = match self.status {
            Status::Recovering => sv.view >= self.superblock.0,
            Status::ViewChange => sv.view >= self.view,
            Status::Normal => {
                sv.view > self.view || (sv.view == self.view && self.log_view < self.view)
            }
        };
        if !accept {
            return;
        }
        self.join_view(from, sv);
    }

    /// Adopt the log of the primary of `summary.view` and become its backup.
    fn join_view(&mut self, primary: u8, summary: LogSummary) {
        match self.install_log(
            summary.view,
            summary.op,
            summary.op_checksum,
            &summary.headers,
        ) {
            Ok(()) => {}
            Err(InstallError::Conflict) => return,
            Err(InstallError::MissingHead) => {
                // Only the sender's checkpoint can complete this log: ask for it, and join
                // once it arrives (see `on_state_transfer`).
                self.head_checkpoint_wanted = Some((summary.op, summary.op_checksum));
                let checkpoint_op = summary.checkpoint_op;
                self.pending_join = Some((primary, summary));
                self.request_state_transfer(primary, checkpoint_op);
                return;
            }
        }
        self.head_checkpoint_wanted = None;
        self.pending_join = None;
        // `log_view` stays below the new view until the installed log is complete and
        // durable (a recovering replica whose log_view already is this view keeps it: every
        // entry it holds is from this view's log).
        self.view = summary.view;
        self.status = Status::Normal;
        self.svc_from.clear();
        self.dvcs.clear();
        self.dvc_sent = false;
        self.vc_installed = false;
        self.acked_op = None;
        self.recovery_replies.clear();
        self.primary_contact_tick = self.tick;
        self.commit_max = self.commit_max.max(summary.commit);
        self.maybe_request_state_transfer(primary, summary.checkpoint_op);
        self.send_repairs();
    }

    fn on_recovery(&mut self, from: u8, nonce: u64) {
        if self.status != Status::Normal {
            return;
        }
        let Some(op_checksum) = self.checksum_at(self.op) else {
            return;
        };
        let body = Body::RecoveryResponse {
            view: self.view,
            nonce,
            op: self.op,
            op_checksum,
            commit: self.commit_max,
            checkpoint_op: self.checkpoint.op,
            headers: if self.is_primary() {
                self.suffix_headers()
            } else {
                Vec::new()
            },
        };
        self.send(from, body);
    }

    fn on_recovery_response(&mut self, from: u8, response: LogSummary) {
        if self.state_missing()
            || !self.valid_headers(response.op, response.op_checksum, &response.headers)
        {
            return;
        }
        self.recovery_replies.insert(from, response);
        if self.recovery_replies.len() + 1 < self.config.quorum() {
            return;
        }
        let view_max = self
            .recovery_replies
            .values()
            .map(|r| r.view)
            .max()
            .unwrap_or(0);
        if view_max < self.superblock.0 {
            // This replica's durable view is ahead of every responder's (it moved views
            // alone, e.g. while partitioned): none of them will reach that view by itself
            // while its primary is healthy. Ask them to move there; the view change is decided
            // by the DoViewChanges of the others (this replica sends none), and its StartView
            // ends this recovery (its view is `>=` the durable one). The SVC carries no log
            // and no vote: it only makes peers leave an older view, which a timeout also does.
            self.broadcast(Body::StartViewChange {
                view: self.superblock.0,
            });
            return;
        }
        let primary = self.config.primary_of(view_max);
        let Some(response) = self
            .recovery_replies
            .get(&primary)
            .filter(|r| r.view == view_max)
            .cloned()
        else {
            return;
        };
        self.join_view(primary, response);
    }

    fn on_headers(&mut self, from: u8, mut headers: Vec<Header>) {
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

    fn on_state_transfer(&mut self, op: u64, checksum: Checksum, snapshot_bytes: Vec<u8>) {
        // Repairing an unreadable local checkpoint at `n`: a peer's checkpoint at `n` must
        // have the entry checksum our superblock recorded (so our intact entries above `n`,
        // which chain from it, stay valid); one above `n` is accepted as in any state
        // transfer. Our log above it was never verified against the cluster's: not
        // authoritative.
        let repairing = self.status == Status::Recovering && self.state_missing();
        let wanted = !self.state_missing()
            && op > self.commit_min
            && self.head_checkpoint_wanted == Some((op, checksum));
        let eligible = repairing
            || wanted
            || self.status == Status::Normal
            || (self.is_primary_elect() && self.vc_installed);
        if !eligible || self.checkpoint_inflight.is_some() {
            return;
        }
        if repairing {
            let n = self.checkpoint.op;
            if op < n || (op == n && checksum != self.checkpoint.checksum) {
                return;
            }
        } else if op <= self.commit_min {
            return;
        }
        let Ok((kv, clients)) = snapshot::decode(&snapshot_bytes) else {
            return;
        };
        if self
            .slots
            .get(&op)
            .is_some_and(|s| s.header.checksum != checksum)
        {
            if !repairing && !wanted && self.chain_from(op) {
                return; // contradicts our (authoritative) log: ignore
            }
            self.remove_slot(op);
        }
        self.kv = kv;
        self.clients = clients;
        let below: Vec<u64> = self.slots.range(..op).map(|(&o, _)| o).collect();
        for o in below {
            self.slots.remove(&o);
            self.forget_durability(o);
        }
        self.commit_min = op;
        self.commit_max = self.commit_max.max(op);
        if self.op < op {
            self.op = op;
        }
        self.checkpoint_inflight = Some(CheckpointState {
            op,
            checksum,
            snapshot: snapshot_bytes.clone(),
        });
        self.effects.push(Effect::StateTransferred { op, checksum });
        self.effects.push(Effect::InstallCheckpoint {
            op,
            checksum,
            snapshot: snapshot_bytes,
        });
        if wanted {
            // Install the authoritative log now (its truncation comes before any check of
            // our own suffix against the new checkpoint).
            self.head_checkpoint_wanted = None;
            match self.pending_join.take() {
                Some((primary, summary)) => self.join_view(primary, summary),
                None => {
                    self.try_install_dvcs();
                    if !self.vc_installed {
                        self.clean_chain();
                        self.send_repairs();
                    }
                }
            }
            return;
        }
        if repairing {
            self.drop_superseded_after(op);
        }
        self.clean_chain();
        self.send_repairs();
        if repairing {
            // Now recover the log like a replica with a faulty head (no votes until then).
            self.repair_due = self.tick + self.config.repair_ticks;
            self.broadcast(Body::Recovery { nonce: self.nonce });
        }
    }

    /// After installing a peer's (committed) checkpoint at `op` while recovering: local
    /// entries from `op + 1` that do not chain from it belong to a superseded history (never
    /// committed). Drop that run from memory (it is not authoritative, and `clean_chain`
    /// would take a contradiction of the committed prefix connected to the head for lost
    /// committed data); entries after a hole stay, to be verified by repair and by the log
    /// installed from the primary. Storage keeps them until that install truncates them.
    fn drop_superseded_after(&mut self, op: u64) {
        let Some(mut prev) = self.checksum_at(op) else {
            return;
        };
        let mut run = Vec::new();
        let mut superseded = false;
        for (&o, slot) in self.slots.range(op + 1..) {
            if o != op + 1 + run.len() as u64 {
                break;
            }
            if run.is_empty() {
                superseded = slot.header.parent != prev;
                if !superseded {
                    break;
                }
            } else if slot.header.parent != prev {
                break;
            }
            prev = slot.header.checksum;
            run.push(o);
        }
        if superseded {
            for o in run {
                self.remove_slot(o);
            }
        }
    }

    // ---------------------------------------------------------------- client

    fn on_client_request(&mut self, client: u128, request: u64, body: Vec<u8>) {
        if self.status == Status::Recovering || client == 0 {
            return;
        }
        if self.status != Status::Normal || self.primary() != self.config.replica {
            // Mutation `read-from-backup` (simulator only): a backup answers GET from its
            // own state, at its own commit number, instead of redirecting.
            #[cfg(madsim)]
            if self.status == Status::Normal
                && crate::mutation::is(crate::mutation::Mutation::ReadFromBackup)
            {
                if let Ok(kv::Request::Get { key }) = kv::Request::decode(&body) {
                    crate::mutation::bit(crate::mutation::Mutation::ReadFromBackup);
                    let reply = kv::Reply::Value(self.kv.get(&key).map(<[u8]>::to_vec));
                    self.effects.push(Effect::Reply {
                        client,
                        request,
                        op: self.commit_min,
                        reply,
                    });
                    return;
                }
            }
            self.effects.push(Effect::Redirect {
                client,
                request,
                primary: self.primary(),
            });
            return;
        }
        if !self.active() || body.len() > BODY_SIZE_MAX as usize {
            return;
        }
        if let Some(e) = self.clients.get(client) {
            if request < e.request {
                return;
            }
            if request == e.request {
                let (op, reply) = (e.op, e.reply.clone());
                self.effects.push(Effect::Reply {
                    client,
                    request,
                    op,
                    reply,
                });
                return;
            }
        }
        let in_flight = span(&self.slots, self.commit_min + 1, self.op)
            .any(|(_, s)| s.header.operation == Operation::Request && s.header.client == client);
        let op = self.op + 1;
        if in_flight || op > self.commit_max + self.config.pipeline_max || !self.ring_allows(op) {
            return;
        }
        let Some(parent) = self.checksum_at(self.op) else {
            return;
        };
        let entry = Entry::new(
            EntryFields {
                cluster: self.config.cluster,
                replica: self.config.replica,
                view: self.view,
                op,
                commit: self.commit_max,
                parent,
                client,
                request,
                operation: Operation::Request,
            },
            body,
        );
        self.op = op;
        self.put_entry(entry.clone());
        self.broadcast(Body::Prepare {
            view: self.view,
            commit: self.commit_max,
            entry,
        });
    }

    // ---------------------------------------------------------------- time

    fn on_tick(&mut self) {
        self.tick += 1;
        let tick = self.tick;
        match self.status {
            Status::Normal if self.primary() == self.config.replica => {
                if tick >= self.heartbeat_due {
                    self.heartbeat_due = tick + self.config.heartbeat_ticks;
                    self.broadcast(Body::Commit {
                        view: self.view,
                        commit: self.commit_max,
                        checkpoint_op: self.checkpoint.op,
                    });
                }
                if tick >= self.prepare_due {
                    self.prepare_due = tick + self.config.prepare_ticks;
                    self.resend_prepares();
                }
            }
            Status::Normal => {
                if tick >= self.primary_contact_tick + self.config.view_change_ticks {
                    self.start_view_change(self.view + 1);
                } else if tick >= self.repair_due {
                    self.repair_due = tick + self.config.repair_ticks;
                    self.repair_inflight.clear();
                    self.send_repairs();
                }
            }
            Status::ViewChange => {
                if tick >= self.view_change_due {
                    self.start_view_change(self.view + 1);
                } else if tick >= self.resend_due {
                    self.resend_due = tick + self.config.heartbeat_ticks;
                    self.broadcast(Body::StartViewChange { view: self.view });
                    if self.dvc_sent && self.primary() != self.config.replica {
                        if let Some(summary) = self.own_summary() {
                            let body = Self::dvc_body(&summary);
                            self.send(self.primary(), body);
                        }
                    }
                    if self.is_primary_elect() && self.vc_installed {
                        self.repair_inflight.clear();
                        self.send_repairs();
                    }
                }
            }
            Status::Recovering => {
                if tick >= self.repair_due {
                    self.repair_due = tick + self.config.repair_ticks;
                    if self.state_missing() {
                        self.request_checkpoint_repair();
                    } else {
                        self.broadcast(Body::Recovery { nonce: self.nonce });
                    }
                }
            }
        }
    }

    /// Resend what each backup has not acknowledged: the uncommitted pipeline, and — to a
    /// backup that lags behind the commit number (it missed prepares, e.g. while restarting
    /// or partitioned, and an idle cluster sends no new ones whose gap would reveal it) — up to
    /// `pipeline_max` entries after its last acknowledgement.
    fn resend_prepares(&mut self) {
        let last = self.op.min(self.commit_max + self.config.pipeline_max);
        let mut sends = Vec::new();
        for r in self.others() {
            let acked = self.ack_op[r as usize];
            let from = if acked < self.commit_max {
                acked + 1
            } else {
                self.commit_max + 1
            };
            let ops: Vec<u64> = span(&self.slots, from, last)
                .filter(|(_, s)| s.body.is_some())
                .map(|(&o, _)| o)
                .filter(|&o| o > acked)
                .take(self.config.pipeline_max as usize)
                .collect();
            for o in ops {
                if let Some(entry) = self.entry(o) {
                    sends.push((r, entry));
                }
            }
        }
        for (r, entry) in sends {
            let body = Body::Prepare {
                view: self.view,
                commit: self.commit_max,
                entry,
            };
            self.send(r, body);
        }
    }

    /// What this replica is waiting for, if it is not simply idle and caught up: one line
    /// naming the view, the op and — for a primary-elect stuck on an op — which DoViewChange
    /// senders hold, miss or nack it. For liveness reports (the VOPR prints it when a healed
    /// cluster does not converge) and operators' logs.
    pub fn blocker(&self) -> Option<String> {
        if let Some(reason) = &self.halted {
            return Some(format!("halted: {reason}"));
        }
        let set = |s: &BTreeSet<u8>| format!("{:?}", s.iter().collect::<Vec<_>>());
        let view = self.view;
        match self.status {
            Status::Recovering => Some(if self.checkpoint_faulty {
                format!(
                    "view {view}: recovering with an unreadable checkpoint at op {}: waiting for a peer's state transfer",
                    self.checkpoint.op
                )
            } else {
                format!(
                    "view {view}: recovering (faulty head): waiting for RecoveryResponses from a quorum including the primary; have {:?}",
                    self.recovery_replies.keys().collect::<Vec<_>>()
                )
            }),
            Status::ViewChange if self.is_primary_elect() => {
                let dvcs: BTreeSet<u8> = self.dvcs.keys().copied().collect();
                if dvcs.len() < self.config.quorum() || !dvcs.contains(&self.config.replica) {
                    return Some(format!(
                        "view {view}: primary-elect has DoViewChanges from {} (needs {} including its own); StartViewChanges from {}",
                        set(&dvcs),
                        self.config.quorum(),
                        set(&self.svc_from)
                    ));
                }
                if !self.vc_installed {
                    return Some(format!(
                        "view {view}: primary-elect waits for the chosen log's head checkpoint {:?}",
                        self.head_checkpoint_wanted.map(|(op, _)| op)
                    ));
                }
                let lacking = (self.commit_max + 1..=self.op)
                    .find(|o| self.slots.get(o).is_none_or(|s| s.body.is_none()));
                let Some(op) = lacking else {
                    return Some(format!(
                        "view {view}: primary-elect installed op {} and waits for its log to be durable (synced: {})",
                        self.op,
                        self.log_synced()
                    ));
                };
                let checksum = self.slots.get(&op).map(|s| s.header.checksum).or_else(|| {
                    self.slots.get(&(op + 1)).map(|s| s.header.parent)
                });
                let (mut hold, mut miss, mut nack) = (Vec::new(), Vec::new(), Vec::new());
                for (&r, d) in &self.dvcs {
                    let held = checksum.is_some_and(|c| {
                        d.headers.binary_search_by_key(&op, |h| h.op).is_ok_and(|i| {
                            d.headers[i].checksum == c && d.bodies.get(i) == Some(&true)
                        })
                    });
                    if held {
                        hold.push(r);
                    } else if checksum.is_some_and(|c| Self::nacks(d, op, c)) {
                        nack.push(r);
                    } else {
                        miss.push(r);
                    }
                }
                let n = self.config.replica_count as usize;
                Some(format!(
                    "view {view}: primary-elect lacks op {op} (checksum {}): held by {hold:?}, missing (may have acknowledged it) at {miss:?}, nacked by {nack:?} ({} nacks truncate it); commit {}",
                    checksum.map_or("unknown".to_string(), |c| format!("{:08x}", c as u32)),
                    n - self.config.quorum() + 1,
                    self.commit_max
                ))
            }
            Status::ViewChange => Some(format!(
                "view {view}: backup of primary {}: StartViewChanges from {}, view durable: {}, log synced: {}, DoViewChange sent: {}, installed view {} (log_view {}, truncation unpublished: {})",
                self.primary(),
                set(&self.svc_from),
                self.superblock.0 >= view,
                self.log_synced(),
                self.dvc_sent,
                self.install_view,
                self.log_view,
                self.truncation_unpublished
            )),
            Status::Normal if self.log_view < view => Some(format!(
                "view {view}: installing the primary's log (log_view {}): op {}, durable prefix {}",
                self.log_view,
                self.op,
                self.durable_prefix()
            )),
            Status::Normal if self.commit_min < self.commit_max => {
                let op = self.commit_min + 1;
                let what = match self.slots.get(&op) {
                    None => "no header",
                    Some(s) if s.body.is_none() => "header without body",
                    Some(_) => "entry not yet vouched for by the head's chain",
                };
                Some(format!(
                    "view {view}: cannot commit op {op} ({what}); commit_max {}, op {}",
                    self.commit_max, self.op
                ))
            }
            Status::Normal if self.is_primary() && self.commit_min < self.op => {
                let op = self.commit_min + 1;
                let acked: Vec<u8> = self
                    .others()
                    .filter(|&r| self.ack_op[r as usize] >= op)
                    .collect();
                Some(format!(
                    "view {view}: primary waits for acknowledgements of op {op} (acked by {acked:?}, own durable prefix {})",
                    self.durable_prefix()
                ))
            }
            Status::Normal => None,
        }
    }

    /// One line describing the replica's protocol state (for logs).
    pub fn debug_summary(&self) -> String {
        let missing_bodies = span(&self.slots, self.commit_min + 1, self.op)
            .filter(|(_, s)| s.body.is_none())
            .count();
        let slots = span(&self.slots, self.commit_min + 1, self.op).count();
        format!(
            "status={:?} view={} log_view={} sb={:?} op={} commit_min={} commit_max={} cp={} cp_inflight={:?} slots={} missing_bodies={} durable_prefix={} synced={} svc={:?} dvcs={:?} dvc_sent={} vc_installed={} first_slot={:?}",
            self.status, self.view, self.log_view, self.superblock, self.op, self.commit_min,
            self.commit_max, self.checkpoint.op, self.checkpoint_inflight.as_ref().map(|c| c.op),
            slots, missing_bodies, self.durable_prefix(), self.log_synced(), self.svc_from,
            self.dvcs.keys().collect::<Vec<_>>(), self.dvc_sent, self.vc_installed,
            self.slots.keys().next(),
        )
    }

    /// A fresh random value (from `Config::seed`).
    #[allow(dead_code)]
    fn random(&mut self) -> u64 {
        splitmix64(&mut self.rng)
    }
}
