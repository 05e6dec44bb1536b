//! Running simulations (simulation only): the runtime with kmb's plugins, node control, and
//! seed isolation.

use std::future::Future;

pub use madsim::runtime::{Handle, NodeHandle, Runtime};
pub use madsim::task::NodeId;

use crate::fault::{self, World};

/// A madsim runtime for `seed` with kmb's simulator plugins registered. A thread runs one
/// simulation at a time (the fault plugin is cached per thread): create it on the thread that
/// runs it, as [`run`] does.
pub fn runtime(seed: u64) -> Runtime {
    let rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
    rt.add_simulator::<World>();
    fault::forget_world();
    rt
}

/// Run `make()` to completion in a fresh simulation of `seed`, on a fresh OS thread so no
/// thread-local or lazily-initialised state leaks from one seed into the next.
pub fn run<F, Fut, T>(seed: u64, make: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    run_measured(seed, make).0
}

/// [`run`], also returning the CPU time the simulation's thread used (see
/// [`thread_cpu_time`]; `None` where it cannot be read).
pub fn run_measured<F, Fut, T>(seed: u64, make: F) -> (T, Option<std::time::Duration>)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let thread = std::thread::Builder::new()
        .name(format!("sim-seed-{seed}"))
        .stack_size(32 << 20)
        .spawn(move || {
            let before = thread_cpu_time();
            let value = runtime(seed).block_on(make());
            let used = thread_cpu_time()
                .zip(before)
                .map(|(after, before)| after.saturating_sub(before));
            (value, used)
        })
        .expect("spawn simulation thread");
    match thread.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The CPU time the calling thread has used so far, for measuring the simulator itself (the
/// summary's real-time ratio per core). Linux: the scheduler's own count in
/// `/proc/thread-self/schedstat`, in nanoseconds; `None` elsewhere. Never call it inside a
/// simulation's logic: it is the host's clock.
pub fn thread_cpu_time() -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse::<u64>().ok()?;
    Some(std::time::Duration::from_nanos(nanos))
}

/// The node the current task runs on.
pub fn current_node() -> NodeId {
    madsim::plugin::node()
}

/// Power loss: kill every task of `node`; its disk loses, keeps or tears unsynced writes.
pub fn kill(node: NodeId) {
    fault::with(|s| {
        s.counters.kills += 1;
        s.record("node.kill", format!("node {node}"));
    });
    // madsim calls World::reset_node, which applies the power loss to the disk.
    Handle::current().kill(node);
}

/// End `node` for good once a run is over, to free what its tasks hold before the checkers
/// run: its tasks are dropped at the executor's next turn, with no power loss (its disk stays
/// as it is), no fault drawn and nothing counted or recorded. A [`restart`] after brings it
/// back on that disk, and its kills are power losses again.
pub fn stop(node: NodeId) {
    fault::with(|s| s.stopped.insert(node));
    Handle::current().kill(node);
}

/// Restart `node`, re-running its init closure. A node still running is killed first, so a
/// restart of a running node is always a power loss (and its sockets are released).
pub fn restart(node: NodeId) {
    let was_ended = fault::with(|s| s.killed.contains(&node) || s.stopped.contains(&node));
    if !was_ended {
        kill(node);
    }
    fault::with(|s| {
        s.killed.remove(&node);
        s.stopped.remove(&node);
        s.counters.restarts += 1;
        s.record("node.restart", format!("node {node}"));
    });
    Handle::current().restart(node);
}

/// Pause every task of `node` (a stalled process: no progress, nothing lost).
pub fn pause(node: NodeId) {
    fault::with(|s| {
        s.counters.pauses += 1;
        s.record("node.pause", format!("node {node}"));
    });
    Handle::current().pause(node);
}

/// Resume a paused `node`.
pub fn resume(node: NodeId) {
    fault::with(|s| {
        s.counters.resumes += 1;
        s.record("node.resume", format!("node {node}"));
    });
    Handle::current().resume(node);
}

/// Whether `node` is killed (and not restarted since).
pub fn is_killed(node: NodeId) -> bool {
    fault::with(|s| s.killed.contains(&node))
}

/// Run `run(seed)` for every seed on `jobs` worker threads, handing each result to `done` on
/// the calling thread as it completes (in completion order). `run` should itself use [`run`]
/// so every seed gets a fresh thread and a fresh simulation.
pub fn for_each_seed<R, F, D>(seeds: &[u64], jobs: usize, run: F, mut done: D)
where
    R: Send,
    F: Fn(u64) -> R + Sync,
    D: FnMut(u64, R),
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::channel::<(u64, R)>();
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, seeds.len().max(1)) {
            let tx = tx.clone();
            let (next, run) = (&next, &run);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&seed) = seeds.get(i) else { break };
                if tx.send((seed, run(seed))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (seed, result) in rx {
            done(seed, result);
        }
    });
}

/// The host's monotonic clock, for measuring the simulator itself (wall time per seed, seeds
/// per second). Never call it inside a simulation: simulated code uses [`crate::time`].
pub fn host_now() -> std::time::Instant {
    std::time::Instant::now()
}

/// A seed drawn from OS entropy, for tools that pick a random seed when none is given.
pub fn entropy_seed() -> u64 {
    use rand::Rng;
    rand::thread_rng().gen()
}
