//! The replicas: real `kmb-node` processes, one per network namespace, each with its own
//! data file and log in the run directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use sim_runtime::time::{self, Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::{run, Net};

pub const PEER_PORT: u16 = 3000;
pub const CLIENT_PORT: u16 = 6379;

struct Node {
    child: Option<Child>,
    paused: bool,
}

pub struct Cluster {
    pub net: Net,
    bin: PathBuf,
    dir: PathBuf,
    nodes: Vec<Node>,
    env: Vec<(String, String)>,
    geometry: String,
    /// Processes that exited without being killed by the nemesis.
    pub unexpected_exits: Vec<String>,
}

impl Cluster {
    pub fn new(
        net: Net,
        bin: PathBuf,
        dir: PathBuf,
        env: Vec<(String, String)>,
        geometry: String,
    ) -> Cluster {
        let nodes = (0..net.n)
            .map(|_| Node {
                child: None,
                paused: false,
            })
            .collect();
        Cluster {
            net,
            bin,
            dir,
            nodes,
            env,
            geometry,
            unexpected_exits: Vec::new(),
        }
    }

    pub fn n(&self) -> usize {
        self.nodes.len()
    }

    pub fn data(&self, i: usize) -> PathBuf {
        self.dir.join(format!("r{i}.kmb"))
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("r{i}.log"))
    }

    pub fn format_all(&self) -> Result<(), String> {
        let bin = self.bin.to_string_lossy().into_owned();
        for i in 0..self.n() {
            let data = self.data(i).to_string_lossy().into_owned();
            let (replica, count) = (i.to_string(), self.n().to_string());
            let key = self.dir.join("r0.kmb.key").to_string_lossy().into_owned();
            let mut args = vec![
                "format",
                "--cluster",
                "16",
                "--replica",
                &replica,
                "--replica-count",
                &count,
                "--geometry",
                &self.geometry,
            ];
            if i > 0 {
                args.extend(["--key-from", &key]);
            }
            args.push(&data);
            run(&bin, &args)?;
        }
        Ok(())
    }

    fn list(&self, port: u16) -> String {
        (0..self.n())
            .map(|i| format!("{}:{port}", self.net.ip(i)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The replicas' client addresses, in replica order.
    pub fn client_addresses(&self) -> Vec<SocketAddr> {
        (0..self.n())
            .map(|i| SocketAddr::from((self.net.ip(i), CLIENT_PORT)))
            .collect()
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// Start replica `i` in its namespace (no-op if it runs).
    pub fn start(&mut self, i: usize) -> Result<u32, String> {
        if let Some(pid) = self.pid(i) {
            return Ok(pid);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .map_err(|e| format!("log file: {e}"))?;
        // `ip netns exec` enters the namespace and execs the node: the child's pid is the
        // node's.
        let child = Command::new("ip")
            .args(["netns", "exec", &self.net.ns(i)])
            .arg(&self.bin)
            .arg("start")
            .args(["--addresses", &self.list(PEER_PORT)])
            .args(["--client-addresses", &self.list(CLIENT_PORT)])
            .arg(self.data(i))
            // KMB_CHAOS_NODE_LOG=debug gives the nodes' debug log.
            .env(
                "RUST_LOG",
                std::env::var("KMB_CHAOS_NODE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start replica {i}: {e}"))?;
        let pid = child.id();
        self.nodes[i] = Node {
            child: Some(child),
            paused: false,
        };
        Ok(pid)
    }

    /// kill -9 replica `i`; `false` if it was not running.
    pub fn kill(&mut self, i: usize) -> bool {
        self.reap();
        match self.nodes[i].child.take() {
            Some(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
                self.nodes[i].paused = false;
                true
            }
            None => false,
        }
    }

    fn signal(&self, i: usize, sig: &str) -> Result<(), String> {
        let pid = self.pid(i).ok_or(format!("replica {i} is not running"))?;
        run("kill", &[sig, &pid.to_string()]).map(|_| ())
    }

    pub fn pause(&mut self, i: usize) -> Result<(), String> {
        self.signal(i, "-STOP")?;
        self.nodes[i].paused = true;
        Ok(())
    }

    pub fn resume(&mut self, i: usize) {
        if self.nodes[i].paused {
            let _ = self.signal(i, "-CONT");
            self.nodes[i].paused = false;
        }
    }

    /// Note replicas that exited on their own (not killed by the nemesis).
    pub fn reap(&mut self) {
        for i in 0..self.n() {
            let exited = match self.nodes[i].child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status.to_string()),
                Some(Err(e)) => Some(e.to_string()),
                _ => None,
            };
            if let Some(status) = exited {
                self.nodes[i].child = None;
                self.unexpected_exits.push(format!(
                    "replica {i} exited by itself ({status}); see {}",
                    self.log_path(i).display()
                ));
            }
        }
    }

    /// SIGTERM every replica (the node shuts down cleanly) and wait up to 10 s, then SIGKILL.
    pub fn stop_all(&mut self) {
        self.reap();
        for i in 0..self.n() {
            self.resume(i);
            let _ = self.signal(i, "-TERM");
        }
        let deadline = std::time::Duration::from_secs(10);
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let mut waited = std::time::Duration::ZERO;
                loop {
                    match child.try_wait() {
                        Ok(Some(_)) | Err(_) => break,
                        Ok(None) if waited >= deadline => {
                            let _ = child.kill();
                            let _ = child.wait();
                            break;
                        }
                        Ok(None) => {
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            waited += std::time::Duration::from_millis(50);
                        }
                    }
                }
            }
        }
    }

    /// `kmb-node verify` on replica `i`'s data file (stopped): pass, and its output.
    pub fn verify(&self, i: usize) -> (bool, String) {
        let out = Command::new(&self.bin)
            .arg("verify")
            .arg(self.data(i))
            .output();
        match out {
            Ok(o) => (
                o.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
            ),
            Err(e) => (false, format!("cannot run verify: {e}")),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.net.teardown();
    }
}

/// Ask the replicas at `addresses` (plain RESP `GET`) which one is the primary: a backup
/// answers `-REDIRECT <replica> <address>`, the primary answers the value.
pub async fn find_primary(addresses: &[SocketAddr]) -> Option<usize> {
    let mut named = None;
    for (i, addr) in addresses.iter().enumerate() {
        match probe(*addr).await {
            Some(Probe::Primary) => return Some(i),
            Some(Probe::Redirect(r)) if r < addresses.len() => named = named.or(Some(r)),
            _ => {}
        }
    }
    named
}

enum Probe {
    Primary,
    Redirect(usize),
}

async fn probe(addr: SocketAddr) -> Option<Probe> {
    let attempt = async {
        let mut s = sim_runtime::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"*2\r\n$3\r\nGET\r\n$15\r\nkmb-chaos-probe\r\n")
            .await
            .ok()?;
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.ok()?;
        let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
        if let Some(rest) = reply.strip_prefix("-REDIRECT ") {
            rest.split_whitespace()
                .next()
                .and_then(|r| r.parse().ok())
                .map(Probe::Redirect)
        } else if reply.starts_with('$') {
            Some(Probe::Primary)
        } else {
            None
        }
    };
    time::timeout(Duration::from_millis(700), attempt)
        .await
        .ok()
        .flatten()
}

/// Wait up to `limit` for a primary.
pub async fn wait_for_primary(addresses: &[SocketAddr], limit: Duration) -> Option<usize> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(p) = find_primary(addresses).await {
            return Some(p);
        }
        time::sleep(Duration::from_millis(200)).await;
    }
    None
}
