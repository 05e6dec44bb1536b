//! Swarm parameters: everything a seed decides about its run, drawn from a ChaCha stream
//! derived from the seed (independent of the simulation's own generator), so a seed is fully
//! explained by printing this struct.
//!
//! Swarm testing (Groce et al., 2012): each seed switches whole features on or off and picks
//! its own rates, so some seeds hammer one fault with everything else quiet.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use kmb_node::storage::StorageConfig;

/// Operation mix weights.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OpMix {
    pub write: u32,
    pub read: u32,
    pub rmw: u32,
    pub scan: u32,
}

/// Disk fault probabilities (applied only to replicas in the faulty budget; see `faults`).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DiskSwarm {
    pub crash_lost: f64,
    pub crash_torn: f64,
    pub latent_error: f64,
    pub bit_rot: f64,
    pub misdirect: f64,
    pub sync_error: f64,
    /// Power loss during an fsync (per sync).
    pub crash_during_sync: f64,
    /// Bit-rot probability per read while a corruptible replica recovers after a restart (a
    /// burst of 300 ms, half of its restarts; 0 = no bursts).
    pub rot_burst: f64,
    pub disk_full: f64,
    pub sync_latency_us: (u64, u64),
    /// Per sync, on every replica: probability it stalls, up to [`SYNC_STALL_MAX_MS`] ms on top of
    /// its latency (`DiskFaults::sync_stall_probability`): a slow disk, while the node keeps
    /// handling messages and ticks, and appends overlap the stalled sync. Drawn last.
    pub sync_stall: f64,
}

/// The longest a stalled sync takes (`DiskSwarm::sync_stall`).
pub const SYNC_STALL_MAX_MS: u64 = 300;

/// Network fault probabilities (per frame).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct NetSwarm {
    pub drop: f64,
    pub duplicate: f64,
    pub reorder: f64,
    pub corrupt: f64,
    pub delay_us: (u64, u64),
    /// Per frame: probability of a heavy-tail delay, up to 5 s (`LinkFaults::tail_probability`):
    /// past the view-change and repair timeouts, so messages arrive from views long gone.
    pub tail: f64,
    /// Per frame: probability a copy is sent again 0.2–3 s later, on the same connection if it
    /// still lives (`LinkFaults::replay_probability`).
    pub replay: f64,
}

/// How many replicas may be faulty at once.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// At most f of 2f+1 replicas crashed, paused, partitioned, recovering or corruptible at
    /// once: the cluster must stay available throughout.
    Strict,
    /// Crashes, pauses and partitions may hit any number of replicas at once (disk corruption
    /// stays confined to at most f corruptible replicas, so every committed entry stays intact
    /// on a non-corruptible member of its commit quorum): the cluster must never lose or
    /// invent data, and must recover once faults stop.
    Safety,
}

/// Everything a seed decides.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Swarm {
    pub seed: u64,
    pub replica_count: u8,
    pub client_count: u8,
    pub key_count: u32,
    pub requests_per_client: u32,
    pub per_key_concurrency_max: u32,
    pub mix: OpMix,
    pub faults: bool,
    pub disk: DiskSwarm,
    pub net: NetSwarm,
    /// How many replicas crashes, pauses and partitions may hit at once (see `faults`):
    /// `Strict` keeps every fault within f of 2f+1; `Safety` lets them hit any number (the
    /// node must stay safe; liveness is required once faults stop).
    pub bound: Bound,
    /// Mean crashes per simulated second (0 = none).
    pub crash_rate: f64,
    /// Mean partitions per simulated second.
    pub partition_rate: f64,
    /// Mean pauses per simulated second.
    pub pause_rate: f64,
    /// Mean cluster-wide power failures (every replica loses power at once) per simulated
    /// second; only under the safety bound.
    pub power_failure_rate: f64,
    /// Probability that a crash, pause or partition aims at the current primary (or, for
    /// crashes, at a corruptible replica) rather than at a random replica.
    pub targeted: f64,
    /// How long one fault (crash, partition, pause, disk corruption window) lasts, ms.
    pub fault_duration_ms: (u64, u64),
    /// Length of the safety phase, ms of simulated time.
    pub safety_ms: u64,
    /// Bound on the liveness phase, ms of simulated time.
    pub liveness_ms: u64,
    /// A buggy authenticated peer that rewrites the view of a few StartViewChange messages
    /// (`kmb_node::inspect::BuggyViews`); `None` in most seeds. Drawn last, so every other
    /// parameter of a seed is what it was before this knob existed.
    pub buggy_peer: Option<BuggyPeer>,
    /// The data file geometry every replica is formatted with (production's among the
    /// draws); the checkpoint interval, pipeline and client table follow from it exactly as
    /// in `kmb-node start` (`kmb_node::node::core_config`).
    pub geometry: Geometry,
    /// The sizes and shapes of what clients send (`Payloads`).
    pub payloads: Payloads,
    /// Byte-stream faults on client and peer connections (`LinkSwarm`).
    pub links: LinkSwarm,
    /// Drawn with `SwarmOptions::classic` (geometry, payloads and links as before them).
    pub classic: bool,
    /// Aimed faults per simulated second (`faults::Scheduler::aimed_tick`): right after an op
    /// commits, crash exactly the replicas that acknowledged it, partition exactly the others,
    /// or isolate the primary. On in half the 5-replica seeds, a third of the others.
    pub aimed: f64,
    /// `SwarmOptions::late_sessions`.
    pub late_sessions: bool,
    /// Per replica: how far its wall clock is from the simulation's, in milliseconds
    /// (`sim_runtime::fault::set_clock_offset`): clock skew between the machines, so primaries
    /// stamp entries from clocks that disagree (empty: no skew). In 40% of the seeds with
    /// faults, each replica −2 s..+2 s.
    pub clock_skew_ms: Vec<i64>,
}

impl Swarm {
    /// Whether clients' requests — single ones, and old sessions' first ones together — are
    /// delivered again late (`workload::run_replayer`): in seeds with faults that draw the
    /// replay dimension, or in every seed with faults with `--late-sessions`.
    pub fn replays_client_requests(&self) -> bool {
        self.faults && (self.late_sessions || self.net.replay > 0.0)
    }
}

/// Faults on the TCP connections themselves (`sim_runtime::fault::reset_links`, `stall_link`,
/// `fragment_link`), on client links and peer links, through the real connection code.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct LinkSwarm {
    /// Mean link faults per simulated second: a client's connections reset, a client link
    /// stalled one way or both (a silent, half-open connection) for 0.2–4 s, a peer link reset.
    pub rate: f64,
    /// Every read returns at most a few bytes (commands and frames split at any byte).
    pub fragment: bool,
    /// Mean slow-reader episodes per simulated second: for 0.2–4 s a client reads its replies,
    /// a replica a client's requests, or a replica a peer's frames at 16 B–4 KiB per ms, so
    /// the writer fills the receive window and waits (`sim_runtime::fault::slow_reader`).
    pub slow_readers: f64,
    /// Partitions act on connections as on TCP (`sim_runtime::fault::set_tcp_partitions`):
    /// nothing is dropped; what is sent into a partition is held and delivered at the
    /// sender's next retransmission after the heal (exponential backoff from 200 ms), and a
    /// connection opened into one completes at a SYN retransmission. Otherwise a partition
    /// drops the frames that meet it.
    pub tcp_partitions: bool,
}

/// See [`Swarm::geometry`].
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct Geometry {
    pub slot_count: u32,
    pub slot_size: u32,
}

impl Geometry {
    pub fn storage_config(&self) -> kmb_node::storage::StorageConfig {
        kmb_node::storage::StorageConfig {
            slot_count: self.slot_count,
            slot_size: self.slot_size,
        }
    }
}

/// What clients send besides the small, well-formed requests of the mix: values sized
/// around and past the request limit the geometry implies, integers stored in a non-canonical
/// form, and clients that start a new session (a new client id) every few requests, so a seed
/// can have more sessions than the client table holds.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Payloads {
    /// Probability that a SET or CAS carries a large value (near, at, or past the limit).
    pub large: f64,
    /// Probability that a SET stores an integer in a non-canonical form (`007`, `+5`, `-0`).
    pub odd_integers: f64,
    /// A client starts a new session every this many requests (0 = one session per client).
    pub session_every: u32,
    /// A hostile client sends malformed, truncated, oversized and out-of-protocol commands to
    /// random replicas throughout the safety phase (`workload::run_hostile`).
    pub hostile: bool,
}

/// See [`Swarm::buggy_peer`].
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct BuggyPeer {
    pub replica: u8,
    /// How many of its StartViewChange messages it rewrites.
    pub count: u32,
    /// To a view near the largest a message may name; otherwise the largest jump followed.
    pub near_limit: bool,
}

/// What the command line asks of every seed.
#[derive(Clone, Copy, Debug, Default)]
pub struct SwarmOptions {
    pub no_faults: bool,
    pub no_enhanced_workloads: bool,
    /// Draw nothing of issue 11's dimensions: the small geometry, no payload shapes, no link
    /// faults — every seed as it ran before they existed (`vopr --classic-swarm`).
    pub classic: bool,
    /// Deliver sessions' first requests again late, in order, after they may have been
    /// evicted (`workload::run_replayer`), in every seed with faults, not only in those the
    /// swarm gives client-request replays (`vopr --late-sessions`: how the late-registration
    /// gap was reproduced, docs/protocol.md "Sessions").
    pub late_sessions: bool,
}

fn maybe(rng: &mut ChaCha8Rng, on: f64, max: f64) -> f64 {
    if rng.gen_bool(on) {
        rng.gen_range(0.0..max)
    } else {
        0.0
    }
}

impl Swarm {
    /// The parameters of `seed` without faults, for `replica_count` replicas: the set-up of
    /// the scenario tests that inject their own faults.
    pub fn without_faults(seed: u64, replica_count: u8) -> Swarm {
        let options = SwarmOptions {
            no_faults: true,
            ..Default::default()
        };
        Swarm {
            replica_count,
            ..Swarm::from_seed(seed, options)
        }
    }

    /// Draw the parameters of `seed`.
    pub fn from_seed(seed: u64, options: SwarmOptions) -> Swarm {
        // Derive the stream from the seed, with a fixed label so it never coincides with the
        // simulation's own generator.
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6b6d_625f_7377_726d);
        let replica_count = [1, 3, 3, 3, 3, 5, 5][rng.gen_range(0..7)];
        let client_count = rng.gen_range(2..=8);
        let key_count = rng.gen_range(32..=96);
        let requests_per_client = rng.gen_range(60..=160);
        let per_key_concurrency_max = rng.gen_range(1..=3);
        let mix = if options.no_enhanced_workloads {
            OpMix {
                write: rng.gen_range(1..=10),
                read: rng.gen_range(1..=10),
                rmw: 0,
                scan: 0,
            }
        } else {
            OpMix {
                write: rng.gen_range(1..=10),
                read: rng.gen_range(1..=10),
                rmw: rng.gen_range(0..=6),
                scan: rng.gen_range(0..=2),
            }
        };
        let faults = !options.no_faults;
        let disk = DiskSwarm {
            crash_lost: maybe(&mut rng, 0.7, 0.6),
            crash_torn: maybe(&mut rng, 0.7, 0.4),
            latent_error: maybe(&mut rng, 0.5, 0.01),
            bit_rot: maybe(&mut rng, 0.5, 0.01),
            misdirect: maybe(&mut rng, 0.4, 0.005),
            sync_error: maybe(&mut rng, 0.2, 0.001),
            crash_during_sync: maybe(&mut rng, 0.6, 0.01),
            rot_burst: maybe(&mut rng, 0.5, 0.05),
            disk_full: maybe(&mut rng, 0.2, 0.001),
            sync_latency_us: (rng.gen_range(50..500), rng.gen_range(500..5000)),
            sync_stall: 0.0,
        };
        let net = NetSwarm {
            drop: maybe(&mut rng, 0.6, 0.05),
            duplicate: maybe(&mut rng, 0.5, 0.03),
            reorder: maybe(&mut rng, 0.5, 0.03),
            corrupt: maybe(&mut rng, 0.4, 0.005),
            delay_us: (rng.gen_range(50..500), rng.gen_range(500..20_000)),
            tail: 0.0,
            replay: 0.0,
        };
        let bound = if rng.gen_bool(0.5) {
            Bound::Strict
        } else {
            Bound::Safety
        };
        let crash_rate = maybe(&mut rng, 0.8, 1.0);
        let partition_rate = maybe(&mut rng, 0.6, 1.0);
        let pause_rate = maybe(&mut rng, 0.4, 0.5);
        let power_failure_rate = if bound == Bound::Safety {
            maybe(&mut rng, 0.5, 0.3)
        } else {
            0.0
        };
        let targeted = rng.gen_range(0.0..0.8);
        let fault_duration_ms = (rng.gen_range(100..500), rng.gen_range(500..3000));
        let safety_ms = rng.gen_range(5_000..=15_000);
        let buggy_peer = (faults && replica_count > 1 && rng.gen_bool(0.1)).then(|| BuggyPeer {
            replica: rng.gen_range(0..replica_count),
            count: rng.gen_range(1..=3),
            near_limit: rng.gen_bool(0.5),
        });
        // The dimensions added after the first sweeps come from a stream of their own, so every
        // parameter above is what it was before they existed.
        let mut more = ChaCha8Rng::seed_from_u64(seed ^ 0x6b6d_625f_6765_6f6d);
        let geometry = match more.gen_range(0..10) {
            0..=4 => Geometry {
                slot_count: StorageConfig::SIMULATION.slot_count,
                slot_size: StorageConfig::SIMULATION.slot_size,
            },
            5 => Geometry {
                slot_count: StorageConfig::PRODUCTION.slot_count,
                slot_size: StorageConfig::PRODUCTION.slot_size,
            },
            _ => Geometry {
                slot_count: [16, 32, 128, 256][more.gen_range(0..4)],
                slot_size: [4096, 8192, 16384, 65536][more.gen_range(0..4)],
            },
        };
        let payloads = if options.no_enhanced_workloads {
            Payloads::default()
        } else {
            Payloads {
                large: maybe(&mut more, 0.3, 0.2),
                odd_integers: maybe(&mut more, 0.3, 0.2),
                session_every: if more.gen_bool(0.3) {
                    more.gen_range(1..=8)
                } else {
                    0
                },
                hostile: false,
            }
        };
        let links = if faults {
            LinkSwarm {
                rate: maybe(&mut more, 0.4, 2.0),
                fragment: more.gen_bool(0.2),
                slow_readers: 0.0,
                tcp_partitions: false,
            }
        } else {
            LinkSwarm::default()
        };
        let mut payloads = payloads;
        payloads.hostile = !options.no_enhanced_workloads && more.gen_bool(0.3);
        // Drawn last, so every earlier dimension of a seed is what it was before it existed.
        let mut links = links;
        let mut net = net;
        if faults {
            links.slow_readers = maybe(&mut more, 0.3, 1.0);
            net.tail = maybe(&mut more, 0.4, 0.02);
            net.replay = maybe(&mut more, 0.4, 0.03);
        }
        let aimed = if faults {
            let on = if replica_count == 5 { 0.5 } else { 0.33 };
            if more.gen_bool(on) {
                more.gen_range(0.2..2.0)
            } else {
                0.0
            }
        } else {
            0.0
        };
        // Drawn after everything else, for the same reason.
        links.tcp_partitions = faults && more.gen_bool(0.5);
        // And after that, clock skew.
        let clock_skew_ms = if faults && !options.classic && more.gen_bool(0.4) {
            (0..replica_count)
                .map(|_| more.gen_range(-2_000..=2_000))
                .collect()
        } else {
            Vec::new()
        };
        // And after that, stalled syncs (issue 15: the storage I/O runs beside the driver).
        let mut disk = disk;
        if faults && !options.classic {
            disk.sync_stall = maybe(&mut more, 0.3, 0.05);
        }
        if options.classic {
            (net.tail, net.replay) = (0.0, 0.0);
        }
        let (geometry, payloads, links) = if options.classic {
            let small = StorageConfig::SIMULATION;
            (
                Geometry {
                    slot_count: small.slot_count,
                    slot_size: small.slot_size,
                },
                Payloads::default(),
                LinkSwarm::default(),
            )
        } else {
            (geometry, payloads, links)
        };
        Swarm {
            seed,
            replica_count,
            client_count,
            key_count,
            requests_per_client,
            per_key_concurrency_max,
            mix,
            faults,
            disk,
            net,
            bound,
            crash_rate,
            partition_rate,
            pause_rate,
            power_failure_rate,
            targeted,
            fault_duration_ms,
            safety_ms,
            liveness_ms: 30_000,
            buggy_peer,
            aimed: if options.classic { 0.0 } else { aimed },
            geometry,
            payloads,
            links,
            classic: options.classic,
            late_sessions: options.late_sessions,
            clock_skew_ms,
        }
    }

    /// Replicas that may be faulty at once: f of 2f + 1.
    pub fn fault_budget(&self) -> usize {
        (self.replica_count as usize - 1) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a seed always draws the same parameters, and seeds differ.
    #[test]
    fn swarm_same_seed_same_parameters() {
        let o = SwarmOptions::default();
        assert_eq!(Swarm::from_seed(7, o), Swarm::from_seed(7, o));
        assert_ne!(Swarm::from_seed(7, o), Swarm::from_seed(8, o));
    }

    /// Goal: drawn parameters stay inside their documented bounds over many seeds.
    #[test]
    fn swarm_parameters_within_bounds() {
        let mut sizes = std::collections::BTreeSet::new();
        for seed in 0..2000 {
            let s = Swarm::from_seed(seed, SwarmOptions::default());
            sizes.insert(s.replica_count);
            assert!(s.key_count >= 32);
            assert!(s.client_count >= 1);
            assert!(s.mix.write + s.mix.read > 0);
            assert!(s.disk.crash_lost + s.disk.crash_torn <= 1.0);
        }
        assert_eq!(sizes.into_iter().collect::<Vec<_>>(), vec![1, 3, 5]);
        let plain = Swarm::from_seed(
            1,
            SwarmOptions {
                no_enhanced_workloads: true,
                ..Default::default()
            },
        );
        assert_eq!((plain.mix.rmw, plain.mix.scan), (0, 0));
    }

    /// Goal: stalled syncs are drawn in some seeds with faults, within bounds, never in
    /// classic or fault-free seeds, and reach the replicas' disk knobs.
    #[test]
    fn swarm_draws_sync_stalls() {
        let stalled = (0..1000)
            .map(|seed| Swarm::from_seed(seed, SwarmOptions::default()))
            .filter(|s| s.disk.sync_stall > 0.0)
            .inspect(|s| assert!(s.disk.sync_stall < 0.05))
            .count();
        assert!((150..450).contains(&stalled), "{stalled} of 1000");
        for options in [
            SwarmOptions {
                classic: true,
                ..Default::default()
            },
            SwarmOptions {
                no_faults: true,
                ..Default::default()
            },
        ] {
            assert!((0..200).all(|seed| Swarm::from_seed(seed, options).disk.sync_stall == 0.0));
        }
    }
}
