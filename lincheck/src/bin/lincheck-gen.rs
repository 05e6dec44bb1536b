//! `lincheck-gen`: write a reproducible kmb-like NDJSON history (see `lincheck::gen`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use lincheck::gen::{generate, to_ndjson, GenOptions};

/// Generate a kmb NDJSON history from a simulated linearizable server.
#[derive(Parser, Debug)]
#[command(name = "lincheck-gen", version)]
struct Args {
    /// Operations (records) to generate.
    #[arg(long, default_value_t = 1_000_000)]
    ops: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: u64,
    /// Keys (the first min(3, keys) are contended counters).
    #[arg(long, default_value_t = 20)]
    keys: usize,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Probability of an unknown outcome (timeout); half of them take effect.
    #[arg(long, default_value_t = 0.002)]
    unknown_rate: f64,
    /// Probability of a failed request (never takes effect).
    #[arg(long, default_value_t = 0.005)]
    fail_rate: f64,
    /// Plant one stale read of a counter (the history is then not linearizable).
    #[arg(long)]
    violate: bool,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let records = generate(&GenOptions {
        ops: a.ops,
        clients: a.clients,
        keys: a.keys,
        seed: a.seed,
        unknown_rate: a.unknown_rate,
        fail_rate: a.fail_rate,
        violate: a.violate,
    });
    match std::fs::write(&a.out, to_ndjson(&records)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lincheck-gen: cannot write {}: {e}", a.out.display());
            ExitCode::from(2)
        }
    }
}
