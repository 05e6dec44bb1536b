//! Production-mode tests of the hardening of issue 13, on real `kmb-node` processes: the data
//! file lock, rate-limited peer warnings, the offline verifier, authenticated peers and
//! bounded resources.
#![cfg(not(madsim))]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sim_runtime::time::Instant;

mod real;
use real::free_ports;

const BIN: &str = env!("CARGO_BIN_EXE_kmb-node");

fn list(ports: &[u16]) -> String {
    ports
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Format `data` for cluster 42; replicas after the first take the key of `r0.kmb` beside it.
fn format(data: &Path, replica: usize, count: usize) {
    let mut command = Command::new(BIN);
    command
        .args(["format", "--cluster", "42"])
        .args(["--replica", &replica.to_string()])
        .args(["--replica-count", &count.to_string()]);
    if replica > 0 {
        let dir = data.parent().expect("a directory");
        command.arg("--key-from").arg(dir.join("r0.kmb.key"));
    }
    let out = command.arg(data).output().expect("run kmb-node format");
    assert!(
        out.status.success(),
        "format: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `kmb-node start`, killed on drop.
struct Node {
    child: Child,
    log: PathBuf,
}

impl Node {
    fn start(data: &Path, peers: &[u16], clients: &[u16], log: PathBuf, extra: &[&str]) -> Node {
        // Like a default Linux service: 1,024 file descriptors.
        Node::start_with(data, peers, clients, log, extra, "ulimit -n 1024")
    }

    /// Start with `ulimit` (a shell command setting the open-file limits) run first.
    fn start_with(
        data: &Path,
        peers: &[u16],
        clients: &[u16],
        log: PathBuf,
        extra: &[&str],
        ulimit: &str,
    ) -> Node {
        let file = std::fs::File::create(&log).expect("log file");
        let script = format!("{ulimit} && exec \"$0\" \"$@\"");
        let child = Command::new("sh")
            .args(["-c", &script, BIN])
            .arg("start")
            .args(["--addresses", &list(peers)])
            .args(["--client-addresses", &list(clients)])
            .args(extra)
            .arg(data)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn kmb-node start");
        Node { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait up to `limit` for the process to exit; its status if it did.
    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Send one RESP command on a fresh connection; the reply's first line (empty on failure).
fn resp(port: u16, command: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(command.as_bytes()).is_err() {
        return String::new();
    }
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).trim_end().to_string()
}

/// Wait until the node on client port `port` answers `GET probe` itself (it is the primary).
fn wait_primary(port: u16) {
    for _ in 0..300 {
        let reply = resp(port, "GET probe\r\n");
        if reply == "$-1" || reply.starts_with('$') {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the node on client port {port} never served");
}

/// Goal: a second `kmb-node start` on a data file that a running node holds fails at once
/// with one clear line (before reading or repairing anything), and the first keeps serving.
#[test]
fn second_start_on_the_same_data_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("r0.kmb");
    format(&data, 0, 1);
    let ports = free_ports(4);
    let _first = Node::start(
        &data,
        &ports[0..1],
        &ports[1..2],
        dir.path().join("a.log"),
        &[],
    );
    wait_primary(ports[1]);
    let mut second = Node::start(
        &data,
        &ports[2..3],
        &ports[3..4],
        dir.path().join("b.log"),
        &[],
    );
    let status = second
        .wait_exit(Duration::from_secs(10))
        .expect("the second start must exit, not run on the same data file");
    assert!(!status.success());
    let log = second.log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains("locked") && errors[0].contains("another kmb-node"),
        "{log}"
    );
    assert_eq!(resp(ports[1], "SET k v\r\n"), "+OK");
}

/// Send a framed payload on a new connection to `port`, then wait for the node to close it.
fn send_frames(port: u16, payloads: &[Vec<u8>]) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    for payload in payloads {
        let _ = s.write_all(&sim_runtime::net::encode_frame(payload));
    }
    let mut buf = [0u8; 64];
    let _ = s.read(&mut buf);
}

/// The handshake kmb used before issue 13: cluster id (u64 LE) and replica index.
fn old_handshake(cluster: u64, replica: u8) -> Vec<u8> {
    let mut hello = cluster.to_le_bytes().to_vec();
    hello.push(replica);
    hello
}

/// Goal: a node of another cluster retrying in a loop gets one WARN line per minute, not one
/// per attempt.
#[test]
fn repeated_peer_warnings_are_rate_limited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("r0.kmb");
    format(&data, 0, 1);
    let ports = free_ports(2);
    let node = Node::start(
        &data,
        &ports[0..1],
        &ports[1..2],
        dir.path().join("a.log"),
        &[],
    );
    wait_primary(ports[1]);
    for _ in 0..50 {
        send_frames(ports[0], &[old_handshake(7, 0)]);
    }
    std::thread::sleep(Duration::from_millis(300));
    let log = node.log();
    let warnings = log.lines().filter(|l| l.contains("peer handshake")).count();
    assert_eq!(warnings, 1, "{log}");
}

fn run(args: &[&std::ffi::OsStr]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run kmb-node");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn verify(data: &Path) -> (bool, String, String) {
    run(&["verify".as_ref(), data.as_os_str()])
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
}

/// Goal: `kmb-node verify` passes the frozen valid and torn fixtures (a torn in-flight write
/// is a crash artefact, noted), fails the rotten and misdirected ones with one clear line,
/// and never writes to the file it checks; `inspect` prints every slot.
#[test]
fn verify_fixtures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (kind, intact, says) in [
        ("valid", true, "hash chain intact"),
        ("torn", true, "note: op 4 torn"),
        (
            "rotten",
            false,
            "unreadable (rotten, misdirected over or lost): 2",
        ),
        ("misdirected", false, "misdirected write"),
    ] {
        let data = dir.path().join(format!("{kind}.kmb"));
        std::fs::copy(fixtures.join(format!("{kind}.kmb")), &data).expect("copy fixture");
        let (ok, out, err) = verify(&data);
        assert_eq!(ok, intact, "{kind}: {out}{err}");
        assert!(out.contains(says), "{kind}: {out}");
        if intact {
            assert!(err.is_empty(), "{kind}: {err}");
        } else {
            assert_eq!(err.lines().count(), 1, "{kind}: {err}");
            assert!(err.contains("is damaged"), "{kind}: {err}");
        }
        let (_, out, _) = run(&["inspect".as_ref(), data.as_os_str()]);
        assert!(
            out.contains("superblock copy 3:") && out.contains("slot"),
            "{out}"
        );
        assert!(
            std::fs::read(&data).expect("read")
                == std::fs::read(fixtures.join(format!("{kind}.kmb"))).expect("read"),
            "{kind}: verify must not write"
        );
    }
}

/// Goal: on a file a real node wrote, `verify` refuses while the node runs (the lock), passes
/// once it is stopped, and catches a flipped byte in a prepare and in a superblock copy.
#[test]
fn verify_catches_a_flipped_byte_in_a_real_data_file() {
    use kmb_node::storage::format::Layout;
    use kmb_node::storage::StorageConfig;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("r0.kmb");
    let out = Command::new(BIN)
        .args([
            "format",
            "--cluster",
            "42",
            "--replica",
            "0",
            "--replica-count",
            "1",
        ])
        .args(["--geometry", "small"])
        .arg(&data)
        .output()
        .expect("format");
    assert!(out.status.success());
    let ports = free_ports(2);
    let mut node = Node::start(
        &data,
        &ports[0..1],
        &ports[1..2],
        dir.path().join("a.log"),
        &[],
    );
    wait_primary(ports[1]);
    // wait_primary's connection registered and read (ops 1, 2); one connection for the SETs:
    // its registration (op 3), then ops 4..=13 — all below the first checkpoint (op 16), so
    // the WAL still holds op 3.
    let mut c = TcpStream::connect(("127.0.0.1", ports[1])).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for i in 0..10 {
        c.write_all(format!("SET key{i} value{i}\r\n").as_bytes())
            .expect("send");
        let mut buf = [0u8; 16];
        let n = c.read(&mut buf).unwrap_or(0);
        assert_eq!(&buf[..n], b"+OK\r\n");
    }
    let (ok, _, err) = verify(&data);
    assert!(!ok && err.contains("locked"), "{err}");
    let _ = node.child.kill();
    let _ = node.child.wait();

    let (ok, out, err) = verify(&data);
    assert!(ok, "{out}{err}");
    assert!(out.contains("ok:"), "{out}");

    let layout = Layout::new(StorageConfig::SIMULATION);
    let op3 = layout.prepare_offset(layout.slot_of(3));
    let damaged = dir.path().join("prepare.kmb");
    std::fs::copy(&data, &damaged).expect("copy");
    flip_byte(&damaged, op3 + 40);
    let (ok, _, err) = verify(&damaged);
    assert!(!ok, "a flipped prepare byte must fail verify");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is damaged") && err.contains(": 3"), "{err}");

    let damaged = dir.path().join("superblock.kmb");
    std::fs::copy(&data, &damaged).expect("copy");
    flip_byte(&damaged, Layout::superblock_offset(1) + 50);
    let (ok, _, err) = verify(&damaged);
    assert!(!ok, "a flipped superblock byte must fail verify");
    assert!(err.contains("superblock copy 1 is corrupt"), "{err}");
}

/// Three real replicas on fresh ports, formatted for cluster 42.
struct Trio {
    dir: tempfile::TempDir,
    peers: Vec<u16>,
    clients: Vec<u16>,
    nodes: Vec<Node>,
}

impl Trio {
    fn start(extra: &[&str]) -> Trio {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = free_ports(6);
        for i in 0..3 {
            format(&dir.path().join(format!("r{i}.kmb")), i, 3);
        }
        let mut trio = Trio {
            dir,
            peers: ports[..3].to_vec(),
            clients: ports[3..].to_vec(),
            nodes: Vec::new(),
        };
        for i in 0..3 {
            let node = Node::start(
                &trio.dir.path().join(format!("r{i}.kmb")),
                &trio.peers,
                &trio.clients,
                trio.dir.path().join(format!("r{i}.log")),
                extra,
            );
            trio.nodes.push(node);
        }
        trio
    }

    /// The replica that answers `GET probe` itself, if any answers within `limit`.
    fn primary(&self, limit: Duration) -> Option<usize> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            for (i, &port) in self.clients.iter().enumerate() {
                if resp(port, "GET probe\r\n").starts_with('$') {
                    return Some(i);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// Goal: anyone who can reach a peer port but does not hold the cluster key cannot move the
/// cluster. Before issue 13 the handshake was a cluster id and a replica index, and one forged
/// `StartViewChange` for view 1000 forced a view change (the primary moved to 1000 mod 3 = 1).
#[test]
fn forged_peer_handshake_cannot_force_a_view_change() {
    use kmb_node::core::{Body, Message};
    let trio = Trio::start(&[]);
    assert_eq!(
        trio.primary(Duration::from_secs(30)),
        Some(0),
        "view 0: primary 0"
    );
    for (target, claimed) in [(0usize, 1u8), (1, 2), (2, 1)] {
        let forged = Message {
            cluster: 42,
            replica: claimed,
            body: Body::StartViewChange { view: 1000 },
        };
        send_frames(
            trio.peers[target],
            &[old_handshake(42, claimed), forged.encode()],
        );
    }
    // A real replica 1 of cluster 42 formatted with another key keeps trying to join.
    let other = tempfile::tempdir().expect("tempdir");
    let impostor_data = other.path().join("r1.kmb");
    let out = Command::new(BIN)
        .args(["format", "--cluster", "42", "--replica", "1"])
        .args(["--replica-count", "3"])
        .arg(&impostor_data)
        .output()
        .expect("format");
    assert!(out.status.success());
    let own = free_ports(2);
    let impostor = Node::start(
        &impostor_data,
        &[trio.peers[0], own[0], trio.peers[2]],
        &[trio.clients[0], own[1], trio.clients[2]],
        other.path().join("r1.log"),
        &[],
    );
    // Give a view change every chance to happen, then check the primary did not move.
    std::thread::sleep(Duration::from_secs(3));
    for _ in 0..10 {
        assert_eq!(
            trio.primary(Duration::from_secs(10)),
            Some(0),
            "the view moved"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(resp(trio.clients[0], "SET k v\r\n"), "+OK");
    // Refusals are logged, once per peer address and reason per minute.
    let log = trio.nodes[0].log();
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("peer handshake malformed"), 1, "{log}");
    assert_eq!(count("closed the connection at the challenge"), 1, "{log}");
    let log = impostor.log();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("does not hold this cluster's key"))
            .count(),
        1,
        "{log}"
    );
}

/// One RESP command from its arguments (binary-safe; any size).
fn command(args: &[&[u8]]) -> Vec<u8> {
    kmb_node::resp::Value::Array(
        args.iter()
            .map(|a| kmb_node::resp::Value::Bulk(a.to_vec()))
            .collect(),
    )
    .encode()
}

/// Goal (issue 11): nothing a client sends can stop a replica. Before, one
/// `SET big <100 KB>` stopped the primary (`entry 2 body of 100013 bytes exceeds the slot
/// (65408 max)`) and its retry the next one; a GET with a 70 KB key did the same. Now every
/// replica refuses an oversized request at admission, naming the limit the data file's
/// geometry implies, and the largest value that fits is served.
#[test]
fn an_oversized_request_is_refused_and_stops_no_replica() {
    let mut trio = Trio::start(&[]);
    let primary = trio.primary(Duration::from_secs(30)).expect("a primary");
    let logs = |trio: &Trio| {
        trio.nodes
            .iter()
            .map(|n| n.log())
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let send = |port: u16, bytes: &[u8]| {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return String::from("(connection refused)");
        };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(bytes).expect("send");
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).trim_end().to_string()
    };
    // Every replica listens (a backup may still be starting when the primary serves).
    for &port in &trio.clients {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "port {port} never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let big = vec![b'x'; 100_000];
    let mut limit = None;
    for _round in 0..2 {
        for &port in &trio.clients {
            let reply = send(port, &command(&[b"SET", b"big", &big]));
            let max = reply
                .strip_prefix("-ERR value too large (max ")
                .and_then(|r| r.strip_suffix(" bytes)"))
                .and_then(|n| n.parse::<usize>().ok());
            assert!(max.is_some(), "port {port}: {reply}\n{}", logs(&trio));
            limit = max;
            let key = vec![b'k'; 70_000];
            let reply = send(port, &command(&[b"GET", &key]));
            assert!(reply.starts_with("-ERR request too large"), "{reply}");
        }
    }
    for (i, node) in trio.nodes.iter_mut().enumerate() {
        assert!(
            node.child.try_wait().expect("try_wait").is_none(),
            "replica {i} stopped: {}",
            node.log()
        );
    }
    let limit = limit.expect("a limit");
    assert!(
        limit > 60_000 && limit < 65_536,
        "production geometry: {limit}"
    );
    let port = trio.clients[primary];
    let fits = vec![b'y'; limit];
    assert_eq!(send(port, &command(&[b"SET", b"big", &fits])), "+OK");
    let reply = send(port, &command(&[b"STRLEN", b"big"]));
    assert_eq!(reply, format!(":{limit}"));
    let over = vec![b'y'; limit + 1];
    assert!(send(port, &command(&[b"SET", b"big", &over])).starts_with("-ERR value too large"));
    assert_eq!(resp(port, "SET k v\r\n"), "+OK");
}

/// Goal (issue 11): exactly once survives client-table eviction. Before, `KMB.REQ 42 1
/// INCRBY eo 1` answered `[op, 1]`, and after 1,100 other connections each did one GET
/// (`clients_max` = 1,024) the same request answered `[op', 2]`: applied twice. Now a session
/// registers first, and the retry after its eviction is answered `session evicted` without
/// executing; the counter stays 1.
#[test]
fn a_retry_after_client_table_eviction_is_not_executed_again() {
    let trio = Trio::start(&[]);
    let primary = trio.primary(Duration::from_secs(30)).expect("a primary");
    let port = trio.clients[primary];
    let mut session = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    session
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut ask = |command: &[&[u8]]| {
        session.write_all(&self::command(command)).expect("send");
        let mut buf = [0u8; 512];
        let n = session.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let never = ask(&[b"KMB.REQ", b"42", b"1", b"INCRBY", b"eo", b"1"]);
    assert!(never.contains("session evicted"), "unregistered: {never}");
    let registered = ask(&[b"KMB.REQ", b"42", b"2", b"REGISTER"]);
    assert!(registered.ends_with("+OK\r\n"), "{registered}");
    // `*2\r\n:<op>\r\n+OK\r\n`: the session numbers its requests above the registration's op.
    let op: u64 = registered
        .split("\r\n")
        .nth(1)
        .and_then(|l| l.strip_prefix(':'))
        .and_then(|n| n.parse().ok())
        .expect("the registration's op");
    let n = (op + 1).to_string();
    let first = ask(&[b"KMB.REQ", b"42", n.as_bytes(), b"INCRBY", b"eo", b"1"]);
    assert!(first.ends_with(":1\r\n"), "{first}");
    for i in 0..1100 {
        let reply = resp(port, &format!("GET other{i}\r\n"));
        assert_eq!(reply, "$-1", "connection {i}");
    }
    let retry = ask(&[b"KMB.REQ", b"42", n.as_bytes(), b"INCRBY", b"eo", b"1"]);
    assert!(
        retry.contains("session evicted"),
        "the retry after eviction: {retry}"
    );
    assert_eq!(resp(port, "GET eo\r\n"), "$1\r\n1");
}

/// Goal: 1,100 idle connections to the primary's peer port (more than its 1,024 file
/// descriptors) do not stop client service: inbound peer connections are capped in total and
/// per address, and unauthenticated ones are closed after the handshake timeout. Before issue
/// 13 every connection was held forever and the primary stopped accepting clients.
#[test]
fn peer_port_flood_does_not_stop_client_service() {
    let trio = Trio::start(&[]);
    assert_eq!(trio.primary(Duration::from_secs(30)), Some(0));
    let mut flood = Vec::new();
    for _ in 0..1100 {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], trio.peers[0]));
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            flood.push(s);
        }
    }
    assert!(
        flood.len() > 1024,
        "only {} connections opened",
        flood.len()
    );
    // Service goes on while the flood is held open.
    let mut served = 0;
    for i in 0..20 {
        if resp(trio.clients[0], &format!("SET flood{i} x\r\n")) == "+OK" {
            served += 1;
        }
    }
    assert_eq!(served, 20, "the primary stopped serving clients");
    let log = trio.nodes[0].log();
    assert!(log.contains("peer_connections_per_address_max"), "{log}");
    drop(flood);
}

/// Goal: the client limits hold: one connection over `--client-connections-max` is told
/// `-ERR max number of clients reached` and closed; an idle connection is closed after
/// `--client-idle-timeout-secs`; a command over `--client-buffer-max` is a protocol error.
#[test]
fn client_limits_refuse_with_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("r0.kmb");
    format(&data, 0, 1);
    let ports = free_ports(2);
    let _node = Node::start(
        &data,
        &ports[0..1],
        &ports[1..2],
        dir.path().join("a.log"),
        &[
            "--client-connections-max",
            "3",
            "--client-idle-timeout-secs",
            "2",
            "--client-buffer-max",
            "65536",
        ],
    );
    wait_primary(ports[1]);
    // The probes of wait_primary are closed; give the node a moment to notice.
    std::thread::sleep(Duration::from_millis(200));
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", ports[1])).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        resp(ports[1], "PING\r\n"),
        "-ERR max number of clients reached"
    );
    // Idle connections are closed by the node after the idle timeout.
    for mut s in held {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf).expect("closed, not timed out"), 0);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(resp(ports[1], "PING\r\n"), "+PONG");
    assert_eq!(
        resp(ports[1], "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n"),
        "-ERR Protocol error: command larger than the limit of 65536 bytes"
    );
}

/// Goal: a node cannot be started where it could run out of file descriptors (issue 13: a node
/// out of descriptors kept leading while refusing every client). With a hard open-file limit
/// below what the connection bounds need, `start` exits at once with one line saying what to
/// change; lowering the bounds under the limit starts it; with only the soft limit too low it
/// raises the soft limit itself and serves.
#[test]
fn start_refuses_an_open_file_limit_below_the_connection_bounds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("r0.kmb");
    format(&data, 0, 1);
    let ports = free_ports(2);
    // Defaults: 512 clients + 64 peers + 1 replica + 32 = 609 descriptors.
    let mut low = Node::start_with(
        &data,
        &ports[0..1],
        &ports[1..2],
        dir.path().join("low.log"),
        &[],
        "ulimit -n 256",
    );
    let status = low
        .wait_exit(Duration::from_secs(10))
        .expect("a start under a too-low hard limit must exit");
    assert!(!status.success());
    let log = low.log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains("open-file limit is 256") && errors[0].contains("609"),
        "{log}"
    );
    drop(low);

    let lowered = Node::start_with(
        &data,
        &ports[0..1],
        &ports[1..2],
        dir.path().join("lowered.log"),
        &["--client-connections-max", "100"],
        "ulimit -n 256",
    );
    if std::panic::catch_unwind(|| wait_primary(ports[1])).is_err() {
        panic!("lowered bounds: {}", lowered.log());
    }
    assert_eq!(resp(ports[1], "SET k v\r\n"), "+OK");
    drop(lowered);

    let soft = Node::start_with(
        &data,
        &ports[0..1],
        &ports[1..2],
        dir.path().join("soft.log"),
        &[],
        "ulimit -Sn 256 && ulimit -Hn 4096",
    );
    wait_primary(ports[1]);
    assert_eq!(resp(ports[1], "GET k\r\n"), "$1\r\nv");
    let limits =
        std::fs::read_to_string(format!("/proc/{}/limits", soft.child.id())).expect("/proc limits");
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    assert!(
        open_files.split_whitespace().nth(3) == Some("609"),
        "soft limit raised to what the bounds need: {open_files}"
    );
    assert!(soft.log().contains("raised the open-file soft limit"));
}
