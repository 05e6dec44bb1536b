//! The fuzz corpora as ordinary tests (no nightly needed): every file under `fuzz/corpus/<target>/`
//! and `fuzz/regressions/<target>/` goes through `kmb_node::fuzzing::<target>`, the same check
//! the `cargo fuzz` target runs.
//!
//! The seed corpora are generated here from the frozen storage fixtures and from real traffic
//! (every message type encoded by the project's encoders, commands as `redis-cli` sends them).
//! Regenerate (deliberately) with
//! `KMB_WRITE_FUZZ_CORPUS=1 cargo test -p kmb-node --test fuzz_corpus`.
#![cfg(not(madsim))]

use std::path::{Path, PathBuf};

use kmb_node::auth::{Challenge, ClusterKey, Hello, Response, Transcript, KEY_SIZE, NONCE_SIZE};
use kmb_node::core::message::{LogSummary, Vote};
use kmb_node::core::{snapshot, Body, ClientEntry, ClientTable, Message};
use kmb_node::entry::{Entry, EntryFields, Operation, HEADER_SIZE};
use kmb_node::fuzzing;
use kmb_node::kv::{KvState, Reply, Request};
use kmb_node::resp::Value;
use kmb_node::storage::format::{
    encode_checkpoint_header, CheckpointRef, Identity, Layout, StorageConfig, SUPERBLOCK_COPIES,
    SUPERBLOCK_SIZE,
};
use xxhash_rust::xxh3::xxh3_128;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.expect("dir entry").path()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// Goal: every corpus and regression input passes its target's check (no panic, every
/// round trip and invariant holds), and every target has a seed corpus.
#[test]
fn fuzz_corpus_replays() {
    if std::env::var("KMB_WRITE_FUZZ_CORPUS").is_ok() {
        write_corpus();
    }
    let mut failures = Vec::new();
    let mut count = 0;
    for kind in ["corpus", "regressions"] {
        for dir in files(&fuzz_dir().join(kind)) {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let check = fuzzing::target(&name)
                .unwrap_or_else(|| panic!("{}: no fuzz target {name}", dir.display()));
            for file in files(&dir) {
                let bytes = std::fs::read(&file).expect("read corpus file");
                count += 1;
                if std::panic::catch_unwind(|| check(&bytes)).is_err() {
                    failures.push(file.display().to_string());
                }
            }
        }
    }
    for (name, _) in fuzzing::TARGETS {
        let seeds = files(&fuzz_dir().join("corpus").join(name));
        assert!(!seeds.is_empty(), "fuzz target {name} has no seed corpus");
    }
    assert!(failures.is_empty(), "failing inputs: {failures:#?}");
    assert!(count > 0);
}

// ---------------------------------------------------------------------------------------------
// Seed generation

struct Corpus {
    target: &'static str,
    files: Vec<(String, Vec<u8>)>,
}

impl Corpus {
    fn new(target: &'static str) -> Corpus {
        Corpus {
            target,
            files: Vec::new(),
        }
    }

    fn add(&mut self, name: impl Into<String>, bytes: Vec<u8>) {
        if !self.files.iter().any(|(_, b)| *b == bytes) {
            self.files.push((name.into(), bytes));
        }
    }

    fn write(self) {
        let dir = fuzz_dir().join("corpus").join(self.target);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create corpus dir");
        for (name, bytes) in self.files {
            std::fs::write(dir.join(name), bytes).expect("write corpus file");
        }
    }
}

/// A command as `redis-cli` sends it: an array of bulk strings.
fn cli(command: &str) -> Vec<u8> {
    Value::Array(
        command
            .split(' ')
            .map(|a| Value::Bulk(a.as_bytes().to_vec()))
            .collect(),
    )
    .encode()
}

const COMMANDS: &[&str] = &[
    "SET greeting hello",
    "GET greeting",
    "DEL greeting",
    "INCR visits",
    "INCRBY visits 41",
    "DECRBY visits 2",
    "CAS greeting IFEQ hello bonjour",
    "CAS fresh IFABSENT new",
    "RANGE a z LIMIT 10",
    "RANGE a z",
    "PING",
    "ECHO hi",
    "COMMAND DOCS",
    "HELLO 2",
    "SELECT 0",
    "KMB.REQ 77 3 SET k v",
    "HELLO 3",
    "HELLO 3 AUTH default pw SETNAME app",
    "AUTH pw",
    "CLIENT SETNAME app",
    "CLIENT GETNAME",
    "CLIENT SETINFO LIB-NAME redis-py",
    "CLIENT INFO",
    "INFO",
    "INFO replication keyspace",
    "CONFIG GET save",
    "COMMAND COUNT",
    "ROLE",
    "WAIT 1 0",
    "TIME",
    "DBSIZE",
    "EXISTS greeting",
    "STRLEN greeting",
    "TYPE greeting",
    "SETNX greeting hi",
    "SET lock me NX",
    "MULTI",
    "EXEC",
    "DISCARD",
    "RESET",
    "SUBSCRIBE news",
    "QUIT",
];

fn session() -> String {
    COMMANDS[..COMMANDS.len() - 1].join("\n")
}

fn fixture(kind: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{kind}.kmb")))
        .expect("read fixture")
}

/// The fixtures' geometry (`tests/storage_real.rs`).
const FIXTURE: StorageConfig = StorageConfig {
    slot_count: 4,
    slot_size: 512,
};

fn entry(op: u64, parent: u128, body: Vec<u8>) -> Entry {
    Entry::new(
        EntryFields {
            cluster: 7,
            replica: 1,
            view: 3,
            op,
            commit: op - 1,
            parent,
            client: 99,
            request: op,
            operation: Operation::Request,
            timestamp: 0,
        },
        body,
    )
}

fn sample_state() -> (KvState, ClientTable) {
    let mut kv = KvState::new();
    for c in ["SET a 1", "SET b two", "INCRBY n 5"] {
        let args: Vec<&str> = c.split(' ').collect();
        let request = match args[..] {
            ["SET", k, v] => Request::Set {
                key: k.into(),
                value: v.into(),
            },
            [_, k, d] => Request::IncrBy {
                key: k.into(),
                delta: d.parse().unwrap(),
            },
            _ => unreachable!(),
        };
        kv.apply(&request, kmb_node::kv::ApplyContext::default());
    }
    let mut clients = ClientTable::new();
    clients.insert(
        5,
        ClientEntry {
            request: 2,
            op: 3,
            reply: Reply::Integer(5),
        },
        16,
    );
    clients.insert(
        9,
        ClientEntry {
            request: 1,
            op: 1,
            reply: Reply::Ok,
        },
        16,
    );
    (kv, clients)
}

fn messages() -> Vec<(&'static str, Body)> {
    let e1 = entry(1, 0xabc, Request::Get { key: "k".into() }.encode());
    let e2 = entry(2, e1.checksum(), b"".to_vec());
    let headers = vec![e1.header, e2.header];
    let log = LogSummary {
        op: 2,
        op_checksum: e2.checksum(),
        commit: 1,
        checkpoint_op: 0,
        headers: headers.clone(),
    };
    let (kv, clients) = sample_state();
    vec![
        (
            "prepare",
            Body::Prepare {
                view: 3,
                commit: 0,
                entry: e1.clone(),
            },
        ),
        (
            "prepare_ok",
            Body::PrepareOk {
                view: 3,
                op: 1,
                checksum: e1.checksum(),
            },
        ),
        (
            "commit",
            Body::Commit {
                view: 3,
                commit: 1,
                checkpoint_op: 0,
                round: 2,
            },
        ),
        ("commit_ack", Body::CommitAck { view: 4, round: 2 }),
        ("start_view_change", Body::StartViewChange { view: 4 }),
        (
            "do_view_change",
            Body::DoViewChange {
                view: 4,
                vote: Vote {
                    log_view: 3,
                    log: log.clone(),
                    bodies: vec![true, false],
                    held_max: 9,
                    never_written: vec![3, 5],
                },
            },
        ),
        (
            "start_view",
            Body::StartView {
                view: 4,
                log: log.clone(),
            },
        ),
        ("request_start_view", Body::RequestStartView { view: 4 }),
        ("recovery", Body::Recovery { nonce: 12345 }),
        (
            "recovery_response",
            Body::RecoveryResponse {
                view: 4,
                nonce: 12345,
                log,
            },
        ),
        (
            "request_prepare",
            Body::RequestPrepare {
                op: 2,
                checksum: e2.checksum(),
            },
        ),
        (
            "request_headers",
            Body::RequestHeaders {
                op_min: 1,
                op_max: 2,
            },
        ),
        ("headers", Body::Headers { headers }),
        (
            "request_state_transfer",
            Body::RequestStateTransfer { op_min: 1 },
        ),
        (
            "state_transfer",
            Body::StateTransfer {
                view: 4,
                checkpoint_op: 2,
                checkpoint_checksum: e2.checksum(),
                snapshot: snapshot::encode(&kv, &clients, 7),
            },
        ),
    ]
}

fn with_mode(mode: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![mode];
    out.extend_from_slice(bytes);
    out
}

fn write_corpus() {
    // RESP: commands as redis-cli sends them, a pipeline, inline commands; whole and chunked.
    let mut resp = Corpus::new("resp");
    for c in COMMANDS {
        resp.add(
            format!("cli-{}", c.replace(' ', "-")),
            with_mode(0, &cli(c)),
        );
    }
    let pipeline: Vec<u8> = COMMANDS.iter().flat_map(|c| cli(c)).collect();
    resp.add("pipeline-whole", with_mode(0, &pipeline));
    resp.add(
        "pipeline-chunks-1-7-3",
        [&[3u8, 0, 6, 2][..], &pipeline].concat(),
    );
    resp.add("pipeline-limited", [&[0x31u8, 15][..], &pipeline].concat());
    resp.add("inline", with_mode(0, b"PING hi\r\nSET k v\nGET k\r\n\r\n"));
    resp.add("reply-array", with_mode(0, b"*3\r\n:1\r\n$-1\r\n+OK\r\n"));
    resp.add(
        "reply-resp3",
        with_mode(
            0,
            b"%2\r\n$5\r\nproto\r\n:3\r\n$3\r\nset\r\n~2\r\n#t\r\n,1.5\r\n",
        ),
    );
    resp.add(
        "reply-verbatim",
        with_mode(0, b"=15\r\ntxt:# Server\r\nx\r\n_\r\n"),
    );
    resp.add(
        "reply-error",
        with_mode(0, b"-REDIRECT 1 127.0.0.1:6382\r\n"),
    );
    resp.write();

    let mut kv = Corpus::new("command_kv");
    for c in COMMANDS {
        kv.add(format!("cli-{}", c.replace(' ', "-")), cli(c));
    }
    kv.add("session", session().into_bytes());
    kv.add(
        "session-cli",
        session().lines().flat_map(cli).collect::<Vec<u8>>(),
    );
    kv.add("wrong-arity-and-types", b"SET k\nINCRBY k x\nINCR greeting\nCAS k MAYBE a b\nRANGE a z LIMIT -1\nKMB.REQ 0 1 GET k\n".to_vec());
    kv.write();

    // Peer messages and frames carrying them; handshake frames.
    let mut message = Corpus::new("message");
    let mut frame = Corpus::new("frame");
    for (name, body) in messages() {
        let bytes = Message::new(7, 1, body).encode();
        if bytes.len() < 4000 {
            frame.add(
                name,
                with_mode(0xfe, &sim_runtime::net::encode_frame(&bytes)),
            );
        }
        message.add(name, bytes);
    }
    message.write();
    let stream: Vec<u8> = [&b"a"[..], b"", b"kmb"]
        .iter()
        .flat_map(|p| sim_runtime::net::encode_frame(p))
        .collect();
    frame.add("three-frames", with_mode(0x10, &stream));
    frame.add("three-frames-fixed", with_mode(0x11, &stream));
    frame.write();

    let mut auth = Corpus::new("auth");
    let key = ClusterKey::from_bytes([7; KEY_SIZE]);
    let hello = Hello {
        cluster: 1,
        from: 1,
        to: 0,
        nonce: [1; NONCE_SIZE],
    };
    let t = Transcript::new(&hello, [2; NONCE_SIZE]);
    auth.add("hello", hello.encode());
    auth.add(
        "challenge",
        Challenge {
            nonce: t.acceptor_nonce,
            proof: t.acceptor_proof(&key),
        }
        .encode(),
    );
    auth.add(
        "response",
        Response {
            proof: t.connector_proof(&key),
        }
        .encode(),
    );
    auth.add("key-file", key.to_hex().into_bytes());
    let mut sealed = Message::new(1, 1, Body::StartViewChange { view: 2 }).encode();
    t.session(&key).seal(&mut sealed);
    auth.add("sealed-message", sealed);
    auth.write();

    // Storage: the frozen fixtures cut into superblock copies, redundant headers and prepares;
    // whole fixtures for recovery.
    let layout = Layout::new(FIXTURE);
    let mut superblock = Corpus::new("superblock");
    let mut wal = Corpus::new("wal");
    let mut recovery = Corpus::new("recovery");
    for kind in ["valid", "torn", "rotten", "misdirected"] {
        let file = fixture(kind);
        for copy in 0..SUPERBLOCK_COPIES {
            let at = Layout::superblock_offset(copy) as usize;
            superblock.add(
                format!("{kind}-copy{copy}"),
                with_mode((copy as u8) << 1, &file[at..at + SUPERBLOCK_SIZE]),
            );
        }
        for slot in 0..FIXTURE.slot_count as usize {
            let at = layout.header_offset(slot) as usize;
            wal.add(
                format!("{kind}-header{slot}"),
                with_mode(0, &file[at..at + HEADER_SIZE]),
            );
            let at = layout.prepare_offset(slot) as usize;
            wal.add(
                format!("{kind}-prepare{slot}"),
                with_mode(0, &file[at..at + FIXTURE.slot_size as usize]),
            );
        }
        recovery.add(kind, with_mode(0, &file));
        recovery.add(format!("{kind}-fixed"), with_mode(7, &file));
    }
    superblock.add("fixed", with_mode(1, &fixture("valid")[..SUPERBLOCK_SIZE]));
    wal.add(
        "request-body",
        Request::Cas {
            key: "k".into(),
            expected: Some("a".into()),
            new: "b".into(),
        }
        .encode(),
    );
    superblock.write();
    wal.write();
    recovery.write();

    // Checkpoints and snapshots.
    let (state, clients) = sample_state();
    let blob = snapshot::encode(&state, &clients, 7);
    let identity = Identity {
        cluster: 7,
        replica: 1,
        replica_count: 3,
    };
    let reference = CheckpointRef {
        op: 3,
        entry_checksum: 0xfeed,
        offset: 1,
        size: blob.len() as u64,
        checksum: xxh3_128(&blob),
    };
    let fields = |mode: u8| {
        let mut b = vec![mode];
        b.extend_from_slice(&identity.cluster.to_le_bytes());
        b.push(identity.replica);
        b.extend_from_slice(&reference.op.to_le_bytes());
        b.extend_from_slice(&reference.entry_checksum.to_le_bytes());
        b.extend_from_slice(&reference.size.to_le_bytes());
        b.extend_from_slice(&reference.checksum.to_le_bytes());
        b
    };
    let mut checkpoint = Corpus::new("checkpoint");
    let header = encode_checkpoint_header(&identity, &reference);
    checkpoint.add(
        "stored",
        [fields(0), header.to_vec(), blob.clone()].concat(),
    );
    checkpoint.add("header-made", [fields(1), blob.clone()].concat());
    checkpoint.add("all-made", [fields(7), blob.clone()].concat());
    checkpoint.add(
        "empty-state",
        [
            fields(7),
            snapshot::encode(&KvState::new(), &ClientTable::new(), 0),
        ]
        .concat(),
    );
    checkpoint.write();

    let mut snapshots = Corpus::new("snapshot");
    snapshots.add("checkpoint", blob);
    snapshots.add("empty", snapshot::empty());
    snapshots.add("kv", state.encode_snapshot());
    for (name, reply) in [
        ("reply-ok", Reply::Ok),
        ("reply-value", Reply::Value(Some(b"v".to_vec()))),
        ("reply-null", Reply::Value(None)),
        ("reply-integer", Reply::Integer(-3)),
        ("reply-bool", Reply::Bool(true)),
        (
            "reply-entries",
            Reply::Entries(vec![(b"a".to_vec(), b"1".to_vec())]),
        ),
        (
            "reply-error",
            Reply::Error("value is not an integer".into()),
        ),
    ] {
        snapshots.add(name, reply.encode());
    }
    snapshots.write();
}
