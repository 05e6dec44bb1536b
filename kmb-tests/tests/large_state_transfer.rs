//! A replica that fell a whole WAL behind catches up by state transfer even when the
//! snapshot is larger than a default frame (`sim_runtime::net::FRAME_PAYLOAD_MAX`, 4 MiB). The
//! peer link's frame limit is derived from the largest message the core encodes
//! (`node/peers.rs`, `PEER_FRAME_MAX`); with the fixed 4 MiB limit it had before, every
//! state-transfer reply here was refused by the receiver, the connection dropped, and the
//! replica never caught up.
#![cfg(madsim)]

use kmb_node::client::{Client, ClientConfig};
use kmb_tests::cluster::{client_ip, replica_ip, Cluster};
use kmb_tests::swarm::{Geometry, Swarm, SwarmOptions};
use sim_runtime::fault;
use sim_runtime::sim::{self, Handle};
use sim_runtime::time::{self, Duration};

/// Values written while the replica is down: 120 × 60 KB ≈ 7 MB of state, so the snapshot is
/// well above 4 MiB.
const KEYS: usize = 120;
const VALUE_SIZE: usize = 60_000;

/// Goal: replica 2, cut off while the others write ~7 MB and checkpoint past its whole WAL,
/// reaches the others' commit after the heal by a state transfer of that snapshot.
#[test]
fn a_replica_catches_up_by_a_snapshot_larger_than_a_default_frame() {
    let (caught_up, transferred, others) = sim::run(11, || async {
        let mut swarm = Swarm::from_seed(
            11,
            SwarmOptions {
                no_faults: true,
                ..Default::default()
            },
        );
        swarm.replica_count = 3;
        swarm.geometry = Geometry {
            slot_count: 64,
            slot_size: 65_536,
        };
        let cluster = Cluster::start(&swarm);
        let client = Handle::current()
            .create_node()
            .name("client-0")
            .ip(client_ip(0))
            .build();
        time::sleep(Duration::from_secs(2)).await;
        // Cut replica 2 off (frames to and from it are dropped; a killed replica would get
        // the others' queued prepares on restart and need no transfer).
        for i in 0..2 {
            fault::partition(replica_ip(i), replica_ip(2));
        }
        let addresses = cluster.client_addresses.clone();
        client
            .spawn(async move {
                let mut c = Client::new(addresses, 1, ClientConfig::default());
                for k in 0..KEYS {
                    let value = vec![b'a' + (k % 26) as u8; VALUE_SIZE];
                    c.set(format!("key-{k}").as_bytes(), &value)
                        .await
                        .expect("the two live replicas commit every write");
                }
            })
            .await
            .unwrap();
        for i in 0..2 {
            fault::heal(replica_ip(i), replica_ip(2));
        }
        let mut caught_up = false;
        for _ in 0..300 {
            time::sleep(Duration::from_millis(100)).await;
            let r = kmb_node::inspect::snapshot();
            let commit = |i: u8| r.replicas.get(&i).map_or(0, |s| s.commit);
            if commit(2) > 0 && commit(2) >= commit(0).min(commit(1)) {
                caught_up = true;
                break;
            }
        }
        let r = kmb_node::inspect::snapshot();
        let transferred = r.transfers.iter().filter(|(i, _, _)| *i == 2).count();
        let others = r.replicas.get(&0).map_or(0, |s| s.commit);
        (caught_up, transferred, others)
    });
    assert!(others >= KEYS as u64, "the writes committed ({others})");
    assert!(
        transferred > 0,
        "replica 2 needed a state transfer (caught up {caught_up})"
    );
    assert!(
        caught_up,
        "replica 2 reached the cluster's commit ({others})"
    );
}
