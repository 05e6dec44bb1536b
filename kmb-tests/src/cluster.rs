//! The cluster harness (simulation only): each replica is a madsim node whose init closure is
//! the production entry point (`kmb_node::node::run`, what `kmb-node start` calls) over the
//! simulated disk; a restart re-runs it after a power loss.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use kmb_node::auth::ClusterKey;
use kmb_node::node::{self, Limits, NodeConfig};
use kmb_node::storage::{Identity, Storage, StorageConfig};
use sim_runtime::sim::{self, Handle, NodeId};
use sim_runtime::time::Duration;

use crate::swarm::Swarm;

/// Port replicas listen on for peers.
pub const PEER_PORT: u16 = 3000;
/// The simulated cluster's key (peers authenticate with it; see `kmb_node::auth`).
pub const CLUSTER_KEY: [u8; 32] = *b"kmb simulated cluster key 32 byt";
/// Port replicas listen on for clients (RESP).
pub const CLIENT_PORT: u16 = 6379;
/// The cluster id every simulated cluster uses.
pub const CLUSTER: u64 = 0x006b_6d62;
/// Where every simulated replica keeps its data file (on its own simulated disk).
pub const DATA_PATH: &str = "/data/kmb.data";

/// The IP address of replica `i`.
pub fn replica_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1))
}

/// The IP address of client `c`.
pub fn client_ip(c: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, c as u8 + 1))
}

/// The IP address of the hostile client (`Payloads::hostile`).
pub fn hostile_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 3, 1))
}

/// A running simulated cluster.
pub struct Cluster {
    pub replicas: Vec<NodeId>,
    pub peer_addresses: Vec<SocketAddr>,
    pub client_addresses: Vec<SocketAddr>,
}

async fn replica_main(config: NodeConfig, identity: Identity, geometry: StorageConfig) {
    // First boot: format (the harness's `kmb-node format`). Faults start only after every
    // replica is up, so a format is never interrupted.
    let exists = sim_runtime::disk::exists(&config.data_path)
        .await
        .unwrap_or(false);
    if !exists {
        if let Err(e) = Storage::format(&config.data_path, identity, geometry).await {
            kmb_node::inspect::halted(
                identity.replica,
                format!("format failed: {e}"),
                kmb_node::inspect::HaltKind::Other,
            );
            return;
        }
    }
    if let Err(e) = node::run(config, std::future::pending()).await {
        let kind = kmb_node::inspect::HaltKind::of(&e);
        kmb_node::inspect::halted(identity.replica, e.to_string(), kind);
    }
}

impl Cluster {
    /// Create and start every replica of `swarm`.
    pub fn start(swarm: &Swarm) -> Cluster {
        let n = swarm.replica_count as usize;
        let peer_addresses: Vec<SocketAddr> = (0..n)
            .map(|i| SocketAddr::new(replica_ip(i), PEER_PORT))
            .collect();
        let client_addresses: Vec<SocketAddr> = (0..n)
            .map(|i| SocketAddr::new(replica_ip(i), CLIENT_PORT))
            .collect();
        let mut replicas = Vec::new();
        for i in 0..n {
            let config = NodeConfig {
                data_path: PathBuf::from(DATA_PATH),
                replica_addresses: peer_addresses.clone(),
                client_addresses: client_addresses.clone(),
                listen_peer: None,
                listen_client: None,
                tick: Duration::from_millis(10),
                // Every replica of the simulated cluster holds the same key.
                cluster_key: ClusterKey::from_bytes(CLUSTER_KEY),
                limits: Limits::default(),
                requirepass: None,
            };
            let identity = Identity {
                cluster: CLUSTER,
                replica: i as u8,
                replica_count: n as u8,
            };
            let geometry = swarm.geometry.storage_config();
            let handle = Handle::current()
                .create_node()
                .name(format!("replica-{i}"))
                .ip(replica_ip(i))
                .init(move || replica_main(config.clone(), identity, geometry))
                .build();
            // Before the node first runs: its clock is skewed from its first reading.
            let skew = swarm.clock_skew_ms.get(i).copied().unwrap_or(0);
            sim_runtime::fault::set_clock_offset(handle.id(), skew);
            replicas.push(handle.id());
        }
        Cluster {
            replicas,
            peer_addresses,
            client_addresses,
        }
    }

    /// A new simulated machine for client `c` (at [`client_ip`]), to spawn a client on.
    pub fn client_node(c: usize) -> sim::NodeHandle {
        Handle::current()
            .create_node()
            .name(format!("client-{c}"))
            .ip(client_ip(c))
            .build()
    }

    /// Power-loss replica `i`.
    pub fn kill(&self, i: usize) {
        sim::kill(self.replicas[i]);
    }

    /// Restart replica `i` (killing it first if it is running).
    pub fn restart(&self, i: usize) {
        sim::restart(self.replicas[i]);
    }

    /// Pause replica `i`.
    pub fn pause(&self, i: usize) {
        sim::pause(self.replicas[i]);
    }

    /// Resume replica `i`.
    pub fn resume(&self, i: usize) {
        sim::resume(self.replicas[i]);
    }
}
