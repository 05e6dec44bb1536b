//! One seed of the VOPR, end to end (simulation only): start the real cluster, run the
//! workload while the fault schedule attacks it (safety phase), stop every fault and restart
//! every replica (liveness phase), then run the checkers over what the real replicas hold and
//! what the real clients saw.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use lincheck::kv::KvOp;
use lincheck::{CheckOptions, Verdict};
use serde::Serialize;
use sim_runtime::sim::{self, Handle};
use sim_runtime::time::{self, Duration, Instant};

use crate::cluster::{client_ip, Cluster};
use crate::faults::Scheduler;
use crate::swarm::{Swarm, SwarmOptions};
use crate::workload::{self, Shared};

/// What the command line asks of every seed.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub swarm: SwarmOptions,
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

/// A failed check.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Failure {
    /// What kind of failure (`liveness`, `linearizability`, `commit_history`, …).
    pub kind: String,
    /// The checker that fired.
    pub checker: String,
    pub message: String,
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
    pub sim_time_ms: u64,
    pub wall_time_ms: u64,
    pub event_hash: String,
    pub committed_ops: u64,
    pub client_ops: usize,
    pub unknown_ops: usize,
    pub corruptible: Vec<usize>,
    pub fault_counters: BTreeMap<String, u64>,
    #[serde(skip)]
    pub history: Vec<KvOp>,
}

struct SimResult {
    failure: Option<Failure>,
    unknown: Option<String>,
    sim_time_ms: u64,
    event_hash: u64,
    committed_ops: u64,
    history: Vec<KvOp>,
    corruptible: Vec<usize>,
    fault_counters: BTreeMap<String, u64>,
}

fn fail(kind: &str, checker: &str, message: impl Into<String>) -> Option<Failure> {
    Some(Failure {
        kind: kind.into(),
        checker: checker.into(),
        message: message.into(),
    })
}

/// Whether every replica agrees: normal status, one view, one commit number covering every
/// op a client saw, one state hash.
fn converged(cluster: &Cluster, highest_seen: u64) -> Result<u64, String> {
    let registry = kmb_node::inspect::snapshot();
    let mut commits = Vec::new();
    for i in 0..cluster.replicas.len() {
        let Some(r) = registry.replicas.get(&(i as u8)) else {
            return Err(format!("replica {i} never published its state"));
        };
        if r.status != "normal" {
            return Err(format!(
                "replica {i} is in status {} (view {})",
                r.status, r.view
            ));
        }
        commits.push((i, r.view, r.commit, r.op, r.state_hash));
    }
    let (_, view, commit, _, hash) = commits[0];
    for &(i, v, c, op, h) in &commits {
        if v != view || c != commit || op != c {
            return Err(format!(
                "replicas disagree: replica 0 at view {view} commit {commit}, replica {i} at view {v} commit {c} op {op}"
            ));
        }
        if h != hash {
            return Err(format!(
                "replica {i} has a different state hash at commit {c}"
            ));
        }
    }
    if commit < highest_seen {
        return Err(format!(
            "commit {commit} is behind op {highest_seen} seen by a client"
        ));
    }
    Ok(commit)
}

/// Commit history: a committed op never changes (same op ⇒ same checksum, across replicas
/// and over time), and each replica commits contiguously (except across a state transfer).
fn check_commit_history() -> Option<Failure> {
    let registry = kmb_node::inspect::snapshot();
    let mut seen: BTreeMap<u64, (u8, u128)> = BTreeMap::new();
    for (&replica, commits) in &registry.commits {
        for &(op, checksum) in commits {
            match seen.get(&op) {
                Some(&(other, c)) if c != checksum => {
                    return fail(
                        "commit_rewrite",
                        "commit_history",
                        format!(
                            "op {op} committed as {checksum:032x} on replica {replica} but as {c:032x} on replica {other}"
                        ),
                    )
                }
                Some(_) => {}
                None => {
                    seen.insert(op, (replica, checksum));
                }
            }
        }
    }
    None
}

async fn simulate(swarm: Swarm) -> SimResult {
    let start = Instant::now();
    let cluster = Cluster::start(&swarm);
    let mut scheduler = Scheduler::new(&swarm);
    // Let every replica format and start before any fault.
    time::sleep(Duration::from_millis(200)).await;
    scheduler.install_disk_faults(&cluster);
    let shared = Arc::new(Shared::default());
    let mut clients = Vec::new();
    for c in 0..swarm.client_count as usize {
        let node = Handle::current()
            .create_node()
            .name(format!("client-{c}"))
            .ip(client_ip(c))
            .build();
        clients.push(node.spawn(workload::run_client(
            swarm.clone(),
            c as u64,
            cluster.client_addresses.clone(),
            shared.clone(),
            start,
        )));
    }
    scheduler.safety_phase(&cluster, &shared).await;
    scheduler.end_faults(&cluster);

    // Liveness: every outstanding request completes and the replicas converge in time.
    let deadline = Instant::now() + Duration::from_millis(swarm.liveness_ms);
    let mut failure = None;
    let mut committed_ops = 0;
    loop {
        time::sleep(Duration::from_millis(100)).await;
        let done = shared.clients_done.load(Ordering::Relaxed) == swarm.client_count as usize;
        let highest_seen = shared
            .history
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|op| op.output.as_ref().and_then(|o| o.op_number))
            .max()
            .unwrap_or(0);
        let state = converged(&cluster, highest_seen);
        if done {
            if let Ok(commit) = state {
                committed_ops = commit;
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
            failure = fail(
                "liveness",
                "head_progress",
                format!(
                    "no convergence within {} ms of healing: {why}; {clients_left} client(s) still waiting",
                    swarm.liveness_ms
                ),
            );
            break;
        }
    }
    let sim_time_ms = start.elapsed().as_millis() as u64;
    let history = shared.history.lock().expect("lock").clone();
    let malformed = shared.malformed.lock().expect("lock").clone();
    if failure.is_none() {
        if let Some(m) = malformed.first() {
            failure = fail(
                "data_corruption",
                "client_replies",
                format!("malformed reply: {m}"),
            );
        }
    }
    if failure.is_none() {
        failure = check_commit_history();
    }
    let mut unknown = None;
    if failure.is_none() {
        match lincheck::kv::check(&history, &CheckOptions::default()) {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable(f) => {
                failure = fail("linearizability", "linearizability", f.to_string());
            }
            Verdict::Unknown { reason } => unknown = Some(reason),
        }
    }
    let registry = kmb_node::inspect::snapshot();
    if failure.is_none() {
        if let Some((replica, reason)) = registry.halts.first() {
            // Inside the bound a replica only stops for an injected fsync or disk-full error.
            if !(reason.contains("fsync") || reason.contains("no space") || reason.contains("I/O"))
            {
                failure = fail(
                    "recovery_failure",
                    "replica_halt",
                    format!("replica {replica} halted: {reason}"),
                );
            }
        }
    }
    let events = sim_runtime::fault::events();
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for e in &events {
        hasher.update(&e.at.as_nanos().to_le_bytes());
        hasher.update(e.kind.as_bytes());
        hasher.update(e.detail.as_bytes());
    }
    for (replica, commits) in &registry.commits {
        hasher.update(&[*replica]);
        for (op, checksum) in commits {
            hasher.update(&op.to_le_bytes());
            hasher.update(&checksum.to_le_bytes());
        }
    }
    hasher.update(lincheck::kv::write_ndjson(&history).as_bytes());
    let fault_counters = sim_runtime::fault::counters()
        .entries()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    drop(clients);
    SimResult {
        failure,
        unknown,
        sim_time_ms,
        event_hash: hasher.digest(),
        committed_ops,
        history,
        corruptible: scheduler.corruptible(),
        fault_counters,
    }
}

/// Run one seed in a fresh simulation on a fresh thread.
pub fn run_seed(seed: u64, options: &RunOptions) -> SeedRecord {
    let swarm = Swarm::from_seed(seed, options.swarm);
    let started = sim::host_now();
    let params = swarm.clone();
    let result = std::panic::catch_unwind(|| sim::run(seed, move || simulate(params)));
    let wall_time_ms = started.elapsed().as_millis() as u64;
    let result = match result {
        Ok(r) => r,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            SimResult {
                failure: fail("panic", "simulator", message),
                unknown: None,
                sim_time_ms: 0,
                event_hash: 0,
                committed_ops: 0,
                history: Vec::new(),
                corruptible: Vec::new(),
                fault_counters: BTreeMap::new(),
            }
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
            Some(Failure {
                kind: "checker_unknown".into(),
                checker: "linearizability".into(),
                message: reason.clone(),
            }),
        ),
        (None, None) => (Outcome::Pass, None),
    };
    SeedRecord {
        seed,
        params: swarm,
        outcome,
        failure_kind: failure.as_ref().map(|f| f.kind.clone()),
        checker: failure.as_ref().map(|f| f.checker.clone()),
        failure_message: failure.map(|f| f.message),
        sim_time_ms: result.sim_time_ms,
        wall_time_ms,
        event_hash: format!("{:016x}", result.event_hash),
        committed_ops: result.committed_ops,
        client_ops: result.history.len(),
        unknown_ops,
        corruptible: result.corruptible,
        fault_counters: result.fault_counters,
        history: result.history,
    }
}
