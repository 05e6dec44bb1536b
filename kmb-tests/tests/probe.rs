//! The liveness phase's probe (`workload::probe_clients`): after the heal every client runs
//! one request in a new session, and a probe that gets no reply fails the seed. Without it, a
//! cluster that serves nobody leaves an all-unknown history — trivially linearizable — and
//! passes (issue 11).
#![cfg(madsim)]

use kmb_tests::cluster::{client_ip, Cluster};
use kmb_tests::swarm::{Swarm, SwarmOptions};
use kmb_tests::workload::probe_clients;
use sim_runtime::sim::{self, Handle};
use sim_runtime::time::{self, Duration};

/// Goal: the probe reports every client when no replica serves (all paused), and none once
/// they run again.
#[test]
fn probe_fails_when_no_replica_serves_and_passes_when_one_does() {
    let (stuck, served) = sim::run(7, || async {
        let swarm = Swarm::from_seed(7, SwarmOptions::default());
        let cluster = Cluster::start(&swarm);
        let nodes: Vec<_> = (0..2)
            .map(|c| {
                Handle::current()
                    .create_node()
                    .name(format!("client-{c}"))
                    .ip(client_ip(c))
                    .build()
            })
            .collect();
        time::sleep(Duration::from_secs(2)).await;
        for i in 0..cluster.replicas.len() {
            cluster.pause(i);
        }
        let stuck = probe_clients(&swarm, &nodes, cluster.client_addresses.clone()).await;
        for i in 0..cluster.replicas.len() {
            cluster.resume(i);
        }
        time::sleep(Duration::from_secs(2)).await;
        let served = probe_clients(&swarm, &nodes, cluster.client_addresses.clone()).await;
        (stuck, served)
    });
    assert_eq!(stuck.len(), 2, "{stuck:?}");
    assert!(stuck.iter().all(|f| f.contains("client ")), "{stuck:?}");
    assert_eq!(served, Vec::<String>::new());
}
