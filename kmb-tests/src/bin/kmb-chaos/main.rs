//! `kmb-chaos`: real-cluster chaos. Starts N real `kmb-node` processes, each in its own
//! network namespace joined to a bridge, runs concurrent clients of the project's client
//! library against them while a nemesis drawn from a seed kills (-9), pauses, partitions and
//! degrades the links of the replicas, then heals everything and checks: lincheck over the
//! whole history, every acknowledged write present or superseded, counters equal to the
//! acknowledged increments plus a subset of the unknown ones, and `kmb-node verify` on every
//! replica's data file. Exits non-zero on any failed check.
//!
//! Needs root, `ip` (iproute2), `nft` (nftables) and `tc`. See docs/chaos.md.
//!
//! ```text
//! kmb-chaos --seconds 60 --seed 1              # 3 replicas, every nemesis kind
//! kmb-chaos --cleanup                          # remove leftovers of dead runs
//! ```
//!
//! Production mode only: under `--cfg madsim` this binary only prints that it is not built.

#[cfg(madsim)]
fn main() {
    eprintln!("kmb-chaos drives real processes; build it without --cfg madsim");
    std::process::exit(2);
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    run::main()
}

#[cfg(not(madsim))]
mod checks;
#[cfg(not(madsim))]
mod cluster;
#[cfg(not(madsim))]
mod nemesis;
#[cfg(not(madsim))]
mod net;
#[cfg(not(madsim))]
mod timeline;
#[cfg(not(madsim))]
mod workload;

#[cfg(not(madsim))]
pub use run::Logger;

#[cfg(not(madsim))]
mod run {
    use std::collections::HashMap;
    use std::io::Write;
    use std::path::PathBuf;
    use std::process::ExitCode;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use clap::Parser;
    use lincheck::kv::{KvInput, KvOutput};
    use lincheck::Verdict;
    use sim_runtime::time::{self, Duration, Instant};

    use crate::checks;
    use crate::cluster::{wait_for_primary, Cluster};
    use crate::nemesis::{self, Applied, Kind};
    use crate::net::{self, Net};
    use crate::workload::{self, Op, Outcome, Shared};

    /// Real-cluster chaos: real kmb-node processes in network namespaces, a seeded nemesis,
    /// concurrent clients, and checks after the heal (see docs/chaos.md).
    #[derive(Parser, Debug)]
    #[command(name = "kmb-chaos")]
    struct Args {
        /// Seconds of workload under the nemesis.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Seed of the nemesis schedule and the workload (default: from the clock).
        #[arg(long)]
        seed: Option<u64>,
        /// Replicas: 3 or 5.
        #[arg(long, default_value_t = 3)]
        replicas: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 8)]
        clients: u64,
        /// Nemesis kinds to draw from (comma-separated; default: all).
        #[arg(long, value_enum, value_delimiter = ',')]
        nemesis: Vec<Kind>,
        /// The kmb-node binary (default: next to this one).
        #[arg(long)]
        node_bin: Option<PathBuf>,
        /// WAL geometry of the replicas' data files (`kmb-node format --geometry`).
        #[arg(long, default_value = "production")]
        geometry: String,
        /// Run directory: data files, node logs, history.ndjson, nemesis.log
        /// (default: /tmp/kmb-chaos-<pid>).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Environment for the nodes, NAME=VALUE (repeatable; e.g. KMB_MUTATION=... with a
        /// node built with the `chaos-mutation` feature).
        #[arg(long = "node-env")]
        node_env: Vec<String>,
        /// Name prefix of namespaces, bridge and veths (the pid is appended).
        #[arg(long, default_value = "kc")]
        prefix: String,
        /// Remove the namespaces, bridges and veths left by runs that are no longer alive
        /// (names `<prefix><pid>...`), then exit.
        #[arg(long)]
        cleanup: bool,
        /// With --cleanup: also those of live runs.
        #[arg(long)]
        force: bool,
    }

    /// Timestamped log lines to stdout and `nemesis.log`.
    pub struct Logger {
        start: Instant,
        file: Mutex<Option<std::fs::File>>,
        /// Offset of the workload's start (so log times match the history's).
        origin: AtomicU64,
    }

    impl Logger {
        pub fn log(&self, msg: &str) {
            let t = self.start.elapsed().as_micros() as i64
                - self.origin.load(Ordering::Relaxed) as i64;
            let line = format!("[{:+9.3}s] {msg}", t as f64 / 1e6);
            println!("{line}");
            if let Some(f) = self.file.lock().expect("lock").as_mut() {
                let _ = writeln!(f, "{line}");
            }
        }
    }

    pub fn main() -> ExitCode {
        let args = Args::parse();
        if args.cleanup {
            let removed = net::cleanup_leftovers(&args.prefix, args.force);
            for r in &removed {
                println!("removed {r}");
            }
            println!("cleanup: {} removed", removed.len());
            return ExitCode::SUCCESS;
        }
        if !matches!(args.replicas, 3 | 5) {
            eprintln!("kmb-chaos: --replicas must be 3 or 5");
            return ExitCode::from(2);
        }
        for tool in ["ip", "nft", "tc"] {
            if net::run("sh", &["-c", &format!("command -v {tool}")]).is_err() {
                eprintln!(
                    "kmb-chaos: `{tool}` not found (apt-get install iproute2 nftables); \
                     kmb-chaos also needs root"
                );
                return ExitCode::from(2);
            }
        }
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("kmb-chaos: cannot start the runtime: {e}");
                return ExitCode::from(2);
            }
        };
        match runtime.block_on(chaos(args)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("kmb-chaos: error: {e}");
                ExitCode::from(2)
            }
        }
    }

    /// Set `stop` and `interrupted` on Ctrl-C or SIGTERM.
    fn install_signal_handler(stop: Arc<AtomicBool>, interrupted: Arc<AtomicBool>) {
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).ok();
            let sigterm = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = sigterm => {}
            }
            eprintln!("kmb-chaos: interrupted: healing and cleaning up");
            interrupted.store(true, Ordering::SeqCst);
            stop.store(true, Ordering::SeqCst);
        });
    }

    async fn chaos(args: Args) -> Result<bool, String> {
        let pid = std::process::id();
        let seed = args.seed.unwrap_or_else(|| {
            sim_runtime::time::now_wall()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
        let kinds = if args.nemesis.is_empty() {
            Kind::ALL.to_vec()
        } else {
            args.nemesis.clone()
        };
        let dir = args
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("/tmp/kmb-chaos-{pid}")));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if std::fs::read_dir(&dir)
            .map_err(|e| e.to_string())?
            .next()
            .is_some()
        {
            return Err(format!("run directory {} is not empty", dir.display()));
        }
        let bin = match &args.node_bin {
            Some(b) => b.clone(),
            None => std::env::current_exe()
                .map_err(|e| e.to_string())?
                .with_file_name("kmb-node"),
        };
        if !bin.exists() {
            return Err(format!(
                "no kmb-node binary at {} (cargo build -p kmb-node, or --node-bin)",
                bin.display()
            ));
        }
        let bin = bin.canonicalize().map_err(|e| e.to_string())?;
        let mut env = Vec::new();
        for e in &args.node_env {
            let (k, v) = e
                .split_once('=')
                .ok_or(format!("--node-env {e:?}: expected NAME=VALUE"))?;
            env.push((k.to_string(), v.to_string()));
        }

        let schedule = nemesis::plan(seed, args.replicas, args.seconds, &kinds);
        println!(
            "kmb-chaos: seed {seed}, {} replicas, {} clients, {} s, run directory {}",
            args.replicas,
            args.clients,
            args.seconds,
            dir.display()
        );
        println!(
            "  replay: kmb-chaos --seed {seed} --seconds {} --replicas {} --clients {}{}",
            args.seconds,
            args.replicas,
            args.clients,
            if args.nemesis.is_empty() {
                String::new()
            } else {
                format!(
                    " --nemesis {}",
                    kinds
                        .iter()
                        .map(|k| format!("{k:?}"))
                        .collect::<Vec<_>>()
                        .join(",")
                )
            }
        );
        println!("nemesis schedule ({} steps):", schedule.len());
        for (k, s) in schedule.iter().enumerate() {
            println!(
                "  #{k:<3} at {:6.1}s hold {:4.1}s  {}",
                s.at.as_secs_f64(),
                s.hold.as_secs_f64(),
                s.action
            );
        }
        let log = Arc::new(Logger {
            start: Instant::now(),
            file: Mutex::new(std::fs::File::create(dir.join("nemesis.log")).ok()),
            origin: AtomicU64::new(0),
        });

        let prefix = format!("{}{pid}", args.prefix);
        let net = Net::create(&prefix, args.replicas, pid)?;
        log.log(&format!(
            "network: bridge {} at {}, replicas {}",
            net.bridge(),
            net.host_ip(),
            (0..args.replicas)
                .map(|i| format!("{}={}", net.ns(i), net.ip(i)))
                .collect::<Vec<_>>()
                .join(" ")
        ));
        let cluster = Cluster::new(net, bin, dir.clone(), env, args.geometry.clone());
        cluster.format_all()?;
        let cluster = Arc::new(Mutex::new(cluster));
        let stop = Arc::new(AtomicBool::new(false));
        let interrupted = Arc::new(AtomicBool::new(false));
        install_signal_handler(stop.clone(), interrupted.clone());

        let result = run_and_check(
            &args,
            seed,
            schedule,
            &cluster,
            &log,
            &stop,
            &interrupted,
            &dir,
        )
        .await;
        // Always: heal and stop everything; the namespaces and bridge go with the cluster.
        {
            let mut c = cluster.lock().unwrap_or_else(|e| e.into_inner());
            c.stop_all();
            c.net.teardown();
        }
        log.log("cleaned up: replicas stopped, namespaces and bridge removed");
        if interrupted.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_and_check(
        args: &Args,
        seed: u64,
        schedule: Vec<nemesis::Step>,
        cluster: &Arc<Mutex<Cluster>>,
        log: &Arc<Logger>,
        stop: &Arc<AtomicBool>,
        interrupted: &Arc<AtomicBool>,
        dir: &std::path::Path,
    ) -> Result<bool, String> {
        let addresses = {
            let mut c = cluster.lock().expect("lock");
            for i in 0..c.n() {
                c.start(i)?;
            }
            c.client_addresses()
        };
        let primary = wait_for_primary(&addresses, Duration::from_secs(60))
            .await
            .ok_or("no primary within 60 s of start")?;
        log.log(&format!("cluster up: primary is replica {primary}"));
        if interrupted.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }

        // The workload and the nemesis, from one origin.
        let start = Instant::now();
        log.origin
            .store(log.start.elapsed().as_micros() as u64, Ordering::Relaxed);
        log.log("workload and nemesis start");
        let shared = Arc::new(Shared {
            seed,
            addresses: addresses.clone(),
            start,
            sessions: AtomicU64::new(0),
            stop: stop.clone(),
            anomalies: Mutex::new(Vec::new()),
        });
        let clients: Vec<_> = (0..args.clients)
            .map(|c| tokio::spawn(workload::run_client(shared.clone(), c)))
            .collect();
        let nemesis = tokio::spawn(nemesis::execute(
            schedule,
            cluster.clone(),
            log.clone(),
            start,
            stop.clone(),
            seed,
        ));
        let deadline = start + Duration::from_secs(args.seconds);
        while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
            time::sleep(Duration::from_millis(100)).await;
            cluster.lock().expect("lock").reap();
        }
        stop.store(true, Ordering::SeqCst);
        let end_us = shared.micros();
        log.log("workload stopping (clients finish their current request)");
        let mut ops: Vec<Op> = Vec::new();
        for c in clients {
            ops.extend(c.await.map_err(|e| format!("client task: {e}"))?);
        }
        let applied: Vec<Applied> = nemesis.await.map_err(|e| format!("nemesis task: {e}"))?;
        nemesis::heal_all(cluster, log);
        if interrupted.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }

        // Convergence: a fresh session reads every key (linearizable reads through the
        // primary); these reads join the history.
        log.log("healed: waiting for convergence (final reads of every key)");
        let keys: Vec<String> = (0..workload::COUNTERS)
            .map(workload::counter)
            .chain((0..workload::REGISTERS).map(workload::register))
            .collect();
        let mut finals: HashMap<String, Option<String>> = HashMap::new();
        let converge_deadline = Instant::now() + Duration::from_secs(60);
        let (mut session, mut client) = shared.session();
        for key in &keys {
            loop {
                if Instant::now() > converge_deadline || interrupted.load(Ordering::SeqCst) {
                    return Err(format!(
                        "no convergence: cannot read {key} within 60 s of the heal"
                    ));
                }
                let op = workload::execute(
                    &shared,
                    args.clients,
                    session,
                    &mut client,
                    KvInput::Get { key: key.clone() },
                )
                .await;
                let value = match &op.outcome {
                    Outcome::Ok(r) => match &r.output {
                        KvOutput::Value(v) => Some(v.clone()),
                        _ => None,
                    },
                    Outcome::Unknown => {
                        (session, client) = shared.session();
                        None
                    }
                    Outcome::Fail => None,
                };
                ops.push(op);
                if let Some(v) = value {
                    finals.insert(key.clone(), v.as_deref().map(str::to_string));
                    break;
                }
                time::sleep(Duration::from_millis(200)).await;
            }
        }
        log.log("converged: every key read after the heal");
        // Let the backups catch up on the final commits before stopping.
        time::sleep(Duration::from_secs(2)).await;
        let unexpected = {
            let mut c = cluster.lock().expect("lock");
            c.stop_all();
            c.unexpected_exits.clone()
        };
        log.log("replicas stopped (SIGTERM)");

        // History.
        let history_path = dir.join("history.ndjson");
        std::fs::write(&history_path, checks::ndjson(&ops)).map_err(|e| e.to_string())?;

        // Checks.
        let mut failures: Vec<String> = Vec::new();
        let lin = checks::lincheck(&ops);
        match &lin.verdict {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable(f) => {
                failures.push(format!("lincheck: NOT linearizable: {f}"))
            }
            Verdict::Unknown { reason } => failures.push(format!("lincheck: unknown ({reason})")),
        }
        let (counter_finals, register_finals): (HashMap<_, _>, HashMap<_, _>) =
            finals.into_iter().partition(|(k, _)| k.starts_with('c'));
        let lost = checks::acknowledged_writes(&ops, &register_finals);
        failures.extend(lost.iter().map(|p| format!("acknowledged writes: {p}")));
        let counter_problems = checks::counters(&ops, &counter_finals);
        failures.extend(counter_problems.iter().map(|p| format!("counters: {p}")));
        let mut verify_lines = Vec::new();
        {
            let c = cluster.lock().expect("lock");
            for i in 0..c.n() {
                let (ok, out) = c.verify(i);
                let last = out.lines().last().unwrap_or("").to_string();
                verify_lines.push(format!("replica {i}: {}", last.trim()));
                if !ok {
                    failures.push(format!("kmb-node verify replica {i}: {}", out.trim()));
                }
            }
        }
        failures.extend(unexpected.iter().map(|u| format!("unexpected exit: {u}")));
        failures.extend(
            applied
                .iter()
                .filter(|a| a.what.contains("ERRORS"))
                .map(|a| format!("nemesis action not applied: {}", a.what)),
        );
        let anomalies = shared.anomalies.lock().expect("lock").clone();
        failures.extend(anomalies.iter().map(|a| format!("protocol: {a}")));

        // Summary.
        let count = |f: fn(&Outcome) -> bool| ops.iter().filter(|o| f(&o.outcome)).count();
        let ok = count(|o| matches!(o, Outcome::Ok(_)));
        let fail = count(|o| matches!(o, Outcome::Fail));
        let unknown = count(|o| matches!(o, Outcome::Unknown));
        let secs = end_us as f64 / 1e6;
        let kills: usize = applied.iter().map(|a| a.killed).sum();
        let partitions = applied.iter().filter(|a| a.action.is_partition()).count();
        let pauses = applied
            .iter()
            .filter(|a| {
                matches!(
                    a.action,
                    nemesis::Action::Pause(_) | nemesis::Action::PausePrimary
                )
            })
            .count();
        let netems = applied
            .iter()
            .filter(|a| matches!(a.action, nemesis::Action::Netem { .. }))
            .count();
        let gaps = checks::gaps(&ops, end_us, &applied, 3);
        println!();
        println!("==================== kmb-chaos summary ====================");
        println!(
            "seed {seed}; {} replicas; {} clients; {:.1} s of workload; run directory {}",
            args.replicas,
            args.clients,
            secs,
            dir.display()
        );
        println!("operations: {} total: {ok} ok, {fail} failed (not executed), {unknown} unknown outcome", ops.len());
        println!("throughput: {:.0} ok ops/s", ok as f64 / secs.max(0.001));
        println!(
            "nemesis: {} actions: {} kills with {kills} processes killed (-9), {partitions} partitions, {pauses} pauses, {netems} netem",
            applied.len(),
            applied.iter().filter(|a| a.action.is_kill()).count()
        );
        for (k, g) in gaps.iter().enumerate() {
            println!(
                "{} unavailability: {:.2} s from {:.2}s to {:.2}s — {}",
                if k == 0 { "longest" } else { "next   " },
                (g.to_us - g.from_us) as f64 / 1e6,
                g.from_us as f64 / 1e6,
                g.to_us as f64 / 1e6,
                g.cause
            );
        }
        println!(
            "lincheck: {} in {:.2} s; process peak RSS {:.0} MB (was {:.0} MB before the check)",
            match &lin.verdict {
                Verdict::Linearizable => "linearizable".to_string(),
                Verdict::NotLinearizable(f) => format!("NOT LINEARIZABLE (key {})", f.partition),
                Verdict::Unknown { reason } => format!("unknown ({reason})"),
            },
            lin.seconds,
            lin.peak_after_mb,
            lin.peak_before_mb
        );
        println!(
            "acknowledged writes: {} registers checked, {} problems; counters: {} checked, {} problems",
            register_finals.len(),
            lost.len(),
            counter_finals.len(),
            counter_problems.len()
        );
        for l in &verify_lines {
            println!("verify {l}");
        }
        println!("history: {} (lincheck {0})", history_path.display());
        let timeline_path = dir.join("timeline.html");
        let title = format!(
            "kmb-chaos seed {seed}: {}",
            if failures.is_empty() { "PASS" } else { "FAIL" }
        );
        match std::fs::write(
            &timeline_path,
            crate::timeline::render(&ops, &applied, args.clients, &title),
        ) {
            Ok(()) => println!("timeline: {}", timeline_path.display()),
            Err(e) => println!("timeline: cannot write {}: {e}", timeline_path.display()),
        }
        if failures.is_empty() {
            println!("VERDICT: PASS");
        } else {
            println!("VERDICT: FAIL ({} problems)", failures.len());
            for f in failures.iter().take(20) {
                let short: String = f.chars().take(600).collect();
                println!("  - {short}");
            }
        }
        println!("===========================================================");
        Ok(failures.is_empty())
    }
}
