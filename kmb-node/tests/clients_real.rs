//! Production-mode integration test: real Redis clients with their default settings against
//! three real `kmb-node` processes — redis-py (sync and asyncio, RESP3 by default:
//! `tests/clients/redis_py_defaults.py`), `redis-cli INFO` and `redis-benchmark` (no warning) —
//! and a password set with `--requirepass-file`.
//!
//! Needs `python3` with the `redis` package and `redis-tools`; `scripts/test.sh` installs them.
#![cfg(not(madsim))]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod real;
use real::free_ports;

const BIN: &str = env!("CARGO_BIN_EXE_kmb-node");

struct Cluster {
    dir: tempfile::TempDir,
    clients: Vec<u16>,
    children: Vec<Child>,
}

impl Cluster {
    /// Format and start `n` replicas (`extra` flags for `start`).
    fn start(n: usize, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = free_ports(2 * n);
        let list = |p: &[u16]| {
            p.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let data = |i: usize| dir.path().join(format!("r{i}.kmb"));
        let mut children = Vec::new();
        for i in 0..n {
            let mut format = Command::new(BIN);
            format
                .args(["format", "--cluster", "14", "--replica", &i.to_string()])
                .args(["--replica-count", &n.to_string()]);
            if i > 0 {
                format.arg("--key-from").arg(dir.path().join("r0.kmb.key"));
            }
            let status = format
                .arg(data(i))
                .stdout(Stdio::null())
                .status()
                .expect("run kmb-node format");
            assert!(status.success(), "format replica {i}");
        }
        for i in 0..n {
            let log = std::fs::File::create(dir.path().join(format!("r{i}.log"))).expect("log");
            children.push(
                Command::new(BIN)
                    .arg("start")
                    .args(["--addresses", &list(&ports[..n])])
                    .args(["--client-addresses", &list(&ports[n..])])
                    .args(extra)
                    .arg(data(i))
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("spawn kmb-node start"),
            );
        }
        Cluster {
            dir,
            clients: ports[n..].to_vec(),
            children,
        }
    }

    /// The client port of the replica that answers a plain GET (the primary).
    fn primary(&self, auth: &[&str]) -> u16 {
        for _ in 0..300 {
            for &p in &self.clients {
                let out = redis_cli(p, &[auth, &["GET", "probe"]].concat());
                if !out.starts_with("REDIRECT")
                    && !out.starts_with("TIMEOUT")
                    && !out.contains("Could not connect")
                    && !out.contains("refused")
                {
                    return p;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no primary among {:?}", self.clients);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn run(program: &str, args: &[&str], what: &str) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} ({what}; scripts/test.sh installs it)"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let port = port.to_string();
    let (_, out) = run(
        "redis-cli",
        &[&["-p", port.as_str()], args].concat(),
        "apt-get install redis-tools",
    );
    out.trim().to_string()
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// Goal: redis-py with its defaults (RESP3 handshake, CLIENT SETINFO), node-redis, ioredis,
/// redis-cli INFO and redis-benchmark work against a real cluster: the handshake, INFO, CLIENT, the keyspace
/// commands, a refused transaction that applies nothing, a backup's redirect; and the
/// benchmark prints no warning.
#[test]
fn redis_py_cli_and_benchmark_with_defaults() {
    let cluster = Cluster::start(3, &[]);
    let primary = cluster.primary(&[]);
    let backup = *cluster
        .clients
        .iter()
        .find(|&&p| p != primary)
        .expect("backup");

    let (ok, out) = run(
        "python3",
        &[
            script("redis_py_defaults.py").to_str().expect("path"),
            &primary.to_string(),
            &backup.to_string(),
        ],
        "python3 -m pip install 'redis>=8'",
    );
    assert!(ok, "redis-py with defaults failed:\n{out}");
    assert!(out.contains(" ok"), "{out}");

    let clients = script("");
    assert!(
        clients.join("node_modules/ioredis").exists() && clients.join("node_modules/redis").exists(),
        "the node clients are not installed: cd kmb-node/tests/clients && npm ci (scripts/test.sh does)"
    );
    let (ok, out) = run(
        "node",
        &[
            script("node_defaults.mjs").to_str().expect("path"),
            &primary.to_string(),
            &backup.to_string(),
        ],
        "apt-get install nodejs npm",
    );
    assert!(ok, "node-redis / ioredis with defaults failed:\n{out}");
    assert!(out.contains("node clients ok"), "{out}");

    let info = redis_cli(primary, &["INFO"]);
    for line in [
        "# Server",
        "redis_version:",
        "role:master",
        "kmb_view:",
        "db0:keys=",
    ] {
        assert!(info.contains(line), "{line} missing in INFO:\n{info}");
    }
    assert!(redis_cli(backup, &["INFO", "replication"]).contains("role:slave"));
    assert_eq!(redis_cli(primary, &["CLIENT", "GETNAME"]), "");
    assert!(redis_cli(primary, &["-3", "HELLO", "3"]).contains("proto 3"));

    let port = primary.to_string();
    let (ok, out) = run(
        "redis-benchmark",
        &["-p", &port, "-n", "2000", "-t", "set,get", "-q"],
        "apt-get install redis-tools",
    );
    assert!(ok, "redis-benchmark failed:\n{out}");
    assert!(!out.to_ascii_uppercase().contains("WARN"), "{out}");
    assert!(!out.contains("ERR"), "{out}");
    assert!(
        out.contains("SET: ") && out.contains("GET: "),
        "redis-benchmark output:\n{out}"
    );
    let _ = &cluster.dir;
}

/// Goal: with `--requirepass-file`, commands need AUTH first (NOAUTH otherwise), a wrong
/// password is WRONGPASS, and clients that pass the password (redis-cli -a, HELLO AUTH) work.
#[test]
fn requirepass_needs_auth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "s3cret\n").expect("write password");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let cluster = Cluster::start(
        3,
        &["--requirepass-file", pass.to_str().expect("password path")],
    );
    let auth = ["-a", "s3cret", "--no-auth-warning"];
    let primary = cluster.primary(&auth);
    assert_eq!(
        redis_cli(primary, &["GET", "k"]),
        "NOAUTH Authentication required."
    );
    assert!(
        redis_cli(primary, &["-a", "wrong", "--no-auth-warning", "GET", "k"]).contains("WRONGPASS")
    );
    assert_eq!(
        redis_cli(primary, &[&auth[..], &["SET", "k", "v"]].concat()),
        "OK"
    );
    assert_eq!(
        redis_cli(primary, &[&auth[..], &["GET", "k"]].concat()),
        "v"
    );
    let hello = redis_cli(
        primary,
        &[
            "-3", "HELLO", "3", "AUTH", "default", "s3cret", "SETNAME", "x",
        ],
    );
    assert!(hello.contains("proto 3"), "{hello}");

    // A password file others can read is refused at start.
    std::fs::write(dir.path().join("open"), "x").expect("write");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("open"),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
    }
    let (ok, out) = run(
        BIN,
        &[
            "start",
            "--addresses",
            "1",
            "--client-addresses",
            "2",
            "--requirepass-file",
            dir.path().join("open").to_str().expect("path"),
            cluster.dir.path().join("r0.kmb").to_str().expect("path"),
        ],
        "kmb-node",
    );
    assert!(!ok && out.contains("readable by others"), "{out}");
}
