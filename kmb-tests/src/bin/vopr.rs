//! `vopr`: seed sweeps of the real kmb cluster under the deterministic simulator.
//!
//! Each seed starts the node's production code as a whole cluster in one simulated process,
//! attacks it with faults drawn from the seed, and runs the checkers. Any failing seed is
//! printed with the exact command that reproduces it. See `scripts/VOPR-TESTING.md`.
#[cfg(not(madsim))]
compile_error!(
    "vopr runs only inside the simulator. Build it with: \
     RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/madsim \
     cargo build --release -p kmb-tests --features vopr --bin vopr \
     (or run scripts/vopr-quick.sh)"
);

#[cfg(madsim)]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(not(madsim))]
fn main() {}

#[cfg(madsim)]
mod cli {
    use std::io::{IsTerminal, Write};
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;

    use clap::Parser;
    use kmb_node::mutation::Mutation;
    use kmb_tests::diagnosis::{Classification, Failure};
    use kmb_tests::swarm::{Swarm, SwarmOptions};
    use kmb_tests::timeline::render_html;
    use kmb_tests::trace::{first_difference, TraceFilter};
    use kmb_tests::vopr::{
        run_scenario, run_seed, shrink, Outcome, RunOptions, Scenario, SeedRecord,
    };
    use sim_runtime::sim;

    /// Sweep seeds of the kmb cluster under the deterministic simulator (the VOPR).
    #[derive(Parser, Debug)]
    #[command(name = "vopr", version)]
    struct Args {
        /// First seed (default: random).
        #[arg(long)]
        seed: Option<u64>,
        /// Number of seeds, starting at --seed.
        #[arg(short = 'n', long = "count", default_value_t = 1)]
        count: u64,
        /// Print each seed's parameters and outcome, and failure reports in full.
        #[arg(short, long)]
        verbose: bool,
        /// A clean baseline: no faults at all.
        #[arg(long)]
        no_faults: bool,
        /// Only Write and Read operations (no RMW, no scans).
        #[arg(long)]
        no_enhanced_workloads: bool,
        /// The swarm as it was before issue 11's dimensions: the small geometry, no payload
        /// shapes, no byte-stream link faults (to rerun a seed found before them).
        #[arg(long)]
        classic_swarm: bool,
        /// Deliver old sessions' first requests again late, in order, in every seed with
        /// faults (by default only seeds drawing client-request replays do): the setting that
        /// reproduced the late-registration gap in exactly-once (docs/protocol.md, "Sessions";
        /// seeds 196 and 480 failed on e090222 with it).
        #[arg(long)]
        late_sessions: bool,
        /// Write every seed's trace (not only failing ones).
        #[arg(long)]
        enable_trace: bool,
        /// Do not write traces of failing seeds.
        #[arg(long)]
        no_trace_on_failure: bool,
        /// Trace filter: failures-only, minimal or verbose.
        #[arg(long, default_value = "failures-only")]
        trace_filter: TraceFilter,
        /// Trace ring-buffer size (events).
        #[arg(long, default_value_t = kmb_tests::trace::TRACE_CAPACITY_DEFAULT)]
        trace_capacity: usize,
        /// Where traces, reports and timelines are written.
        #[arg(long, default_value = "vopr-traces")]
        trace_dir: PathBuf,
        /// Do not build failure reports.
        #[arg(long)]
        no_failure_diagnosis: bool,
        /// Run each seed twice; a difference is a failure naming the first differing event.
        #[arg(long)]
        check_determinism: bool,
        /// Seeds run in parallel (each in a fresh thread and simulation).
        #[arg(short, long, default_value_t = 1)]
        jobs: usize,
        /// Append one NDJSON record per seed to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Run only seeds s with s % n == i ("i/n"), for splitting a range across machines.
        #[arg(long, value_parser = parse_shard)]
        shard: Option<(u64, u64)>,
        /// Shrink a failing seed (with --seed): remove faults and operations while the same
        /// checker still fails; print and save the minimal reproduction.
        #[arg(long, requires = "seed")]
        shrink: bool,
        /// Simulations the shrinker may run.
        #[arg(long, default_value_t = 300)]
        shrink_budget: usize,
        /// Replay a saved (e.g. shrunk) scenario file instead of drawing one from the seed.
        #[arg(long, conflicts_with_all = ["seed", "shrink"])]
        replay: Option<PathBuf>,
        /// Run the node with this planted bug (see --list-mutations), to measure the checkers.
        #[arg(long, value_name = "NAME")]
        mutation: Option<String>,
        /// List the planted bugs (mutation names) with a one-line description, and exit.
        #[arg(long)]
        list_mutations: bool,
        /// After the sweep, print per coverage mark (rare protocol, storage and client paths:
        /// `kmb_node::coverage::MARKS`) how many seeds hit it and how often; a mark no seed
        /// hit is a path the sweep never exercised. Each seed's marks are also in `--json`.
        #[arg(long)]
        coverage: bool,
    }

    fn parse_shard(s: &str) -> Result<(u64, u64), String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("shard {s:?} must be i/n, e.g. 0/4"))?;
        let i: u64 = i.parse().map_err(|_| format!("bad shard index {i:?}"))?;
        let n: u64 = n.parse().map_err(|_| format!("bad shard count {n:?}"))?;
        if n == 0 || i >= n {
            return Err(format!("shard {i}/{n}: need 0 <= i < n"));
        }
        Ok((i, n))
    }

    fn repro_flags(args: &Args) -> Vec<String> {
        let mut flags = Vec::new();
        if args.no_faults {
            flags.push("--no-faults".to_string());
        }
        if args.no_enhanced_workloads {
            flags.push("--no-enhanced-workloads".to_string());
        }
        if args.late_sessions {
            flags.push("--late-sessions".to_string());
        }
        if args.classic_swarm {
            flags.push("--classic-swarm".to_string());
        }
        if let Some(name) = &args.mutation {
            flags.push("--mutation".to_string());
            flags.push(name.clone());
        }
        flags
    }

    fn repro(seed: u64, flags: &[String]) -> String {
        kmb_tests::diagnosis::repro_command(seed, flags)
    }

    fn describe(swarm: &Swarm) -> String {
        serde_json::to_string_pretty(swarm).unwrap_or_default()
    }

    fn write_artifacts(dir: &Path, record: &SeedRecord) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let mut written = Vec::new();
        if let Some(trace) = &record.trace {
            let path = dir.join(format!("seed-{}.trace.ndjson", record.seed));
            std::fs::write(&path, trace.to_ndjson())?;
            written.push(path);
            if record.outcome != Outcome::Pass {
                let events = trace.snapshot();
                let html = render_html(
                    &events,
                    record.failure.as_ref(),
                    &format!("kmb VOPR seed {}", record.seed),
                );
                let path = dir.join(format!("seed-{}.timeline.html", record.seed));
                std::fs::write(&path, html)?;
                written.push(path);
            }
        }
        if let Some(report) = &record.report {
            let path = dir.join(format!("seed-{}.report.txt", record.seed));
            std::fs::write(&path, report.to_ascii())?;
            written.push(path);
        }
        Ok(written)
    }

    /// Run a seed; with `--check-determinism` twice, comparing traces.
    fn run(seed: u64, options: &RunOptions, twice: bool) -> SeedRecord {
        let mut first = run_seed(seed, options);
        if !twice {
            return first;
        }
        let second = run_seed(seed, options);
        // Both runs' CPU time: the summary's ratio per core is this sweep's, as its wall one.
        first.cpu_time_us = first
            .cpu_time_us
            .zip(second.cpu_time_us)
            .map(|(a, b)| a + b);
        if first.event_hash != second.event_hash {
            let a = first
                .trace
                .as_ref()
                .map(|t| t.snapshot())
                .unwrap_or_default();
            let b = second
                .trace
                .as_ref()
                .map(|t| t.snapshot())
                .unwrap_or_default();
            let what = match first_difference(&a, &b) {
                Some((i, x, y)) => format!(
                    "first difference at trace event {i}: {} vs {}",
                    x.map_or("(none)".to_string(), |e| e.to_string()),
                    y.map_or("(none)".to_string(), |e| e.to_string())
                ),
                None => "the retained traces agree; the difference is in evicted events".into(),
            };
            let message = format!(
                "two runs of seed {seed} differ (event hash {} vs {}): {what}",
                first.event_hash, second.event_hash
            );
            first.outcome = Outcome::Fail;
            first.failure_kind = Some(Classification::NonDeterminism.as_str().into());
            first.checker = Some("determinism".into());
            first.first_bad_event = Some(what);
            first.failure_message = Some(message.clone());
            first.failure = Some(Failure {
                checker: "determinism".into(),
                classification: Classification::NonDeterminism,
                message,
                replica: None,
                op: None,
                key: None,
            });
        }
        first
    }

    fn options_of(args: &Args) -> RunOptions {
        RunOptions {
            swarm: SwarmOptions {
                no_faults: args.no_faults,
                no_enhanced_workloads: args.no_enhanced_workloads,
                classic: args.classic_swarm,
                late_sessions: args.late_sessions,
            },
            trace_filter: args.trace_filter,
            trace_capacity: args.trace_capacity,
            diagnose: !args.no_failure_diagnosis,
            repro_flags: repro_flags(args),
            mutation: args.mutation.as_deref().and_then(Mutation::from_name),
        }
    }

    fn print_outcome(record: &SeedRecord) {
        println!(
            "seed {}: {} — {} ops, commit {}, events {}",
            record.seed,
            match record.outcome {
                Outcome::Pass => "PASS",
                Outcome::Fail => "FAIL",
                Outcome::Unknown => "UNKNOWN",
            },
            record.client_ops,
            record.committed_ops,
            record.event_hash
        );
        if let (Some(kind), Some(message)) = (&record.failure_kind, &record.failure_message) {
            println!("  {kind}: {message}");
        }
    }

    fn shrink_or_replay(args: &Args, options: &RunOptions) -> ExitCode {
        if let Some(path) = &args.replay {
            let scenario: Scenario = match std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
            {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: cannot read scenario {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            };
            let record = run_scenario(&scenario, options);
            print_outcome(&record);
            if let Some(report) = &record.report {
                println!("{}", report.to_ascii());
            }
            return if record.outcome == Outcome::Pass {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        let seed = args.seed.expect("clap: --shrink requires --seed");
        let Some(shrunk) = shrink(seed, options, args.shrink_budget) else {
            println!("seed {seed} passes: nothing to shrink");
            return ExitCode::SUCCESS;
        };
        let before = shrunk.original.scenario.as_ref();
        println!(
            "seed {seed} fails ({}); shrinking with up to {} runs",
            shrunk.original.failure_kind.clone().unwrap_or_default(),
            args.shrink_budget
        );
        println!(
            "  faults: {} -> {}, operations: {} -> {}, knobs off: {:?} ({} runs)",
            before.map_or(0, |s| s.faults.len()),
            shrunk.minimal.faults.len(),
            before.map_or(0, |s| s.op_count()),
            shrunk.minimal.op_count(),
            shrunk.minimal.disabled_knobs,
            shrunk.runs
        );
        print_outcome(&shrunk.record);
        println!("minimal fault schedule:");
        for f in &shrunk.minimal.faults {
            println!("  {f:?}");
        }
        if let Err(e) = std::fs::create_dir_all(&args.trace_dir) {
            eprintln!("error: cannot create {}: {e}", args.trace_dir.display());
            return ExitCode::from(2);
        }
        let path = args.trace_dir.join(format!("seed-{seed}.shrunk.json"));
        match serde_json::to_string_pretty(&shrunk.minimal) {
            Ok(text) => {
                if let Err(e) = std::fs::write(&path, text) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
            Err(e) => {
                eprintln!("error: cannot encode the scenario: {e}");
                return ExitCode::from(2);
            }
        }
        if let Ok(paths) = write_artifacts(&args.trace_dir, &shrunk.record) {
            for p in paths {
                println!("  wrote {}", p.display());
            }
        }
        println!("  wrote {}", path.display());
        println!(
            "replay the minimal reproduction with: vopr --replay {} -v{}",
            path.display(),
            args.mutation
                .as_ref()
                .map_or(String::new(), |m| format!(" --mutation {m}"))
        );
        if shrunk.record.outcome == Outcome::Fail {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }

    pub fn main() -> ExitCode {
        let args = Args::parse();
        // The nodes' own log (`RUST_LOG=kmb_node=debug vopr --seed S`), to stderr, with the
        // simulated node and time madsim puts in each line's span. Off unless asked: a sweep
        // of thousands of seeds would drown in it.
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_writer(std::io::stderr)
                .try_init();
        }
        if args.list_mutations {
            for m in Mutation::ALL {
                println!("{:<36} {}", m.name(), m.description());
            }
            return ExitCode::SUCCESS;
        }
        if let Some(name) = &args.mutation {
            if Mutation::from_name(name).is_none() {
                let names: Vec<&str> = Mutation::ALL.iter().map(|m| m.name()).collect();
                eprintln!(
                    "error: unknown mutation {name:?}; known: {}",
                    names.join(", ")
                );
                return ExitCode::from(2);
            }
        }
        if args.jobs == 0 {
            eprintln!("error: --jobs must be at least 1");
            return ExitCode::from(2);
        }
        if args.shrink || args.replay.is_some() {
            return shrink_or_replay(&args, &options_of(&args));
        }
        let start = args.seed.unwrap_or_else(sim::entropy_seed);
        let seeds: Vec<u64> = (0..args.count)
            .map(|k| start.wrapping_add(k))
            .filter(|s| args.shard.is_none_or(|(i, n)| s % n == i))
            .collect();
        let flags = repro_flags(&args);
        let options = options_of(&args);
        let mut json = match &args.json {
            None => None,
            Some(path) => match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                Ok(f) => Some(std::io::BufWriter::new(f)),
                Err(e) => {
                    eprintln!("error: cannot open {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            },
        };
        let progress = std::io::stderr().is_terminal() && seeds.len() > 1 && !args.verbose;
        let started = sim::host_now();
        let (mut passed, mut failed, mut unknown) = (0u64, 0u64, 0u64);
        let mut failures: Vec<(u64, String)> = Vec::new();
        let mut sim_ms = 0u64;
        // Simulated and CPU time of the seeds whose CPU time is known.
        let (mut measured_sim_ms, mut cpu_us) = (0u64, 0u64);
        // Coverage mark → (seeds that hit it, hits).
        let mut coverage: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
        let total = seeds.len();
        let mut done = 0usize;
        sim::for_each_seed(
            &seeds,
            args.jobs,
            |seed| run(seed, &options, args.check_determinism),
            |seed, record| {
                done += 1;
                sim_ms += record.sim_time_ms;
                if let Some(us) = record.cpu_time_us {
                    measured_sim_ms += record.sim_time_ms;
                    cpu_us += us;
                }
                match record.outcome {
                    Outcome::Pass => passed += 1,
                    Outcome::Fail => failed += 1,
                    Outcome::Unknown => unknown += 1,
                }
                if let Some(out) = json.as_mut() {
                    if let Ok(line) = serde_json::to_string(&record) {
                        let _ = writeln!(out, "{line}");
                    }
                }
                for (name, &hits) in &record.marks {
                    let c = coverage.entry(name.clone()).or_insert((0u64, 0u64));
                    c.0 += 1;
                    c.1 += hits;
                }
                let bad = record.outcome != Outcome::Pass;
                if progress {
                    eprint!("\r[{done}/{total}] {failed} failed, {unknown} unknown ");
                }
                if args.verbose || bad {
                    if progress {
                        eprintln!();
                    }
                    let s = &record.params;
                    println!(
                        "seed {seed}: {} — {} replicas, {} clients, {} ops ({} unknown), commit {}, {:.1} s simulated in {:.2} s, events {}",
                        match record.outcome {
                            Outcome::Pass => "PASS",
                            Outcome::Fail => "FAIL",
                            Outcome::Unknown => "UNKNOWN",
                        },
                        s.replica_count,
                        s.client_count,
                        record.client_ops,
                        record.unknown_ops,
                        record.committed_ops,
                        record.sim_time_ms as f64 / 1000.0,
                        record.wall_time_ms as f64 / 1000.0,
                        record.event_hash,
                    );
                    if args.verbose {
                        println!("parameters: {}", describe(s));
                        let counters: Vec<String> = record
                            .fault_counters
                            .iter()
                            .filter(|(_, v)| **v > 0)
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect();
                        println!("faults fired: {}", counters.join(" "));
                    }
                }
                if bad {
                    let kind = record.failure_kind.clone().unwrap_or_default();
                    let message = record.failure_message.clone().unwrap_or_default();
                    println!("  {kind}: {message}");
                    if let Some(report) = &record.report {
                        if args.verbose {
                            println!("{}", report.to_ascii());
                        }
                    }
                    failures.push((
                        seed,
                        format!("{kind}: {}", message.lines().next().unwrap_or("")),
                    ));
                }
                let write = args.enable_trace || (bad && !args.no_trace_on_failure);
                if write {
                    match write_artifacts(&args.trace_dir, &record) {
                        Ok(paths) if bad || args.verbose => {
                            for p in paths {
                                println!("  wrote {}", p.display());
                            }
                        }
                        Ok(_) => {}
                        Err(e) => eprintln!("warning: could not write traces: {e}"),
                    }
                }
            },
        );
        if progress {
            eprintln!();
        }
        if let Some(mut out) = json {
            let _ = out.flush();
        }
        let wall = started.elapsed().as_secs_f64();
        let ran = passed + failed + unknown;
        println!();
        println!("Results:");
        println!(
            "  Seeds: {ran} (from {start}{})",
            args.shard
                .map_or(String::new(), |(i, n)| format!(", shard {i}/{n}"))
        );
        println!("  Successes: {passed}");
        println!("  Failures: {failed}");
        if unknown > 0 {
            println!("  Unknown: {unknown}");
        }
        let rate = if ran == 0 {
            100.0
        } else {
            passed as f64 * 100.0 / ran as f64
        };
        println!("  Success Rate: {rate:.1}%");
        let real_time = sim_ms as f64 / 1000.0 / wall.max(1e-9);
        println!(
            "  Time: {wall:.1} s wall, {:.0} s simulated ({real_time:.0}x real time, {:.1} seeds/s)",
            sim_ms as f64 / 1000.0,
            ran as f64 / wall.max(1e-9)
        );
        // Per core: simulated time over the CPU time the seeds' threads used (each seed runs
        // on one thread; the simulator is single-threaded), so neither the number of jobs nor
        // other work on the machine moves it.
        if cpu_us > 0 {
            let cpu = cpu_us as f64 / 1e6;
            println!(
                "  Per core: {:.0}x real time ({:.0} s simulated in {cpu:.1} s CPU), {:.1} seeds/s",
                measured_sim_ms as f64 / 1000.0 / cpu,
                measured_sim_ms as f64 / 1000.0,
                ran as f64 / cpu
            );
        }
        if args.coverage {
            println!();
            let hit = kmb_node::coverage::MARKS
                .iter()
                .filter(|(n, _)| coverage.contains_key(*n))
                .count();
            println!(
                "Coverage: {hit} of {} marks hit in {ran} seeds",
                kmb_node::coverage::MARKS.len()
            );
            println!("  {:<36} {:>7} {:>10}  path", "mark", "seeds", "hits");
            for (name, what) in kmb_node::coverage::MARKS {
                let (seeds, hits) = coverage.get(*name).copied().unwrap_or((0, 0));
                let flag = if seeds == 0 { "  NEVER HIT:" } else { "" };
                println!("  {name:<36} {seeds:>7} {hits:>10} {flag} {what}");
            }
        }
        if !failures.is_empty() {
            println!();
            println!("Failed seeds (reproduce with the command shown):");
            failures.sort();
            for (seed, why) in &failures {
                println!("  {}    # {why}", repro(*seed, &flags));
            }
        }
        if failed == 0 && unknown == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}
