//! The nemesis: a schedule of faults drawn from the seed (printed before the run), then
//! executed against the real processes and network, each action logged with its time.
//!
//! Each step waits a healthy gap, applies one fault, holds it, then heals it. The kinds are
//! drawn round-robin from a shuffled list of the enabled kinds, so a short run still sees
//! each kind. Which replica "the primary" is is decided when the step runs (by asking the
//! replicas). The schedule ends a couple of seconds before the workload does, and
//! [`heal_all`] runs at the end whatever happened.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sim_runtime::time::{self, Duration, Instant};

use crate::cluster::{find_primary, Cluster};
use crate::net::LinkFault;
use crate::Logger;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// kill -9 the primary, restart it after the hold.
    KillPrimary,
    /// kill -9 one random replica, restart it after the hold.
    KillRandom,
    /// kill -9 two replicas at once (no quorum with 3), restart both after the hold.
    KillTwo,
    /// SIGSTOP one replica (the primary half the time), SIGCONT after the hold.
    Pause,
    /// Symmetric partition: the primary cut off from every other replica.
    PartitionPrimary,
    /// Symmetric partition: a random minority cut off from the rest.
    Partition,
    /// One-way partition: packets from one replica to another dropped.
    PartitionOneWay,
    /// tc netem on one replica's link: delay with jitter, loss, duplication, reordering.
    Netem,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::KillPrimary,
        Kind::KillRandom,
        Kind::KillTwo,
        Kind::Pause,
        Kind::PartitionPrimary,
        Kind::Partition,
        Kind::PartitionOneWay,
        Kind::Netem,
    ];
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// kill -9 the primary (resolved when the step runs).
    KillPrimary,
    /// kill -9 these replicas.
    Kill(Vec<usize>),
    /// SIGSTOP the primary (resolved when the step runs).
    PausePrimary,
    /// SIGSTOP this replica.
    Pause(usize),
    /// Cut the primary (resolved when the step runs) off from every other replica.
    IsolatePrimary,
    /// Cut these replicas off from the others (both directions).
    Partition(Vec<usize>),
    /// Drop every packet from `from` to `to`.
    OneWay { from: usize, to: usize },
    /// A degraded link (netem, or its fallback: `Net::degrade`).
    Netem { node: usize, link: LinkFault },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::KillPrimary => write!(f, "kill -9 the primary"),
            Action::Kill(nodes) => write!(f, "kill -9 replicas {nodes:?}"),
            Action::PausePrimary => write!(f, "SIGSTOP the primary"),
            Action::Pause(n) => write!(f, "SIGSTOP replica {n}"),
            Action::IsolatePrimary => write!(f, "partition: the primary | the rest"),
            Action::Partition(side) => write!(f, "partition: {side:?} | the rest"),
            Action::OneWay { from, to } => write!(f, "one-way partition: {from} -> {to} dropped"),
            Action::Netem { node, link } => write!(
                f,
                "netem on replica {node}: delay {}ms±{}ms loss {}% duplicate {}% reorder {}% \
                 (without sch_netem: rate {}kbit)",
                link.delay_ms,
                link.jitter_ms,
                link.loss_pct,
                link.duplicate_pct,
                link.reorder_pct,
                link.rate_kbit
            ),
        }
    }
}

impl Action {
    pub fn is_kill(&self) -> bool {
        matches!(self, Action::KillPrimary | Action::Kill(_))
    }

    pub fn is_partition(&self) -> bool {
        matches!(
            self,
            Action::IsolatePrimary | Action::Partition(_) | Action::OneWay { .. }
        )
    }
}

#[derive(Clone, Debug)]
pub struct Step {
    /// When the fault starts, from the start of the workload.
    pub at: Duration,
    /// How long it is held before it is healed.
    pub hold: Duration,
    pub action: Action,
}

/// The schedule for `seconds` of workload on `n` replicas.
pub fn plan(seed: u64, n: usize, seconds: u64, kinds: &[Kind]) -> Vec<Step> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x006e_656d_6573_6973);
    let end = Duration::from_secs(seconds.saturating_sub(2));
    let mut t = Duration::from_millis(rng.gen_range(1500..3000));
    let mut steps = Vec::new();
    let mut order: Vec<Kind> = Vec::new();
    let minority = (n - 1) / 2;
    loop {
        if order.is_empty() {
            order = kinds.to_vec();
            order.shuffle(&mut rng);
        }
        let kind = order.pop().expect("non-empty");
        let hold_ms = match kind {
            Kind::KillTwo => rng.gen_range(2000..4500),
            _ => rng.gen_range(2500..8000),
        };
        let hold = Duration::from_millis(hold_ms);
        if t + hold > end {
            break;
        }
        let mut nodes: Vec<usize> = (0..n).collect();
        nodes.shuffle(&mut rng);
        let action = match kind {
            Kind::KillPrimary => Action::KillPrimary,
            Kind::KillRandom => Action::Kill(vec![nodes[0]]),
            Kind::KillTwo => {
                let mut two = vec![nodes[0], nodes[1]];
                two.sort_unstable();
                Action::Kill(two)
            }
            Kind::Pause => {
                if rng.gen_bool(0.5) {
                    Action::PausePrimary
                } else {
                    Action::Pause(nodes[0])
                }
            }
            Kind::PartitionPrimary => Action::IsolatePrimary,
            Kind::Partition => {
                let size = rng.gen_range(1..=minority.max(1));
                let mut side = nodes[..size].to_vec();
                side.sort_unstable();
                Action::Partition(side)
            }
            Kind::PartitionOneWay => Action::OneWay {
                from: nodes[0],
                to: nodes[1],
            },
            Kind::Netem => Action::Netem {
                node: nodes[0],
                link: LinkFault {
                    delay_ms: rng.gen_range(5..60),
                    jitter_ms: rng.gen_range(1..20),
                    loss_pct: rng.gen_range(0..15),
                    duplicate_pct: rng.gen_range(0..10),
                    reorder_pct: rng.gen_range(0..30),
                    rate_kbit: [32, 64, 128, 256][rng.gen_range(0..4)],
                },
            },
        };
        steps.push(Step {
            at: t,
            hold,
            action,
        });
        t += hold + Duration::from_millis(rng.gen_range(1000..4000));
    }
    steps
}

/// What happened: one record per executed step, for the summary.
#[derive(Clone, Debug)]
pub struct Applied {
    pub start: Duration,
    pub end: Duration,
    pub what: String,
    pub action: Action,
    pub killed: usize,
    /// The replicas it acted on (killed, paused, degraded).
    pub replicas: Vec<usize>,
    /// The directed links it cut, `(from, to)`.
    pub links: Vec<(usize, usize)>,
}

enum Undo {
    Restart(Vec<usize>),
    Resume(usize),
    Heal(Vec<(usize, usize)>),
    ClearNetem(usize),
    Nothing,
}

/// Sleep until `deadline` or until `stop` is set; `false` if stopped.
async fn sleep_until(deadline: Instant, stop: &AtomicBool) -> bool {
    while Instant::now() < deadline {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        time::sleep(left.min(Duration::from_millis(100))).await;
    }
    !stop.load(Ordering::Relaxed)
}

/// Run the schedule from `start`; returns what was applied. Heals everything at the end.
pub async fn execute(
    schedule: Vec<Step>,
    cluster: Arc<Mutex<Cluster>>,
    log: Arc<Logger>,
    start: Instant,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> Vec<Applied> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0072_756e_7469_6d65);
    let addresses = cluster.lock().expect("lock").client_addresses();
    let mut applied = Vec::new();
    for (k, step) in schedule.into_iter().enumerate() {
        if !sleep_until(start + step.at, &stop).await {
            break;
        }
        let needs_primary = matches!(
            step.action,
            Action::KillPrimary | Action::PausePrimary | Action::IsolatePrimary
        );
        let primary = if needs_primary {
            find_primary(&addresses).await
        } else {
            None
        };
        let began = start.elapsed();
        let (what, undo, killed) = {
            let mut c = cluster.lock().expect("lock");
            let n = c.n();
            let resolve = |rng: &mut ChaCha8Rng| -> (usize, &'static str) {
                match primary {
                    Some(p) => (p, "primary"),
                    None => (rng.gen_range(0..n), "primary unknown, random"),
                }
            };
            apply(&mut c, &step.action, &mut rng, resolve)
        };
        log.log(&format!("nemesis #{k} start: {what}"));
        let (replicas, links) = match &undo {
            Undo::Restart(r) => (r.clone(), Vec::new()),
            Undo::Resume(i) | Undo::ClearNetem(i) => (vec![*i], Vec::new()),
            Undo::Heal(l) => (Vec::new(), l.clone()),
            Undo::Nothing => (Vec::new(), Vec::new()),
        };
        let held = sleep_until(Instant::now() + step.hold, &stop).await;
        heal(&cluster, undo, &log, k);
        applied.push(Applied {
            start: began,
            end: start.elapsed(),
            what,
            action: step.action.clone(),
            killed,
            replicas,
            links,
        });
        if !held {
            break;
        }
    }
    heal_all(&cluster, &log);
    applied
}

fn apply(
    c: &mut Cluster,
    action: &Action,
    rng: &mut ChaCha8Rng,
    resolve: impl Fn(&mut ChaCha8Rng) -> (usize, &'static str),
) -> (String, Undo, usize) {
    let n = c.n();
    let kill = |c: &mut Cluster, nodes: &[usize], label: &str| {
        let mut done = Vec::new();
        for &i in nodes {
            let pid = c.pid(i);
            if c.kill(i) {
                done.push(format!("{i} (pid {})", pid.unwrap_or(0)));
            }
        }
        let killed = done.len();
        (
            format!("kill -9 {label} replica(s) {}", done.join(", ")),
            Undo::Restart(nodes.to_vec()),
            killed,
        )
    };
    match action {
        Action::KillPrimary => {
            let (p, how) = resolve(rng);
            kill(c, &[p], how)
        }
        Action::Kill(nodes) => kill(c, nodes, "chosen"),
        Action::PausePrimary | Action::Pause(_) => {
            let (i, how) = match action {
                Action::Pause(i) => (*i, "chosen"),
                _ => resolve(rng),
            };
            match c.pause(i) {
                Ok(()) => (
                    format!("SIGSTOP {how} replica {i} (pid {})", c.pid(i).unwrap_or(0)),
                    Undo::Resume(i),
                    0,
                ),
                Err(e) => (
                    format!("SIGSTOP replica {i} skipped: {e}"),
                    Undo::Nothing,
                    0,
                ),
            }
        }
        Action::IsolatePrimary | Action::Partition(_) => {
            let (side, how) = match action {
                Action::Partition(side) => (side.clone(), "chosen"),
                _ => {
                    let (p, how) = resolve(rng);
                    (vec![p], how)
                }
            };
            let mut errors = Vec::new();
            let mut links = Vec::new();
            for &a in &side {
                for b in (0..n).filter(|b| !side.contains(b)) {
                    for (at, from) in [(a, b), (b, a)] {
                        links.push((from, at));
                        if let Err(e) = c.net.drop_from(at, from) {
                            errors.push(e);
                        }
                    }
                }
            }
            let rest: Vec<usize> = (0..n).filter(|b| !side.contains(b)).collect();
            (
                format!("partition ({how}) {side:?} | {rest:?}{}", errs(&errors)),
                Undo::Heal(links),
                0,
            )
        }
        Action::OneWay { from, to } => {
            let r = c
                .net
                .drop_from(*to, *from)
                .err()
                .into_iter()
                .collect::<Vec<_>>();
            (
                format!(
                    "one-way partition: packets {from} -> {to} dropped{}",
                    errs(&r)
                ),
                Undo::Heal(vec![(*from, *to)]),
                0,
            )
        }
        Action::Netem { node, link } => match c.net.degrade(*node, link) {
            Ok(what) => (
                format!("link fault on replica {node}: {what}"),
                Undo::ClearNetem(*node),
                0,
            ),
            Err(e) => (
                format!("link fault on replica {node}{}", errs(&[e])),
                Undo::ClearNetem(*node),
                0,
            ),
        },
    }
}

fn errs(errors: &[String]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        format!(" (ERRORS: {})", errors.join("; "))
    }
}

fn heal(cluster: &Mutex<Cluster>, undo: Undo, log: &Logger, k: usize) {
    let mut c = cluster.lock().expect("lock");
    let what = match undo {
        Undo::Restart(nodes) => {
            let mut started = Vec::new();
            for i in nodes {
                match c.start(i) {
                    Ok(pid) => started.push(format!("{i} (pid {pid})")),
                    Err(e) => started.push(format!("{i}: {e}")),
                }
            }
            format!("restart replica(s) {}", started.join(", "))
        }
        Undo::Resume(i) => {
            c.resume(i);
            format!("SIGCONT replica {i}")
        }
        Undo::Heal(_) => match c.net.heal_partitions() {
            Ok(()) => "partition healed".to_string(),
            Err(e) => format!("partition heal ERROR: {e}"),
        },
        Undo::ClearNetem(i) => {
            c.net.clear_link(i);
            format!("link fault removed from replica {i}")
        }
        Undo::Nothing => "nothing to heal".to_string(),
    };
    log.log(&format!("nemesis #{k} heal: {what}"));
}

/// Heal everything: no rules, no netem, no paused or dead replica. Idempotent.
pub fn heal_all(cluster: &Mutex<Cluster>, log: &Logger) {
    let mut c = cluster.lock().unwrap_or_else(|e| e.into_inner());
    let _ = c.net.heal_partitions();
    c.reap();
    for i in 0..c.n() {
        c.net.clear_link(i);
        c.resume(i);
        if !c.is_running(i) {
            match c.start(i) {
                Ok(pid) => log.log(&format!("heal all: started replica {i} (pid {pid})")),
                Err(e) => log.log(&format!("heal all: cannot start replica {i}: {e}")),
            }
        }
    }
    log.log("heal all: no partitions, no netem, every replica running");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_is_a_function_of_the_seed_and_covers_kinds() {
        let a = plan(7, 3, 300, &Kind::ALL);
        let b = plan(7, 3, 300, &Kind::ALL);
        assert_eq!(
            a.iter().map(|s| s.action.to_string()).collect::<Vec<_>>(),
            b.iter().map(|s| s.action.to_string()).collect::<Vec<_>>()
        );
        assert!(a.iter().any(|s| s.action.is_kill()));
        assert!(a.iter().any(|s| s.action.is_partition()));
        assert!(
            a.last().expect("steps").at + a.last().expect("steps").hold <= Duration::from_secs(298)
        );
    }
}
