//! The replica: Viewstamped Replication Revisited (Liskov & Cowling 2012) made durable the
//! TigerBeetle way, with Protocol-Aware Recovery's rule that a faulty entry is repaired, never
//! taken for never-written.
//!
//! Pure: [`Replica::step`] handles one [`Input`] and returns the [`Effect`]s to execute in
//! order. Durability is part of the effects: the replica never acts on a write (PrepareOk,
//! counting itself, DoViewChange, StartView, reusing WAL space) before the glue has reported
//! it durable with [`Input::Synced`], [`Input::SuperblockSynced`] or
//! [`Input::CheckpointDone`]. See `docs/protocol.md`.
//!
//! This file holds the replica's state and its entry points: construction, inspection,
//! [`Replica::step`] (one small dispatch to the sub-protocols' handlers) and
//! `Replica::progress`, the fixed order in which everything that may follow from a state
//! change is tried. Each sub-protocol is an `impl Replica` block in its own file of `core`:
//! `log` (slots and the hash chain), `durability`, `normal`, `view_change`, `nack`,
//! `recovery`, `repair`, `state_transfer`, `client`, `timers`, `diagnose`.

use crate::entry::View;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::client::QueuedRequest;
use super::log::Slot;
use super::message::{Body, LogSummary, Message, Vote};
use super::read::PendingRead;
use super::snapshot::{self, ClientTable};
use super::{CheckpointState, Config, DurableState, Effect, Input, Snapshot, Status};
use crate::entry::{Checksum, Entry, Header};
use crate::kv::KvState;

/// One replica's protocol state. See the module docs.
pub struct Replica {
    pub(super) config: Config,
    pub(super) status: Status,
    pub(super) halted: Option<String>,
    /// `(view, commit_min)` at the last invariant check (they never go back).
    pub(super) checked: (View, u64),
    pub(super) effects: Vec<Effect>,
    pub(super) tick: u64,

    pub(super) view: View,
    /// The view whose log this replica has completely and durably installed (in memory;
    /// `superblock` says what is durable).
    pub(super) log_view: View,
    pub(super) superblock: (View, View),
    pub(super) superblock_inflight: Option<(View, View)>,

    pub(super) checkpoint: CheckpointState,
    pub(super) checkpoint_inflight: Option<CheckpointState>,
    /// The durable checkpoint is unreadable (`DurableState::checkpoint_faulty`): `checkpoint`
    /// holds only its op and checksum (the snapshot is a placeholder) and `kv`/`clients` are
    /// empty, not the state at `commit_min`, until a peer's checkpoint is accepted (then in
    /// `checkpoint_inflight`); cleared when that one is durable (`CheckpointDone`).
    pub(super) checkpoint_faulty: bool,
    /// Rotates the peer asked for a checkpoint while `checkpoint_faulty`.
    pub(super) state_transfer_peer: u8,
    /// The authoritative log being installed (chosen DVC, StartView, primary's
    /// RecoveryResponse) has its head at the sender's checkpoint, beyond this replica's log
    /// (`InstallError::MissingHead`): its (op, checksum), and for a StartView/RecoveryResponse
    /// the log to join. A StateTransfer of exactly that checkpoint is accepted in any status
    /// (it is verified by the authoritative head), then the install is retried.
    pub(super) head_checkpoint_wanted: Option<(u64, Checksum)>,
    pub(super) pending_join: Option<(u8, View, LogSummary)>,

    pub(super) slots: BTreeMap<u64, Slot>,
    pub(super) op: u64,
    pub(super) commit_min: u64,
    pub(super) commit_max: u64,
    pub(super) kv: KvState,
    pub(super) clients: ClientTable,
    /// The latest wall-clock reading the glue passed in with a client request
    /// (milliseconds since the Unix epoch): a primary stamps entries with at least it.
    pub(super) wall_clock: u64,

    /// Ops written since the last Sync request.
    pub(super) dirty: BTreeSet<u64>,
    pub(super) dirty_truncate: bool,
    /// The highest op this replica ever wrote a body for, or recovered from its disk (intact
    /// or faulty). Anything above it was never durable here, so never acknowledged.
    pub(super) held_max: u64,
    /// Recovered-faulty ops that storage proves were never durable here (their redundant
    /// header copy was never written), removed once written.
    pub(super) never_written: BTreeSet<u64>,
    /// A `TruncateLogAfter` was issued since the last superblock write that published it.
    /// Storage makes a truncation durable with the next superblock write and requires its
    /// `log_view` to exceed the view of every dropped entry (so recovery cannot resurrect the
    /// dropped suffix): until then the superblock is written only with `log_view >=
    /// install_view` (the view whose log, installed, dropped them).
    pub(super) truncation_unpublished: bool,
    /// The view whose log this replica last installed (a StartView, RecoveryResponse or the
    /// chosen DoViewChange): once that log is complete and durable it may claim it as its
    /// `log_view`, even after moving on to a later view change (see
    /// [`Self::try_advance_log_view`]).
    pub(super) install_view: View,
    /// (op echoed, ops covered) of the outstanding Sync.
    pub(super) sync_inflight: Option<(u64, BTreeSet<u64>)>,
    pub(super) syncing_truncate: bool,

    /// Primary: highest op each replica acknowledged in this view.
    pub(super) ack_op: Vec<u64>,
    /// Backup: the last op acknowledged in this view.
    pub(super) acked_op: Option<u64>,
    /// The tick each replica was last heard from (any valid message).
    pub(super) heard_tick: Vec<u64>,
    /// Primary: the view it leads and the tick it first ticked as its primary.
    pub(super) leading_since: Option<(View, u64)>,
    /// Primary: no quorum heard from within a view-change timeout; it does not serve
    /// clients (`timers.rs`).
    pub(super) quorum_lost: bool,
    /// Client requests the primary (or primary-elect) will order as soon as it can — its
    /// pipeline or WAL ring is full, or its view is not yet active — at most one per client
    /// and [`REQUEST_QUEUE_MAX`] in all, in arrival order (`client.rs`).
    pub(super) request_queue: VecDeque<QueuedRequest>,
    /// Primary: reads waiting for their read round and commit point (`read.rs`).
    pub(super) reads: VecDeque<PendingRead>,
    /// Primary: the latest read round it sent (rounds number on across views).
    pub(super) read_round: u64,
    /// Primary: the view `read_acks` are of, and the latest round each replica answered in it.
    pub(super) read_acks: (View, Vec<u64>),

    pub(super) svc_from: BTreeSet<u8>,
    pub(super) dvcs: BTreeMap<u8, Vote>,
    pub(super) dvc_sent: bool,
    pub(super) vc_installed: bool,
    /// Primary-elect after the install: the chosen DVC's suffix headers (the canonical log the
    /// nack rule judges against).
    pub(super) vc_headers: Vec<Header>,

    pub(super) primary_contact_tick: u64,
    pub(super) heartbeat_due: u64,
    pub(super) prepare_due: u64,
    pub(super) repair_due: u64,
    pub(super) view_change_due: u64,
    pub(super) resend_due: u64,
    pub(super) state_transfer_due: u64,
    pub(super) repair_inflight: BTreeSet<u64>,

    pub(super) rng: u64,
    pub(super) nonce: u64,
    pub(super) recovery_replies: BTreeMap<u8, (View, LogSummary)>,

    pub(super) commits: Vec<(u64, Checksum)>,
}

/// Views and op numbers in messages are bounded far below overflow, so that no arithmetic on
/// them (`view + 1`, `op + 1`, `checkpoint + slot_count`) can overflow.
pub(crate) const VIEW_MAX: View = View::MAX / 2;
/// How far past this replica's view one message may move it (issue 13: a single message
/// naming a view near the limit, from a buggy peer, used to leave every later view change
/// past the limit — no primary ever again). A message naming a view further ahead is not
/// acted on; the replica starts a view change to its view + `VIEW_JUMP_MAX` instead. Honest
/// views grow by one per view-change timeout: 2^32 of them take 68 years at two a second,
/// so no honest message is ever clamped; a runaway peer needs 2^31 successive clamped jumps
/// before `VIEW_MAX` is reached.
pub(crate) const VIEW_JUMP_MAX: View = 1 << 32;
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
            ..
        } => *view < VIEW_MAX && *commit < OP_MAX && *checkpoint_op < OP_MAX,
        Body::StartViewChange { view }
        | Body::RequestStartView { view }
        | Body::CommitAck { view, .. } => *view < VIEW_MAX,
        Body::DoViewChange {
            view,
            vote: Vote { log, .. },
        }
        | Body::StartView { view, log }
        | Body::RecoveryResponse { view, log, .. } => {
            *view < VIEW_MAX
                && log.op < OP_MAX
                && log.commit < OP_MAX
                && log.checkpoint_op < OP_MAX
                && headers_ok(&log.headers)
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

/// The view a message names (the sender's view), if it names one.
fn view_of(body: &Body) -> Option<View> {
    match body {
        Body::Prepare { view, .. }
        | Body::PrepareOk { view, .. }
        | Body::Commit { view, .. }
        | Body::CommitAck { view, .. }
        | Body::StartViewChange { view }
        | Body::RequestStartView { view }
        | Body::DoViewChange { view, .. }
        | Body::StartView { view, .. }
        | Body::RecoveryResponse { view, .. }
        | Body::StateTransfer { view, .. } => Some(*view),
        Body::Recovery { .. }
        | Body::RequestStateTransfer { .. }
        | Body::RequestPrepare { .. }
        | Body::RequestHeaders { .. }
        | Body::Headers { .. } => None,
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
            snapshot: Snapshot::new(snapshot::empty()),
        });
        let mut rng = config.seed;
        let nonce = splitmix64(&mut rng);
        let mut replica = Replica {
            status: Status::Normal,
            halted: None,
            checked: (0, 0),
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
            wall_clock: 0,
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
            heard_tick: vec![0; n],
            leading_since: None,
            quorum_lost: false,
            request_queue: VecDeque::new(),
            reads: VecDeque::new(),
            read_round: 0,
            read_acks: (0, vec![0; n]),
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

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn view(&self) -> View {
        self.view
    }

    pub fn log_view(&self) -> View {
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

    /// The headers of the log entries held from `lo` to `hi` (inclusive), in op order (for
    /// inspection: [`Replica::header_at`] of each op that has one, in one pass).
    pub fn headers_between(&self, lo: u64, hi: u64) -> impl Iterator<Item = (u64, &Header)> {
        (lo <= hi)
            .then(|| self.slots.range(lo..=hi))
            .into_iter()
            .flatten()
            .map(|(&op, slot)| (op, &slot.header))
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

    /// The state hash at `commit()` ([`snapshot::state_hash`]: kv state and client table).
    pub fn state_hash(&self) -> u128 {
        snapshot::state_hash(&self.kv, &self.clients)
    }

    /// The (op, checksum) pairs applied since the last call.
    pub fn take_commits(&mut self) -> Vec<(u64, Checksum)> {
        std::mem::take(&mut self.commits)
    }

    /// Effects queued outside `step` (at construction).
    pub fn poll_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

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
                    now,
                } => {
                    self.wall_clock = self.wall_clock.max(now);
                    self.on_client_request(client, request, body)
                }
                Input::Synced { op } => self.on_synced(op),
                Input::SuperblockSynced { view, log_view } => {
                    self.on_superblock_synced(view, log_view)
                }
                Input::CheckpointDone { op } => self.on_checkpoint_done(op),
            }
            if self.halted.is_none() {
                self.progress();
                self.check_invariants();
            }
        }
        std::mem::take(&mut self.effects)
    }

    /// The core's own invariants after every step (`invariant!`: asserted in the simulator,
    /// debug-asserted in production): views and commits never go back within an incarnation,
    /// `log_view <= view`, the applied commit is at most the known one, the checkpoint lies at
    /// or below the applied commit, and every body held lies in the WAL ring above the
    /// checkpoint.
    fn check_invariants(&mut self) {
        let (view, commit) = self.checked;
        invariant!(self.view >= view, "view went back: {view} -> {}", self.view);
        invariant!(
            self.commit_min >= commit,
            "commit went back: {commit} -> {}",
            self.commit_min
        );
        self.checked = (self.view, self.commit_min);
        invariant!(self.log_view <= self.view, "log_view above view");
        invariant!(
            self.commit_min <= self.commit_max,
            "applied past the known commit"
        );
        invariant!(
            self.checkpoint.op <= self.commit_min,
            "checkpoint {} above the applied commit {}",
            self.checkpoint.op,
            self.commit_min
        );
        // Bodies (what the WAL holds) lie within the ring above the checkpoint; headers alone
        // (a view change's log) may lie further ahead. Inside the macro, so production
        // release builds never walk the slots.
        invariant!(
            self.slots
                .range(self.checkpoint.op + self.config.slot_count + 1..)
                .all(|(_, s)| s.body.is_none()),
            "a body lies beyond the ring above checkpoint {}",
            self.checkpoint.op
        );
    }

    fn on_message(&mut self, from: u8, message: Message) {
        if message.cluster != self.config.cluster
            || message.replica != from
            || from >= self.config.replica_count
            || from == self.config.replica
            || !numbers_in_range(&message.body)
        {
            return;
        }
        self.heard_tick[from as usize] = self.tick;
        // An entry this replica's WAL slot cannot hold (a peer formatted with a larger
        // geometry, or a buggy one) is dropped rather than handed to storage, which would
        // refuse it and stop the node.
        if let Body::Prepare { entry, .. } = &message.body {
            if entry.body.len() > self.config.body_size_max {
                return;
            }
        }
        let jump_max = self.view.max(self.superblock.0) + VIEW_JUMP_MAX;
        // A recovering replica cannot start a view change, so clamping cannot bring it
        // closer; it takes its view from RecoveryResponses of a quorum including that view's
        // primary, which no single buggy peer makes, and a StateTransfer (its checkpoint)
        // does not move its view at all (VOPR seeds 842542259098, 842542261147, 806316636212:
        // a replica recovering in view 1 while the others were 2^32 views on never recovered).
        let recovering_reply = self.status == Status::Recovering
            && matches!(
                message.body,
                Body::RecoveryResponse { .. } | Body::StateTransfer { .. }
            );
        if !recovering_reply && view_of(&message.body).is_some_and(|v| v > jump_max) {
            // Too far ahead to follow in one step. Not simply dropped: a replica that some
            // earlier jump put more than `VIEW_JUMP_MAX` ahead of the rest would then never
            // be followed, nor ever come back (views never decrease) — excluded for good
            // (VOPR seed 764598860028). Instead start a view change to the furthest view
            // allowed: any replica may start any higher view, and repeated messages bring the
            // cluster within reach of the sender's view.
            if self.status != Status::Recovering && jump_max > self.view {
                crate::mark!("view_jump_clamped");
                self.start_view_change(jump_max);
            }
            return;
        }
        if view_of(&message.body).is_some_and(|v| v < self.view) {
            match &message.body {
                Body::Prepare { .. } => crate::mark!("stale_prepare"),
                Body::DoViewChange { .. } => crate::mark!("stale_do_view_change"),
                Body::StartView { .. } => crate::mark!("stale_start_view"),
                _ => crate::mark!("stale_other"),
            }
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
                round,
            } => self.on_commit(from, view, commit, checkpoint_op, round),
            Body::StartViewChange { view } => self.on_start_view_change(from, view),
            // Heard (above), and a read round answered.
            Body::CommitAck { view, round } => self.on_commit_ack(from, view, round),
            Body::DoViewChange { view, vote } => self.on_do_view_change(from, view, vote),
            Body::StartView { view, log } => self.on_start_view(from, view, log),
            Body::RequestStartView { view } => self.on_request_start_view(from, view),
            Body::Recovery { nonce } => self.on_recovery(from, nonce),
            Body::RecoveryResponse { view, nonce, log } => {
                self.on_recovery_response(from, view, nonce, log)
            }
            Body::RequestPrepare { op, checksum } => self.on_request_prepare(from, op, checksum),
            Body::RequestHeaders { op_min, op_max } => {
                self.on_request_headers(from, op_min, op_max)
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

    /// Everything that may follow from a state change, in a fixed order.
    pub(super) fn progress(&mut self) {
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
        self.serve_request_queue();
        self.serve_reads();
        self.maybe_write_superblock();
        self.maybe_sync();
    }

    pub(super) fn halt(&mut self, reason: String) {
        if self.halted.is_none() {
            self.effects.push(Effect::Halt(reason.clone()));
            self.halted = Some(reason);
        }
    }

    pub(super) fn primary(&self) -> u8 {
        self.config.primary_of(self.view)
    }

    pub(super) fn is_primary_elect(&self) -> bool {
        self.status == Status::ViewChange && self.primary() == self.config.replica
    }

    pub(super) fn others(&self) -> impl Iterator<Item = u8> {
        let me = self.config.replica;
        (0..self.config.replica_count).filter(move |&r| r != me)
    }

    pub(super) fn send(&mut self, to: u8, body: Body) {
        invariant!(to != self.config.replica);
        let message = Message::new(self.config.cluster, self.config.replica, body);
        self.effects.push(Effect::Send { to, message });
    }

    pub(super) fn broadcast(&mut self, body: Body) {
        let others: Vec<u8> = self.others().collect();
        for to in others {
            self.send(to, body.clone());
        }
    }

    /// A fresh random value (from `Config::seed`).
    #[allow(dead_code)]
    fn random(&mut self) -> u64 {
        splitmix64(&mut self.rng)
    }
}
