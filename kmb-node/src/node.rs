//! The async glue: one driver loop per node feeding messages, ticks, client requests and disk
//! completions to the pure core, and executing its effects. It makes no protocol decisions.
//!
//! Tasks of a running node:
//! * **driver** (in [`run`]): owns the [`Replica`] and the [`Storage`]; steps the core for each
//!   event, executes the effects; syncs once per batch of events (group commit).
//! * **peer listener**: accepts framed connections from other replicas (first frame: a
//!   handshake naming cluster and replica), decodes messages, forwards them to the driver.
//! * **peer senders**: one per other replica, (re)connecting with backoff and writing frames.
//! * **client listener**: RESP connections; each command waits for its committed reply.
//!
//! `run` is the production entry point `kmb-node start` calls and the one the simulator's
//! replicas run, unchanged.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::auth::{self, Challenge, ClusterKey, Hello, Response, Transcript};
use crate::commands::{self, Command};
use crate::core::{self, Effect, Input, Message, Replica};
use crate::ratelimit::{WarnLimiter, WARN_PERIOD};
use crate::resp::{self, Value};
use crate::storage::{
    recovery::CheckpointState as StoredCheckpoint, Recovery, Storage, StorageError,
};
use sim_runtime::net::{self, Backoff, FrameReader, TcpListener, TcpStream};
use sim_runtime::time::{self, Duration};

/// Events the driver consumes, bounded.
const INBOX_MAX: usize = 8192;
/// Messages queued per peer before new ones are dropped (the protocol resends).
const PEER_QUEUE_MAX: usize = 4096;
/// Events handled per batch before the batch's effects (and its one sync) run.
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
}

/// What recovery found, in the core's terms.
fn durable_state(recovery: &Recovery) -> Result<core::DurableState, NodeError> {
    let sb = &recovery.superblock;
    // An unreadable checkpoint is faulty, never absent (Protocol-Aware Recovery): the core
    // starts recovering and repairs it by state transfer from a peer (a single replica halts).
    let (checkpoint, checkpoint_faulty) = match &recovery.checkpoint {
        StoredCheckpoint::Empty => (None, None),
        StoredCheckpoint::Loaded(blob) => (
            Some(core::CheckpointState {
                op: sb.checkpoint.op,
                checksum: sb.checkpoint.entry_checksum,
                snapshot: blob.clone(),
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
    let mut entries = recovery.log.clone();
    entries.extend(recovery.after_gap.iter().cloned());
    Ok(core::DurableState {
        view: sb.view,
        log_view: sb.log_view,
        checkpoint,
        checkpoint_faulty,
        entries,
        faulty: recovery.faulty.clone(),
        never_written: recovery.never_written.clone(),
        // Format writes sequence 1; the first start bumps it (below), so anything higher means
        // this replica ran before and may have acknowledged prepares.
        restarted: sb.sequence > 1,
    })
}

/// The core configuration for a data file's identity and geometry.
pub fn core_config(storage: &Storage, seed: u64) -> Result<core::Config, NodeError> {
    let identity = storage.identity();
    let mut config = core::Config::new(identity.cluster, identity.replica, identity.replica_count);
    let slots = storage.config().slot_count as u64;
    config.slot_count = slots;
    config.checkpoint_interval = (slots / 4).max(1);
    config.pipeline_max = (slots / 4).clamp(1, 64);
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
    let durable = durable_state(&recovery)?;
    #[cfg(madsim)]
    crate::inspect::recovery_report(
        identity.replica,
        recovery.superblock.view,
        recovery.superblock.checkpoint.op,
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
        torn = recovery.torn.len(),
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
    let mut peers: Vec<Option<mpsc::Sender<Vec<u8>>>> = Vec::new();
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
    sim_runtime::task::spawn(client_listener_task(
        client_listener,
        inbox.clone(),
        config.limits.clone(),
    ));

    let mut driver = Driver {
        storage,
        peers,
        pending: BTreeMap::new(),
        client_addresses: config.client_addresses.clone(),
        me: me as u8,
    };
    let initial = replica.poll_effects();
    driver.execute(&mut replica, initial).await?;
    let mut ticker = time::interval(config.tick);
    let mut debug_ticks: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        let mut effects = Vec::new();
        tokio::select! {
            biased;
            _ = &mut shutdown => {
                tracing::info!(replica = me, "shutting down");
                return Ok(());
            }
            event = events.recv() => {
                let Some(event) = event else { return Ok(()) };
                effects.extend(driver.step_event(&mut replica, event));
            }
            _ = ticker.tick() => {
                effects.extend(replica.step(Input::Tick));
                debug_ticks += 1;
                if debug_ticks.is_multiple_of(100) {
                    tracing::debug!(replica = me, "{}", replica.debug_summary());
                }
                #[cfg(madsim)]
                if debug_ticks.is_multiple_of(10) {
                    crate::inspect::blocker(&replica);
                }
                driver.prune_pending();
            }
        }
        // Group commit: take whatever else is already waiting, then run all effects with
        // one sync.
        for _ in 0..BATCH_MAX {
            match events.try_recv() {
                Ok(event) => effects.extend(driver.step_event(&mut replica, event)),
                Err(_) => break,
            }
        }
        driver
            .execute(&mut replica, effects)
            .await
            .inspect_err(|e| tracing::warn!(replica = me, "stopping: {e}"))?;
        #[cfg(madsim)]
        {
            crate::inspect::publish(&replica);
            crate::inspect::durable(me as u8, driver.storage.durable());
        }
    }
}

struct Pending {
    reply: oneshot::Sender<Value>,
    session: bool,
}

struct Driver {
    storage: Storage,
    peers: Vec<Option<mpsc::Sender<Vec<u8>>>>,
    pending: BTreeMap<(u128, u64), Vec<Pending>>,
    client_addresses: Vec<SocketAddr>,
    me: u8,
}

impl Driver {
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
                })
            }
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

    /// Execute effects in order; durability completions are fed back to the core, whose new
    /// effects run in the same call. One fsync covers every entry written before it.
    async fn execute(
        &mut self,
        replica: &mut Replica,
        effects: Vec<Effect>,
    ) -> Result<(), NodeError> {
        let mut queue: std::collections::VecDeque<Effect> = effects.into();
        let mut sync_requested: Option<u64> = None;
        loop {
            while let Some(effect) = queue.pop_front() {
                match effect {
                    Effect::Send { to, message } => {
                        #[cfg(madsim)]
                        if let crate::core::Body::DoViewChange { view, .. } = &message.body {
                            crate::inspect::voted(self.me, *view);
                        }
                        if let Some(Some(peer)) = self.peers.get(to as usize) {
                            // A full queue drops the message: the protocol resends.
                            let _ = peer.try_send(message.encode());
                        }
                    }
                    Effect::WriteEntries(entries) => {
                        for entry in &entries {
                            self.storage.append(entry).await?;
                        }
                    }
                    Effect::TruncateLogAfter(op) => {
                        tracing::debug!(replica = self.me, op, "truncate log");
                        self.storage.truncate_after(op).await?
                    }
                    Effect::Sync { op } => sync_requested = Some(op),
                    Effect::WriteSuperblock { view, log_view } => {
                        self.storage.write_superblock(view, log_view).await?;
                        queue.extend(replica.step(Input::SuperblockSynced { view, log_view }));
                    }
                    Effect::Checkpoint {
                        op,
                        checksum,
                        snapshot,
                    } => {
                        #[cfg(madsim)]
                        crate::inspect::checkpoint(self.me, op, &snapshot);
                        self.storage.checkpoint(op, checksum, &snapshot).await?;
                        queue.extend(replica.step(Input::CheckpointDone { op }));
                    }
                    Effect::InstallCheckpoint {
                        op,
                        checksum,
                        snapshot,
                    } => {
                        self.storage
                            .install_checkpoint(op, checksum, &snapshot)
                            .await?;
                        queue.extend(replica.step(Input::CheckpointDone { op }));
                    }
                    Effect::Reply {
                        client,
                        request,
                        op,
                        reply,
                    } => {
                        let value = commands::reply_value(&reply);
                        self.answer(client, request, |session| {
                            if session {
                                Value::Array(vec![Value::Integer(op as i64), value.clone()])
                            } else {
                                value.clone()
                            }
                        });
                    }
                    Effect::Redirect {
                        client,
                        request,
                        primary,
                    } => {
                        let address = self.client_addresses.get(primary as usize).copied();
                        self.answer(client, request, |_| match address {
                            Some(a) => Value::Error(format!("REDIRECT {primary} {a}")),
                            None => Value::Error(format!("REDIRECT {primary}")),
                        });
                    }
                    Effect::Commit { op, checksum } => {
                        tracing::trace!(replica = self.me, op, "commit");
                        #[cfg(madsim)]
                        crate::inspect::commit(self.me, op, checksum, replica.entry(op));
                        #[cfg(not(madsim))]
                        let _ = checksum;
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
            match sync_requested.take() {
                Some(op) => {
                    self.storage.sync().await?;
                    queue.extend(replica.step(Input::Synced { op }));
                }
                None => return Ok(()),
            }
        }
    }
}

/// What both ends of a peer link need.
#[derive(Clone)]
struct PeerLink {
    cluster: u64,
    me: u8,
    replica_count: u8,
    key: ClusterKey,
    handshake_timeout: Duration,
    warnings: PeerWarnings,
    inbound: InboundPeers,
}

/// The live inbound connection of each peer replica: a way to close it. A peer that lost
/// power leaves its connection half-open here (no FIN, no RST) and connects again; the newest
/// authenticated connection from a replica replaces the older one, which is closed (and its
/// slot under `peer_connections_per_address_max` freed). Without this, a peer that lost power
/// more often than that limit within TCP's keepalive time would be refused until the stale
/// connections died. (The simulator does not model half-open connections yet: issue 11's
/// "half-open connection" link fault is where this gets its VOPR test.)
#[derive(Clone, Default)]
struct InboundPeers(Arc<Mutex<BTreeMap<u8, oneshot::Sender<()>>>>);

impl InboundPeers {
    /// Register the newest connection of replica `from`; close the one it replaces. Returns
    /// what completes when this connection is replaced in turn.
    fn replace(&self, from: u8) -> oneshot::Receiver<()> {
        let (stop, replaced) = oneshot::channel();
        let old = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(from, stop);
        if let Some(old) = old {
            let _ = old.send(());
        }
        replaced
    }
}

impl PeerLink {
    /// Log `message` about `peer` unless the same warning was logged within the minute.
    fn warn(&self, peer: Option<SocketAddr>, reason: &'static str, message: &str) {
        if let Some(suppressed) = self.warnings.check(peer, reason) {
            tracing::warn!(replica = self.me, ?peer, suppressed, "{message}");
        }
    }

    /// The connector's side of the handshake with replica `to`: the session on success.
    async fn connect(
        &self,
        to: u8,
        writer: &net::FrameWriter,
        reader: &mut FrameReader,
    ) -> Option<auth::Session> {
        let peer = writer.peer_addr();
        let hello = Hello {
            cluster: self.cluster,
            from: self.me,
            to,
            nonce: sim_runtime::rand::random(),
        };
        writer.send(hello.encode()).await.ok()?;
        let reply = time::timeout(self.handshake_timeout, reader.recv()).await;
        let Ok(Ok(reply)) = reply else {
            self.warn(
                peer,
                "connect-timeout",
                "peer handshake: no challenge in time (wrong cluster or replica index there?)",
            );
            return None;
        };
        let Ok(challenge) = Challenge::decode(&reply) else {
            self.warn(
                peer,
                "connect-malformed",
                "peer handshake: malformed challenge",
            );
            return None;
        };
        let transcript = Transcript::new(&hello, challenge.nonce);
        if transcript
            .verify_acceptor(&self.key, &challenge.proof)
            .is_err()
        {
            self.warn(
                peer,
                "connect-proof",
                "peer handshake failed authentication: the peer does not hold this cluster's key",
            );
            return None;
        }
        let response = Response {
            proof: transcript.connector_proof(&self.key),
        };
        writer.send(response.encode()).await.ok()?;
        Some(transcript.session(&self.key))
    }

    /// The acceptor's side: the connector's replica index and the session on success.
    async fn accept(
        &self,
        writer: &net::FrameWriter,
        reader: &mut FrameReader,
    ) -> Option<(u8, auth::Session)> {
        let peer = reader.peer_addr();
        let Ok(Ok(first)) = time::timeout(self.handshake_timeout, reader.recv()).await else {
            self.warn(peer, "accept-timeout", "peer handshake timed out: closing");
            return None;
        };
        let Ok(hello) = Hello::decode(&first) else {
            self.warn(
                peer,
                "accept-malformed",
                "peer handshake malformed (not a kmb peer, or an unauthenticated one): closing",
            );
            return None;
        };
        if hello.cluster != self.cluster {
            self.warn(
                peer,
                "accept-cluster",
                &format!(
                    "peer handshake for another cluster ({}, this is {}): closing",
                    hello.cluster, self.cluster
                ),
            );
            return None;
        }
        if hello.from >= self.replica_count || hello.from == self.me || hello.to != self.me {
            self.warn(
                peer,
                "accept-index",
                &format!(
                    "peer handshake with a bad replica index (from {} to {}; this is {} of {}): \
                     closing",
                    hello.from, hello.to, self.me, self.replica_count
                ),
            );
            return None;
        }
        let transcript = Transcript::new(&hello, sim_runtime::rand::random());
        let challenge = Challenge {
            nonce: transcript.acceptor_nonce,
            proof: transcript.acceptor_proof(&self.key),
        };
        writer.send(challenge.encode()).await.ok()?;
        let reply = match time::timeout(self.handshake_timeout, reader.recv()).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => {
                self.warn(
                    peer,
                    "accept-closed",
                    &format!(
                        "peer handshake: claimed replica {} closed the connection at the \
                         challenge (it may not hold this cluster's key)",
                        hello.from
                    ),
                );
                return None;
            }
            Err(_) => {
                self.warn(peer, "accept-timeout", "peer handshake timed out: closing");
                return None;
            }
        };
        let proof_ok = Response::decode(&reply)
            .and_then(|r| transcript.verify_connector(&self.key, &r.proof))
            .is_ok();
        if !proof_ok {
            self.warn(
                peer,
                "accept-proof",
                &format!(
                    "peer handshake failed authentication (claimed replica {}): it does not \
                     hold this cluster's key; closing",
                    hello.from
                ),
            );
            return None;
        }
        Some((hello.from, transcript.session(&self.key)))
    }
}

async fn peer_sender(
    link: PeerLink,
    to: u8,
    addr: SocketAddr,
    mut outbox: mpsc::Receiver<Vec<u8>>,
) {
    let backoff = Backoff {
        min: Duration::from_millis(20),
        max: Duration::from_millis(500),
    };
    loop {
        let Ok(stream) = net::connect_with_backoff(addr, backoff, None).await else {
            continue;
        };
        let (writer, mut reader) = net::framed(stream);
        let Some(session) = link.connect(to, &writer, &mut reader).await else {
            time::sleep(backoff.max).await;
            continue;
        };
        loop {
            tokio::select! {
                biased;
                message = outbox.recv() => {
                    let Some(mut message) = message else { return };
                    session.seal(&mut message);
                    if writer.send(message).await.is_err() {
                        break;
                    }
                }
                // The peer never writes after the handshake: a return means it closed.
                _ = reader.recv() => break,
            }
        }
        time::sleep(backoff.min).await;
    }
}

/// Warnings about peers, limited to one per peer address and reason per minute.
#[derive(Clone)]
struct PeerWarnings(Arc<Mutex<WarnLimiter<WarnSource>>>);

/// A peer's address (without the port: reconnects come from new ports) and a reason.
type WarnSource = (Option<IpAddr>, &'static str);

impl PeerWarnings {
    fn new() -> PeerWarnings {
        PeerWarnings(Arc::new(Mutex::new(WarnLimiter::new(WARN_PERIOD))))
    }

    /// `Some(suppressed)` if the warning about `peer` for `reason` is to be logged now.
    fn check(&self, peer: Option<SocketAddr>, reason: &'static str) -> Option<u64> {
        let mut limiter = self.0.lock().unwrap_or_else(|e| e.into_inner());
        limiter.check(&(peer.map(|p| p.ip()), reason), time::Instant::now())
    }
}

/// Inbound peer connections open now, in total and per IP address.
#[derive(Default)]
struct PeerConnections {
    total: usize,
    per_address: BTreeMap<Option<IpAddr>, usize>,
}

/// One inbound peer connection's place in [`PeerConnections`], released on drop.
struct PeerSlot {
    table: Arc<Mutex<PeerConnections>>,
    address: Option<IpAddr>,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.total = table.total.saturating_sub(1);
        if let Some(n) = table.per_address.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                table.per_address.remove(&self.address);
            }
        }
    }
}

/// Take a slot for a connection from `address`, or say which limit refuses it.
fn take_peer_slot(
    table: &Arc<Mutex<PeerConnections>>,
    address: Option<IpAddr>,
    limits: &Limits,
) -> Result<PeerSlot, String> {
    let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
    if t.total >= limits.peer_connections_max {
        return Err(format!(
            "peer connection refused: {} inbound peer connections open \
             (peer_connections_max)",
            t.total
        ));
    }
    let from_address = t.per_address.get(&address).copied().unwrap_or(0);
    if from_address >= limits.peer_connections_per_address_max {
        return Err(format!(
            "peer connection refused: {from_address} inbound peer connections open from this \
             address (peer_connections_per_address_max)"
        ));
    }
    t.total += 1;
    *t.per_address.entry(address).or_default() += 1;
    Ok(PeerSlot {
        table: Arc::clone(table),
        address,
    })
}

async fn peer_listener_task(
    listener: TcpListener,
    link: PeerLink,
    inbox: mpsc::Sender<Event>,
    limits: Limits,
) {
    let table = Arc::new(Mutex::new(PeerConnections::default()));
    loop {
        let Ok((stream, addr)) = listener.accept().await else {
            time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let slot = match take_peer_slot(&table, Some(addr.ip()), &limits) {
            Ok(slot) => slot,
            Err(reason) => {
                link.warn(Some(addr), "connection-limit", &reason);
                drop(stream);
                continue;
            }
        };
        let inbox = inbox.clone();
        let link = link.clone();
        sim_runtime::task::spawn(async move {
            let (writer, reader) = net::framed(stream);
            peer_receiver(link, writer, reader, inbox).await;
            drop(slot);
        });
    }
}

async fn peer_receiver(
    link: PeerLink,
    writer: net::FrameWriter,
    mut reader: FrameReader,
    inbox: mpsc::Sender<Event>,
) {
    let peer = reader.peer_addr();
    let Some((from, session)) = link.accept(&writer, &mut reader).await else {
        return;
    };
    let mut replaced = link.inbound.replace(from);
    loop {
        let frame = tokio::select! {
            biased;
            _ = &mut replaced => return,
            frame = reader.recv() => frame,
        };
        let Ok(frame) = frame else { return };
        let Some(bytes) = session.open(&frame) else {
            link.warn(
                peer,
                "message-mac",
                &format!("peer message from replica {from} failed authentication: closing"),
            );
            return;
        };
        match Message::decode(bytes) {
            Ok(message) if message.replica == from && message.cluster == link.cluster => {
                if inbox.send(Event::Peer { from, message }).await.is_err() {
                    return;
                }
            }
            Ok(message) => {
                link.warn(
                    peer,
                    "message-sender",
                    &format!(
                        "peer message on replica {from}'s connection claims replica {} of \
                         cluster {}: closing",
                        message.replica, message.cluster
                    ),
                );
                return;
            }
            Err(e) => {
                link.warn(
                    peer,
                    "malformed",
                    &format!("malformed peer message from replica {from} ({e}): closing"),
                );
                return;
            }
        }
    }
}

/// The reply to a client over `client_connections_max`, as Redis words it.
const MAX_CLIENTS_REPLY: &[u8] = b"-ERR max number of clients reached\r\n";

async fn client_listener_task(listener: TcpListener, inbox: mpsc::Sender<Event>, limits: Limits) {
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.client_connections_max));
    let refusals = WarnLimiter::<()>::new(WARN_PERIOD);
    let refusals = Arc::new(Mutex::new(refusals));
    loop {
        let Ok((mut stream, addr)) = listener.accept().await else {
            time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            let logged = refusals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .check(&(), time::Instant::now());
            if let Some(suppressed) = logged {
                tracing::warn!(
                    client = %addr,
                    max = limits.client_connections_max,
                    suppressed,
                    "client refused: client_connections_max reached"
                );
            }
            // Say why, briefly, off the accept loop; the connection closes when dropped.
            sim_runtime::task::spawn(async move {
                let _ = time::timeout(Duration::from_secs(1), async {
                    let _ = stream.write_all(MAX_CLIENTS_REPLY).await;
                    let _ = stream.flush().await;
                })
                .await;
            });
            continue;
        };
        let inbox = inbox.clone();
        let limits = limits.clone();
        sim_runtime::task::spawn(async move {
            client_connection(stream, inbox, &limits).await;
            drop(permit);
        });
    }
}

async fn client_connection(mut stream: TcpStream, inbox: mpsc::Sender<Event>, limits: &Limits) {
    let _ = stream.set_nodelay(true);
    // Plain Redis clients get a session of their own: a random id, request numbers counted.
    let connection_client: u128 = sim_runtime::rand::random::<u128>() | 1;
    let mut next_request: u64 = 0;
    let mut reader = resp::CommandReader::new(limits.client_buffer_max);
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let args = match reader.next_command() {
            Err(e) => {
                let _ = stream.write_all(&Value::err(e).encode()).await;
                let _ = stream.flush().await;
                return;
            }
            Ok(Some(args)) => args,
            Ok(None) => {
                if !out.is_empty() {
                    // Under madsim, bytes leave only on flush.
                    if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
                        return;
                    }
                    out.clear();
                }
                match time::timeout(limits.client_idle_timeout, stream.read(&mut chunk)).await {
                    Ok(Ok(0) | Err(_)) => return,
                    Ok(Ok(n)) => reader.feed(&chunk[..n]),
                    Err(_) => {
                        tracing::debug!("client idle for client_idle_timeout: closing");
                        return;
                    }
                }
                continue;
            }
        };
        if args.is_empty() {
            continue;
        }
        let value = match commands::parse(&args) {
            Err(error) => error,
            Ok(Command::Local(value)) => value,
            Ok(Command::Quit) => {
                out.extend_from_slice(&Value::ok().encode());
                let _ = stream.write_all(&out).await;
                let _ = stream.flush().await;
                return;
            }
            Ok(Command::Kv { session, request }) => {
                let (client, number, is_session) = match session {
                    Some((client, number)) => (client, number, true),
                    None => {
                        next_request += 1;
                        (connection_client, next_request, false)
                    }
                };
                let (tx, rx) = oneshot::channel();
                let event = Event::Client {
                    client,
                    request: number,
                    body: request.encode(),
                    reply: tx,
                    session: is_session,
                };
                if inbox.send(event).await.is_err() {
                    return;
                }
                match time::timeout(REPLY_TIMEOUT, rx).await {
                    Ok(Ok(value)) => value,
                    _ => Value::Error(
                        "TIMEOUT no committed reply in time: the request may still take effect"
                            .into(),
                    ),
                }
            }
        };
        value.encode_into(&mut out);
    }
}
