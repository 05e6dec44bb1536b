//! Production-mode integration test: real Redis clients with their default settings against
//! three real `kmb-node` processes — redis-py (sync and asyncio, RESP3 by default:
//! `tests/clients/redis_py_defaults.py`), node-redis and ioredis
//! (`tests/clients/node_defaults.mjs`), redis-rs (a dev-dependency), `redis-cli` and
//! `redis-benchmark` (no warning, pipelined too) — each with transactions, pipelines, expiry and
//! a backup's redirect followed as the client can; pipelined commands batched in order; and a
//! password set with `--requirepass-file`.
//!
//! Needs `python3` with the `redis` package, node with `redis` and `ioredis`, and
//! `redis-tools`; `scripts/test.sh` installs them.
#![cfg(not(madsim))]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kmb_node::resp::{self, Value};

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

    /// A client port other than `primary`'s.
    fn backup(&self, primary: u16) -> u16 {
        *self
            .clients
            .iter()
            .find(|&&p| p != primary)
            .expect("backup")
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
/// redis-cli and redis-benchmark work against a real cluster: the handshake, INFO, CLIENT, the
/// keyspace commands, expiry, pipelines, transactions (MULTI/EXEC applied atomically, WATCH
/// aborting on another connection's change), a backup's redirect followed; and the benchmark,
/// pipelined or not, prints no warning.
#[test]
fn redis_py_cli_and_benchmark_with_defaults() {
    let cluster = Cluster::start(3, &[]);
    let primary = cluster.primary(&[]);
    let backup = cluster.backup(primary);

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

    // redis-cli: a transaction, expiry, multi-key commands, SCAN.
    let multi = redis_cli_stdin(primary, "MULTI\nSET cli:t 1\nINCR cli:t\nPING\nEXEC\n");
    assert_eq!(multi, "OK\nQUEUED\nQUEUED\nQUEUED\nOK\n2\nPONG", "{multi}");
    assert_eq!(
        redis_cli(primary, &["SET", "cli:lock", "me", "NX", "PX", "30000"]),
        "OK"
    );
    assert_eq!(
        redis_cli(primary, &["SET", "cli:lock", "me", "NX", "PX", "30000"]),
        ""
    );
    let pttl: i64 = redis_cli(primary, &["PTTL", "cli:lock"])
        .parse()
        .expect("PTTL");
    assert!((29_000..=30_000).contains(&pttl), "{pttl}");
    assert_eq!(
        redis_cli(primary, &["MSET", "cli:a", "1", "cli:b", "2"]),
        "OK"
    );
    assert_eq!(
        redis_cli(primary, &["MGET", "cli:a", "cli:b", "cli:none"]),
        "1\n2" // the null's empty line trimmed
    );
    assert_eq!(
        redis_cli(
            primary,
            &["SCAN", "0", "MATCH", "cli:[ab]", "COUNT", "1000"]
        )
        .lines()
        .count(),
        3
    );
    assert!(redis_cli(backup, &["MGET", "cli:a"]).starts_with("REDIRECT"));

    let port = primary.to_string();
    for pipeline in ["1", "16"] {
        let (ok, out) = run(
            "redis-benchmark",
            &[
                "-p", &port, "-n", "2000", "-t", "set,get", "-P", pipeline, "-q",
            ],
            "apt-get install redis-tools",
        );
        assert!(ok, "redis-benchmark failed:\n{out}");
        assert!(!out.to_ascii_uppercase().contains("WARN"), "{out}");
        assert!(!out.contains("ERR"), "{out}");
        assert!(
            out.contains("SET: ") && out.contains("GET: "),
            "redis-benchmark -P {pipeline} output:\n{out}"
        );
    }
    let _ = &cluster.dir;
}

fn redis_cli_stdin(port: u16, input: &str) -> String {
    let mut child = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli (apt-get install redis-tools)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write to redis-cli");
    let out = child.wait_with_output().expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The primary's `kmb_op` (its highest op number) from `INFO replication`.
fn op_number(port: u16) -> u64 {
    let info = redis_cli(port, &["INFO", "replication"]);
    info.lines()
        .find_map(|l| l.strip_prefix("kmb_op:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no kmb_op in {info}"))
}

/// Send `commands` in one write and read one reply per command.
fn pipeline(port: u16, commands: &[Vec<&[u8]>]) -> Vec<Value> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut bytes = Vec::new();
    for c in commands {
        Value::Array(c.iter().map(|a| Value::Bulk(a.to_vec())).collect()).encode_into(&mut bytes);
    }
    stream.write_all(&bytes).expect("write");
    let mut buf = Vec::new();
    let mut replies = Vec::new();
    let mut chunk = [0u8; 65536];
    while replies.len() < commands.len() {
        match resp::parse_value(&buf).expect("valid RESP") {
            Some((value, used)) => {
                replies.push(value);
                buf.drain(..used);
            }
            None => {
                let n = stream.read(&mut chunk).expect("read");
                assert!(n > 0, "connection closed after {} replies", replies.len());
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
    replies
}

/// Goal: key-value commands a client pipelines on one connection go through the log as a few
/// batches, not one op each; every reply comes back in order and shaped as its command; a
/// command too large for one request gets its own error without disturbing the others; a
/// connection command in between is answered in its place.
#[test]
fn pipelined_commands_are_batched_in_order() {
    let cluster = Cluster::start(3, &[]);
    let primary = cluster.primary(&[]);
    redis_cli(primary, &["SET", "warm", "up"]);
    let before = op_number(primary);
    let keys: Vec<String> = (0..64).map(|i| format!("pk:{i}")).collect();
    let values: Vec<String> = (0..64).map(|i| i.to_string()).collect();
    let big = vec![b'x'; 70_000];
    let mut commands: Vec<Vec<&[u8]>> = (0..64)
        .map(|i| vec![&b"SET"[..], keys[i].as_bytes(), values[i].as_bytes()])
        .collect();
    commands.extend([
        vec![&b"EXISTS"[..], b"pk:0"],
        vec![&b"SET"[..], b"pk:big", &big],
        vec![&b"INCR"[..], b"pk:5"],
        vec![&b"PING"[..]],
        vec![&b"INCRBY"[..], b"pk:1", b"x"],
        vec![&b"STRLEN"[..], b"pk:63"],
        vec![&b"GET"[..], b"pk:big"],
    ]);
    let replies = pipeline(primary, &commands);
    assert!(
        replies[..64].iter().all(|r| *r == Value::ok()),
        "{replies:?}"
    );
    assert!(
        matches!(&replies[65], Value::Error(e) if e.starts_with("ERR value too large")),
        "{:?}",
        replies[65]
    );
    assert_eq!(
        [&replies[64..65], &replies[66..]].concat(),
        [
            Value::Integer(1),
            Value::Integer(6),
            Value::Simple("PONG".into()),
            Value::err("value is not an integer or out of range"),
            Value::Integer(2),
            Value::Null,
        ],
        "{:?}",
        &replies[64..]
    );
    // Registration and a handful of batches, where one op per command would be 70.
    let ops = op_number(primary) - before;
    assert!(ops <= 12, "{ops} ops for 70 pipelined commands");
    let _ = &cluster.dir;
}

/// Goal: redis-rs with its defaults (RESP2, sync) works: SET/GET, SET with NX and PX, TTL,
/// multi-key commands, a pipeline, an atomic pipeline (MULTI/EXEC), a WATCH transaction, and
/// a backup's redirect followed to the primary it names.
#[test]
fn redis_rs_with_defaults() {
    use redis::{Commands, ExistenceCheck, SetExpiry, SetOptions};
    let cluster = Cluster::start(3, &[]);
    let primary = cluster.primary(&[]);
    let backup = cluster.backup(primary);
    let client = redis::Client::open(format!("redis://127.0.0.1:{primary}/")).expect("client");
    let mut con = client.get_connection().expect("connect");
    let () = con.set("rs:k", "v").expect("SET");
    let v: String = con.get("rs:k").expect("GET");
    assert_eq!(v, "v");

    let lock = SetOptions::default()
        .conditional_set(ExistenceCheck::NX)
        .with_expiration(SetExpiry::PX(30_000));
    let first: Option<String> = con
        .set_options("rs:lock", "me", lock.clone())
        .expect("SET NX PX");
    assert_eq!(first.as_deref(), Some("OK"));
    let second: Option<String> = con.set_options("rs:lock", "me", lock).expect("SET NX PX");
    assert_eq!(second, None);
    let ttl: i64 = con.ttl("rs:lock").expect("TTL");
    assert!((29..=30).contains(&ttl), "{ttl}");
    let pttl: i64 = con.pttl("rs:lock").expect("PTTL");
    assert!((29_000..=30_000).contains(&pttl), "{pttl}");
    let set: bool = con.expire("rs:lock", 100).expect("EXPIRE");
    assert!(set);
    let ttl: i64 = con.ttl("rs:lock").expect("TTL");
    assert!((99..=100).contains(&ttl), "{ttl}");

    let () = con.mset(&[("rs:a", "1"), ("rs:b", "2")]).expect("MSET");
    let got: Vec<Option<String>> = con.mget(&["rs:a", "rs:b", "rs:none"]).expect("MGET");
    assert_eq!(got, [Some("1".into()), Some("2".into()), None]);
    let deleted: i64 = con.del(&["rs:a", "rs:b", "rs:none"]).expect("DEL");
    assert_eq!(deleted, 2);

    let mut pipe = redis::pipe();
    for _ in 0..100 {
        pipe.incr("rs:pipe", 1);
    }
    let counts: Vec<i64> = pipe.query(&mut con).expect("pipeline");
    assert_eq!(counts, (1..=100).collect::<Vec<_>>());

    let (n, m, text): (i64, i64, String) = redis::pipe()
        .atomic()
        .incr("rs:n", 1)
        .incr("rs:n", 2)
        .get("rs:k")
        .query(&mut con)
        .expect("MULTI/EXEC");
    assert_eq!((n, m, text.as_str()), (1, 3, "v"));

    // WATCH: another connection's change makes EXEC answer null (no transaction applied).
    let mut other = client.get_connection().expect("connect");
    let () = con.set("rs:w", "0").expect("SET");
    redis::cmd("WATCH")
        .arg("rs:w")
        .exec(&mut con)
        .expect("WATCH");
    let () = other.set("rs:w", "changed").expect("SET");
    let aborted: Option<(String,)> = redis::pipe()
        .atomic()
        .set("rs:w", "mine")
        .query(&mut con)
        .expect("EXEC");
    assert_eq!(aborted, None);
    let v: String = con.get("rs:w").expect("GET");
    assert_eq!(v, "changed");
    // redis::transaction (WATCH, read, MULTI/EXEC, retried until applied).
    let (w,): (String,) = redis::transaction(&mut con, &["rs:w"], |con, pipe| {
        let current: String = con.get("rs:w")?;
        pipe.set("rs:w", format!("{current}+1"))
            .ignore()
            .get("rs:w")
            .query(con)
    })
    .expect("transaction");
    assert_eq!(w, "changed+1");

    // A backup redirects: `REDIRECT <replica> <host:port>`; follow it.
    let backup_client =
        redis::Client::open(format!("redis://127.0.0.1:{backup}/")).expect("client");
    let mut b = backup_client.get_connection().expect("connect");
    let err = b.get::<_, String>("rs:k").expect_err("a backup redirects");
    assert_eq!(err.code(), Some("REDIRECT"), "{err}");
    let address = err
        .detail()
        .and_then(|d| d.split_whitespace().nth(1))
        .expect("redirect address")
        .to_string();
    let followed = redis::Client::open(format!("redis://{address}/")).expect("client");
    let v: String = followed
        .get_connection()
        .expect("connect")
        .get("rs:k")
        .expect("GET at the primary");
    assert_eq!(v, "v");
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
