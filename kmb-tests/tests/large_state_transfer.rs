//! A replica that fell a whole WAL behind catches up by state transfer even when the
//! snapshot is larger than a default frame (`sim_runtime::net::FRAME_PAYLOAD_MAX`, 4 MiB). The
//! peer link's frame limit is derived from the largest message the core encodes
//! (`node/peers.rs`, `PEER_FRAME_MAX`); with the fixed 4 MiB limit it had before, every
//! state-transfer reply here was refused by the receiver, the connection dropped, and the
//! replica never caught up. And a transaction whose replies would overflow the client table's
//! per-reply bound is answered within it, so checkpoints stay loadable.
#![cfg(madsim)]

use kmb_node::client::{Client, ClientConfig};
use kmb_tests::cluster::{replica_ip, Cluster};
use kmb_tests::swarm::{Geometry, Swarm};
use sim_runtime::fault;
use sim_runtime::sim;
use sim_runtime::time::{self, Duration};

/// Values written while the replica is down: 120 × 60 KB ≈ 7 MB of state, so the snapshot is
/// well above 4 MiB.
const KEYS: usize = 120;
const VALUE_SIZE: usize = 60_000;

/// Three replicas without faults whose WAL holds 64 slots of 64 KiB (checkpoints come often),
/// and a client node, two seconds after the start.
async fn small_wal_cluster(seed: u64) -> (Cluster, sim::NodeHandle) {
    let mut swarm = Swarm::without_faults(seed, 3);
    swarm.geometry = Geometry {
        slot_count: 64,
        slot_size: 65_536,
    };
    let cluster = Cluster::start(&swarm);
    let client = Cluster::client_node(0);
    time::sleep(Duration::from_secs(2)).await;
    (cluster, client)
}

/// Goal: replica 2, cut off while the others write ~7 MB and checkpoint past its whole WAL,
/// reaches the others' commit after the heal by a state transfer of that snapshot.
#[test]
fn a_replica_catches_up_by_a_snapshot_larger_than_a_default_frame() {
    let (caught_up, transferred, others) = sim::run(11, || async {
        let (cluster, client) = small_wal_cluster(11).await;
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

/// Goal: a transaction whose replies would be larger than the client table keeps per reply
/// (`core::snapshot`, 4 MiB encoded: 70 GETs of 60 KB values) is answered within the bound
/// (`kv::MULTI_REPLY_BYTES_MAX`: the reads beyond it are not executed and say so), so the
/// checkpoints that carry the reply decode and a restarted replica recovers. Without the bound
/// the reply went into the client table whole and every later checkpoint held it: the
/// restarted replica could not load its checkpoint, nor a peer's.
#[test]
fn a_transaction_with_huge_replies_stays_within_the_client_table() {
    const READS: usize = 70;
    let (reply, restarted, halts) = sim::run(12, || async {
        let (cluster, client) = small_wal_cluster(12).await;
        let addresses = cluster.client_addresses.clone();
        let reply = client
            .spawn(async move {
                let config = ClientConfig {
                    request_timeout: Duration::from_secs(60),
                    ..ClientConfig::default()
                };
                let c_addresses = addresses.clone();
                let mut c = Client::new(addresses, 1, config);
                for k in 0..READS {
                    c.set(format!("key-{k}").as_bytes(), &vec![b'v'; VALUE_SIZE])
                        .await
                        .expect("set");
                }
                let mut tx: Vec<Vec<u8>> = vec![b"KMB.TX".to_vec(), READS.to_string().into()];
                for k in 0..READS {
                    tx.extend([b"2".to_vec(), b"GET".to_vec(), format!("key-{k}").into()]);
                }
                let args: Vec<&[u8]> = tx.iter().map(Vec::as_slice).collect();
                let reply = c.execute(&args).await.expect("the transaction commits");
                // Past the next checkpoints, by another client: this one's reply stays in the
                // client table (its last request's) and in every checkpoint meanwhile.
                let mut other = Client::new(c_addresses, 2, ClientConfig::default());
                for k in 0..150 {
                    other
                        .set(format!("small-{k}").as_bytes(), b"x")
                        .await
                        .expect("set");
                }
                reply.value
            })
            .await
            .unwrap();
        sim::kill(cluster.replicas[1]);
        time::sleep(Duration::from_secs(1)).await;
        sim::restart(cluster.replicas[1]);
        let mut restarted = false;
        for _ in 0..300 {
            time::sleep(Duration::from_millis(100)).await;
            let r = kmb_node::inspect::snapshot();
            let commit = |i: u8| r.replicas.get(&i).map_or(0, |s| s.commit);
            if r.recoveries.iter().any(|(i, _, _)| *i == 1) && commit(1) >= commit(0) {
                restarted = true;
                break;
            }
        }
        let halts = kmb_node::inspect::snapshot().halts.len();
        (reply, restarted, halts)
    });
    assert_eq!(halts, 0, "no replica halted");
    assert!(restarted, "the restarted replica recovered and caught up");
    let kmb_node::resp::Value::Array(items) = &reply else {
        panic!("not an array: {reply:?}");
    };
    assert_eq!(items.len(), READS);
    let read = items
        .iter()
        .filter(|v| matches!(v, kmb_node::resp::Value::Bulk(b) if b.len() == VALUE_SIZE))
        .count();
    let refused = items
        .iter()
        .filter(|v| matches!(v, kmb_node::resp::Value::Error(e) if e.contains("not executed")))
        .count();
    assert!(
        read > 0 && refused > 0 && read + refused == READS,
        "{read} read, {refused} refused"
    );
}
