//! Fault injection control (simulation only).
//!
//! One plugin, [`World`], registered in every simulation by [`crate::sim::runtime`], holds the
//! simulated disks, the fault knobs, a counter per fault, and an ordered log of every fault that
//! fired. Every draw comes from the simulation's seeded generator, so the same seed gives the
//! same fault events, in the same order, at the same simulated times.
//!
//! Knobs are per node for the disk ([`set_disk_faults`]) and per directed link, keyed by the
//! nodes' IP addresses, for the network ([`set_link_faults`], [`partition`], [`heal`]). Network
//! faults act on whole frames inside [`crate::net`]'s writer, so production framing, checksums
//! and reconnects run unchanged.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use madsim::plugin::Simulator;
use madsim::rand::{GlobalRng, Rng};
use madsim::task::NodeId;
use madsim::time::TimeHandle;

use crate::disk::simulated::NodeDisk;

/// Disk fault knobs for one node. All probabilities are in `[0, 1]`; the default injects none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DiskFaults {
    /// On a kill, probability that a write not yet synced is lost entirely.
    pub crash_lost_probability: f64,
    /// On a kill, probability that a write not yet synced is torn: a random subset of its
    /// 512-byte sectors persists. (Otherwise, with the remaining probability, it is kept.)
    pub crash_torn_probability: f64,
    /// Per read: probability that one sector in the read range develops a latent error; reads
    /// of that sector fail until it is rewritten.
    pub latent_error_probability: f64,
    /// Per read: probability that one bit in the read range silently rots (in stored bytes).
    pub bit_rot_probability: f64,
    /// Per write: probability that the data lands at another sector-aligned offset instead.
    pub misdirect_probability: f64,
    /// Per sync: probability that the sync fails; a random subset of the dirty writes persists.
    pub sync_error_probability: f64,
    /// Per sync: probability of a power loss *during* the sync: the node is killed before the
    /// sync returns, and its unsynced writes are lost, kept or torn as on any kill. (The
    /// window between a write and its sync is where durability bugs live.)
    pub crash_during_sync_probability: f64,
    /// Per write: probability of a "no space left on device" error.
    pub disk_full_probability: f64,
    /// Total bytes the node's disk may hold; writes past it fail with "no space".
    pub capacity_bytes: Option<u64>,
    /// Latency of each sync, drawn uniformly in `[min, max]`.
    pub sync_latency: (Duration, Duration),
    /// Latency of each read and write, drawn uniformly in `[min, max]`.
    pub io_latency: (Duration, Duration),
    /// Per sync: probability that it stalls on top of its latency, for a time log-uniform
    /// from `sync_latency.1` up to `sync_stall_max` (a slow or overloaded disk): the writes
    /// and messages a node handles meanwhile, and the order in which its I/O completes
    /// relative to them, are what this explores.
    pub sync_stall_probability: f64,
    pub sync_stall_max: Duration,
    /// Groups of byte ranges `(offset, len)` that hold redundant copies of one structure (a
    /// superblock's copies; a WAL entry's prepare and redundant header). The storage fault
    /// model is one fault per structure: a latent error, bit rot or misdirected write (which
    /// damages where it lands and leaves stale the copy it was meant to rewrite) never
    /// damages a copy of a group while another copy of that group is damaged (such a fault is
    /// not injected, not counted); a write that covers a damaged copy repairs it. Torn writes at a crash are not limited: the
    /// storage writes one copy at a time, so a crash tears at most the one in flight.
    /// Shared (`Arc`): the knobs are looked up on every simulated I/O, and the production
    /// geometry names 2,048 copies — cloning them per read was 40% of a seed's time.
    pub redundant_copies: std::sync::Arc<Vec<Vec<(u64, u64)>>>,
}

/// Network fault knobs for one directed link (frames from `src` to `dst`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkFaults {
    /// Per frame: probability it is dropped.
    pub drop_probability: f64,
    /// Per frame: probability it is sent twice.
    pub duplicate_probability: f64,
    /// Per frame: probability it is held back and sent after the next frame.
    pub reorder_probability: f64,
    /// Per frame: probability one bit of it is flipped (the frame checksum must catch it).
    pub corrupt_probability: f64,
    /// Extra delay per frame, drawn uniformly in `[min, max]` (head-of-line, like TCP).
    pub delay: (Duration, Duration),
    /// Per frame: probability its delay comes instead from a heavy tail — log-uniform from
    /// `delay.1` up to `tail_delay_max` — so it can outlast view-change and repair timeouts
    /// (head-of-line: the frames behind it wait too).
    pub tail_probability: f64,
    pub tail_delay_max: Duration,
    /// Per frame: probability a copy of it is kept and sent again, same bytes, after a delay
    /// drawn in `replay_after` — a message from the past reaching a replica that moved on.
    pub replay_probability: f64,
    pub replay_after: (Duration, Duration),
}

/// How often each fault fired (since the simulation started).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultCounters {
    pub crash_lost_writes: u64,
    pub crash_torn_writes: u64,
    pub crash_kept_writes: u64,
    pub latent_errors_injected: u64,
    pub latent_error_reads: u64,
    pub bit_rots: u64,
    pub misdirected_writes: u64,
    pub sync_errors: u64,
    pub crashes_during_sync: u64,
    /// Syncs that stalled (`DiskFaults::sync_stall_probability`).
    pub syncs_stalled: u64,
    pub disk_full_errors: u64,
    pub frames_sent: u64,
    pub frames_dropped: u64,
    pub frames_duplicated: u64,
    pub frames_reordered: u64,
    pub frames_corrupted: u64,
    pub frames_delayed: u64,
    pub frames_partitioned: u64,
    pub partitions: u64,
    pub heals: u64,
    pub kills: u64,
    pub restarts: u64,
    pub pauses: u64,
    pub resumes: u64,
    /// Link resets injected ([`reset_links`]).
    pub stream_resets: u64,
    /// Connections that failed because of a reset.
    pub stream_resets_seen: u64,
    /// Link stalls injected ([`stall_link`]).
    pub stream_stalls: u64,
    /// Frames given a heavy-tail delay (`LinkFaults::tail_probability`).
    pub frames_tail_delayed: u64,
    /// Frames sent again much later (`LinkFaults::replay_probability`), when sent.
    pub frames_replayed: u64,
    /// Links set to fragment reads ([`fragment_link`]).
    pub stream_fragments: u64,
    /// Links whose reader was made slow ([`slow_reader`]).
    pub stream_slow_readers: u64,
    /// Times a writer waited because the reader had not taken the bytes already sent (the
    /// receive window, [`STREAM_WINDOW`], was full).
    pub stream_window_waits: u64,
    /// Connections whose writer gave up on bytes a partition or stall held longer than its
    /// user timeout ([`crate::net::set_user_timeout`]).
    pub stream_user_timeouts: u64,
    /// Connections opened into a TCP partition, held until a SYN retransmission after the
    /// heal ([`set_tcp_partitions`]).
    pub stream_connects_held: u64,
    /// Items storage accepted as valid and reported to the disk oracle
    /// ([`crate::disk::accepted`]).
    pub disk_items_accepted: u64,
    /// Faulty items storage reported to the disk oracle ([`crate::disk::reported_faulty`]).
    pub disk_items_reported_faulty: u64,
    /// What the disk oracle found wrong ([`crate::disk::oracle_violations`]); 0 in a passing
    /// seed.
    pub disk_oracle_findings: u64,
}

impl FaultCounters {
    /// `(name, count)` for every counter, in a fixed order (for reports).
    pub fn entries(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("crash_lost_writes", self.crash_lost_writes),
            ("crash_torn_writes", self.crash_torn_writes),
            ("crash_kept_writes", self.crash_kept_writes),
            ("latent_errors_injected", self.latent_errors_injected),
            ("latent_error_reads", self.latent_error_reads),
            ("bit_rots", self.bit_rots),
            ("misdirected_writes", self.misdirected_writes),
            ("sync_errors", self.sync_errors),
            ("crashes_during_sync", self.crashes_during_sync),
            ("syncs_stalled", self.syncs_stalled),
            ("disk_full_errors", self.disk_full_errors),
            ("frames_sent", self.frames_sent),
            ("frames_dropped", self.frames_dropped),
            ("frames_duplicated", self.frames_duplicated),
            ("frames_reordered", self.frames_reordered),
            ("frames_corrupted", self.frames_corrupted),
            ("frames_delayed", self.frames_delayed),
            ("frames_partitioned", self.frames_partitioned),
            ("partitions", self.partitions),
            ("heals", self.heals),
            ("kills", self.kills),
            ("restarts", self.restarts),
            ("pauses", self.pauses),
            ("resumes", self.resumes),
            ("stream_resets", self.stream_resets),
            ("stream_resets_seen", self.stream_resets_seen),
            ("stream_stalls", self.stream_stalls),
            ("frames_tail_delayed", self.frames_tail_delayed),
            ("frames_replayed", self.frames_replayed),
            ("stream_fragments", self.stream_fragments),
            ("stream_slow_readers", self.stream_slow_readers),
            ("stream_window_waits", self.stream_window_waits),
            ("stream_user_timeouts", self.stream_user_timeouts),
            ("stream_connects_held", self.stream_connects_held),
            ("disk_items_accepted", self.disk_items_accepted),
            (
                "disk_items_reported_faulty",
                self.disk_items_reported_faulty,
            ),
            ("disk_oracle_findings", self.disk_oracle_findings),
        ]
    }
}

/// One fault that fired, in simulation order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FaultEvent {
    /// Simulated time since the start of the run.
    pub at: Duration,
    /// What fired, e.g. `disk.bit_rot`, `net.drop`, `node.kill`.
    pub kind: &'static str,
    /// Where: node id, file and offset, or link.
    pub detail: String,
}

/// Upper bound on the fault log, so a long run cannot grow it without limit.
pub const EVENT_LOG_MAX: usize = 1_000_000;

pub(crate) struct WorldState {
    pub(crate) rng: GlobalRng,
    pub(crate) disks: BTreeMap<NodeId, NodeDisk>,
    /// Synced disk pages stored once across the simulation's files.
    pub(crate) pages: crate::disk::simulated::PageStore,
    pub(crate) disk_faults: BTreeMap<NodeId, DiskFaults>,
    pub(crate) link_faults: BTreeMap<(IpAddr, IpAddr), LinkFaults>,
    pub(crate) default_link_faults: LinkFaults,
    /// Partitioned directed links, with when each partition began.
    pub(crate) blocked: BTreeMap<(IpAddr, IpAddr), madsim::time::Instant>,
    /// Whether a partition acts on streams as it does on TCP ([`set_tcp_partitions`]).
    pub(crate) tcp_partitions: bool,
    /// Per connection (writer's socket, reader's socket) that wrote into a TCP partition: since
    /// when its bytes are held.
    pub(crate) held_since: BTreeMap<(SocketAddr, SocketAddr), madsim::time::Instant>,
    /// Per connection, after the partition healed: its held bytes resume only at this
    /// instant, the sender's next retransmission.
    pub(crate) resumes: BTreeMap<(SocketAddr, SocketAddr), madsim::time::Instant>,
    /// Connections (writer's socket, reader's socket) whose writer gave up on bytes held
    /// longer than its user timeout: they are never delivered.
    pub(crate) abandoned: BTreeSet<(SocketAddr, SocketAddr)>,
    /// Each node's IP address, as its listeners and connections show it (madsim does not say).
    pub(crate) node_ips: BTreeMap<NodeId, IpAddr>,
    /// Per node: how far its wall clock is from the simulation's (ms; `time::now_wall`).
    pub(crate) clock_offsets: BTreeMap<NodeId, i64>,
    /// Per unordered link: how many times it was reset (`crate::net` streams compare).
    pub(crate) link_epochs: BTreeMap<(IpAddr, IpAddr), u64>,
    /// Per directed link: bytes are held until this instant.
    pub(crate) stalls: BTreeMap<(IpAddr, IpAddr), madsim::time::Instant>,
    /// Per directed link: reads return at most this many bytes.
    pub(crate) fragments: BTreeMap<(IpAddr, IpAddr), usize>,
    /// Per directed link: the reader takes at most this many bytes per millisecond, until.
    pub(crate) slow_readers: BTreeMap<(IpAddr, IpAddr), (usize, madsim::time::Instant)>,
    /// Per connection and direction (writer's socket, reader's socket): bytes written and not
    /// yet read — what the receive window holds.
    pub(crate) unread: BTreeMap<(SocketAddr, SocketAddr), u64>,
    pub(crate) killed: BTreeSet<NodeId>,
    /// Nodes ended by [`crate::sim::stop`]: their kill is no power loss.
    pub(crate) stopped: BTreeSet<NodeId>,
    /// Nodes that lose power during their next fsync.
    pub(crate) armed: BTreeSet<NodeId>,
    pub(crate) counters: FaultCounters,
    /// What the disk oracle found wrong ([`crate::disk::oracle_violations`]).
    pub(crate) disk_oracle: Vec<String>,
    pub(crate) events: Vec<FaultEvent>,
    pub(crate) events_dropped: u64,
    time: TimeHandle,
}

impl WorldState {
    pub(crate) fn chance(&mut self, probability: f64) -> bool {
        probability > 0.0 && self.rng.gen_bool(probability.min(1.0))
    }

    /// A duration log-uniform in `[min, max]` (a heavy tail: each doubling equally likely).
    pub(crate) fn log_uniform(&mut self, min: Duration, max: Duration) -> Duration {
        let lo = min.as_secs_f64().max(1e-6);
        let hi = max.as_secs_f64().max(lo);
        let x: f64 = self.rng.gen_range(0.0..=1.0);
        Duration::from_secs_f64(lo * (hi / lo).powf(x))
    }

    pub(crate) fn uniform(&mut self, (min, max): (Duration, Duration)) -> Duration {
        if max <= min {
            return min;
        }
        let nanos = self
            .rng
            .gen_range(min.as_nanos() as u64..=max.as_nanos() as u64);
        Duration::from_nanos(nanos)
    }

    pub(crate) fn record(&mut self, kind: &'static str, detail: String) {
        if self.events.len() >= EVENT_LOG_MAX {
            self.events_dropped += 1;
            return;
        }
        let at = self.time.elapsed();
        self.events.push(FaultEvent { at, kind, detail });
    }

    pub(crate) fn disk_faults(&self, node: NodeId) -> DiskFaults {
        self.disk_faults.get(&node).cloned().unwrap_or_default()
    }

    pub(crate) fn link_faults(&self, src: IpAddr, dst: IpAddr) -> LinkFaults {
        self.link_faults
            .get(&(src, dst))
            .cloned()
            .unwrap_or_else(|| self.default_link_faults.clone())
    }
}

/// The simulator plugin holding all fault state of one simulation.
pub struct World {
    state: Mutex<WorldState>,
}

impl Simulator for World {
    fn new(rand: &GlobalRng, time: &TimeHandle, _config: &madsim::Config) -> Self {
        World {
            state: Mutex::new(WorldState {
                rng: rand.clone(),
                disks: BTreeMap::new(),
                pages: Default::default(),
                disk_faults: BTreeMap::new(),
                link_faults: BTreeMap::new(),
                default_link_faults: LinkFaults::default(),
                blocked: BTreeMap::new(),
                tcp_partitions: false,
                held_since: BTreeMap::new(),
                resumes: BTreeMap::new(),
                abandoned: BTreeSet::new(),
                node_ips: BTreeMap::new(),
                clock_offsets: BTreeMap::new(),
                link_epochs: BTreeMap::new(),
                stalls: BTreeMap::new(),
                fragments: BTreeMap::new(),
                slow_readers: BTreeMap::new(),
                unread: BTreeMap::new(),
                killed: BTreeSet::new(),
                stopped: BTreeSet::new(),
                armed: BTreeSet::new(),
                counters: FaultCounters::default(),
                disk_oracle: Vec::new(),
                events: Vec::new(),
                events_dropped: 0,
                time: time.clone(),
            }),
        }
    }

    fn reset_node(&self, id: NodeId) {
        // Called by madsim on kill: power loss for this node's disk.
        let mut state = self.lock();
        if !state.stopped.contains(&id) {
            crate::disk::simulated::power_loss(&mut state, id);
        }
    }
}

impl World {
    pub(crate) fn lock(&self) -> MutexGuard<'_, WorldState> {
        // A poisoned lock means a panic inside the simulator itself: propagate it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

thread_local! {
    /// The current simulation's [`World`], looked up once: `madsim::plugin::simulator` takes
    /// the runtime's context, a lock and a hash lookup on every call, and [`with`] runs for
    /// every simulated read, write and frame. A thread runs one simulation at a time
    /// ([`crate::sim::run`] gives each its own thread; [`crate::sim::runtime`] clears this), and
    /// the reference is weak, so a finished simulation's world is never reached through it.
    static WORLD: std::cell::RefCell<std::sync::Weak<World>> =
        const { std::cell::RefCell::new(std::sync::Weak::new()) };
}

/// Forget the cached world of an earlier simulation on this thread.
pub(crate) fn forget_world() {
    WORLD.with(|w| *w.borrow_mut() = std::sync::Weak::new());
}

pub(crate) fn world() -> Arc<World> {
    let cached = WORLD.with(|w| w.borrow().upgrade());
    if let Some(world) = cached {
        debug_assert!(
            Arc::ptr_eq(&world, &madsim::plugin::simulator::<World>()),
            "a thread interleaved two simulations"
        );
        return world;
    }
    let world = madsim::plugin::simulator::<World>();
    WORLD.with(|w| *w.borrow_mut() = Arc::downgrade(&world));
    world
}

pub(crate) fn with<T>(f: impl FnOnce(&mut WorldState) -> T) -> T {
    let world = world();
    let mut state = world.lock();
    f(&mut state)
}

/// Set how far `node`'s wall clock (`time::now_wall`) is from the simulation's, in
/// milliseconds (negative: behind): clock skew between machines. Monotonic time is shared.
pub fn set_clock_offset(node: NodeId, offset_ms: i64) {
    with(|s| {
        s.clock_offsets.insert(node, offset_ms);
    })
}

/// The current node's clock offset (milliseconds).
pub fn clock_offset_ms() -> i64 {
    let node = madsim::plugin::node();
    with(|s| s.clock_offsets.get(&node).copied().unwrap_or(0))
}

/// Set the disk fault knobs of `node`.
pub fn set_disk_faults(node: NodeId, faults: DiskFaults) {
    with(|s| {
        s.disk_faults.insert(node, faults);
    })
}

/// The disk fault knobs of `node`.
pub fn disk_faults(node: NodeId) -> DiskFaults {
    with(|s| s.disk_faults(node))
}

/// Make `node` lose power during its next fsync (the worst moment: after writes were issued,
/// before they are durable). Cleared when it fires or by [`disarm`].
pub fn arm_crash_on_next_sync(node: NodeId) {
    with(|s| {
        s.armed.insert(node);
    })
}

/// Cancel [`arm_crash_on_next_sync`] for `node`.
pub fn disarm(node: NodeId) {
    with(|s| {
        s.armed.remove(&node);
    })
}

/// Set the fault knobs of the directed link `src → dst`.
pub fn set_link_faults(src: IpAddr, dst: IpAddr, faults: LinkFaults) {
    with(|s| {
        s.link_faults.insert((src, dst), faults);
    })
}

/// Set the fault knobs of every link without its own setting.
pub fn set_default_link_faults(faults: LinkFaults) {
    with(|s| s.default_link_faults = faults)
}

/// Clear every link's fault knobs (partitions are separate: see [`heal_all`]).
pub fn clear_link_faults() {
    with(|s| {
        s.link_faults.clear();
        s.default_link_faults = LinkFaults::default();
    })
}

fn unordered(a: IpAddr, b: IpAddr) -> (IpAddr, IpAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// Reset every connection open between `a` and `b` (either end may have opened it): each
/// fails its next read, write or flush with `ConnectionReset`. Later connections work.
pub fn reset_links(a: IpAddr, b: IpAddr) {
    with(|s| {
        *s.link_epochs.entry(unordered(a, b)).or_default() += 1;
        s.counters.stream_resets += 1;
        s.record("net.reset", format!("{a} <-> {b}"));
    })
}

/// How many times the link between `a` and `b` was reset.
pub fn link_epoch(a: IpAddr, b: IpAddr) -> u64 {
    with(|s| s.link_epochs.get(&unordered(a, b)).copied().unwrap_or(0))
}

/// Hold the bytes flowing from `src` to `dst` for `duration` from now (on every connection of
/// the link, open or opened meanwhile); they arrive late, in order.
pub fn stall_link(src: IpAddr, dst: IpAddr, duration: Duration) {
    with(|s| {
        let until = s.time.now_instant() + duration;
        s.stalls.insert((src, dst), until);
        s.counters.stream_stalls += 1;
        s.record("net.stall", format!("{src} -> {dst} for {duration:?}"));
    })
}

/// Make reads on `dst` of bytes from `src` return at most `max` bytes each (`None`: whole).
pub fn fragment_link(src: IpAddr, dst: IpAddr, max: Option<usize>) {
    with(|s| match max {
        Some(max) => {
            s.fragments.insert((src, dst), max.max(1));
            s.counters.stream_fragments += 1;
            s.record(
                "net.fragment",
                format!("{src} -> {dst} at most {max} bytes"),
            );
        }
        None => {
            s.fragments.remove(&(src, dst));
        }
    })
}

/// Make the reader on `dst` of bytes from `src` slow for `duration` from now: it takes at most
/// `bytes_per_ms` bytes each millisecond. Its writers fill the receive window
/// ([`STREAM_WINDOW`]) and then wait, as a kernel's send buffer makes them.
pub fn slow_reader(src: IpAddr, dst: IpAddr, bytes_per_ms: usize, duration: Duration) {
    with(|s| {
        let until = s.time.now_instant() + duration;
        let rate = bytes_per_ms.max(1);
        s.slow_readers.insert((src, dst), (rate, until));
        s.counters.stream_slow_readers += 1;
        s.record(
            "net.slow_reader",
            format!("{src} -> {dst} read at {rate} bytes/ms for {duration:?}"),
        );
    })
}

/// Bytes one direction of a connection may hold written but not yet read before its writer
/// waits (a socket's send and receive buffers together; madsim's own streams are unbounded).
pub const STREAM_WINDOW: u64 = 256 * 1024;

/// The byte-stream faults a read on `dst` of bytes from `src` meets, in one lookup.
pub(crate) struct ReadFaults {
    /// The link's reset epoch.
    pub(crate) epoch: u64,
    /// Until when the direction is stalled (if it is now).
    pub(crate) stalled_until: Option<madsim::time::Instant>,
    /// The read size limit, if any.
    pub(crate) fragment: Option<usize>,
    /// The slow reader's pace (bytes per millisecond), if any.
    pub(crate) slow: Option<usize>,
    /// The writer gave up on the connection (its user timeout: [`abandon`]).
    pub(crate) abandoned: bool,
}

/// See [`ReadFaults`]: a read on the connection `writer → reader`.
pub(crate) fn read_faults(writer: SocketAddr, reader: SocketAddr) -> ReadFaults {
    let (src, dst) = (writer.ip(), reader.ip());
    with(|s| {
        let epoch = s
            .link_epochs
            .get(&unordered(src, dst))
            .copied()
            .unwrap_or(0);
        let now = s.time.now_instant();
        let stalled_until = s
            .stalls
            .get(&(src, dst))
            .copied()
            .filter(|&until| until > now)
            .max(s.partition_hold(writer, reader));
        ReadFaults {
            epoch,
            stalled_until,
            fragment: s.fragments.get(&(src, dst)).copied(),
            slow: s
                .slow_readers
                .get(&(src, dst))
                .filter(|&&(_, until)| until > now)
                .map(|&(rate, _)| rate),
            abandoned: s.abandoned.contains(&(writer, reader)),
        }
    })
}

/// Until when the bytes of the connection `writer → reader` are held (a stall, or a TCP
/// partition), if they are.
pub(crate) fn held_until(writer: SocketAddr, reader: SocketAddr) -> Option<madsim::time::Instant> {
    read_faults(writer, reader).stalled_until
}

/// Note that the current node has address `ip` (a listener bound to it, a connection from it).
pub(crate) fn note_node_ip(ip: IpAddr) {
    if ip.is_unspecified() || ip.is_loopback() {
        return;
    }
    let node = madsim::plugin::node();
    with(|s| {
        s.node_ips.insert(node, ip);
    })
}

/// Until when a connection the current node opens to `dst` at `since` waits for its
/// handshake: the next SYN retransmission, while a TCP partition blocks either direction.
/// (`None` too when the node's address is not known yet.)
pub(crate) fn connect_hold(
    dst: IpAddr,
    since: madsim::time::Instant,
) -> Option<madsim::time::Instant> {
    let node = madsim::plugin::node();
    with(|s| {
        let src = *s.node_ips.get(&node)?;
        let blocked = s.blocked.contains_key(&(src, dst)) || s.blocked.contains_key(&(dst, src));
        (s.tcp_partitions && blocked).then(|| {
            let now = s.time.now_instant();
            retransmission_at(since, now + Duration::from_nanos(1), TCP_SYN_RTO)
        })
    })
}

/// The writer of the connection `writer → reader` gave up on it (user timeout): what it held
/// is never delivered.
pub(crate) fn abandon(writer: SocketAddr, reader: SocketAddr) {
    with(|s| {
        s.abandoned.insert((writer, reader));
        s.counters.stream_user_timeouts += 1;
        s.record("net.user_timeout", format!("{writer} -> {reader}"));
    })
}

/// Count one connection held by a partition at its handshake.
pub(crate) fn count_connect_held(dst: IpAddr) {
    let node = madsim::plugin::node();
    with(|s| {
        s.counters.stream_connects_held += 1;
        s.record("net.connect_held", format!("node {node} -> {dst}"));
    })
}

/// Bytes written from `writer` to `reader` (sockets of one connection) and not yet read.
pub(crate) fn unread(writer: SocketAddr, reader: SocketAddr) -> u64 {
    with(|s| s.unread.get(&(writer, reader)).copied().unwrap_or(0))
}

/// What a write on the connection `writer → reader` looks at first, in one look-up: the
/// link's reset epoch ([`link_epoch`]) and the bytes not yet read ([`unread`]).
pub(crate) fn write_state(writer: SocketAddr, reader: SocketAddr) -> (u64, u64) {
    with(|s| {
        let epoch = s
            .link_epochs
            .get(&unordered(writer.ip(), reader.ip()))
            .copied()
            .unwrap_or(0);
        (epoch, s.unread.get(&(writer, reader)).copied().unwrap_or(0))
    })
}

/// `n` more bytes from `writer` to `reader` are in flight (`n < 0`: `-n` were read).
pub(crate) fn add_unread(writer: SocketAddr, reader: SocketAddr, n: i64) {
    with(|s| s.add_unread(writer, reader, n))
}

/// The connection `writer → reader` wrote `n > 0` bytes: they are in flight ([`add_unread`]),
/// and into a TCP partition they are held from now (from the connection's first such write).
pub(crate) fn wrote(writer: SocketAddr, reader: SocketAddr, n: usize) {
    with(|s| {
        s.add_unread(writer, reader, n as i64);
        s.note_write(writer, reader);
    })
}

impl WorldState {
    fn add_unread(&mut self, writer: SocketAddr, reader: SocketAddr, n: i64) {
        let v = self.unread.entry((writer, reader)).or_default();
        *v = v.saturating_add_signed(n);
        if *v == 0 {
            self.unread.remove(&(writer, reader));
        }
    }

    fn note_write(&mut self, writer: SocketAddr, reader: SocketAddr) {
        if self.tcp_partitions && self.blocked.contains_key(&(writer.ip(), reader.ip())) {
            let now = self.time.now_instant();
            self.held_since.entry((writer, reader)).or_insert(now);
        }
    }
}

/// A connection from `local` to `peer` opened: whatever an earlier connection between the
/// same two sockets left (madsim reuses ports at once; the far end may still hold a half-open
/// connection on them) belongs to that one, not to this.
pub(crate) fn connection_opened(local: SocketAddr, peer: SocketAddr) {
    with(|s| {
        for c in [(local, peer), (peer, local)] {
            s.unread.remove(&c);
            s.abandoned.remove(&c);
            s.held_since.remove(&c);
            s.resumes.remove(&c);
        }
    })
}

/// The end `local` of a connection with `peer` closed: forget both directions' window, and
/// what held the bytes flowing into `local` (bytes `local` wrote stay held, or abandoned, for
/// as long as `peer` reads).
pub(crate) fn forget_connection(local: SocketAddr, peer: SocketAddr) {
    with(|s| {
        s.unread.remove(&(local, peer));
        s.unread.remove(&(peer, local));
        let inbound = (peer, local);
        s.abandoned.remove(&inbound);
        s.held_since.remove(&inbound);
        s.resumes.remove(&inbound);
    })
}

/// Count one wait of a writer on a full receive window.
pub(crate) fn count_window_wait() {
    with(|s| s.counters.stream_window_waits += 1)
}

/// End every stall, fragmentation and slow reader (resets are events, nothing to end).
pub fn heal_streams() {
    with(|s| {
        s.stalls.clear();
        s.fragments.clear();
        s.slow_readers.clear();
    })
}

/// Block frames from `src` to `dst` (an asymmetric partition).
pub fn partition_oneway(src: IpAddr, dst: IpAddr) {
    with(|s| {
        if !s.blocked.contains_key(&(src, dst)) {
            let now = s.time.now_instant();
            s.blocked.insert((src, dst), now);
            s.counters.partitions += 1;
            s.record("net.partition", format!("{src} -> {dst}"));
        }
    })
}

/// Block frames both ways between `a` and `b` (a symmetric partition).
pub fn partition(a: IpAddr, b: IpAddr) {
    partition_oneway(a, b);
    partition_oneway(b, a);
}

/// Unblock both directions between `a` and `b`.
pub fn heal(a: IpAddr, b: IpAddr) {
    with(|s| {
        for link in [(a, b), (b, a)] {
            if s.blocked.remove(&link).is_some() {
                s.healed(link);
            }
        }
    })
}

/// Unblock every link.
pub fn heal_all() {
    with(|s| {
        for link in std::mem::take(&mut s.blocked).into_keys() {
            s.healed(link);
        }
    })
}

impl WorldState {
    fn healed(&mut self, (src, dst): (IpAddr, IpAddr)) {
        self.counters.heals += 1;
        self.record("net.heal", format!("{src} -> {dst}"));
        // Each connection that wrote into the partition resumes at its own next
        // retransmission; connections opened after the heal are not held.
        let now = self.time.now_instant();
        let held: Vec<_> = self
            .held_since
            .keys()
            .filter(|(w, r)| (w.ip(), r.ip()) == (src, dst))
            .copied()
            .collect();
        for connection in held {
            let since = self.held_since.remove(&connection).expect("listed");
            let resume = retransmission_at(since, now, TCP_RTO_MIN);
            self.resumes.insert(connection, resume);
        }
    }

    /// Until when the bytes of the connection `writer → reader` are held by a TCP partition
    /// (while it lasts, until the next retransmission; after the heal, until the one that
    /// delivers them).
    pub(crate) fn partition_hold(
        &self,
        writer: SocketAddr,
        reader: SocketAddr,
    ) -> Option<madsim::time::Instant> {
        if !self.tcp_partitions {
            return None;
        }
        let now = self.time.now_instant();
        if let Some(&link_since) = self.blocked.get(&(writer.ip(), reader.ip())) {
            let since = self
                .held_since
                .get(&(writer, reader))
                .copied()
                .unwrap_or(link_since);
            // The next retransmission after now: the reader looks again then.
            return Some(retransmission_at(
                since,
                now + Duration::from_nanos(1),
                TCP_RTO_MIN,
            ));
        }
        self.resumes
            .get(&(writer, reader))
            .copied()
            .filter(|&at| at > now)
    }
}

/// TCP's first retransmission timeout for data (Linux `TCP_RTO_MIN`, 200 ms) and for a
/// connection's SYN (1 s); each retransmission doubles it, up to `TCP_RTO_MAX`.
pub const TCP_RTO_MIN: Duration = Duration::from_millis(200);
/// See [`TCP_RTO_MIN`].
pub const TCP_SYN_RTO: Duration = Duration::from_secs(1);
/// The longest gap between two retransmissions (Linux `TCP_RTO_MAX`).
pub const TCP_RTO_MAX: Duration = Duration::from_secs(120);

/// The first retransmission at or after `at` of bytes first sent at `since` and never
/// acknowledged: retransmissions come `rto`, `2 rto`, `4 rto`, … (at most [`TCP_RTO_MAX`])
/// apart. A healed partition delivers held bytes only then — not at the heal.
pub fn retransmission_at(
    since: madsim::time::Instant,
    at: madsim::time::Instant,
    rto: Duration,
) -> madsim::time::Instant {
    let mut next = since;
    let mut gap = rto;
    while next < at {
        next += gap;
        gap = (gap * 2).min(TCP_RTO_MAX);
    }
    next
}

/// Make partitions act on streams as they do on TCP connections (off by default: then a
/// partition drops the frames that meet it, as a lossy network drops datagrams). With it, a
/// partition loses nothing: bytes sent into it are held (the sender's kernel retransmits
/// them), and after the heal they arrive only at the sender's next retransmission, which
/// backs off exponentially from 200 ms — after a long partition, seconds to minutes after the
/// heal. A connection opened into a partition completes at the SYN's next retransmission
/// after the heal (from 1 s, doubling). A writer with a user timeout
/// ([`crate::net::set_user_timeout`]) gives up on a connection whose bytes were held longer.
pub fn set_tcp_partitions(on: bool) {
    with(|s| s.tcp_partitions = on)
}

/// Whether a frame from `src` to `dst` is dropped by a partition (partitioned, and partitions
/// drop frames rather than hold them: [`set_tcp_partitions`]).
pub(crate) fn drops_frames(src: IpAddr, dst: IpAddr) -> bool {
    with(|s| !s.tcp_partitions && s.blocked.contains_key(&(src, dst)))
}

/// How often each fault fired so far.
pub fn counters() -> FaultCounters {
    with(|s| s.counters.clone())
}

/// Every fault that fired so far, in order.
pub fn events() -> Vec<FaultEvent> {
    with(|s| s.events.clone())
}

/// Number of fault events recorded so far (cheaper than [`events`]).
pub fn event_count() -> usize {
    with(|s| s.events.len())
}
