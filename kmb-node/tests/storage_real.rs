//! Production-mode storage tests on real files: round trips, clear errors for bad files,
//! on-disk corruption planted by hand, frozen fixture files, and kill -9 of a child process
//! in the middle of appending.
#![cfg(not(madsim))]

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;

use common::{chain, entry, CLUSTER, ID, SMALL};
use kmb_node::entry::Entry;
use kmb_node::storage::format::Layout;
use kmb_node::storage::{CheckpointState, Recovery, Storage, StorageConfig, StorageError};

fn ops(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.header.op).collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn write_log(path: &Path, entries: &[Entry], sync: bool) -> Storage {
    Storage::format(path, ID, SMALL).await.expect("format");
    let (mut s, _) = Storage::open(path).await.expect("open");
    for e in entries {
        s.append(e).await.expect("append");
    }
    if sync {
        s.sync().await.expect("sync");
    }
    s
}

fn patch(path: &Path, offset: u64, f: impl FnOnce(&mut Vec<u8>), len: usize) {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut buf = vec![0; len];
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.read_exact(&mut buf).unwrap();
    f(&mut buf);
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(&buf).unwrap();
}

/// Goal: appends, group-committed syncs, superblock updates and checkpoints survive a reopen.
#[test]
fn storage_real_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r1.kmb");
    rt().block_on(async {
        let entries = chain(12, 300);
        let mut s = write_log(&path, &entries[..8], true).await;
        assert!(matches!(
            s.append(&entries[8]).await,
            Err(StorageError::WalFull { .. })
        ));
        s.checkpoint(6, entries[5].checksum(), b"state at 6")
            .await
            .unwrap();
        for e in &entries[8..] {
            s.append(e).await.unwrap();
        }
        assert_eq!(s.sync().await.unwrap(), 12);
        s.write_superblock(3, 2).await.unwrap();
        assert_eq!(s.read_entry(10).await.unwrap(), Some(entries[9].clone()));
        assert_eq!(s.read_entry(3).await.unwrap(), None);
        drop(s);
        let (s, r) = Storage::open(&path).await.unwrap();
        assert_eq!(ops(&r.log), vec![7, 8, 9, 10, 11, 12]);
        assert_eq!(r.log, entries[6..].to_vec());
        assert_eq!(
            r.checkpoint,
            CheckpointState::Loaded(b"state at 6".to_vec())
        );
        assert_eq!((r.superblock.view, r.superblock.log_view), (3, 2));
        assert!(r.faulty.is_empty() && r.torn.is_empty());
        assert_eq!(s.identity(), ID);
    });
}

/// Goal: a missing, empty, foreign or fully corrupt file is a clear error, never a panic.
#[test]
fn storage_real_bad_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let missing = dir.path().join("missing.kmb");
        assert!(matches!(
            Storage::open(&missing).await,
            Err(StorageError::NotFormatted(_))
        ));
        let empty = dir.path().join("empty.kmb");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(
            Storage::open(&empty).await,
            Err(StorageError::NotFormatted(_))
        ));
        let zeros = dir.path().join("zeros.kmb");
        std::fs::write(&zeros, vec![0u8; 64 << 10]).unwrap();
        assert!(matches!(
            Storage::open(&zeros).await,
            Err(StorageError::NotFormatted(_))
        ));
        let junk = dir.path().join("junk.kmb");
        std::fs::write(&junk, vec![0xa5u8; 64 << 10]).unwrap();
        let err = Storage::open(&junk).await.unwrap_err();
        assert!(matches!(err, StorageError::NoValidSuperblock(_)), "{err}");
        // Every superblock copy rotten.
        let path = dir.path().join("rotten.kmb");
        drop(write_log(&path, &chain(3, 10), true).await);
        for copy in 0..4 {
            patch(
                &path,
                Layout::superblock_offset(copy) + 50,
                |b| b[0] ^= 1,
                1,
            );
        }
        assert!(matches!(
            Storage::open(&path).await,
            Err(StorageError::NoValidSuperblock(_))
        ));
        // A file cut short inside the WAL.
        let short = dir.path().join("short.kmb");
        drop(write_log(&short, &chain(3, 10), true).await);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&short)
            .unwrap()
            .set_len(20_000)
            .unwrap();
        assert!(matches!(
            Storage::open(&short).await,
            Err(StorageError::NotFormatted(_))
        ));
    });
}

/// Goal: on real files, a rotten superblock copy is survived and repaired, a rotten synced
/// prepare is reported faulty (not blank), and a torn unsynced tail is discarded.
#[test]
fn storage_real_planted_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.kmb");
    let layout = Layout::new(SMALL);
    rt().block_on(async {
        let entries = chain(6, 200);
        drop(write_log(&path, &entries, true).await);
        patch(&path, Layout::superblock_offset(0) + 40, |b| b[0] ^= 1, 1);
        patch(&path, layout.prepare_offset(3) + 150, |b| b[0] ^= 1, 1);
        // Op 6's prepare torn and its header copy never written: an in-flight tail.
        patch(&path, layout.prepare_offset(6) + 10, |b| b[0] ^= 1, 1);
        patch(&path, layout.header_offset(6), |b| b.fill(0), 128);
        let (_, r) = Storage::open(&path).await.unwrap();
        assert_eq!(ops(&r.log), vec![1, 2]);
        assert_eq!(r.faulty, vec![3]);
        assert_eq!(ops(&r.after_gap), vec![4, 5]);
        assert_eq!(r.torn, vec![6]);
        // Reopen: the superblock copies were rewritten, the verdicts are stable.
        let (_, r2) = Storage::open(&path).await.unwrap();
        assert_eq!((r2.log, r2.faulty), (r.log, r.faulty));
    });
}

/// Goal (issue 17, VOPR seed 100449): `durable()` claims only the synced, hash-chained log.
/// Overwriting a durable entry (a view change replacing op 2) lowers it below that op until
/// the next sync; after the sync, op 3 — still in its slot but chaining from the replaced op 2
/// — is not counted until it is replaced too. Recovery agrees: the stale op 3 ends the log.
#[test]
fn storage_real_durable_counts_only_the_synced_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.kmb");
    rt().block_on(async {
        let old = chain(3, 100);
        let mut s = write_log(&path, &old, true).await;
        assert_eq!(s.durable(), 3);
        let new2 = entry(2, old[0].checksum(), 1, 50);
        s.append(&new2).await.unwrap();
        assert_eq!(s.durable(), 1);
        s.sync().await.unwrap();
        assert_eq!(s.durable(), 2);
        drop(s);
        let (s, r) = Storage::open(&path).await.unwrap();
        assert_eq!(ops(&r.log), vec![1, 2]);
        assert_eq!(r.log[1], new2);
        assert!(r.faulty.is_empty());
        assert_eq!(s.durable(), 2);
    });
}

/// Goal (issue 17, VOPR seeds 101074, 107565, 110979): recovery tells a hole it can prove was
/// never written here (op 3 skipped: both copies blank, below the durable op 4) from a
/// durable op damaged later (its redundant header names it): both are faulty (repair from
/// peers), only the first is `never_written` (a nack in a view change).
#[test]
fn storage_real_never_written_hole_vs_damaged_durable_op() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(SMALL);
    rt().block_on(async {
        let entries = chain(4, 100);
        let path = dir.path().join("hole.kmb");
        let skipped: Vec<Entry> = entries
            .iter()
            .filter(|e| e.header.op != 3)
            .cloned()
            .collect();
        drop(write_log(&path, &skipped, true).await);
        let (_, r) = Storage::open(&path).await.unwrap();
        assert_eq!(
            (r.faulty.clone(), r.never_written.clone()),
            (vec![3], vec![3])
        );
        assert_eq!(ops(&r.after_gap), vec![4]);

        let path = dir.path().join("rot.kmb");
        drop(write_log(&path, &entries, true).await);
        patch(&path, layout.prepare_offset(3) + 150, |b| b[0] ^= 1, 1);
        let (_, r) = Storage::open(&path).await.unwrap();
        assert_eq!(
            (r.faulty.clone(), r.never_written.clone()),
            (vec![3], vec![])
        );
    });
}

// ---------------------------------------------------------------------------------------
// Frozen fixtures: files written by this format version, checked in. A format change that
// can no longer read them fails here. Regenerate (deliberately!) with
// `KMB_WRITE_FIXTURES=1 cargo test -p kmb-node --test storage_real storage_real_fixtures`.

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

const FIXTURE: StorageConfig = StorageConfig {
    slot_count: 4,
    slot_size: 512,
};

async fn make_fixture(path: &Path, kind: &str) {
    let layout = Layout::new(FIXTURE);
    Storage::format(path, ID, FIXTURE).await.unwrap();
    let (mut s, _) = Storage::open(path).await.unwrap();
    let entries = chain(4, 100);
    for e in &entries[..3] {
        s.append(e).await.unwrap();
    }
    s.sync().await.unwrap();
    // View 2, log_view 0: the entries (view 0) stay current above the recorded head.
    s.write_superblock(2, 0).await.unwrap();
    s.append(&entries[3]).await.unwrap();
    s.sync().await.unwrap();
    drop(s);
    match kind {
        "valid" => {}
        // Op 4 in flight: prepare torn mid-body, header copy never written.
        "torn" => {
            patch(path, layout.prepare_offset(0) + 200, |b| b.fill(0), 100);
            patch(path, layout.header_offset(0), |b| b.fill(0), 128);
        }
        // A bit of op 2's body rotted.
        "rotten" => patch(path, layout.prepare_offset(2) + 140, |b| b[0] ^= 0x20, 1),
        // Op 3's prepare landed on op 1's slot.
        "misdirected" => {
            let bytes = entries[2].encode();
            patch(
                path,
                layout.prepare_offset(1),
                |b| b.copy_from_slice(&bytes),
                bytes.len(),
            );
        }
        _ => unreachable!(),
    }
}

fn check_fixture(kind: &str, r: &Recovery) {
    let log = ops(&r.log);
    let gap = ops(&r.after_gap);
    assert_eq!((r.superblock.view, r.superblock.log_view), (2, 0), "{kind}");
    assert_eq!(r.superblock.log_view_head, 3, "{kind}");
    assert_eq!(r.superblock.identity, ID, "{kind}");
    match kind {
        "valid" => assert_eq!(
            (log, r.faulty.clone(), r.torn.clone()),
            (vec![1, 2, 3, 4], vec![], vec![])
        ),
        "torn" => assert_eq!(
            (log, r.faulty.clone(), r.torn.clone()),
            (vec![1, 2, 3], vec![], vec![4])
        ),
        "rotten" => assert_eq!((log, r.faulty.clone(), gap), (vec![1], vec![2], vec![3, 4])),
        "misdirected" => {
            assert_eq!(
                (log, r.faulty.clone(), gap),
                (vec![], vec![1], vec![2, 3, 4])
            );
            assert_eq!(r.misdirected_slots, vec![1]);
        }
        _ => unreachable!(),
    }
    let entries = chain(4, 100);
    for e in r.log.iter().chain(&r.after_gap) {
        assert_eq!(*e, entries[e.header.op as usize - 1], "{kind}");
    }
}

/// Goal: the checked-in fixtures (valid, torn, rotten, misdirected) still recover exactly.
#[test]
fn storage_real_fixtures() {
    let kinds = ["valid", "torn", "rotten", "misdirected"];
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        for kind in kinds {
            let fixture = fixtures_dir().join(format!("{kind}.kmb"));
            if std::env::var("KMB_WRITE_FIXTURES").is_ok() {
                let _ = std::fs::remove_file(&fixture);
                make_fixture(&fixture, kind).await;
            }
            // Recover a copy (open repairs superblocks/headers; the fixture stays frozen).
            let copy = dir.path().join(format!("{kind}.kmb"));
            std::fs::copy(&fixture, &copy).expect("fixture missing");
            let (_, r) = Storage::open(&copy).await.unwrap();
            check_fixture(kind, &r);
            // A freshly generated file must be byte-identical to the frozen one.
            let fresh = dir.path().join(format!("{kind}.fresh"));
            make_fixture(&fresh, kind).await;
            assert!(
                std::fs::read(&fresh).unwrap() == std::fs::read(&fixture).unwrap(),
                "{kind}: the format changed; fixtures are frozen"
            );
        }
    });
}

// ---------------------------------------------------------------------------------------
// kill -9: the test binary re-invokes itself as an appender that prints every durable op.

const CHILD_ENV: &str = "KMB_STORAGE_KILL9_CHILD";

/// The child side (a no-op unless re-invoked by `storage_real_kill9_mid_append`).
#[test]
fn storage_real_kill9_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let config = StorageConfig {
        slot_count: 256,
        slot_size: 4096,
    };
    rt().block_on(async move {
        Storage::format(&path, ID, config).await.unwrap();
        let (mut s, _) = Storage::open(&path).await.unwrap();
        let mut parent = Entry::root(CLUSTER).checksum();
        let mut op = 0u64;
        let stdout = std::io::stdout();
        loop {
            let batch = 1 + op % 7;
            for _ in 0..batch {
                op += 1;
                if op > s.superblock().checkpoint.op + config.slot_count as u64 {
                    s.checkpoint(op - 1, parent, &op.to_le_bytes())
                        .await
                        .unwrap();
                }
                let e = entry(op, parent, 0, (op as usize * 37) % 3000);
                parent = e.checksum();
                s.append(&e).await.unwrap();
            }
            let durable = s.sync().await.unwrap();
            let mut out = stdout.lock();
            writeln!(out, "durable {durable}").unwrap();
            out.flush().unwrap();
        }
    });
}

/// Goal: SIGKILL in the middle of appending loses no op the child reported durable.
#[test]
fn storage_real_kill9_mid_append() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kill9.kmb");
    for round in 0..3 {
        let _ = std::fs::remove_file(&path);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "storage_real_kill9_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().unwrap();
        let mut durable = 0u64;
        let want = 150 + round * 200;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("durable ") {
                durable = n.trim().parse().unwrap();
                if durable >= want {
                    break;
                }
            }
        }
        child.kill().expect("SIGKILL"); // SIGKILL on Unix
        child.wait().unwrap();
        assert!(durable >= want, "child stopped early at {durable}");
        let (_, r) = rt().block_on(Storage::open(&path)).expect("recover");
        let first = r.superblock.checkpoint.op + 1;
        assert!(r.faulty.is_empty(), "faulty {:?}", r.faulty);
        assert!(
            r.log_head() >= durable,
            "round {round}: durable {durable} but recovered head {}",
            r.log_head()
        );
        let expected_ops: Vec<u64> = (first..=r.log_head()).collect();
        assert_eq!(ops(&r.log), expected_ops);
        for e in &r.log {
            let len = (e.header.op as usize * 37) % 3000;
            assert_eq!(e.body.len(), len);
        }
    }
}
