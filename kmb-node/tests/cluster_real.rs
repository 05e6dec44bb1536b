//! Production-mode integration test: three real `kmb-node` processes on 127.0.0.1, driven
//! through RESP by the Rust client library and by `redis-cli`; kill -9 of the primary, restart
//! and catch-up, and a corrupted WAL byte repaired on restart.
#![cfg(not(madsim))]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use kmb_node::client::{Client, ClientConfig};
use kmb_node::entry::HEADER_SIZE;
use kmb_node::resp::Value;
use kmb_node::storage::format::Layout;
use kmb_node::storage::StorageConfig;
use sim_runtime::time::{self, Duration};

mod real;
use real::free_ports;

const BIN: &str = env!("CARGO_BIN_EXE_kmb-node");

struct Cluster {
    dir: tempfile::TempDir,
    peers: Vec<u16>,
    clients: Vec<u16>,
    children: Vec<Option<Child>>,
}

impl Cluster {
    fn new() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = free_ports(6);
        let cluster = Cluster {
            dir,
            peers: ports[..3].to_vec(),
            clients: ports[3..].to_vec(),
            children: vec![None, None, None],
        };
        for i in 0..3 {
            let mut format = Command::new(BIN);
            format
                .args(["format", "--cluster", "42", "--replica", &i.to_string()])
                .args(["--replica-count", "3"]);
            if i > 0 {
                // Every replica holds replica 0's cluster key.
                format
                    .arg("--key-from")
                    .arg(cluster.dir.path().join("r0.kmb.key"));
            }
            let status = format
                .arg(cluster.data(i))
                .status()
                .expect("run kmb-node format");
            assert!(status.success(), "format replica {i}");
        }
        cluster
    }

    fn data(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("r{i}.kmb"))
    }

    fn log(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("r{i}.log"))
    }

    fn list(ports: &[u16]) -> String {
        ports
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn start(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(i))
            .expect("log file");
        // Replica 2 runs a multi-threaded runtime, the others the default single thread.
        let threads = if i == 2 { "2" } else { "1" };
        let child = Command::new(BIN)
            .arg("start")
            .args(["--worker-threads", threads])
            .args(["--addresses", &Self::list(&self.peers)])
            .args(["--client-addresses", &Self::list(&self.clients)])
            .arg(self.data(i))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn kmb-node start");
        self.children[i] = Some(child);
    }

    /// kill -9.
    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
    }

    fn addresses(&self) -> Vec<SocketAddr> {
        self.clients
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect()
    }

    fn client(&self, id: u128) -> Client {
        Client::new(
            self.addresses(),
            id,
            ClientConfig {
                request_timeout: Duration::from_secs(30),
                ..Default::default()
            },
        )
    }

    /// The replica that answers a plain GET instead of redirecting (the primary).
    async fn primary(&self, alive: &[usize]) -> usize {
        for _ in 0..200 {
            for &i in alive {
                let out = redis_cli(self.clients[i], &["GET", "probe"]);
                if !out.starts_with("REDIRECT")
                    && !out.starts_with("TIMEOUT")
                    && !out.contains("Could not connect")
                {
                    return i;
                }
            }
            time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no primary among {alive:?}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill(i);
        }
    }
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli is installed (apt-get install redis-tools)");
    String::from_utf8_lossy(&out.stdout).trim().to_string() + &String::from_utf8_lossy(&out.stderr)
}

async fn set(client: &mut Client, key: &str, value: &str) {
    let reply = client
        .set(key.as_bytes(), value.as_bytes())
        .await
        .expect("SET acknowledged");
    assert_eq!(reply.value, Value::ok());
}

async fn assert_all_readable(client: &mut Client, acked: &[(String, String)]) {
    for (k, v) in acked {
        let reply = client.get(k.as_bytes()).await.expect("GET");
        assert_eq!(reply.value, Value::Bulk(v.clone().into_bytes()), "key {k}");
    }
}

fn flip_byte(path: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open data");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).expect("read");
    b[0] ^= 0x5a;
    f.write_all_at(&b, offset).expect("write");
    f.sync_all().expect("sync");
}

/// Goal: three real processes serve RESP, survive kill -9 of the primary without losing an
/// acknowledged write, catch a restarted replica up, and repair a corrupted WAL entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_survive_kill_restart_and_corruption() {
    let mut cluster = Cluster::new();
    for i in 0..3 {
        cluster.start(i);
    }
    let primary = cluster.primary(&[0, 1, 2]).await;

    // redis-cli works as a user expects.
    let p = cluster.clients[primary];
    assert_eq!(redis_cli(p, &["SET", "greeting", "hello"]), "OK");
    assert_eq!(redis_cli(p, &["GET", "greeting"]), "hello");
    assert_eq!(redis_cli(p, &["INCRBY", "n", "5"]), "5");
    assert!(redis_cli(p, &["INCRBY", "greeting", "1"]).contains("not an integer"));
    assert!(redis_cli(p, &["NOSUCH"]).contains("unknown command"));
    assert!(redis_cli(p, &["GET"]).contains("wrong number of arguments"));
    assert_eq!(redis_cli(p, &["CAS", "n", "IFEQ", "5", "6"]), "1");
    let backup = (primary + 1) % 3;
    assert!(redis_cli(cluster.clients[backup], &["GET", "n"])
        .starts_with(&format!("REDIRECT {primary}")));

    // Acknowledged writes through the client library.
    let mut client = cluster.client(1);
    let mut acked = vec![("greeting".to_string(), "hello".to_string())];
    for i in 0..40 {
        let (k, v) = (format!("key{i}"), format!("value{i}"));
        set(&mut client, &k, &v).await;
        acked.push((k, v));
    }

    // kill -9 the primary: a new view is installed, every acknowledged write is readable.
    cluster.kill(primary);
    let alive: Vec<usize> = (0..3).filter(|&i| i != primary).collect();
    let new_primary = cluster.primary(&alive).await;
    assert_ne!(new_primary, primary);
    assert_all_readable(&mut client, &acked).await;
    for i in 40..60 {
        let (k, v) = (format!("key{i}"), format!("value{i}"));
        set(&mut client, &k, &v).await;
        acked.push((k, v));
    }

    // Restart it: it catches up. Then kill another replica, so the restarted one must be
    // part of every quorum: everything stays readable and writable.
    cluster.start(primary);
    time::sleep(Duration::from_secs(2)).await;
    let other = alive
        .iter()
        .copied()
        .find(|&i| i != new_primary)
        .expect("a backup");
    cluster.kill(other);
    assert_all_readable(&mut client, &acked).await;
    set(&mut client, "after-catch-up", "yes").await;
    acked.push(("after-catch-up".into(), "yes".into()));
    cluster.start(other);
    time::sleep(Duration::from_secs(2)).await;

    // Corrupt a byte of a committed entry in one replica's WAL while it is down: recovery
    // reports it faulty (never blank) and the replica repairs it from its peers.
    let leader = cluster.primary(&[0, 1, 2]).await;
    let victim = (0..3).find(|&i| i != leader).expect("a backup");
    cluster.kill(victim);
    let layout = Layout::new(StorageConfig::PRODUCTION);
    let op = 3;
    flip_byte(
        &cluster.data(victim),
        layout.prepare_offset(layout.slot_of(op)) + HEADER_SIZE as u64,
    );
    cluster.start(victim);
    time::sleep(Duration::from_secs(2)).await;
    let log = std::fs::read_to_string(cluster.log(victim)).expect("log");
    let last_recovery = log
        .lines()
        .rfind(|l| l.contains("recovered"))
        .expect("recovery line");
    assert!(
        last_recovery.contains("faulty=1"),
        "the corrupt entry is reported faulty: {last_recovery}"
    );
    let current = cluster.primary(&[0, 1, 2]).await;
    let third = (0..3)
        .find(|&i| i != victim && i != current)
        .expect("third replica");
    cluster.kill(third);
    assert_all_readable(&mut client, &acked).await;
    set(&mut client, "after-repair", "yes").await;
    // The repaired replica now holds every entry: with the old primary gone too, it still
    // takes part in a quorum that has all the data.
    cluster.start(third);
    time::sleep(Duration::from_secs(1)).await;
    assert_all_readable(&mut client, &acked).await;
}

/// Goal: bad configuration is one clear line and a non-zero exit.
#[test]
fn bad_configuration_is_one_line_and_nonzero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("x.kmb");
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().expect("run");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let d = data.to_str().expect("utf8");
    let (ok, err) = run(&[
        "format",
        "--cluster",
        "1",
        "--replica",
        "3",
        "--replica-count",
        "3",
        d,
    ]);
    assert!(
        !ok && err.lines().count() == 1 && err.contains("out of range"),
        "{err}"
    );
    let (ok, err) = run(&[
        "format",
        "--cluster",
        "1",
        "--replica",
        "0",
        "--replica-count",
        "2",
        d,
    ]);
    assert!(!ok && err.contains("1, 3 or 5"), "{err}");
    let (ok, err) = run(&[
        "start",
        "--addresses",
        "1,2,3",
        "--client-addresses",
        "4,5",
        d,
    ]);
    assert!(
        !ok && err.lines().count() == 1 && err.contains("give one of each"),
        "{err}"
    );
    // A start with one of each address and `extra` flags.
    let start = |extra: &[&str]| {
        let mut args = vec![
            "start",
            "--addresses",
            "1,2,3",
            "--client-addresses",
            "4,5,6",
        ];
        args.extend_from_slice(extra);
        args.push(d);
        run(&args)
    };
    let (ok, err) = start(&[]);
    assert!(
        !ok && err.lines().count() == 1 && err.contains("does not exist"),
        "{err}"
    );
    std::fs::write(&data, b"not a data file").expect("write");
    let (ok, err) = start(&[]);
    assert!(!ok && err.lines().count() == 1, "{err}");
    let (ok, err) = run(&[
        "start",
        "--addresses",
        "nonsense",
        "--client-addresses",
        "4",
        d,
    ]);
    assert!(!ok && err.contains("invalid address"), "{err}");
    let (ok, err) = start(&["--worker-threads", "0"]);
    assert!(
        !ok && err.lines().count() == 1 && err.contains("--worker-threads 0 must be within"),
        "{err}"
    );
}
