//! Append throughput of the storage engine on the real disk (not a timed test).
//!
//! `cargo bench -p kmb-node --bench storage_append` (or `scripts/storage-bench.sh`).
//! For 128 B and 4 KiB bodies, with one sync per append, with group commit (64 appends per
//! sync, each sync alone: two fsyncs), and pipelined as the node's I/O task runs it (groups of
//! 64: each group's appends overlap the fsync in flight, which makes the previous group's
//! redundant headers durable together with this group's prepares: one fsync per group), prints the
//! median ops/s and MB/s over several runs. `KMB_BENCH_DIR` picks the
//! directory (default: the system temp dir), `KMB_BENCH_RUNS` the number of runs (default 5).

#[cfg(madsim)]
fn main() {}

#[cfg(not(madsim))]
fn main() {
    bench::main()
}

#[cfg(not(madsim))]
mod bench {
    use kmb_node::entry::{Entry, EntryFields, Operation};
    use kmb_node::storage::{Identity, Storage, StorageConfig};
    use sim_runtime::time::Instant;

    const CLUSTER: u64 = 1;

    async fn run(
        dir: &std::path::Path,
        body: usize,
        per_sync: u64,
        ops: u64,
        pipelined: bool,
    ) -> (f64, f64) {
        let path = dir.join(format!("bench-{body}-{per_sync}-{pipelined}.kmb"));
        let config = StorageConfig {
            slot_count: 1024,
            slot_size: 8192,
        };
        let id = Identity {
            cluster: CLUSTER,
            replica: 0,
            replica_count: 1,
        };
        Storage::format(&path, id, config).await.expect("format");
        let (mut s, _) = Storage::open(&path).await.expect("open");
        let mut parent = Entry::root(CLUSTER).checksum();
        let payload = vec![0x5au8; body];
        // Build entries up front so only storage work is timed.
        let entries: Vec<Entry> = (1..=ops)
            .map(|op| {
                let e = Entry::new(
                    EntryFields {
                        cluster: CLUSTER,
                        replica: 0,
                        view: 0,
                        op,
                        commit: op - 1,
                        parent,
                        client: 1,
                        request: op,
                        operation: Operation::Request,
                        timestamp: 0,
                    },
                    payload.clone(),
                );
                parent = e.checksum();
                e
            })
            .collect();
        let start = Instant::now();
        let mut inflight: Option<kmb_node::storage::Fsync> = None;
        for e in &entries {
            let op = e.header.op;
            if op > s.superblock().checkpoint.op + config.slot_count as u64 {
                if let Some(f) = inflight.take() {
                    let result = f.done.await;
                    s.finish_fsync(f.covers, result).await.expect("fsync");
                }
                // WAL full: checkpoint (a tiny blob) at the last durable op.
                let at = op - 1;
                let checksum = entries[at as usize - 1].checksum();
                s.checkpoint(at, checksum, b"bench")
                    .await
                    .expect("checkpoint");
            }
            s.append(e).await.expect("append");
            if op % per_sync == 0 {
                if pipelined {
                    // The group's appends overlapped the fsync in flight; once it completes,
                    // the next covers the redundant headers it made ready and this group.
                    if let Some(f) = inflight.take() {
                        let result = f.done.await;
                        s.finish_fsync(f.covers, result).await.expect("fsync");
                    }
                    s.write_redundant_headers().await.expect("headers");
                    inflight = Some(s.start_fsync());
                } else {
                    s.sync().await.expect("sync");
                }
            }
        }
        if let Some(f) = inflight.take() {
            let result = f.done.await;
            s.finish_fsync(f.covers, result).await.expect("fsync");
        }
        s.sync().await.expect("sync");
        let secs = start.elapsed().as_secs_f64();
        drop(s);
        let _ = std::fs::remove_file(&path);
        let ops_per_sec = ops as f64 / secs;
        let mb_per_sec = ops_per_sec * (body + 128) as f64 / 1e6;
        (ops_per_sec, mb_per_sec)
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    }

    pub fn main() {
        let dir = std::env::var("KMB_BENCH_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| std::env::temp_dir());
        let runs: usize = std::env::var("KMB_BENCH_RUNS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(5);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        println!(
            "storage append benchmark in {} ({runs} runs, medians)",
            dir.display()
        );
        println!(
            "{:>8} {:>14} {:>8} {:>12} {:>10}",
            "body", "mode", "ops", "ops/s", "MB/s"
        );
        for body in [128usize, 4096] {
            for (mode, per_sync, ops, pipelined) in [
                ("sync/append", 1u64, 1000u64, false),
                ("group 64", 64, 20_000, false),
                ("pipelined 64", 64, 20_000, true),
            ] {
                let mut opss = Vec::new();
                let mut mbs = Vec::new();
                for _ in 0..runs {
                    let (o, m) = rt.block_on(run(&dir, body, per_sync, ops, pipelined));
                    opss.push(o);
                    mbs.push(m);
                }
                println!(
                    "{:>8} {:>14} {:>8} {:>12.0} {:>10.2}",
                    body,
                    mode,
                    ops,
                    median(opss),
                    median(mbs)
                );
            }
        }
    }
}
