//! The fault schedule (simulation only): network, disk, crash, pause and partition faults drawn
//! from the seed, always inside the bound the protocol must survive.
//!
//! **The bound.** Every seed keeps disk corruption (latent errors, bit rot, misdirected writes,
//! fsync failures, disk full) confined, for the whole seed, to a fixed set of at most f
//! *corruptible* replicas: every committed entry was synced on a commit quorum of f+1, so it
//! stays intact on at least one non-corruptible replica. Loss and tearing of *unsynced* writes
//! at a crash, and per-frame network faults (drop, duplicate, reorder, corrupt, delay), may hit
//! every replica: the protocol never depends on unsynced data or on any single message. Crashes,
//! pauses and partitions then follow the seed's [`Bound`]:
//!
//! * `Strict` — at most f of 2f+1 replicas are faulty at once, where faulty means crashed,
//!   paused, partitioned away, recovering from a restart (for a grace period) or corruptible:
//!   the cluster must stay available throughout.
//! * `Safety` — crashes (including power loss during an fsync), pauses and partitions may hit
//!   any number of replicas at once. Availability may be lost while they last, but the node must
//!   never lose an acknowledged write or return wrong data ("outside the bound the node halts
//!   rather than return wrong data"), and once faults stop (the liveness phase) it must recover,
//!   since every committed entry is still intact somewhere.
//!
//! **Aimed, not only random** (issue 12): a primary is targeted with probability `targeted`; a
//! replica in a view change may be armed to lose power at its next fsync; an isolated primary's
//! heal may be followed by a crash of whoever leads; and `Swarm::aimed` strikes right after a
//! commit — the replicas that acknowledged it crash, or the others are partitioned, or the
//! primary is isolated. Byte-stream faults on client and peer links (resets, stalls, fragmented
//! reads, slow readers) and time-travelling frames (heavy-tail delays, replays) come on top,
//! outside the replica budget: none takes a replica away.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sim_runtime::fault::{self, DiskFaults, LinkFaults};
use sim_runtime::time::{self, Duration, Instant};

use crate::cluster::{client_ip, replica_ip, Cluster};
use crate::swarm::{Bound, Swarm};
use crate::workload::Shared;

/// Scheduler tick.
const TICK: Duration = Duration::from_millis(50);
/// A restarted replica counts as faulty this long (it is recovering / catching up).
const RECOVERY_GRACE: Duration = Duration::from_millis(2000);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Healthy,
    Crashed {
        until: Instant,
    },
    Paused {
        until: Instant,
    },
    Partitioned {
        until: Instant,
    },
    Recovering {
        until: Instant,
    },
    /// Will lose power at its next fsync (counts as faulty).
    Armed {
        until: Instant,
    },
}

/// What one scheduled fault does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Power loss, then restart at the end.
    Crash,
    /// Power loss during the replica's next fsync (the worst moment), then restart; if it
    /// never syncs before the end, nothing happens.
    CrashAtNextSync,
    /// Process stall, then resume.
    Pause,
    /// These directed links (from, to) are blocked, then healed.
    Partition { links: Vec<(u8, u8)> },
}

/// One fault of the schedule, as data: recorded from a seed's run, replayed (possibly with
/// faults removed) when shrinking.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultInterval {
    pub replica: u8,
    pub kind: FaultKind,
    /// Simulated ms after the safety phase started.
    pub start_ms: u64,
    pub end_ms: u64,
}

impl FaultInterval {
    /// A fault of replica `replica` from `start_ms` for `duration_ms`.
    pub fn lasting(replica: usize, kind: FaultKind, start_ms: u64, duration_ms: u64) -> Self {
        FaultInterval {
            replica: replica as u8,
            kind,
            start_ms,
            end_ms: start_ms + duration_ms,
        }
    }
}

/// Every probabilistic fault knob, by name (what shrinking can switch off as a whole).
pub const KNOBS: [&str; 16] = [
    "net.drop",
    "net.duplicate",
    "net.reorder",
    "net.corrupt",
    "net.delay",
    "net.tail_delay",
    "net.replay",
    "disk.crash_lost",
    "disk.crash_torn",
    "disk.latent_error",
    "disk.bit_rot",
    "disk.rot_burst",
    "disk.misdirect",
    "disk.sync_error",
    "disk.crash_during_sync",
    "disk.disk_full",
];

/// The fault scheduler of one seed.
pub struct Scheduler {
    swarm: Swarm,
    rng: ChaCha8Rng,
    states: Vec<State>,
    corruptible: Vec<bool>,
    /// Replay this schedule instead of drawing one.
    replay: Option<Vec<FaultInterval>>,
    /// The schedule as it ran.
    recorded: Vec<FaultInterval>,
    /// Knobs switched off.
    disabled: BTreeSet<String>,
    /// Follow-up faults of compound patterns, waiting for their start time (record mode).
    followups: Vec<FaultInterval>,
    /// Replicas whose disk rots fast until this instant (a burst during their recovery).
    rot_burst_until: Vec<Option<Instant>>,
    /// Draws of the link faults (a stream of their own, so the other draws stay as they were).
    link_rng: ChaCha8Rng,
    /// Draws of the slow readers (likewise their own stream).
    slow_rng: ChaCha8Rng,
    /// Draws of the aimed faults (likewise).
    aim_rng: ChaCha8Rng,
    /// Replicas hit by aimed faults so far.
    aimed_hits: u64,
}

/// `FaultInterval::replica` value meaning "the primary at the fault's start".
pub const PRIMARY: u8 = u8::MAX;

/// Whether a fault drawn at `rate` per simulated second fires in a tick of `tick_s` seconds
/// (never without faults; no draw from `rng` at rate zero, so a seed without the fault keeps
/// its stream as it was).
fn fires(rng: &mut ChaCha8Rng, faults: bool, rate: f64, tick_s: f64) -> bool {
    let p = (rate * tick_s).min(1.0);
    faults && p > 0.0 && rng.gen_bool(p)
}

fn latency_only(swarm: &Swarm) -> DiskFaults {
    DiskFaults {
        sync_latency: (
            Duration::from_micros(swarm.disk.sync_latency_us.0),
            Duration::from_micros(swarm.disk.sync_latency_us.1),
        ),
        io_latency: (Duration::ZERO, Duration::from_micros(50)),
        sync_stall_probability: swarm.disk.sync_stall,
        sync_stall_max: Duration::from_millis(crate::swarm::SYNC_STALL_MAX_MS),
        redundant_copies: redundant_copies(swarm.geometry.storage_config()).into(),
        ..Default::default()
    }
}

/// The redundancy groups of the simulated data file, for the fault model storage is built
/// for — one fault per structure: the four superblock copies, and each WAL slot's prepare and
/// redundant header. Injected corruption never damages two copies of one group at once. (A
/// seed that did — every superblock copy rotted on one open — left a replica with no valid
/// superblock, soak seed 38489304829; both copies of one entry misdirected made an
/// acknowledged entry look never written, and its nack truncated a committed op, soak seed
/// 573705020311. Storage recovery and the nacks rely on one fault per entry:
/// docs/storage-format.md, "Fault model".)
fn redundant_copies(config: kmb_node::storage::StorageConfig) -> Vec<Vec<(u64, u64)>> {
    use kmb_node::entry::HEADER_SIZE;
    use kmb_node::storage::format::{Layout, SUPERBLOCK_COPIES, SUPERBLOCK_SIZE};
    let layout = Layout::new(config);
    let mut groups = vec![(0..SUPERBLOCK_COPIES)
        .map(|c| (Layout::superblock_offset(c), SUPERBLOCK_SIZE as u64))
        .collect::<Vec<_>>()];
    for slot in 0..config.slot_count as usize {
        groups.push(vec![
            (layout.prepare_offset(slot), config.slot_size as u64),
            (layout.header_offset(slot), HEADER_SIZE as u64),
        ]);
    }
    groups
}

impl Scheduler {
    /// A scheduler for `swarm`; draws the corruptible set.
    pub fn new(swarm: &Swarm) -> Scheduler {
        let mut rng = ChaCha8Rng::seed_from_u64(swarm.seed ^ 0x6661_756c_7473);
        let n = swarm.replica_count as usize;
        let budget = swarm.fault_budget();
        let mut corruptible = vec![false; n];
        if swarm.faults && budget > 0 && rng.gen_bool(0.5) {
            let count = rng.gen_range(1..=budget);
            while corruptible.iter().filter(|&&c| c).count() < count {
                corruptible[rng.gen_range(0..n)] = true;
            }
        }
        Scheduler {
            swarm: swarm.clone(),
            rng,
            states: vec![State::Healthy; n],
            corruptible,
            replay: None,
            recorded: Vec::new(),
            disabled: BTreeSet::new(),
            followups: Vec::new(),
            rot_burst_until: vec![None; n],
            link_rng: ChaCha8Rng::seed_from_u64(swarm.seed ^ 0x6c69_6e6b_7366_6c74),
            slow_rng: ChaCha8Rng::seed_from_u64(swarm.seed ^ 0x736c_6f77_7265_6164),
            aim_rng: ChaCha8Rng::seed_from_u64(swarm.seed ^ 0x6169_6d65_6466_6c74),
            aimed_hits: 0,
        }
    }

    /// Replay `schedule` (sorted by start) instead of drawing faults, with `disabled` knobs
    /// off.
    pub fn replaying(
        mut self,
        mut schedule: Vec<FaultInterval>,
        disabled: BTreeSet<String>,
    ) -> Self {
        schedule.sort_by_key(|f| f.start_ms);
        self.replay = Some(schedule);
        self.disabled = disabled;
        self
    }

    /// The schedule as it ran.
    pub fn recorded(&self) -> Vec<FaultInterval> {
        self.recorded.clone()
    }

    fn knob(&self, name: &str, value: f64) -> f64 {
        if self.disabled.contains(name) {
            0.0
        } else {
            value
        }
    }

    /// The corruptible replicas (for the report).
    pub fn corruptible(&self) -> Vec<usize> {
        (0..self.corruptible.len())
            .filter(|&i| self.corruptible[i])
            .collect()
    }

    fn disk_faults(&self, replica: usize) -> DiskFaults {
        let d = &self.swarm.disk;
        let mut faults = latency_only(&self.swarm);
        if !self.swarm.faults {
            return faults;
        }
        faults.crash_lost_probability = self.knob("disk.crash_lost", d.crash_lost);
        faults.crash_torn_probability = self.knob("disk.crash_torn", d.crash_torn);
        if self.swarm.bound == Bound::Safety {
            // Power loss during fsync may hit any replica under the safety bound.
            faults.crash_during_sync_probability =
                self.knob("disk.crash_during_sync", d.crash_during_sync);
        }
        if self.corruptible[replica] {
            faults.latent_error_probability = self.knob("disk.latent_error", d.latent_error);
            faults.bit_rot_probability = self.knob("disk.bit_rot", d.bit_rot);
            faults.misdirect_probability = self.knob("disk.misdirect", d.misdirect);
            faults.sync_error_probability = self.knob("disk.sync_error", d.sync_error);
            faults.crash_during_sync_probability =
                self.knob("disk.crash_during_sync", d.crash_during_sync);
            faults.disk_full_probability = self.knob("disk.disk_full", d.disk_full);
        }
        faults
    }

    /// Set every replica's disk knobs (before the safety phase starts).
    pub fn install_disk_faults(&self, cluster: &Cluster) {
        for (i, node) in cluster.replicas.iter().enumerate() {
            fault::set_disk_faults(*node, self.disk_faults(i));
        }
    }

    fn faulty_count(&self) -> usize {
        (0..self.states.len())
            .filter(|&i| self.corruptible[i] || self.states[i] != State::Healthy)
            .count()
    }

    /// A replica that may become faulty now without exceeding the bound.
    /// A replica that may become faulty now without exceeding the bound: with probability
    /// `targeted`, the current primary (where bugs hide) or, for crashes, a corruptible replica
    /// (whose recovery must handle its own corruption); otherwise any eligible one.
    fn eligible(&mut self, crash: bool) -> Option<usize> {
        let budget = self.swarm.fault_budget();
        let spare = self.swarm.bound == Bound::Safety || self.faulty_count() < budget;
        let candidates: Vec<usize> = (0..self.states.len())
            .filter(|&i| self.states[i] == State::Healthy && (self.corruptible[i] || spare))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        if self.rng.gen_bool(self.swarm.targeted) {
            let corruptible: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&i| self.corruptible[i])
                .collect();
            if crash && !corruptible.is_empty() && self.rng.gen_bool(0.5) {
                return Some(corruptible[self.rng.gen_range(0..corruptible.len())]);
            }
            // The harness reads who is primary only to aim faults, never to check anything.
            let primary = Self::current_primary();
            if let Some(p) = primary.filter(|p| candidates.contains(p)) {
                return Some(p);
            }
        }
        Some(candidates[self.rng.gen_range(0..candidates.len())])
    }

    /// The current primary, as the replicas publish it (used only to aim faults).
    fn current_primary() -> Option<usize> {
        kmb_node::inspect::with(|r| {
            r.replicas
                .iter()
                .find(|(_, s)| s.primary && s.status == "normal")
                .map(|(&i, _)| i as usize)
        })
    }

    fn duration(&mut self) -> Duration {
        let (lo, hi) = self.swarm.fault_duration_ms;
        Duration::from_millis(self.rng.gen_range(lo..=hi))
    }

    /// Draw the directed links that isolate `replica` (symmetric, or one-way per peer), or cut
    /// just its link to one other replica.
    fn draw_isolation(&mut self, cluster: &Cluster, replica: usize) -> Vec<(u8, u8)> {
        if cluster.replicas.len() > 2 && self.rng.gen_bool(0.3) {
            // A partial partition: only the link to one other replica is cut (both ways),
            // so the replica still talks to the rest.
            let others: Vec<usize> = (0..cluster.replicas.len())
                .filter(|&o| o != replica)
                .collect();
            let other = others[self.rng.gen_range(0..others.len())] as u8;
            return vec![(replica as u8, other), (other, replica as u8)];
        }
        let asymmetric = self.rng.gen_bool(0.3);
        let mut links = Vec::new();
        for other in 0..cluster.replicas.len() {
            if other == replica {
                continue;
            }
            let (me, peer) = (replica as u8, other as u8);
            if !asymmetric {
                links.push((me, peer));
                links.push((peer, me));
            } else if self.rng.gen_bool(0.5) {
                // The replica can hear but not speak to this peer, or the reverse.
                links.push((me, peer));
            } else {
                links.push((peer, me));
            }
        }
        links
    }

    fn start(&mut self, cluster: &Cluster, fault: &FaultInterval, now: Instant) {
        let i = fault.replica as usize;
        let until = now + Duration::from_millis(fault.end_ms.saturating_sub(fault.start_ms));
        self.states[i] = match &fault.kind {
            FaultKind::Crash => {
                cluster.kill(i);
                State::Crashed { until }
            }
            FaultKind::CrashAtNextSync => {
                fault::arm_crash_on_next_sync(cluster.replicas[i]);
                State::Armed { until }
            }
            FaultKind::Pause => {
                cluster.pause(i);
                State::Paused { until }
            }
            FaultKind::Partition { links } => {
                for &(from, to) in links {
                    fault::partition_oneway(replica_ip(from as usize), replica_ip(to as usize));
                }
                State::Partitioned { until }
            }
        };
        self.recorded.push(fault.clone());
    }

    fn heal_replica(&self, cluster: &Cluster, replica: usize) {
        for other in 0..cluster.replicas.len() {
            if other != replica {
                fault::heal(replica_ip(replica), replica_ip(other));
            }
        }
    }

    /// Run the safety phase for the swarm's duration, injecting faults.
    pub async fn safety_phase(&mut self, cluster: &Cluster, shared: &Arc<Shared>) {
        let phase_start = Instant::now();
        let end = phase_start + Duration::from_millis(self.swarm.safety_ms);
        if self.swarm.faults {
            let n = &self.swarm.net;
            let delay = if self.disabled.contains("net.delay") {
                (Duration::ZERO, Duration::ZERO)
            } else {
                (
                    Duration::from_micros(n.delay_us.0),
                    Duration::from_micros(n.delay_us.1),
                )
            };
            fault::set_default_link_faults(LinkFaults {
                drop_probability: self.knob("net.drop", n.drop),
                duplicate_probability: self.knob("net.duplicate", n.duplicate),
                reorder_probability: self.knob("net.reorder", n.reorder),
                corrupt_probability: self.knob("net.corrupt", n.corrupt),
                delay,
                tail_probability: self.knob("net.tail_delay", n.tail),
                tail_delay_max: Duration::from_secs(5),
                replay_probability: self.knob("net.replay", n.replay),
                replay_after: (Duration::from_millis(200), Duration::from_secs(3)),
            });
        }
        fault::set_tcp_partitions(self.swarm.links.tcp_partitions);
        let tick_s = TICK.as_secs_f64();
        if self.swarm.faults && self.swarm.links.fragment {
            self.fragment_links();
        }
        while Instant::now() < end {
            time::sleep(TICK).await;
            let now = Instant::now();
            self.link_fault_tick(tick_s);
            self.slow_reader_tick(tick_s);
            // End faults whose time is up.
            for i in 0..self.states.len() {
                match self.states[i] {
                    State::Crashed { until } if now >= until => {
                        // A corruptible replica sometimes restarts into a burst of bit rot, so
                        // its recovery must tell corrupt entries from never-written ones.
                        let burst_p = self.knob("disk.rot_burst", self.swarm.disk.rot_burst);
                        if self.corruptible[i] && burst_p > 0.0 && self.rng.gen_bool(0.5) {
                            let mut burst = self.disk_faults(i);
                            burst.bit_rot_probability = burst_p;
                            fault::set_disk_faults(cluster.replicas[i], burst);
                            self.rot_burst_until[i] = Some(now + Duration::from_millis(300));
                        }
                        cluster.restart(i);
                        // Under the strict bound a restarted replica counts as faulty while
                        // it recovers; under the safety bound it is simply up again.
                        let grace = match self.swarm.bound {
                            Bound::Strict => RECOVERY_GRACE,
                            Bound::Safety => Duration::ZERO,
                        };
                        self.states[i] = State::Recovering { until: now + grace };
                    }
                    // A power loss during fsync (a disk knob) took the replica down: restart
                    // it after the shortest fault duration.
                    State::Healthy
                    | State::Recovering { .. }
                    | State::Partitioned { .. }
                    | State::Armed { .. }
                        if sim_runtime::sim::is_killed(cluster.replicas[i]) =>
                    {
                        self.heal_replica(cluster, i);
                        let down = Duration::from_millis(self.swarm.fault_duration_ms.0);
                        self.states[i] = State::Crashed { until: now + down };
                    }
                    State::Paused { until } if now >= until => {
                        cluster.resume(i);
                        self.states[i] = State::Healthy;
                    }
                    State::Partitioned { until } if now >= until => {
                        self.heal_replica(cluster, i);
                        self.states[i] = State::Healthy;
                    }
                    State::Recovering { until } if now >= until => {
                        self.states[i] = State::Healthy;
                    }
                    State::Armed { until } if now >= until => {
                        fault::disarm(cluster.replicas[i]);
                        self.states[i] = State::Healthy;
                    }
                    _ => {}
                }
            }
            if !self.swarm.faults {
                continue;
            }
            for i in 0..self.states.len() {
                if self.rot_burst_until[i].is_some_and(|t| now >= t) {
                    self.rot_burst_until[i] = None;
                    fault::set_disk_faults(cluster.replicas[i], self.disk_faults(i));
                }
            }
            let elapsed_ms = (now - phase_start).as_millis() as u64;
            // Follow-ups of compound patterns whose time has come (the primary is resolved
            // now; a busy replica skips its follow-up).
            let due: Vec<FaultInterval> = self
                .followups
                .iter()
                .filter(|f| f.start_ms <= elapsed_ms)
                .cloned()
                .collect();
            self.followups.retain(|f| f.start_ms > elapsed_ms);
            for mut f in due {
                if f.replica == PRIMARY {
                    match Self::current_primary() {
                        Some(p) => f.replica = p as u8,
                        None => continue,
                    }
                }
                let i = f.replica as usize;
                if i < self.states.len() && self.states[i] == State::Healthy {
                    self.start(cluster, &f, now);
                }
            }
            if let Some(schedule) = self.replay.as_mut() {
                // Replay: start every scheduled fault whose time has come, if its replica is
                // free (removing faults while shrinking can only free replicas).
                let due: Vec<FaultInterval> = schedule
                    .iter()
                    .take_while(|f| f.start_ms <= elapsed_ms)
                    .cloned()
                    .collect();
                schedule.drain(..due.len());
                for f in due {
                    let i = f.replica as usize;
                    if i < self.states.len() && self.states[i] == State::Healthy {
                        self.start(cluster, &f, now);
                    }
                }
                continue;
            }
            self.aimed_tick(cluster, tick_s, now, elapsed_ms);
            // Crashes are likelier while writes are in flight.
            let writes = shared.writes_in_flight.load(Ordering::Relaxed) as f64;
            let crash_p = (self.swarm.crash_rate * tick_s * (1.0 + writes.min(4.0))).min(1.0);
            let pause_p = (self.swarm.pause_rate * tick_s).min(1.0);
            // A replica in the middle of a view change is about to make its new view durable:
            // sometimes arm a power loss at its next fsync, where view-change durability bugs
            // live (crash rate > 0 only).
            if self.swarm.crash_rate > 0.0 {
                let changing: Vec<usize> = kmb_node::inspect::with(|r| {
                    r.replicas
                        .iter()
                        .filter(|(_, s)| s.status == "view_change")
                        .map(|(&i, _)| i as usize)
                        .collect()
                });
                for i in changing {
                    let allowed = self.states.get(i) == Some(&State::Healthy)
                        && (self.swarm.bound == Bound::Safety
                            || self.corruptible[i]
                            || self.faulty_count() < self.swarm.fault_budget());
                    if allowed && self.rng.gen_bool(self.swarm.targeted * 0.2) {
                        let down = self.duration().as_millis() as u64;
                        let fault =
                            FaultInterval::lasting(i, FaultKind::CrashAtNextSync, elapsed_ms, down);
                        self.start(cluster, &fault, now);
                    }
                }
            }
            let partition_p = (self.swarm.partition_rate * tick_s).min(1.0);
            let power_p = (self.swarm.power_failure_rate * tick_s).min(1.0);
            if power_p > 0.0 && self.rng.gen_bool(power_p) {
                // A cluster-wide power failure: every running replica loses power at once;
                // each comes back after its own reboot time.
                for i in 0..self.states.len() {
                    let duration = self.duration().as_millis() as u64;
                    if self.states[i] == State::Healthy {
                        let fault =
                            FaultInterval::lasting(i, FaultKind::Crash, elapsed_ms, duration);
                        self.start(cluster, &fault, now);
                    }
                }
            }
            for (p, which) in [(crash_p, 0), (pause_p, 1), (partition_p, 2)] {
                if p <= 0.0 || !self.rng.gen_bool(p) {
                    continue;
                }
                let Some(i) = self.eligible(which == 0) else {
                    continue;
                };
                let kind = match which {
                    0 if self.rng.gen_bool(0.5) => FaultKind::CrashAtNextSync,
                    0 => FaultKind::Crash,
                    1 => FaultKind::Pause,
                    _ => FaultKind::Partition {
                        links: self.draw_isolation(cluster, i),
                    },
                };
                let duration = self.duration().as_millis() as u64;
                let isolating_primary = which == 2 && Self::current_primary() == Some(i);
                let fault = FaultInterval::lasting(i, kind, elapsed_ms, duration);
                self.start(cluster, &fault, now);
                // Compound pattern (safety bound): an isolated primary keeps preparing what
                // its clients send; crash whoever leads when it heals, so the old primary's
                // stale log meets a view change before it learns the newer view.
                if isolating_primary && self.swarm.bound == Bound::Safety && self.rng.gen_bool(0.5)
                {
                    let down = self.duration().as_millis() as u64;
                    let at = (elapsed_ms + duration).saturating_sub(TICK.as_millis() as u64);
                    self.followups.push(FaultInterval {
                        replica: PRIMARY,
                        kind: FaultKind::Crash,
                        start_ms: at,
                        end_ms: at + down,
                    });
                }
            }
        }
    }

    /// Every link (client and peer, both ways) returns reads of at most a few bytes.
    fn fragment_links(&mut self) {
        let replicas = self.swarm.replica_count as usize;
        let clients = self.swarm.client_count as usize;
        let mut links = Vec::new();
        for r in 0..replicas {
            for c in 0..clients {
                links.push((replica_ip(r), client_ip(c)));
                links.push((client_ip(c), replica_ip(r)));
            }
            for p in 0..replicas {
                if p != r {
                    links.push((replica_ip(r), replica_ip(p)));
                }
            }
        }
        for (src, dst) in links {
            let max = self.link_rng.gen_range(1..=16);
            fault::fragment_link(src, dst, Some(max));
        }
    }

    /// One tick of link faults (`Swarm::links`): outside the replica fault budget, since a
    /// reset or a stalled client link takes no replica away.
    fn link_fault_tick(&mut self, tick_s: f64) {
        if !fires(
            &mut self.link_rng,
            self.swarm.faults,
            self.swarm.links.rate,
            tick_s,
        ) {
            return;
        }
        let replicas = self.swarm.replica_count as usize;
        let client = client_ip(self.link_rng.gen_range(0..self.swarm.client_count as usize));
        let replica = replica_ip(self.link_rng.gen_range(0..replicas));
        match self.link_rng.gen_range(0..4) {
            0 => {
                for r in 0..replicas {
                    fault::reset_links(client, replica_ip(r));
                }
            }
            1 | 2 => {
                let duration = Duration::from_millis(self.link_rng.gen_range(200..4000));
                match self.link_rng.gen_range(0..3) {
                    0 => fault::stall_link(client, replica, duration),
                    1 => fault::stall_link(replica, client, duration),
                    _ => {
                        fault::stall_link(client, replica, duration);
                        fault::stall_link(replica, client, duration);
                    }
                }
            }
            _ if replicas > 1 => {
                let a = self.link_rng.gen_range(0..replicas);
                let b = (a + self.link_rng.gen_range(1..replicas)) % replicas;
                fault::reset_links(replica_ip(a), replica_ip(b));
            }
            _ => {}
        }
    }

    /// One tick of slow readers (`LinkSwarm::slow_readers`): a client slow to read its
    /// replies, a replica slow to read a client's requests, or a replica slow to read a peer's
    /// frames. Outside the replica fault budget, like the other link faults.
    fn slow_reader_tick(&mut self, tick_s: f64) {
        if !fires(
            &mut self.slow_rng,
            self.swarm.faults,
            self.swarm.links.slow_readers,
            tick_s,
        ) {
            return;
        }
        let replicas = self.swarm.replica_count as usize;
        let client = client_ip(self.slow_rng.gen_range(0..self.swarm.client_count as usize));
        let a = self.slow_rng.gen_range(0..replicas);
        let (src, dst) = match self.slow_rng.gen_range(0..3) {
            0 => (replica_ip(a), client),
            1 => (client, replica_ip(a)),
            _ if replicas > 1 => {
                let b = (a + self.slow_rng.gen_range(1..replicas)) % replicas;
                (replica_ip(a), replica_ip(b))
            }
            _ => (replica_ip(a), client),
        };
        let rate = 1usize << self.slow_rng.gen_range(4..=12);
        let duration = Duration::from_millis(self.slow_rng.gen_range(200..4000));
        fault::slow_reader(src, dst, rate, duration);
    }

    /// Replicas hit by aimed faults so far (a counter for the seed's record).
    pub fn aimed_hits(&self) -> u64 {
        self.aimed_hits
    }

    /// One tick of aimed faults (`Swarm::aimed`, issue 12): right after an op commits — the
    /// newest op a quorum acknowledged, as the replicas publish it (read only to aim) — crash
    /// exactly the replicas that acknowledged it (the primary included), partition exactly
    /// the others, or isolate the primary. Within the bound: under the strict bound only as
    /// many as keep at most f replicas faulty at once.
    fn aimed_tick(&mut self, cluster: &Cluster, tick_s: f64, now: Instant, elapsed_ms: u64) {
        if !fires(
            &mut self.aim_rng,
            self.swarm.faults,
            self.swarm.aimed,
            tick_s,
        ) {
            return;
        }
        let n = self.states.len();
        let quorum = n / 2 + 1;
        let Some(primary) = Self::current_primary() else {
            return;
        };
        let ackers = kmb_node::inspect::with(|r| {
            r.acks.values().rev().find_map(|who| {
                let mut a: Vec<usize> = who.iter().map(|&x| x as usize).collect();
                if !a.contains(&primary) {
                    a.push(primary);
                }
                (a.len() >= quorum).then_some(a)
            })
        });
        let Some(ackers) = ackers else {
            return;
        };
        let others: Vec<usize> = (0..n).filter(|i| !ackers.contains(i)).collect();
        let (targets, crash) = match self.aim_rng.gen_range(0..3) {
            0 => (ackers, true),
            1 => (others, false),
            _ => (vec![primary], false),
        };
        let (lo, hi) = self.swarm.fault_duration_ms;
        let duration = self.aim_rng.gen_range(lo..=hi);
        for i in targets {
            let within = self.swarm.bound == Bound::Safety
                || self.corruptible[i]
                || self.faulty_count() < self.swarm.fault_budget();
            if self.states[i] != State::Healthy || !within {
                continue;
            }
            let kind = if crash {
                FaultKind::Crash
            } else {
                let links = (0..n)
                    .filter(|&o| o != i)
                    .flat_map(|o| [(i as u8, o as u8), (o as u8, i as u8)])
                    .collect();
                FaultKind::Partition { links }
            };
            let fault = FaultInterval::lasting(i, kind, elapsed_ms, duration);
            self.start(cluster, &fault, now);
            self.aimed_hits += 1;
        }
    }

    /// Start the liveness phase: stop every fault, heal the network, resume and restart every
    /// replica.
    pub fn end_faults(&mut self, cluster: &Cluster) {
        fault::clear_link_faults();
        fault::heal_all();
        fault::heal_streams();
        for (i, node) in cluster.replicas.iter().enumerate() {
            fault::disarm(*node);
            fault::set_disk_faults(*node, latency_only(&self.swarm));
            if let State::Paused { .. } = self.states[i] {
                cluster.resume(i);
            }
            // A restart with crash faults off keeps every write: a clean reboot.
            cluster.restart(i);
            self.states[i] = State::Healthy;
        }
    }
}
