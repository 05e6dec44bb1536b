//! `lincheck`: check history files for linearizability.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use lincheck::{jepsen, kv, CheckOptions, Failure, Verdict};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// `.ndjson` files are kmb NDJSON, everything else Jepsen etcd logs.
    Auto,
    /// Jepsen etcd logs (single register).
    Jepsen,
    /// kmb NDJSON histories (key-value).
    Ndjson,
}

/// Check histories for linearizability.
#[derive(Parser, Debug)]
#[command(name = "lincheck", version)]
struct Args {
    /// History format.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    format: Format,
    /// Expected verdicts: lines `N true|false`, N the number in `etcd_NNN.log`.
    #[arg(long, value_name = "FILE")]
    expected: Option<PathBuf>,
    /// Search steps per partition before giving up with "unknown".
    #[arg(long, value_name = "N", default_value_t = CheckOptions::DEFAULT_STEP_CAP)]
    step_cap: u64,
    /// History files, or directories (every `*.log` / `*.ndjson` in them, sorted).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// Runs `f` and returns its result with the elapsed wall-clock time in milliseconds.
#[allow(clippy::disallowed_methods)] // reason: a CLI timing its own run in production mode, outside any simulation
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = std::time::Instant::now();
    let value = f();
    (value, start.elapsed().as_secs_f64() * 1000.0)
}

fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path)
                .map_err(|e| format!("{}: cannot read directory: {e}", path.display()))?;
            let mut found = Vec::new();
            for entry in entries {
                let p = entry
                    .map_err(|e| format!("{}: cannot read directory: {e}", path.display()))?
                    .path();
                let ext = p.extension().and_then(|e| e.to_str());
                if p.is_file() && matches!(ext, Some("log" | "ndjson")) {
                    found.push(p);
                }
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn parse_expected(path: &Path) -> Result<BTreeMap<u64, bool>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let mut map = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (n, v) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(v), None) => (n, v),
            _ => {
                return Err(format!(
                    "{}:{}: expected `N true|false`",
                    path.display(),
                    i + 1
                ))
            }
        };
        let n: u64 = n
            .parse()
            .map_err(|_| format!("{}:{}: bad index {n:?}", path.display(), i + 1))?;
        let v = match v {
            "true" => true,
            "false" => false,
            _ => return Err(format!("{}:{}: bad verdict {v:?}", path.display(), i + 1)),
        };
        map.insert(n, v);
    }
    Ok(map)
}

/// The number N in a file name like `etcd_NNN.log`: the last run of digits in the stem.
fn file_index(path: &Path) -> Option<u64> {
    let stem = path.file_stem()?.to_str()?;
    let end = stem.rfind(|c: char| c.is_ascii_digit())? + 1;
    let start = stem[..end]
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    stem[start..end].parse().ok()
}

struct Checked {
    verdict: Verdict,
    explain: Option<String>,
}

fn explain(failure: &Failure, line_of: impl Fn(usize) -> Option<usize>) -> String {
    let line = line_of(failure.op_index)
        .map(|l| format!(" (line {l})"))
        .unwrap_or_default();
    let place = if failure.partition.starts_with('(') {
        failure.partition.clone()
    } else {
        format!("key {}", failure.partition)
    };
    format!(
        "  {place}: cannot place {}{}; longest linearizable prefix: {} ops; {}",
        failure.op,
        line,
        failure.prefix.len(),
        failure.reason
    )
}

fn check_file(path: &Path, format: Format, options: &CheckOptions) -> Result<Checked, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let format = match format {
        Format::Auto if path.extension().and_then(|e| e.to_str()) == Some("ndjson") => {
            Format::Ndjson
        }
        Format::Auto => Format::Jepsen,
        f => f,
    };
    match format {
        Format::Ndjson => {
            let ops = kv::parse_ndjson_with_lines(&text).map_err(|e| e.to_string())?;
            let (lines, ops): (Vec<usize>, Vec<kv::KvOp>) = ops.into_iter().unzip();
            let verdict = kv::check(&ops, options);
            let explain = match &verdict {
                Verdict::NotLinearizable(f) => Some(explain(f, |i| lines.get(i).copied())),
                Verdict::Unknown { reason } => Some(format!("  {reason}")),
                Verdict::Linearizable => None,
            };
            Ok(Checked { verdict, explain })
        }
        _ => {
            let ops = jepsen::parse(&text).map_err(|e| e.to_string())?;
            let verdict = lincheck::check(&jepsen::Register, &ops, options);
            let explain = match &verdict {
                Verdict::NotLinearizable(f) => Some(explain(f, |_| None)),
                Verdict::Unknown { reason } => Some(format!("  {reason}")),
                Verdict::Linearizable => None,
            };
            Ok(Checked { verdict, explain })
        }
    }
}

fn run(args: &Args) -> Result<bool, String> {
    let expected = args.expected.as_deref().map(parse_expected).transpose()?;
    let files = collect_files(&args.paths)?;
    if files.is_empty() {
        return Err("no history files found".to_string());
    }
    let options = CheckOptions {
        step_cap: args.step_cap,
    };
    let (counts, total_ms) = timed(|| {
        let mut ok = true;
        let (mut matched, mut mismatched, mut unexpected, mut errors) = (0, 0, 0, 0);
        for file in &files {
            let (result, ms) = timed(|| check_file(file, args.format, &options));
            let checked = match result {
                Ok(c) => c,
                Err(e) => {
                    println!("{}: error: {e}", file.display());
                    errors += 1;
                    ok = false;
                    continue;
                }
            };
            println!("{}: {} ({ms:.2} ms)", file.display(), checked.verdict);
            if let Some(text) = &checked.explain {
                println!("{text}");
            }
            match &expected {
                Some(map) => match file_index(file).and_then(|n| map.get(&n)) {
                    Some(&want) => {
                        let got = match checked.verdict {
                            Verdict::Linearizable => Some(true),
                            Verdict::NotLinearizable(_) => Some(false),
                            Verdict::Unknown { .. } => None,
                        };
                        if got == Some(want) {
                            matched += 1;
                        } else {
                            mismatched += 1;
                            ok = false;
                            println!(
                                "MISMATCH {}: expected {}, got {}",
                                file.display(),
                                if want {
                                    "linearizable"
                                } else {
                                    "not linearizable"
                                },
                                checked.verdict
                            );
                        }
                    }
                    None => unexpected += 1,
                },
                None => {
                    if !checked.verdict.is_linearizable() {
                        ok = false;
                    }
                }
            }
        }
        (ok, matched, mismatched, unexpected, errors)
    });
    let (ok, matched, mismatched, unexpected, errors) = counts;
    if expected.is_some() {
        println!(
            "expected: {matched} match, {mismatched} mismatch, {unexpected} without an expected verdict"
        );
    }
    println!(
        "total: {} files, {errors} errors, {total_ms:.2} ms",
        files.len()
    );
    Ok(ok)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("lincheck: {e}");
            ExitCode::from(2)
        }
    }
}
