//! The fault schedule (simulation only): network, disk, crash, pause and partition faults drawn
//! from the seed, always inside the bound the protocol must survive.
//!
//! **The bound.** At most f of 2f+1 replicas are *faulty* at once, where faulty means crashed,
//! paused, partitioned away, recovering from a restart (for a grace period), or holding a disk
//! that may corrupt data. Disk corruption (latent errors, bit rot, misdirected writes, fsync
//! failures, disk full) is confined, for the whole seed, to a fixed set of at most f
//! *corruptible* replicas, and those count against the budget all the time — so every
//! committed entry stays intact on at least f+1 replicas... minus the crashed ones, which the
//! budget also bounds. Crash-time loss and tearing of *unsynced* writes, and per-frame network
//! faults (drop, duplicate, reorder, corrupt, delay), may hit every replica: the protocol never
//! depends on unsynced data or on any single message.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sim_runtime::fault::{self, DiskFaults, LinkFaults};
use sim_runtime::time::{self, Duration, Instant};

use crate::cluster::{replica_ip, Cluster};
use crate::swarm::Swarm;
use crate::workload::Shared;

/// Scheduler tick.
const TICK: Duration = Duration::from_millis(50);
/// A restarted replica counts as faulty this long (it is recovering / catching up).
const RECOVERY_GRACE: Duration = Duration::from_millis(2000);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Healthy,
    Crashed { until: Instant },
    Paused { until: Instant },
    Partitioned { until: Instant },
    Recovering { until: Instant },
}

/// The fault scheduler of one seed.
pub struct Scheduler {
    swarm: Swarm,
    rng: ChaCha8Rng,
    states: Vec<State>,
    corruptible: Vec<bool>,
}

fn latency_only(swarm: &Swarm) -> DiskFaults {
    DiskFaults {
        sync_latency: (
            Duration::from_micros(swarm.disk.sync_latency_us.0),
            Duration::from_micros(swarm.disk.sync_latency_us.1),
        ),
        io_latency: (Duration::ZERO, Duration::from_micros(50)),
        ..Default::default()
    }
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
        faults.crash_lost_probability = d.crash_lost;
        faults.crash_torn_probability = d.crash_torn;
        if self.corruptible[replica] {
            faults.latent_error_probability = d.latent_error;
            faults.bit_rot_probability = d.bit_rot;
            faults.misdirect_probability = d.misdirect;
            faults.sync_error_probability = d.sync_error;
            faults.disk_full_probability = d.disk_full;
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
    fn eligible(&mut self) -> Option<usize> {
        let budget = self.swarm.fault_budget();
        let spare = self.faulty_count() < budget;
        let candidates: Vec<usize> = (0..self.states.len())
            .filter(|&i| self.states[i] == State::Healthy && (self.corruptible[i] || spare))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[self.rng.gen_range(0..candidates.len())])
    }

    fn duration(&mut self) -> Duration {
        let (lo, hi) = self.swarm.fault_duration_ms;
        Duration::from_millis(self.rng.gen_range(lo..=hi))
    }

    fn isolate(&mut self, cluster: &Cluster, replica: usize) {
        let me = replica_ip(replica);
        let asymmetric = self.rng.gen_bool(0.3);
        for other in 0..cluster.replicas.len() {
            if other == replica {
                continue;
            }
            let peer = replica_ip(other);
            if asymmetric {
                // One direction only: the replica can hear but not speak, or the reverse.
                if self.rng.gen_bool(0.5) {
                    fault::partition_oneway(me, peer);
                } else {
                    fault::partition_oneway(peer, me);
                }
            } else {
                fault::partition(me, peer);
            }
        }
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
        let end = Instant::now() + Duration::from_millis(self.swarm.safety_ms);
        if self.swarm.faults {
            let n = &self.swarm.net;
            fault::set_default_link_faults(LinkFaults {
                drop_probability: n.drop,
                duplicate_probability: n.duplicate,
                reorder_probability: n.reorder,
                corrupt_probability: n.corrupt,
                delay: (
                    Duration::from_micros(n.delay_us.0),
                    Duration::from_micros(n.delay_us.1),
                ),
            });
        }
        let tick_s = TICK.as_secs_f64();
        while Instant::now() < end {
            time::sleep(TICK).await;
            let now = Instant::now();
            // End faults whose time is up.
            for i in 0..self.states.len() {
                match self.states[i] {
                    State::Crashed { until } if now >= until => {
                        cluster.restart(i);
                        self.states[i] = State::Recovering {
                            until: now + RECOVERY_GRACE,
                        };
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
                    _ => {}
                }
            }
            if !self.swarm.faults {
                continue;
            }
            // Crashes are likelier while writes are in flight.
            let writes = shared.writes_in_flight.load(Ordering::Relaxed) as f64;
            let crash_p = (self.swarm.crash_rate * tick_s * (1.0 + writes.min(4.0))).min(1.0);
            if crash_p > 0.0 && self.rng.gen_bool(crash_p) {
                if let Some(i) = self.eligible() {
                    cluster.kill(i);
                    let until = now + self.duration();
                    self.states[i] = State::Crashed { until };
                }
            }
            let pause_p = (self.swarm.pause_rate * tick_s).min(1.0);
            if pause_p > 0.0 && self.rng.gen_bool(pause_p) {
                if let Some(i) = self.eligible() {
                    cluster.pause(i);
                    let until = now + self.duration();
                    self.states[i] = State::Paused { until };
                }
            }
            let partition_p = (self.swarm.partition_rate * tick_s).min(1.0);
            if partition_p > 0.0 && self.rng.gen_bool(partition_p) {
                if let Some(i) = self.eligible() {
                    self.isolate(cluster, i);
                    let until = now + self.duration();
                    self.states[i] = State::Partitioned { until };
                }
            }
        }
    }

    /// Start the liveness phase: stop every fault, heal the network, resume and restart every
    /// replica.
    pub fn end_faults(&mut self, cluster: &Cluster) {
        fault::clear_link_faults();
        fault::heal_all();
        for (i, node) in cluster.replicas.iter().enumerate() {
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
