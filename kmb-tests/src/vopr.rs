//! One seed of the VOPR, end to end (simulation only): start the real cluster, run the
//! workload while the fault schedule attacks it (safety phase), stop every fault and restart
//! every replica (liveness phase), then run the checkers over what the real replicas hold and
//! what the real clients saw.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use lincheck::kv::KvOp;
use serde::Serialize;
use sim_runtime::sim::{self, Handle};
use sim_runtime::time::{self, Duration, Instant};

use crate::checkers::{self, head_progress, FinalState, Liveness, Observations};
use crate::cluster::{client_ip, Cluster};
use crate::diagnosis::{Classification, Failure, FailureReport};
use crate::faults::Scheduler;
use crate::swarm::{Bound, Swarm, SwarmOptions};
use crate::trace::{link_name, EventKind, TraceCollector, TraceFilter, TRACE_CAPACITY_DEFAULT};
use crate::workload::{self, Shared};
use kmb_node::inspect::Happening;

/// What the command line asks of every seed.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub swarm: SwarmOptions,
    /// Which trace events are kept (the event hash covers all of them regardless).
    pub trace_filter: TraceFilter,
    /// Ring-buffer size of the trace.
    pub trace_capacity: usize,
    /// Build a failure report for failing seeds.
    pub diagnose: bool,
    /// Flags to repeat in repro commands (e.g. `--no-faults`).
    pub repro_flags: Vec<String>,
    /// The planted bug switched on in the node for every seed (`None`: the correct code).
    pub mutation: Option<kmb_node::mutation::Mutation>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            swarm: SwarmOptions::default(),
            trace_filter: TraceFilter::FailuresOnly,
            trace_capacity: TRACE_CAPACITY_DEFAULT,
            diagnose: true,
            repro_flags: Vec::new(),
            mutation: None,
        }
    }
}

/// How a seed ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    /// A checker could not decide (e.g. the linearizability search hit its step cap): not a
    /// pass.
    Unknown,
}

/// The per-seed record (one NDJSON line with `--json`).
#[derive(Clone, Debug, Serialize)]
pub struct SeedRecord {
    pub seed: u64,
    pub params: Swarm,
    pub outcome: Outcome,
    pub failure_kind: Option<String>,
    pub checker: Option<String>,
    pub failure_message: Option<String>,
    /// The first trace event that shows the failure (for deduplicating failures).
    pub first_bad_event: Option<String>,
    pub sim_time_ms: u64,
    pub wall_time_ms: u64,
    /// CPU time the seed's simulation thread used, in microseconds (`None` where the host
    /// cannot tell): simulated time over it is the simulator's real-time ratio per core.
    pub cpu_time_us: Option<u64>,
    pub event_hash: String,
    pub committed_ops: u64,
    pub client_ops: usize,
    pub unknown_ops: usize,
    pub corruptible: Vec<usize>,
    pub fault_counters: BTreeMap<String, u64>,
    /// Coverage marks the replicas hit (`kmb_node::coverage`): name → times.
    pub marks: BTreeMap<String, u64>,
    /// The planted bug the node ran with (`vopr --mutation`), if any.
    pub mutation: Option<String>,
    /// How often its mutation points were reached, and how often they changed behaviour.
    pub mutation_fired: u64,
    pub mutation_bites: u64,
    #[serde(skip)]
    pub history: Vec<KvOp>,
    #[serde(skip)]
    pub failure: Option<Failure>,
    #[serde(skip)]
    pub trace: Option<TraceCollector>,
    #[serde(skip)]
    pub report: Option<FailureReport>,
    /// The fault schedule and workload as they ran (for shrinking and replay; the workload of
    /// a run that passed is left empty: nothing reads it).
    #[serde(skip)]
    pub scenario: Option<Scenario>,
}

/// A seed's fault schedule and workload as data: recorded from a run, replayed with pieces
/// removed when shrinking, saved to a file for `vopr --replay`.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Scenario {
    pub seed: u64,
    pub no_faults: bool,
    pub no_enhanced_workloads: bool,
    /// The seed ran with `SwarmOptions::classic` (older scenario files lack it: false).
    #[serde(default)]
    pub classic: bool,
    /// Probabilistic fault knobs switched off (names from `faults::KNOBS`).
    pub disabled_knobs: std::collections::BTreeSet<String>,
    /// Crash, pause and partition intervals of the safety phase.
    pub faults: Vec<crate::faults::FaultInterval>,
    /// Each client's planned operations.
    pub workload: Vec<Vec<workload::PlannedOp>>,
}

impl Scenario {
    /// Operations across all clients.
    pub fn op_count(&self) -> usize {
        self.workload.iter().map(Vec::len).sum()
    }
}

struct SimResult {
    failure: Option<Failure>,
    unknown: Option<String>,
    sim_time_ms: u64,
    committed_ops: u64,
    history: Vec<KvOp>,
    corruptible: Vec<usize>,
    fault_counters: BTreeMap<String, u64>,
    marks: BTreeMap<String, u64>,
    trace: TraceCollector,
    scenario: Option<Scenario>,
}

fn fail(
    classification: Classification,
    checker: &str,
    message: impl Into<String>,
) -> Option<Failure> {
    Some(Failure {
        checker: checker.into(),
        classification,
        message: message.into(),
        replica: None,
        op: None,
        key: None,
    })
}

/// The replica index behind a fault-log detail naming `node N` or an address `10.0.0.N`.
fn replica_of_node(detail: &str, nodes: &[String]) -> Option<u8> {
    let mut words = detail.split_whitespace();
    while let Some(w) = words.next() {
        if w == "node" {
            let id = words.next()?;
            return nodes.iter().position(|n| n == id).map(|i| i as u8);
        }
    }
    None
}

fn replica_of_ip(ip: &str) -> Option<u8> {
    let last: u8 = ip.strip_prefix("10.0.0.")?.parse().ok()?;
    last.checked_sub(1)
}

fn link_of(detail: &str) -> Option<String> {
    let mut parts = detail.split(" -> ");
    let a = replica_of_ip(parts.next()?.trim())?;
    let b = replica_of_ip(parts.next()?.split_whitespace().next()?)?;
    Some(link_name(a, b))
}

/// The trace event for one entry of the simulator's fault log.
fn fault_event(e: &sim_runtime::fault::FaultEvent, nodes: &[String]) -> EventKind {
    let replica = replica_of_node(&e.detail, nodes);
    match (e.kind, replica, link_of(&e.detail)) {
        ("node.kill", Some(replica), _) => EventKind::Crash { replica },
        ("node.restart", Some(replica), _) => EventKind::Restart { replica },
        ("net.partition", _, Some(link)) => EventKind::Partition { link },
        ("net.heal", _, Some(link)) => EventKind::Heal { link },
        ("net.drop", _, Some(link)) => EventKind::NetDrop { link },
        ("net.duplicate", _, Some(link)) => EventKind::NetDuplicate { link },
        (kind, replica, _) => EventKind::FaultInjected {
            kind: kind.to_string(),
            replica,
            detail: e.detail.clone(),
        },
    }
}

/// Each replica's published state, with why it last halted (if it did).
fn final_states(registry: &kmb_node::inspect::Registry) -> BTreeMap<u8, FinalState> {
    registry
        .replicas
        .iter()
        .map(|(&replica, state)| {
            let halted = registry
                .halts
                .iter()
                .rev()
                .find(|(h, _, _)| *h == replica)
                .map(|(_, reason, _)| reason.clone());
            let f = FinalState {
                status: state.status.clone(),
                view: state.view,
                op: state.op,
                commit: state.commit,
                state_hash: state.state_hash,
                halted,
                durable: registry
                    .durable_heads
                    .get(&replica)
                    .and_then(|heads| heads.last().copied())
                    .unwrap_or(0),
            };
            (replica, f)
        })
        .collect()
}

/// Each replica's durable state: its disk's durable image copied to a fresh node (no faults,
/// the replica undisturbed) and examined there by `Storage::examine`, the code behind
/// `kmb-node verify`.
async fn examine_disks(cluster: &Cluster) -> BTreeMap<u8, Result<checkers::DiskImage, String>> {
    use checkers::{DiskCheckpoint, DiskImage};
    use kmb_node::storage::{CheckpointState, Storage};
    let mut disks = BTreeMap::new();
    for (i, &replica) in cluster.replicas.iter().enumerate() {
        let examiner = Handle::current()
            .create_node()
            .name(format!("examiner-{i}"))
            .build();
        sim_runtime::disk::copy_durable(replica, examiner.id());
        let examined = examiner
            .spawn(async { Storage::examine(crate::cluster::DATA_PATH).await })
            .await;
        sim_runtime::disk::discard_disk(examiner.id());
        let image = match examined {
            Err(e) => Err(format!("examination task failed: {e}")),
            Ok(Err(e)) => Err(format!("examination failed: {e}")),
            Ok(Ok(ex)) => {
                let r = ex.recovery;
                let cp = r.superblock.checkpoint;
                let checkpoint = match &r.checkpoint {
                    CheckpointState::Empty => DiskCheckpoint::Empty,
                    CheckpointState::Loaded(blob) => DiskCheckpoint::Verified {
                        op: cp.op,
                        hash: kmb_node::core::snapshot::state_hash_of(blob)
                            .unwrap_or_else(|_| xxhash_rust::xxh3::xxh3_128(blob)),
                    },
                    CheckpointState::Faulty => DiskCheckpoint::Faulty { op: cp.op },
                };
                Ok(DiskImage {
                    checkpoint,
                    checkpoint_entry: cp.entry_checksum,
                    log: r
                        .log
                        .iter()
                        .map(|e| (e.header.op, e.header.checksum))
                        .collect(),
                    faulty: r.faulty.clone(),
                })
            }
        };
        disks.insert(i as u8, image);
    }
    disks
}

/// What the checkers read: the real replicas' published state (moved out of `registry`, not
/// copied: the run is over) and the real clients' history.
fn observations(
    swarm: &Swarm,
    registry: &mut kmb_node::inspect::Registry,
    history: Vec<KvOp>,
    liveness: Liveness,
) -> Observations {
    let mut obs = Observations::new(swarm.replica_count);
    obs.history = history;
    obs.clients_max = kmb_node::node::core_config_for(
        kmb_node::storage::Identity {
            cluster: crate::cluster::CLUSTER,
            replica: 0,
            replica_count: swarm.replica_count,
        },
        swarm.geometry.storage_config(),
        0,
    )
    .map_or(obs.clients_max, |c| c.clients_max);
    obs.client_ids = (0..swarm.client_count as u64)
        .map(|c| (c, workload::client_ids(swarm, c)))
        .collect();
    obs.final_states = final_states(registry);
    use std::mem::take;
    obs.committed = take(&mut registry.committed);
    obs.commits = take(&mut registry.commits);
    obs.commit_incarnations = take(&mut registry.commit_starts);
    obs.transfers = take(&mut registry.transfers);
    obs.state_hashes = take(&mut registry.state_hashes);
    obs.recoveries = take(&mut registry.recoveries);
    obs.checkpoints = take(&mut registry.checkpoints);
    for (&replica, state) in &mut registry.replicas {
        obs.logs.insert(replica, take(&mut state.log));
    }
    obs.liveness = liveness;
    obs.durable_heads = take(&mut registry.durable_heads);
    obs.votes = take(&mut registry.votes);
    obs.recovery_reports = take(&mut registry.recovery_reports);
    obs
}

/// Under the strict bound (at most f replicas faulty at once) the cluster stays available, so
/// few requests end with an unknown outcome: at most [`STRICT_UNKNOWN_MAX`] of a seed's
/// client operations (and never more than 5 when it ran few). On seeds 0..963 the largest
/// fraction was 2.6% (seed 694); a primary that drops what it is sent leaves most of them
/// unknown. The safety bound states no such limit: a whole-cluster outage may strand requests.
pub const STRICT_UNKNOWN_MAX: f64 = 0.10;

/// The strict bound's limit on unknown outcomes, if `unknown` of `total` operations break it.
pub fn unknown_bound_violation(bound: Bound, unknown: usize, total: usize) -> Option<String> {
    let allowed = ((total as f64 * STRICT_UNKNOWN_MAX) as usize).max(5);
    (bound == Bound::Strict && unknown > allowed).then(|| {
        format!(
            "{unknown} of {total} client operations ended with an unknown outcome, above the strict bound's {allowed} ({}%): the cluster was not available though at most f replicas were faulty",
            STRICT_UNKNOWN_MAX * 100.0
        )
    })
}

async fn simulate(
    swarm: Swarm,
    filter: TraceFilter,
    capacity: usize,
    replay: Option<Scenario>,
) -> SimResult {
    let start = Instant::now();
    let clock_origin_us = time::unix_micros();
    let cluster = Cluster::start(&swarm);
    // The plan is handed to the clients, not copied (with large payloads a copy was megabytes
    // held for the whole run): the result records it only for a failed run (the shrinker is
    // the only reader) — a replay's own, or a seed's drawn again.
    let (mut scheduler, plan, disabled, replayed_workload) = match replay {
        None => (
            Scheduler::new(&swarm),
            workload::plan(&swarm),
            Default::default(),
            None,
        ),
        Some(sc) => (
            Scheduler::new(&swarm).replaying(sc.faults, sc.disabled_knobs.clone()),
            sc.workload.clone(),
            sc.disabled_knobs,
            Some(sc.workload),
        ),
    };
    let mut plans = plan.into_iter();
    // Let every replica format and start before any fault.
    time::sleep(Duration::from_millis(200)).await;
    scheduler.install_disk_faults(&cluster);
    let shared = Arc::new(Shared::default());
    let mut clients = Vec::new();
    let mut client_nodes = Vec::new();
    for c in 0..swarm.client_count as usize {
        let node = Handle::current()
            .create_node()
            .name(format!("client-{c}"))
            .ip(client_ip(c))
            .build();
        client_nodes.push(node.clone());
        clients.push(node.spawn(workload::run_client(
            swarm.clone(),
            c as u64,
            plans.next().unwrap_or_default(),
            cluster.client_addresses.clone(),
            shared.clone(),
            start,
        )));
    }
    let mut hostile_node = None;
    if swarm.payloads.hostile {
        let node = Handle::current()
            .create_node()
            .name("hostile")
            .ip(crate::cluster::hostile_ip())
            .build();
        node.spawn(workload::run_hostile(
            shared.clone(),
            swarm.seed,
            cluster.client_addresses.clone(),
            Instant::now() + Duration::from_millis(swarm.safety_ms),
        ));
        hostile_node = Some(node);
    }
    if swarm.replays_client_requests() {
        if let Some(node) = client_nodes.first() {
            node.spawn(workload::run_replayer(
                shared.clone(),
                swarm.seed,
                cluster.client_addresses.clone(),
                Instant::now() + Duration::from_millis(swarm.safety_ms),
            ));
        }
    }
    scheduler.safety_phase(&cluster, &shared).await;
    scheduler.end_faults(&cluster);

    // Liveness: every outstanding request completes and the replicas converge in time. The
    // bound is `liveness_ms` after the heal, extended while clients still complete requests
    // (no completion for `liveness_ms / 3`, or `4 × liveness_ms` in all, fails): clients run
    // the rest of their plans after the heal, and a small geometry with many churning
    // sessions commits slowly but steadily (seed 1702: 40 ops/s with 16 slots, still
    // committing when a fixed 30 s ran out).
    let healed = Instant::now();
    let mut deadline = healed + Duration::from_millis(swarm.liveness_ms);
    let hard_deadline = healed + Duration::from_millis(4 * swarm.liveness_ms);
    let quiet_max = Duration::from_millis(swarm.liveness_ms / 3);
    let mut completions_seen = 0;
    let mut failure = None;
    let mut committed_ops = 0;
    let mut liveness = Liveness {
        converged: false,
        detail: String::new(),
        deadline_ms: swarm.liveness_ms,
    };
    // Once every client is done, each runs one probe request in a new session: a healed
    // cluster must serve every client (a primary that drops every request would otherwise
    // leave an all-unknown history, trivially linearizable, and pass).
    let mut probed = false;
    let mut probe_failures: Vec<String> = Vec::new();
    loop {
        time::sleep(Duration::from_millis(100)).await;
        let done = shared.clients_done.load(Ordering::Relaxed) == swarm.client_count as usize;
        if done && !probed {
            probed = true;
            probe_failures =
                workload::probe_clients(&swarm, &client_nodes, cluster.client_addresses.clone())
                    .await;
            continue;
        }
        let highest_seen = head_progress::highest_seen(&shared.history.lock().expect("lock"));
        let state = kmb_node::inspect::with(|r| {
            head_progress::converged(&final_states(r), swarm.replica_count, highest_seen)
                .map_err(|e| e.message)
        });
        let completions = shared.trace.lock().expect("lock").len();
        if completions != completions_seen {
            completions_seen = completions;
            deadline = deadline.max((Instant::now() + quiet_max).min(hard_deadline));
        }
        if done && probed && !probe_failures.is_empty() {
            liveness.detail = format!(
                "after the heal, a probe request got no reply: {}",
                probe_failures.join("; ")
            );
            break;
        }
        if done && probed {
            if let Ok(commit) = state {
                committed_ops = commit;
                liveness.converged = true;
                liveness.detail =
                    format!("converged at commit {commit}, every client's probe served");
                break;
            }
        }
        if Instant::now() >= deadline {
            let clients_left =
                swarm.client_count as usize - shared.clients_done.load(Ordering::Relaxed);
            let why = match state {
                Err(e) => e,
                Ok(_) => String::from("replicas converged"),
            };
            let blocked = kmb_node::inspect::with(|r| {
                r.blockers
                    .iter()
                    .filter_map(|(i, b)| b.as_ref().map(|b| format!("replica {i}: {b}")))
                    .collect::<Vec<_>>()
                    .join("; ")
            });
            liveness.deadline_ms = healed.elapsed().as_millis() as u64;
            liveness.detail = format!("{why}; {clients_left} client(s) still waiting");
            if !blocked.is_empty() {
                liveness.detail.push_str(&format!(" [blocked — {blocked}]"));
            }
            break;
        }
    }
    let sim_time_ms = start.elapsed().as_millis() as u64;
    let end_us = start.elapsed().as_micros() as u64;
    // The replicas' durable state, read back from their disks by storage's own offline
    // examination (independent of what the replicas published): only after a converged run,
    // when every replica must durably hold the committed log.
    // The marks the cluster hit (taken before the disks are examined and the checkers replay
    // the log, which run storage and client-table code of their own).
    let marks: BTreeMap<String, u64> = kmb_node::inspect::with(|r| {
        r.marks
            .iter()
            .map(|(&name, &hits)| (name.to_string(), hits))
            .collect()
    });
    let disks = if liveness.converged {
        examine_disks(&cluster).await
    } else {
        BTreeMap::new()
    };
    // Taken, not copied: the clients are done, and nothing reads the shared history after this.
    let history = std::mem::take(&mut *shared.history.lock().expect("lock"));
    // The run is over: end every replica and client node (no power loss, nothing drawn) so
    // that their logs, states and buffers are freed before the checkers run — with large
    // payloads they were a seed's peak memory.
    for &node in &cluster.replicas {
        sim_runtime::sim::stop(node);
    }
    for node in &client_nodes {
        sim_runtime::sim::stop(node.id());
    }
    if let Some(node) = &hostile_node {
        sim_runtime::sim::stop(node.id());
    }
    // Their tasks are dropped when the executor next picks them (in random order): a sleep
    // lets it drain every ready task first.
    time::sleep(Duration::from_millis(1)).await;
    // And what the replayer could have sent again (the requests as clients encoded them).
    shared.sent.lock().expect("lock").clear();
    shared.session_starts.lock().expect("lock").clear();
    // And the values replies shared (the history holds those it uses).
    shared.values.lock().expect("lock").clear();
    let malformed = shared.malformed.lock().expect("lock").clone();
    if failure.is_none() {
        if let Some(m) = malformed.first() {
            failure = fail(
                Classification::DataCorruption,
                "client_replies",
                format!("malformed reply: {m}"),
            );
        }
    }
    if failure.is_none() && swarm.faults {
        let unknown = history.iter().filter(|op| op.output.is_none()).count();
        if let Some(why) = unknown_bound_violation(swarm.bound, unknown, history.len()) {
            failure = fail(Classification::Liveness, "unknown_outcomes", why);
        }
    }
    // Taken, not copied (the run is over; nothing publishes or reads it after this).
    let mut registry = kmb_node::inspect::take();
    // A replica stop is the root cause of whatever follows it (liveness, replies), so halts
    // are judged first — every halt, not only the first: inside the bound a replica only stops
    // for an injected disk fault (a failed fsync, read or write: `HaltKind::DiskFailure`),
    // and only on a replica whose disk the fault model could fail.
    if failure.is_none() {
        // Failed syncs, failed writes and a full disk are injected on corruptible replicas only.
        let may_fail = scheduler.corruptible();
        let disallowed = registry.halts.iter().find(|(replica, _, kind)| {
            *kind != kmb_node::inspect::HaltKind::DiskFailure
                || !may_fail.contains(&(*replica as usize))
        });
        if let Some((replica, reason, _)) = disallowed {
            failure = fail(
                Classification::RecoveryFailure,
                "replica_halt",
                format!("replica {replica} halted: {reason}"),
            )
            .map(|f| Failure {
                replica: Some(*replica),
                ..f
            });
        }
    }
    let mut observations = observations(&swarm, &mut registry, history, liveness);
    observations.clock_origin_us = clock_origin_us;
    observations.clock_skew_ms = (
        swarm.clock_skew_ms.iter().copied().min().unwrap_or(0),
        swarm.clock_skew_ms.iter().copied().max().unwrap_or(0),
    );
    observations.disks = disks;
    observations.disk_oracle = sim_runtime::disk::oracle_violations();
    observations.corruptible = scheduler
        .corruptible()
        .into_iter()
        .map(|r| r as u8)
        .collect();
    let verdicts = checkers::check_all(&observations);
    let mut unknown = None;
    if failure.is_none() {
        match checkers::first_problem(&verdicts) {
            Some(Ok(violation)) => failure = Some(violation.into()),
            Some(Err(reason)) => unknown = Some(reason),
            None => {}
        }
    }

    if failure.is_none() {
        // The durability rule, checked against storage's own claim (independent of the core's
        // bookkeeping): no PrepareOk for an op that is not synced and chained on disk.
        if let Some(&(replica, op, durable)) = registry.early_acks.first() {
            failure = fail(
                Classification::RecoveryFailure,
                "durable_ack",
                format!(
                    "replica {replica} sent PrepareOk for op {op} while its storage held the log above its commit point synced only up to op {durable}"
                ),
            )
            .map(|f| Failure {
                replica: Some(replica),
                ..f
            });
        }
    }
    if failure.is_none() {
        // Likewise for votes: no DoViewChange before the view, its `log_view` and the bodies
        // it vouches for were durable, by storage's completions.
        if let Some((replica, view, what)) = registry.early_votes.first() {
            failure = fail(
                Classification::RecoveryFailure,
                "durable_vote",
                format!("replica {replica} sent DoViewChange for view {view} too early: {what}"),
            )
            .map(|f| Failure {
                replica: Some(*replica),
                ..f
            });
        }
    }
    // The trace: client events, the node's happenings and the fault log, in time order.
    let nodes: Vec<String> = cluster.replicas.iter().map(|n| n.to_string()).collect();
    let mut events: Vec<(u64, EventKind)> =
        std::mem::take(&mut *shared.trace.lock().expect("lock"));
    for e in sim_runtime::fault::events() {
        events.push((e.at.as_micros() as u64, fault_event(&e, &nodes)));
    }
    for (at, replica, what) in &registry.happenings {
        let at_us = (*at - start).as_micros() as u64;
        let kind = match what {
            Happening::Started => continue,
            Happening::ViewChangeStarted { view } => EventKind::ViewChangeStarted {
                replica: *replica,
                view: *view,
            },
            Happening::ViewInstalled { view, primary } => EventKind::ViewInstalled {
                replica: *replica,
                view: *view,
                primary: *primary,
            },
            Happening::Recovering { view } => EventKind::FaultInjected {
                kind: "node.recovering".into(),
                replica: Some(*replica),
                detail: format!("replica {replica} recovering in view {view}"),
            },
            Happening::Commit { op, checksum } => EventKind::Commit {
                replica: *replica,
                op: *op,
                checksum: format!("{checksum:032x}"),
            },
            Happening::StateTransfer { from_op, to_op } => EventKind::StateTransfer {
                replica: *replica,
                from_op: *from_op,
                to_op: *to_op,
            },
            Happening::Halted { reason } => EventKind::FaultInjected {
                kind: "node.halt".into(),
                replica: Some(*replica),
                detail: reason.clone(),
            },
            Happening::BuggyView { from, to } => EventKind::FaultInjected {
                kind: "peer.buggy_view".into(),
                replica: Some(*replica),
                detail: format!("StartViewChange view {from} sent as {to}"),
            },
        };
        events.push((at_us, kind));
    }
    events.sort_by_key(|(at, _)| *at);
    let mut trace = TraceCollector::with_options(swarm.seed, filter, capacity);
    for (at, kind) in events {
        trace.push(at, kind);
    }
    // Every check the seed ran: the eight checkers, then the harness's own three.
    for name in checkers::INVARIANTS.into_iter().chain([
        "client_replies",
        "replica_halt",
        "unknown_outcomes",
    ]) {
        trace.push(end_us, EventKind::InvariantChecked { name: name.into() });
    }
    if let Some(f) = &failure {
        trace.push(
            end_us,
            EventKind::InvariantViolated {
                name: f.checker.clone(),
                detail: f.message.clone(),
            },
        );
    }
    let mut fault_counters: BTreeMap<String, u64> = sim_runtime::fault::counters()
        .entries()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let buggy_views = registry
        .happenings
        .iter()
        .filter(|(_, _, h)| matches!(h, Happening::BuggyView { .. }))
        .count() as u64;
    if buggy_views > 0 {
        fault_counters.insert("peer.buggy_view".into(), buggy_views);
    }
    if scheduler.aimed_hits() > 0 {
        fault_counters.insert("aimed.replicas_hit".into(), scheduler.aimed_hits());
    }
    let sessions = shared.replayed_sessions.load(Ordering::Relaxed) as u64;
    if sessions > 0 {
        fault_counters.insert("client.replayed_sessions".into(), sessions);
    }
    let replayed = shared.replayed_requests.load(Ordering::Relaxed) as u64;
    if replayed > 0 {
        fault_counters.insert("client.replayed_requests".into(), replayed);
    }
    let hostile = shared.hostile_requests.load(Ordering::Relaxed) as u64;
    if hostile > 0 {
        fault_counters.insert("client.hostile_requests".into(), hostile);
    }
    drop(clients);
    let failed = failure.is_some();
    SimResult {
        failure,
        unknown,
        sim_time_ms,
        committed_ops,
        history: observations.history,
        corruptible: scheduler.corruptible(),
        scenario: Some(Scenario {
            seed: swarm.seed,
            no_faults: !swarm.faults,
            no_enhanced_workloads: swarm.mix.rmw + swarm.mix.scan == 0,
            classic: swarm.classic,
            disabled_knobs: disabled,
            faults: scheduler.recorded(),
            workload: match (failed, replayed_workload) {
                (false, _) => Vec::new(),
                (true, Some(workload)) => workload,
                (true, None) => workload::plan(&swarm),
            },
        }),
        fault_counters,
        marks,
        trace,
    }
}

/// Run one seed in a fresh simulation on a fresh thread.
pub fn run_seed(seed: u64, options: &RunOptions) -> SeedRecord {
    run_inner(seed, options, None)
}

/// Replay a recorded (possibly shrunk) scenario in a fresh simulation of its seed.
pub fn run_scenario(scenario: &Scenario, options: &RunOptions) -> SeedRecord {
    let mut options = options.clone();
    options.swarm.no_faults = scenario.no_faults;
    options.swarm.no_enhanced_workloads = scenario.no_enhanced_workloads;
    options.swarm.classic = scenario.classic;
    run_inner(scenario.seed, &options, Some(scenario.clone()))
}

fn run_inner(seed: u64, options: &RunOptions, replay: Option<Scenario>) -> SeedRecord {
    let swarm = Swarm::from_seed(seed, options.swarm);
    let started = sim::host_now();
    let params = swarm.clone();
    let (filter, capacity) = (options.trace_filter, options.trace_capacity);
    let mutation = options.mutation;
    let mut cpu_time_us = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (result, cpu) = sim::run_measured(seed, move || async move {
            // The mutation is thread-local: set it on the simulation's own thread.
            kmb_node::mutation::set(mutation);
            kmb_node::inspect::set_buggy_views(params.buggy_peer.map(|b| {
                kmb_node::inspect::BuggyViews {
                    replica: b.replica,
                    count: b.count,
                    near_limit: b.near_limit,
                }
            }));
            let result = simulate(params, filter, capacity, replay).await;
            let counts = mutation.map_or((0, 0), |m| {
                (kmb_node::mutation::fired(m), kmb_node::mutation::bites(m))
            });
            (result, counts)
        });
        cpu_time_us = cpu.map(|d| d.as_micros() as u64);
        result
    }));
    let wall_time_ms = started.elapsed().as_millis() as u64;
    let (result, (mutation_fired, mutation_bites)) = match result {
        Ok(r) => r,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            let result = SimResult {
                failure: fail(Classification::RecoveryFailure, "panic", message),
                unknown: None,
                sim_time_ms: 0,
                committed_ops: 0,
                history: Vec::new(),
                corruptible: Vec::new(),
                fault_counters: BTreeMap::new(),
                marks: BTreeMap::new(),
                trace: TraceCollector::new(seed),
                scenario: None,
            };
            (result, (0, 0))
        }
    };
    let unknown_ops = result
        .history
        .iter()
        .filter(|op| op.output.is_none())
        .count();
    let (outcome, failure) = match (&result.failure, &result.unknown) {
        (Some(f), _) => (Outcome::Fail, Some(f.clone())),
        (None, Some(reason)) => (
            Outcome::Unknown,
            fail(
                Classification::Linearizability,
                "linearizability_unknown",
                reason.clone(),
            ),
        ),
        (None, None) => (Outcome::Pass, None),
    };
    let events = result.trace.snapshot();
    let first_bad_event = failure.as_ref().and_then(|_| {
        events
            .iter()
            .find(|e| matches!(e.kind, EventKind::InvariantViolated { .. }))
            .map(|e| e.kind.name().to_string() + ": " + &first_line(&e.kind.to_string()))
    });
    let report = match (&failure, options.diagnose) {
        (Some(f), true) => Some(FailureReport::build(
            seed,
            f,
            &events,
            &serde_json::to_value(&swarm).unwrap_or_default(),
            &options.repro_flags,
        )),
        _ => None,
    };
    SeedRecord {
        seed,
        params: swarm,
        outcome,
        failure_kind: failure
            .as_ref()
            .map(|f| f.classification.as_str().to_string()),
        checker: failure.as_ref().map(|f| f.checker.clone()),
        failure_message: failure.as_ref().map(|f| f.message.clone()),
        first_bad_event,
        sim_time_ms: result.sim_time_ms,
        wall_time_ms,
        cpu_time_us,
        event_hash: result.trace.event_hash_hex(),
        committed_ops: result.committed_ops,
        client_ops: result.history.len(),
        unknown_ops,
        corruptible: result.corruptible,
        fault_counters: result.fault_counters,
        marks: result.marks,
        mutation: options.mutation.map(|m| m.name().to_string()),
        mutation_fired,
        mutation_bites,
        history: result.history,
        failure,
        trace: Some(result.trace),
        report,
        scenario: result.scenario,
    }
}

/// The outcome of shrinking a failing seed.
pub struct Shrunk {
    /// The original run.
    pub original: SeedRecord,
    /// The smallest scenario found that still fails the same checker.
    pub minimal: Scenario,
    /// The run of `minimal`.
    pub record: SeedRecord,
    /// Simulations run while shrinking.
    pub runs: usize,
}

/// Shrink a failing seed: switch off fault knobs, remove scheduled faults and client
/// operations while the same checker still fails (delta debugging, at most `budget` runs).
/// `None` if the seed passes.
pub fn shrink(seed: u64, options: &RunOptions, budget: usize) -> Option<Shrunk> {
    let original = run_seed(seed, options);
    if original.outcome != Outcome::Fail {
        return None;
    }
    let mut best = original.scenario.clone()?;
    let mut quiet = options.clone();
    quiet.diagnose = false;
    let mut shrinker = Shrinker {
        options: quiet,
        target: original.checker.clone(),
        budget,
        runs: 0,
    };
    // 1. Whole fault knobs.
    for knob in crate::faults::KNOBS {
        if best.disabled_knobs.contains(knob) {
            continue;
        }
        let mut candidate = best.clone();
        candidate.disabled_knobs.insert(knob.to_string());
        if shrinker.fails(&candidate) {
            best = candidate;
        }
    }
    // 2. Scheduled faults, then 3. whole clients, then 4. each client's operations.
    shrinker.remove_chunks(&mut best, |s| &mut s.faults);
    for c in 0..best.workload.len() {
        if best.workload[c].is_empty() {
            continue;
        }
        let mut candidate = best.clone();
        candidate.workload[c].clear();
        if shrinker.fails(&candidate) {
            best = candidate;
        }
    }
    for c in 0..best.workload.len() {
        shrinker.remove_chunks(&mut best, |s| &mut s.workload[c]);
    }
    // Run the minimal scenario once more with diagnosis on, for its report.
    let record = run_scenario(&best, options);
    Some(Shrunk {
        original,
        minimal: best,
        record,
        runs: shrinker.runs,
    })
}

/// The shrinker's budget and its test: does a candidate still fail the same checker?
struct Shrinker {
    options: RunOptions,
    target: Option<String>,
    budget: usize,
    runs: usize,
}

impl Shrinker {
    /// Run `candidate` (if the budget allows) and say whether it fails the target checker.
    fn fails(&mut self, candidate: &Scenario) -> bool {
        if self.runs >= self.budget {
            return false;
        }
        self.runs += 1;
        let record = run_scenario(candidate, &self.options);
        record.outcome == Outcome::Fail && record.checker == self.target
    }

    /// Delta debugging over one list of the scenario: remove chunks of it while the candidate
    /// still fails, halving the chunk size when no chunk can go.
    fn remove_chunks<T>(
        &mut self,
        best: &mut Scenario,
        list: impl Fn(&mut Scenario) -> &mut Vec<T>,
    ) {
        let mut chunk = list(best).len().div_ceil(2).max(1);
        while !list(best).is_empty() && self.runs < self.budget {
            let mut removed = false;
            let mut i = 0;
            while i < list(best).len() {
                let mut candidate = best.clone();
                let items = list(&mut candidate);
                let end = (i + chunk).min(items.len());
                items.drain(i..end);
                if self.fails(&candidate) {
                    *best = candidate;
                    removed = true;
                } else {
                    i += chunk;
                }
            }
            if !removed {
                if chunk == 1 {
                    break;
                }
                chunk = chunk.div_ceil(2);
            }
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the strict bound's limit on unknown outcomes fires above 10% (at least 5 ops),
    /// never under the safety bound.
    #[test]
    fn unknown_outcomes_are_bounded_under_the_strict_bound_only() {
        assert_eq!(unknown_bound_violation(Bound::Strict, 10, 100), None);
        assert!(unknown_bound_violation(Bound::Strict, 11, 100)
            .is_some_and(|m| m.contains("11 of 100")));
        assert_eq!(unknown_bound_violation(Bound::Strict, 5, 20), None);
        assert!(unknown_bound_violation(Bound::Strict, 6, 20).is_some());
        assert_eq!(unknown_bound_violation(Bound::Safety, 100, 100), None);
    }
}
