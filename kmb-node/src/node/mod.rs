//! The async glue: one driver loop per node feeding messages, ticks, client requests and disk
//! completions to the pure core, and executing its effects. It makes no protocol decisions.
//!
//! Tasks of a running node:
//! * **driver** (in [`run`]): owns the [`Replica`]; steps the core for each event (messages,
//!   ticks, client requests, storage completions) and executes the effects, handing storage
//!   work to the I/O task in order. It never awaits storage: while a write or an fsync is in
//!   flight the core keeps handling messages and ticks.
//! * **I/O** (`io.rs`): owns the [`Storage`]; executes the storage effects in order, overlaps
//!   appends with the fsync in flight (group commit: the core keeps one sync outstanding, and
//!   the appends made meanwhile make up the next group), and reports completions.
//! * **peer listener** (`peers.rs`): accepts framed connections from other replicas within the
//!   bounds, runs the authenticated handshake, decodes messages, forwards them to the driver.
//! * **peer senders** (`peers.rs`): one per other replica, (re)connecting with backoff and
//!   writing MACed frames.
//! * **client listener** (`clients.rs`): RESP connections; each command waits for its
//!   committed reply.
//!
//! `run` is the production entry point `kmb-node start` calls and the one the simulator's
//! replicas run, unchanged.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::sync::{mpsc, oneshot};

use crate::auth::ClusterKey;
use crate::commands;
use crate::connection::{NodeStatus, Password, ReplicaStatus, Settings};
use crate::core::{self, Effect, Input, Message, Replica};
use crate::resp::Value;
use crate::storage::{
    recovery::CheckpointState as StoredCheckpoint, Recovery, Storage, StorageError,
};
use sim_runtime::net::{Frame, TcpListener};
use sim_runtime::time::{self, Duration};

mod clients;
mod io;
mod peers;

use clients::client_listener_task;
use io::{io_task, IoDone, IoRequest};
use peers::{message_frame, peer_listener_task, peer_sender, InboundPeers, PeerLink, PeerWarnings};

/// Events the driver consumes, bounded.
const INBOX_MAX: usize = 8192;
/// Messages queued per peer before new ones are dropped (the protocol resends).
const PEER_QUEUE_MAX: usize = 4096;
/// Events handled per round of the driver loop before it publishes the replica's state.
const BATCH_MAX: usize = 256;
/// A client command waits this long for its committed reply, then gets an "outcome unknown"
/// error (the request may still commit later).
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// How to run one node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The formatted data file.
    pub data_path: PathBuf,
    /// Every replica's peer address, by replica index.
    pub replica_addresses: Vec<SocketAddr>,
    /// Every replica's client (RESP) address, by replica index (named in redirects).
    pub client_addresses: Vec<SocketAddr>,
    /// Where this node listens for peers (`None`: its entry in `replica_addresses`).
    pub listen_peer: Option<SocketAddr>,
    /// Where this node listens for clients (`None`: its entry in `client_addresses`).
    pub listen_client: Option<SocketAddr>,
    /// Length of one core tick.
    pub tick: Duration,
    /// The cluster key every replica holds: peers prove it in the handshake and MAC every
    /// message with a key derived from it.
    pub cluster_key: ClusterKey,
    /// Resource bounds.
    pub limits: Limits,
    /// The client password (`requirepass`): when set, a client must `AUTH` (or `HELLO … AUTH`)
    /// before any other command.
    pub requirepass: Option<Password>,
}

/// Resource bounds of a node: each refusal is logged (rate-limited) or answered with a clear
/// error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Inbound peer connections (authenticated or still in the handshake) in total.
    pub peer_connections_max: usize,
    /// Inbound peer connections from one IP address.
    pub peer_connections_per_address_max: usize,
    /// An inbound or outbound peer connection must finish its handshake within this.
    pub peer_handshake_timeout: Duration,
    /// Client connections; one more is answered `-ERR max number of clients reached` and
    /// closed.
    pub client_connections_max: usize,
    /// A client connection with no command for this long is closed.
    pub client_idle_timeout: Duration,
    /// Bytes one client connection may buffer for the command being read (its arguments and
    /// unparsed input); a larger command is a protocol error and the connection is closed.
    pub client_buffer_max: usize,
}

impl Limits {
    /// File descriptors a node with these bounds can hold open at once: every client and
    /// inbound peer connection the bounds allow, one outbound link per other replica, and a
    /// margin for the data file, the key file, both listeners, the runtime and stdio. `kmb-node
    /// start` makes sure the open-file limit covers it, so the node cannot run out of
    /// descriptors — and so cannot keep leading while unable to accept clients.
    pub fn descriptors_needed(&self, replica_count: usize) -> u64 {
        (self.client_connections_max + self.peer_connections_max + replica_count + 32) as u64
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            peer_connections_max: 64,
            peer_connections_per_address_max: 8,
            peer_handshake_timeout: Duration::from_secs(5),
            client_connections_max: 512,
            client_idle_timeout: Duration::from_secs(300),
            client_buffer_max: 8 << 20,
        }
    }
}

/// Why a node stopped.
#[derive(Debug)]
pub enum NodeError {
    /// Bad configuration: one clear line.
    Config(String),
    /// Storage failed (an fsync error stops the node; it is never retried).
    Storage(StorageError),
    /// A socket could not be bound.
    Io(String),
    /// The core halted: it can prove it is outside the fault bound.
    Halted(String),
}

impl std::fmt::Display for NodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeError::Config(m) => write!(f, "configuration error: {m}"),
            NodeError::Storage(e) => write!(f, "storage error: {e}"),
            NodeError::Io(m) => write!(f, "i/o error: {m}"),
            NodeError::Halted(m) => write!(f, "replica halted: {m}"),
        }
    }
}

impl std::error::Error for NodeError {}

impl From<StorageError> for NodeError {
    fn from(e: StorageError) -> Self {
        NodeError::Storage(e)
    }
}

enum Event {
    Peer {
        from: u8,
        message: Message,
    },
    Client {
        client: u128,
        request: u64,
        body: Vec<u8>,
        reply: oneshot::Sender<Value>,
        session: bool,
    },
    /// A connection asks for the replica's state (`INFO`, `ROLE`, …): read, no step.
    Status {
        reply: oneshot::Sender<NodeStatus>,
    },
    /// `WATCH`: the keys' versions in the replica's applied state (`kv::KvState::version`):
    /// read, no step.
    Versions {
        keys: Vec<Vec<u8>>,
        reply: oneshot::Sender<Vec<u64>>,
    },
}

/// What recovery found, in the core's terms.
/// Takes the recovery by value: the log and the checkpoint move into the core, not copied.
fn durable_state(recovery: Recovery) -> Result<core::DurableState, NodeError> {
    let sb = &recovery.superblock;
    // An unreadable checkpoint is faulty, never absent (Protocol-Aware Recovery): the core
    // starts recovering and repairs it by state transfer from a peer (a single replica halts).
    let (checkpoint, checkpoint_faulty) = match recovery.checkpoint {
        StoredCheckpoint::Empty => (None, None),
        StoredCheckpoint::Loaded(blob) => (
            Some(core::CheckpointState {
                op: sb.checkpoint.op,
                checksum: sb.checkpoint.entry_checksum,
                snapshot: core::Snapshot::new(blob),
            }),
            None,
        ),
        StoredCheckpoint::Faulty => {
            tracing::warn!(
                op = sb.checkpoint.op,
                "the checkpoint is unreadable: repairing it from a peer"
            );
            (None, Some((sb.checkpoint.op, sb.checkpoint.entry_checksum)))
        }
    };
    let mut entries = recovery.log;
    entries.extend(recovery.after_gap);
    Ok(core::DurableState {
        view: sb.view,
        log_view: sb.log_view,
        checkpoint,
        checkpoint_faulty,
        entries,
        faulty: recovery.faulty,
        never_written: recovery.never_written,
        // Format writes sequence 1; the first start bumps it (below), so anything higher means
        // this replica ran before and may have acknowledged prepares.
        restarted: sb.sequence > 1,
    })
}

/// The core configuration for a data file's identity and geometry.
pub fn core_config(storage: &Storage, seed: u64) -> Result<core::Config, NodeError> {
    core_config_for(storage.identity(), storage.config(), seed)
}

/// The core configuration a data file of `geometry` runs with — the one derivation, used by
/// `kmb-node start` and the simulator alike: every replica of a cluster is formatted with one
/// geometry, so every replica derives the same checkpoint interval, pipeline, client table
/// size and request limit (the client table is replicated state: its size must agree).
pub fn core_config_for(
    identity: crate::storage::Identity,
    geometry: crate::storage::StorageConfig,
    seed: u64,
) -> Result<core::Config, NodeError> {
    let mut config = core::Config::new(identity.cluster, identity.replica, identity.replica_count);
    let slots = geometry.slot_count as u64;
    config.slot_count = slots;
    config.pipeline_max = (slots / 4).clamp(1, 64);
    // The largest interval that leaves the ring two pipelines of room beyond two intervals
    // (`2 * interval + 2 * pipeline = slots`; the core requires one pipeline). Up to 256 slots
    // that is `slots / 4`, as the pipeline is; past it the pipeline stops at 64 and the interval
    // takes the room: production's 1,024 slots checkpoint every 448 ops, not 256 — a checkpoint
    // writes and syncs the whole state, so at 64 clients SETs ran 12% faster (CHANGELOG.md;
    // docs/operations.md, "Threads").
    config.checkpoint_interval = (slots / 2).saturating_sub(config.pipeline_max).max(1);
    // As many client sessions as WAL slots (1,024 in production).
    config.clients_max = (geometry.slot_count as usize).min(core::snapshot::CLIENTS_MAX_LIMIT);
    config.body_size_max = geometry.body_size_max();
    config.seed = seed;
    config.validate().map_err(NodeError::Config)?;
    Ok(config)
}

/// Run a node until `shutdown` completes or the node stops.
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
    let (mut storage, recovery) = Storage::open(&config.data_path).await?;
    let identity = storage.identity();
    #[cfg(madsim)]
    crate::inspect::started(identity.replica);
    let count = identity.replica_count as usize;
    let me = identity.replica as usize;
    if config.replica_addresses.len() != count || config.client_addresses.len() != count {
        return Err(NodeError::Config(format!(
            "the data file is for {count} replicas but {} replica and {} client addresses were given",
            config.replica_addresses.len(),
            config.client_addresses.len()
        )));
    }
    #[cfg(madsim)]
    let audit = DurabilityAudit::recovered(&recovery);
    #[cfg(madsim)]
    let (recovered_view, recovered_checkpoint) =
        (recovery.superblock.view, recovery.superblock.checkpoint.op);
    let torn = recovery.torn.len();
    let durable = durable_state(recovery)?;
    #[cfg(madsim)]
    crate::inspect::recovery_report(
        identity.replica,
        recovered_view,
        recovered_checkpoint,
        durable.entries.iter().map(|e| e.header.op).collect(),
        durable.faulty.clone(),
    );
    if !durable.restarted {
        // Mark the data file as started before taking part in anything.
        storage
            .write_superblock(durable.view, durable.log_view)
            .await?;
    }
    tracing::info!(
        replica = me,
        replicas = count,
        view = durable.view,
        log_view = durable.log_view,
        entries = durable.entries.len(),
        faulty = durable.faulty.len(),
        torn,
        restarted = durable.restarted,
        "recovered"
    );
    let core_config = core_config(&storage, sim_runtime::rand::random())?;
    let mut replica = Replica::new(core_config, durable);
    #[cfg(madsim)]
    crate::inspect::recovered(&replica);

    let listen_peer = config.listen_peer.unwrap_or(config.replica_addresses[me]);
    let listen_client = config.listen_client.unwrap_or(config.client_addresses[me]);
    let peer_listener = TcpListener::bind(listen_peer)
        .await
        .map_err(|e| NodeError::Io(format!("bind peer address {listen_peer}: {e}")))?;
    let client_listener = TcpListener::bind(listen_client)
        .await
        .map_err(|e| NodeError::Io(format!("bind client address {listen_client}: {e}")))?;
    tracing::info!(replica = me, %listen_peer, %listen_client, "listening");

    let (inbox, mut events) = mpsc::channel::<Event>(INBOX_MAX);
    let warnings = PeerWarnings::new();
    let mut peers: Vec<Option<mpsc::Sender<Frame>>> = Vec::new();
    for (i, addr) in config.replica_addresses.iter().enumerate() {
        if i == me {
            peers.push(None);
            continue;
        }
        let (tx, rx) = mpsc::channel(PEER_QUEUE_MAX);
        let link = PeerLink {
            cluster: identity.cluster,
            me: me as u8,
            replica_count: identity.replica_count,
            key: config.cluster_key.clone(),
            handshake_timeout: config.limits.peer_handshake_timeout,
            warnings: warnings.clone(),
            inbound: InboundPeers::default(),
        };
        sim_runtime::task::spawn(peer_sender(link, i as u8, *addr, rx));
        peers.push(Some(tx));
    }
    let link = PeerLink {
        cluster: identity.cluster,
        me: me as u8,
        replica_count: identity.replica_count,
        key: config.cluster_key.clone(),
        handshake_timeout: config.limits.peer_handshake_timeout,
        warnings,
        inbound: InboundPeers::default(),
    };
    sim_runtime::task::spawn(peer_listener_task(
        peer_listener,
        link,
        inbox.clone(),
        config.limits.clone(),
    ));
    let settings = Settings {
        listen: listen_client,
        requirepass: config.requirepass.clone(),
        client_connections_max: config.limits.client_connections_max,
        client_idle_timeout_secs: config.limits.client_idle_timeout.as_secs(),
        client_buffer_max: config.limits.client_buffer_max,
        request_size_max: storage.config().body_size_max(),
    };
    sim_runtime::task::spawn(client_listener_task(
        client_listener,
        inbox.clone(),
        config.limits.clone(),
        settings,
    ));

    let (io_requests, requests) = mpsc::unbounded_channel();
    let (io_done, mut completions) = mpsc::unbounded_channel();
    // Its own thread in production: its writes run inline there (docs/storage-format.md,
    // "Write protocol").
    let io = sim_runtime::task::spawn_dedicated("kmb-io", io_task(storage, requests, io_done));
    let mut driver = Driver {
        io: io_requests,
        peers,
        pending: BTreeMap::new(),
        client_addresses: config.client_addresses.clone(),
        me: me as u8,
        #[cfg(madsim)]
        audit,
    };
    let result = drive(
        &mut driver,
        &mut replica,
        &mut events,
        &mut completions,
        config.tick,
        shutdown,
    )
    .await;
    // Stop the I/O task and wait for it: it finishes the fsync in flight, and the data file
    // (and its lock) is released before `run` returns.
    drop(driver);
    drop(completions);
    let _ = io.await;
    result
}

/// The driver loop: events and storage completions → core → effects, until `shutdown`
/// completes or the node stops.
async fn drive(
    driver: &mut Driver,
    replica: &mut Replica,
    events: &mut mpsc::Receiver<Event>,
    completions: &mut mpsc::UnboundedReceiver<IoDone>,
    tick: Duration,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let me = driver.me;
    let initial = replica.poll_effects();
    driver.execute(replica, initial)?;
    let mut role = Role::of(replica);
    let mut ticker = time::interval(tick);
    let mut debug_ticks: u64 = 0;
    tokio::pin!(shutdown);
    // Each step's effects run before the next step: the I/O task receives storage work in the
    // order the core emitted it, and the simulator's durability audit judges each message
    // against the completions delivered before the step that sent it.
    let run = |driver: &mut Driver, replica: &mut Replica, effects: Vec<Effect>| {
        driver
            .execute(replica, effects)
            .inspect_err(|e| tracing::warn!(replica = me, "stopping: {e}"))
    };
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => {
                tracing::info!(replica = me, "shutting down");
                return Ok(());
            }
            done = completions.recv() => {
                let Some(done) = done else { return Ok(()) };
                let effects = driver.completed(replica, done)?;
                run(driver, replica, effects)?;
            }
            event = events.recv() => {
                let Some(event) = event else { return Ok(()) };
                let effects = driver.step_event(replica, event);
                run(driver, replica, effects)?;
            }
            _ = ticker.tick() => {
                let effects = replica.step(Input::Tick);
                run(driver, replica, effects)?;
                debug_ticks += 1;
                if debug_ticks.is_multiple_of(100) {
                    tracing::debug!(replica = me, "{}", replica.debug_summary());
                }
                #[cfg(madsim)]
                if debug_ticks.is_multiple_of(10) {
                    crate::inspect::blocker(replica);
                }
                driver.prune_pending();
            }
        }
        // Take whatever else is already waiting before publishing.
        for _ in 0..BATCH_MAX {
            let effects = match completions.try_recv() {
                Ok(done) => driver.completed(replica, done)?,
                Err(_) => match events.try_recv() {
                    Ok(event) => driver.step_event(replica, event),
                    Err(_) => break,
                },
            };
            run(driver, replica, effects)?;
        }
        role.log_change(replica);
        #[cfg(madsim)]
        crate::inspect::publish(replica);
    }
}

/// The replica's status and view as last logged: operators see every view change and who
/// became primary at `info` level, without a debug log.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Role {
    status: core::Status,
    view: crate::entry::View,
}

impl Role {
    fn of(replica: &Replica) -> Role {
        Role {
            status: replica.status(),
            view: replica.view(),
        }
    }

    fn log_change(&mut self, replica: &Replica) {
        let now = Role::of(replica);
        if now == *self {
            return;
        }
        let me = replica.config().replica;
        let primary = replica.config().primary_of(now.view);
        match now.status {
            core::Status::Normal => tracing::info!(
                replica = me,
                view = now.view,
                primary,
                op = replica.op(),
                commit = replica.commit(),
                "normal: {}",
                if primary == me { "primary" } else { "backup" }
            ),
            core::Status::ViewChange => tracing::info!(
                replica = me,
                view = now.view,
                from_view = self.view,
                from = ?self.status,
                "view change: electing replica {primary}"
            ),
            core::Status::Recovering => tracing::info!(replica = me, view = now.view, "recovering"),
        }
        *self = now;
    }
}

struct Pending {
    reply: oneshot::Sender<Value>,
    session: bool,
}

struct Driver {
    /// Storage work for the I/O task, in order.
    io: mpsc::UnboundedSender<IoRequest>,
    peers: Vec<Option<mpsc::Sender<Frame>>>,
    pending: BTreeMap<(u128, u64), Vec<Pending>>,
    client_addresses: Vec<SocketAddr>,
    me: u8,
    /// What storage reported durable, to audit every PrepareOk against (simulation).
    #[cfg(madsim)]
    audit: DurabilityAudit,
}

impl Driver {
    /// A storage completion: fed to the core (or, failed, the node stops).
    fn completed(&mut self, replica: &mut Replica, done: IoDone) -> Result<Vec<Effect>, NodeError> {
        Ok(match done {
            IoDone::Synced { op } => replica.step(Input::Synced { op }),
            IoDone::SuperblockSynced { view, log_view } => {
                #[cfg(madsim)]
                {
                    self.audit.superblock = (view, log_view);
                }
                replica.step(Input::SuperblockSynced { view, log_view })
            }
            IoDone::CheckpointDone { op } => {
                #[cfg(madsim)]
                self.audit.checkpointed(op);
                replica.step(Input::CheckpointDone { op })
            }
            IoDone::Durable(headers) => {
                #[cfg(madsim)]
                self.audit.became_durable(headers);
                #[cfg(not(madsim))]
                let _ = headers;
                Vec::new()
            }
            IoDone::Failed(e) => {
                tracing::warn!(replica = self.me, "stopping: {e}");
                return Err(NodeError::Storage(e));
            }
        })
    }

    /// Hand storage work to the I/O task (gone only if it stopped, which it reports).
    fn storage(&self, request: IoRequest) {
        let _ = self.io.send(request);
    }

    fn step_event(&mut self, replica: &mut Replica, event: Event) -> Vec<Effect> {
        match event {
            Event::Peer { from, message } => replica.step(Input::Message { from, message }),
            Event::Client {
                client,
                request,
                body,
                reply,
                session,
            } => {
                self.pending
                    .entry((client, request))
                    .or_default()
                    .push(Pending { reply, session });
                replica.step(Input::ClientRequest {
                    client,
                    request,
                    body,
                    now: time::unix_micros() / 1000,
                })
            }
            Event::Status { reply } => {
                let _ = reply.send(self.status(replica));
                Vec::new()
            }
            Event::Versions { keys, reply } => {
                let kv = replica.kv();
                let _ = reply.send(keys.iter().map(|k| kv.version(k)).collect());
                Vec::new()
            }
        }
    }

    /// The replica's state for a client connection (`INFO`, `ROLE`, `WAIT`, `DBSIZE`).
    fn status(&self, replica: &Replica) -> NodeStatus {
        let config = replica.config();
        NodeStatus {
            replica: config.replica,
            replica_count: config.replica_count,
            status: match replica.status() {
                core::Status::Normal => ReplicaStatus::Normal,
                core::Status::ViewChange => ReplicaStatus::ViewChange,
                core::Status::Recovering => ReplicaStatus::Recovering,
            },
            view: replica.view(),
            primary: config.primary_of(replica.view()),
            is_primary: replica.is_primary(),
            op: replica.op(),
            commit: replica.commit(),
            commit_max: replica.commit_max(),
            checkpoint_op: replica.checkpoint_op(),
            keys: replica.kv().len(),
            expires: replica.kv().expiring(),
            clock: replica.kv().clock(),
            client_addresses: self.client_addresses.clone(),
        }
    }

    /// Forget clients that gave up waiting.
    fn prune_pending(&mut self) {
        self.pending.retain(|_, waiters| {
            waiters.retain(|w| !w.reply.is_closed());
            !waiters.is_empty()
        });
    }

    fn answer(&mut self, client: u128, request: u64, value: impl Fn(bool) -> Value) {
        if let Some(waiters) = self.pending.remove(&(client, request)) {
            for w in waiters {
                let _ = w.reply.send(value(w.session));
            }
        }
    }

    /// Execute effects in order. Storage effects go to the I/O task in order; their
    /// completions come back as events ([`Driver::completed`]).
    fn execute(&mut self, replica: &mut Replica, effects: Vec<Effect>) -> Result<(), NodeError> {
        for effect in effects {
            match effect {
                Effect::Send { to, message } => {
                    #[cfg(madsim)]
                    let message = {
                        let mut message = message;
                        crate::inspect::buggy_view(self.me, &mut message.body);
                        message
                    };
                    #[cfg(madsim)]
                    match &message.body {
                        crate::core::Body::DoViewChange { view, vote } => {
                            self.audit.vote(self.me, *view, vote);
                            crate::inspect::voted(self.me, *view)
                        }
                        crate::core::Body::PrepareOk { op, .. } => crate::inspect::acknowledged(
                            self.me,
                            *op,
                            self.audit.synced_above(replica.commit()),
                        ),
                        _ => {}
                    }
                    if let Some(Some(peer)) = self.peers.get(to as usize) {
                        // A full queue drops the message: the protocol resends.
                        let _ = peer.try_send(message_frame(&message));
                    }
                }
                Effect::WriteEntries(entries) => {
                    #[cfg(madsim)]
                    self.audit.wrote(&entries);
                    self.storage(IoRequest::Append(entries));
                }
                Effect::TruncateLogAfter(op) => {
                    tracing::debug!(replica = self.me, op, "truncate log");
                    #[cfg(madsim)]
                    self.audit.truncated(op);
                    self.storage(IoRequest::Truncate(op));
                }
                Effect::Sync { op } => self.storage(IoRequest::Sync { op }),
                Effect::WriteSuperblock { view, log_view } => {
                    self.storage(IoRequest::WriteSuperblock { view, log_view })
                }
                Effect::Checkpoint {
                    op,
                    checksum,
                    snapshot,
                } => {
                    #[cfg(madsim)]
                    {
                        crate::inspect::checkpoint(self.me, op, &snapshot);
                        self.audit.checkpointing(op, checksum);
                    }
                    self.storage(IoRequest::Checkpoint {
                        op,
                        checksum,
                        snapshot,
                    });
                }
                Effect::InstallCheckpoint {
                    op,
                    checksum,
                    snapshot,
                } => {
                    #[cfg(madsim)]
                    self.audit.checkpointing(op, checksum);
                    self.storage(IoRequest::InstallCheckpoint {
                        op,
                        checksum,
                        snapshot,
                    })
                }
                Effect::Reply {
                    client,
                    request,
                    op,
                    reply,
                    read,
                } => {
                    let value = commands::reply_value(&reply);
                    self.answer(client, request, |session| match (session, read) {
                        // A read served without an entry: the state after `op`.
                        (true, true) => Value::Array(vec![
                            Value::Integer(op as i64),
                            value.clone(),
                            Value::Simple("read".to_string()),
                        ]),
                        (true, false) => {
                            Value::Array(vec![Value::Integer(op as i64), value.clone()])
                        }
                        (false, _) => value.clone(),
                    });
                }
                Effect::Redirect {
                    client,
                    request,
                    primary,
                    ordered,
                } => {
                    let address = self
                        .client_addresses
                        .get(primary as usize)
                        .map_or(String::new(), |a| format!(" {a}"));
                    // `ORDERED`: this replica ordered the request and left its view before
                    // committing it — it may still take effect (docs/redis-compat.md).
                    let ordered = if ordered { " ORDERED" } else { "" };
                    self.answer(client, request, |_| {
                        Value::Error(format!("REDIRECT {primary}{address}{ordered}"))
                    });
                }
                Effect::Commit { op, checksum } => {
                    tracing::trace!(replica = self.me, op, "commit");
                    #[cfg(madsim)]
                    crate::inspect::commit(self.me, op, checksum, || replica.entry(op));
                    #[cfg(not(madsim))]
                    let _ = (checksum, &replica);
                }
                Effect::StateTransferred { op, checksum } => {
                    tracing::info!(replica = self.me, op, "state transferred");
                    #[cfg(madsim)]
                    crate::inspect::state_transferred(self.me, op, checksum);
                    #[cfg(not(madsim))]
                    let _ = checksum;
                }
                Effect::Halt(reason) => return Err(NodeError::Halted(reason)),
            }
        }
        Ok(())
    }
}

/// What storage reported durable, mirrored in the driver (simulation): every PrepareOk is
/// audited against it (`inspect::acknowledged`), so an acknowledgement sent before the I/O
/// task's completion covered it is caught however the completions interleave with messages.
#[cfg(madsim)]
#[derive(Default)]
struct DurabilityAudit {
    /// Per op: the header last handed to storage.
    written: BTreeMap<u64, crate::entry::Header>,
    /// Per op: that header, once storage reported it durable (redundant header synced).
    durable: BTreeMap<u64, crate::entry::Header>,
    /// The `(view, log_view)` storage last reported durable in the superblock.
    superblock: (crate::entry::View, crate::entry::View),
    /// The durable checkpoint's op and entry checksum: the hash chain's anchor (a checkpoint
    /// installed from a peer may replace a local entry at its op).
    anchor: (u64, crate::entry::Checksum),
    /// The checkpoint being stored, until its completion.
    checkpointing: Option<(u64, crate::entry::Checksum)>,
}

#[cfg(madsim)]
impl DurabilityAudit {
    /// The recovered log is durable (it was read back from the disk).
    fn recovered(recovery: &Recovery) -> DurabilityAudit {
        let mut audit = DurabilityAudit {
            superblock: (recovery.superblock.view, recovery.superblock.log_view),
            anchor: (
                recovery.superblock.checkpoint.op,
                recovery.superblock.checkpoint.entry_checksum,
            ),
            ..DurabilityAudit::default()
        };
        for e in recovery.log.iter().chain(&recovery.after_gap) {
            audit.written.insert(e.header.op, e.header);
            audit.durable.insert(e.header.op, e.header);
        }
        audit
    }

    /// A DoViewChange for `view` is sent: the new view and the `log_view` it reports must be
    /// durable in the superblock, and every body it vouches for durable in the WAL.
    fn vote(&self, me: u8, view: crate::entry::View, vote: &crate::core::message::Vote) {
        let (durable_view, durable_log_view) = self.superblock;
        if durable_view < view || durable_log_view < vote.log_view {
            crate::inspect::voted_early(
                me,
                view,
                format!(
                    "the superblock held view {durable_view} / log_view {durable_log_view}, the \
                     vote claims view {view} / log_view {}",
                    vote.log_view
                ),
            );
        }
        for (h, _) in vote
            .log
            .headers
            .iter()
            .zip(&vote.bodies)
            .filter(|(_, &b)| b)
        {
            // The checkpoint's own op (the core keeps its slot) is durable as the checkpoint.
            let checkpointed = (h.op, h.checksum) == self.anchor;
            if !checkpointed && self.durable.get(&h.op) != Some(h) {
                crate::inspect::voted_early(
                    me,
                    view,
                    format!(
                        "the body of op {} it vouches for was not reported durable",
                        h.op
                    ),
                );
                return;
            }
        }
    }

    fn wrote(&mut self, entries: &[crate::entry::Entry]) {
        for e in entries {
            self.written.insert(e.header.op, e.header);
            self.durable.remove(&e.header.op);
        }
    }

    fn truncated(&mut self, op: u64) {
        self.written.split_off(&(op + 1));
        self.durable.split_off(&(op + 1));
    }

    fn checkpointing(&mut self, op: u64, checksum: crate::entry::Checksum) {
        self.checkpointing = Some((op, checksum));
    }

    /// The checkpoint at `op` is durable: it anchors the chain; entries at or below it drop.
    fn checkpointed(&mut self, op: u64) {
        if let Some(anchor) = self.checkpointing.take().filter(|&(o, _)| o == op) {
            self.anchor = anchor;
        }
        self.written = self.written.split_off(&(op + 1));
        self.durable = self.durable.split_off(&(op + 1));
    }

    fn became_durable(&mut self, headers: Vec<crate::entry::Header>) {
        for h in headers {
            if self.written.get(&h.op) == Some(&h) {
                self.durable.insert(h.op, h);
            }
        }
    }

    /// The highest op up to which the log above `floor` (a committed op) is reported durable
    /// and hash-chained: what a PrepareOk sent now may claim (`Storage::synced_above`).
    fn synced_above(&self, floor: u64) -> u64 {
        let mut at = floor;
        while let Some(next) = self.durable.get(&(at + 1)) {
            // As storage's walk: the entry below is the one last written there, durable or not.
            let below = if at == self.anchor.0 {
                Some(self.anchor.1)
            } else {
                self.written.get(&at).map(|h| h.checksum)
            };
            if below.is_some_and(|b| next.parent != b) {
                break;
            }
            at += 1;
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::core_config_for;
    use crate::storage::{Identity, StorageConfig};

    fn derived(slot_count: u32) -> (u64, u64) {
        let identity = Identity {
            cluster: 1,
            replica: 0,
            replica_count: 3,
        };
        let geometry = StorageConfig {
            slot_count,
            slot_size: 4096,
        };
        let config = core_config_for(identity, geometry, 0).unwrap();
        (config.checkpoint_interval, config.pipeline_max)
    }

    /// Goal: up to 256 slots the interval is `slots / 4`, as it always was (the simulator's
    /// geometries run as before); past it the pipeline stops at 64 and the interval takes the
    /// ring's room, leaving two pipelines beyond two intervals: production checkpoints every
    /// 448 ops.
    #[test]
    fn checkpoint_interval_takes_the_ring_s_room_past_the_pipeline_limit() {
        for slots in [8, 16, 32, 64, 128, 256] {
            assert_eq!(
                derived(slots),
                (slots as u64 / 4, slots as u64 / 4),
                "{slots} slots"
            );
        }
        assert_eq!(derived(StorageConfig::PRODUCTION.slot_count), (448, 64));
        assert_eq!(derived(4096), (1984, 64));
        for slots in [4, 5, 6, 7, 9, 10, 100, 257, 1000, 1024, 4096] {
            let (interval, pipeline) = derived(slots);
            assert!(2 * interval + 2 * pipeline <= slots as u64, "{slots} slots");
        }
    }
}
