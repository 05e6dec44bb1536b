//! A slow disk no longer stalls the protocol (issue 15, item 1): storage I/O runs in the
//! node's I/O task (`kmb-node/src/node/io.rs`), so while a sync is in flight the core keeps
//! handling messages and ticks. A primary whose every fsync takes 2 s — four times the view
//! change timeout (50 ticks of 10 ms) — keeps sending heartbeats and stays primary, and the
//! cluster keeps committing with the two backups' acknowledgements. With the driver awaiting
//! every fsync inline, as before the I/O task, the primary sent nothing for 2 s at a time, past
//! the backups' view-change timeout.
#![cfg(madsim)]

use kmb_node::client::{Client, ClientConfig};
use kmb_tests::cluster::Cluster;
use kmb_tests::swarm::Swarm;
use sim_runtime::fault::{self, DiskFaults};
use sim_runtime::sim;
use sim_runtime::time::{self, Duration};

/// Goal: a primary with a disk whose fsyncs take 2 s stays primary for the 6 s it is slow,
/// clients' writes keep committing meanwhile, and the cluster converges once it is fast again.
#[test]
fn a_primary_with_a_slow_disk_keeps_leading() {
    let (views, during, after) = sim::run(11, || async {
        let swarm = Swarm::without_faults(11, 3);
        let cluster = Cluster::start(&swarm);
        let addresses = cluster.client_addresses.clone();
        let done = std::sync::Arc::new(std::sync::Mutex::new(0u64));
        let count = done.clone();
        Cluster::client_node(0).spawn(async move {
            let mut c = Client::new(addresses, 1, ClientConfig::default());
            for i in 0u64.. {
                if c.set(b"k", i.to_string().as_bytes()).await.is_ok() {
                    *count.lock().unwrap() += 1;
                }
                time::sleep(Duration::from_millis(20)).await;
            }
        });
        time::sleep(Duration::from_secs(2)).await;
        let view = |r: u8| {
            kmb_node::inspect::snapshot()
                .replicas
                .get(&r)
                .map(|s| s.view)
        };
        assert_eq!(
            view(0),
            Some(0),
            "replica 0 leads view 0 before the slowness"
        );
        let primary = cluster.replicas[0];
        let fast = fault::disk_faults(primary);
        fault::set_disk_faults(
            primary,
            DiskFaults {
                sync_latency: (Duration::from_secs(2), Duration::from_secs(2)),
                ..fast.clone()
            },
        );
        let before = *done.lock().unwrap();
        let mut views = Vec::new();
        for _ in 0..60 {
            time::sleep(Duration::from_millis(100)).await;
            views.push((0..3).filter_map(view).max().unwrap_or(0));
        }
        let during = *done.lock().unwrap() - before;
        fault::set_disk_faults(primary, fast);
        let before = *done.lock().unwrap();
        time::sleep(Duration::from_secs(8)).await;
        let after = *done.lock().unwrap() - before;
        (views, during, after)
    });
    eprintln!("views {views:?}; writes: {during} while slow, {after} after");
    assert!(
        views.iter().all(|&v| v == 0),
        "the view moved while the primary's disk was slow: {views:?}"
    );
    assert!(
        during >= 20,
        "{during} writes committed in the 6 slow seconds"
    );
    assert!(after >= 100, "{after} writes committed once fast again");
}
