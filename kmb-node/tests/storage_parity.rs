//! Behavioural parity of the two disks: one storage scenario — format, append, checkpoint,
//! superblock updates, a truncation, a synced log and an unsynced tail, a crash, recovery — run
//! on the real disk (production build, a temporary directory; the crash is the process losing
//! the `Storage` with its writes in the page cache) and on the simulated disk with faults off
//! (simulation build; the crash is a power loss of the node, which with every fault knob at 0
//! keeps each unsynced write). Both builds compare the recovered state against the same pinned
//! digest, so the two modes are held to one value: a change of either disk's behaviour (or of
//! the storage engine in one mode only) fails one of them.
//!
//! If the storage format or recovery changes on purpose, both builds report the same new
//! digest: update [`RECOVERED_DIGEST`] (the failure message shows the recovered state).

use std::fmt::Write as _;
use std::path::Path;

mod common;

use common::{entry, CLUSTER, ID, SMALL};
use kmb_node::entry::{Checksum, Entry};
use kmb_node::storage::{CheckpointState, Recovery, Storage};
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

/// xxh3-64 of [`describe`]'s text of the recovered state, the same in both modes.
const RECOVERED_DIGEST: u64 = 0x349d40bfd5bff328;

/// Entries chained from the root; `next` replaces everything from `op` on (a new suffix).
struct Chain(Vec<Checksum>);

impl Chain {
    fn next(&mut self, op: u64, view: u64) -> Entry {
        let e = entry(op, self.0[op as usize - 1], view, 100 + op as usize * 37);
        self.0.truncate(op as usize);
        self.0.push(e.checksum());
        e
    }
}

/// The scenario up to the crash. Returns the storage still open (its last append unsynced).
async fn write_scenario(path: &Path) -> Storage {
    Storage::format(path, ID, SMALL).await.expect("format");
    let (mut s, _) = Storage::open(path).await.expect("open");
    let mut chain = Chain(vec![Entry::root(CLUSTER).checksum()]);
    // Ops 1..=6 in view 0, synced; a checkpoint at op 4; view 1 made durable.
    for op in 1..=6 {
        s.append(&chain.next(op, 0)).await.expect("append");
    }
    assert_eq!(s.sync().await.expect("sync"), 6);
    s.checkpoint(4, chain.0[4], b"the state after op 4")
        .await
        .expect("checkpoint");
    s.write_superblock(1, 1).await.expect("superblock");
    // Ops 7..=10 in view 1 (9 and 10 reuse the slots of 1 and 2), synced.
    for op in 7..=10 {
        s.append(&chain.next(op, 1)).await.expect("append");
    }
    assert_eq!(s.sync().await.expect("sync"), 10);
    // A view change keeps 1..=8 and installs another op 9, durable with view 2.
    s.truncate_after(8).await.expect("truncate");
    s.append(&chain.next(9, 2)).await.expect("append");
    s.write_superblock(2, 2).await.expect("superblock");
    // Op 10 of view 2, written but never synced when the crash comes.
    s.append(&chain.next(10, 2)).await.expect("append");
    s
}

/// Reopen after the crash: the recovered state, as text.
async fn recover(path: &Path) -> String {
    let (storage, recovery) = Storage::open(path).await.expect("reopen");
    let mut text = describe(&recovery);
    let _ = writeln!(
        text,
        "storage head {} durable {}",
        storage.head(),
        storage.durable()
    );
    for e in &recovery.log {
        let read = storage.read_entry(e.header.op).await.expect("read");
        assert_eq!(read.as_ref(), Some(e), "op {} reads back", e.header.op);
    }
    text
}

/// Every field of what recovery concluded, one fact a line.
fn describe(r: &Recovery) -> String {
    let sb = &r.superblock;
    let cp = &sb.checkpoint;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "superblock sequence {} view {} log_view {} log_view_head {} identity {:?} config {:?}",
        sb.sequence, sb.view, sb.log_view, sb.log_view_head, sb.identity, sb.config
    );
    let _ = writeln!(
        t,
        "checkpoint op {} entry {:032x} offset {} size {} checksum {:032x}",
        cp.op, cp.entry_checksum, cp.offset, cp.size, cp.checksum
    );
    let state = match &r.checkpoint {
        CheckpointState::Empty => "empty".to_string(),
        CheckpointState::Faulty => "faulty".to_string(),
        CheckpointState::Loaded(blob) => format!("loaded {:032x}", xxh3_128(blob)),
    };
    let _ = writeln!(t, "checkpoint state {state}");
    for (name, entries) in [("log", &r.log), ("after_gap", &r.after_gap)] {
        for e in entries {
            let h = &e.header;
            let _ = writeln!(
                t,
                "{name} op {} view {} checksum {:032x} parent {:032x} body {}",
                h.op,
                h.view,
                e.checksum(),
                h.parent,
                e.body.len()
            );
        }
    }
    let _ = writeln!(
        t,
        "faulty {:?} torn {:?} head_op {} misdirected {:?} header_repairs {:?}",
        r.faulty, r.torn, r.head_op, r.misdirected_slots, r.header_repairs
    );
    t
}

fn assert_pinned(recovered: &str) {
    let digest = xxh3_64(recovered.as_bytes());
    assert_eq!(
        digest, RECOVERED_DIGEST,
        "recovered state (digest {digest:#018x}):\n{recovered}"
    );
}

#[cfg(not(madsim))]
#[test]
fn storage_parity_real_disk_recovers_the_pinned_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("replica.kmb");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let recovered = rt.block_on(async {
        drop(write_scenario(&path).await);
        recover(&path).await
    });
    assert_pinned(&recovered);
}

#[cfg(madsim)]
#[test]
fn storage_parity_simulated_disk_recovers_the_pinned_state() {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use sim_runtime::{sim, time};

    const PATH: &str = "/data/replica.kmb";
    /// Starts seen by the node, and what its second start recovered.
    type Shared = Arc<Mutex<(u32, Option<String>)>>;

    async fn start(shared: Shared) {
        let first = {
            let mut g = shared.lock().expect("lock");
            g.0 += 1;
            g.0 == 1
        };
        if first {
            let _storage = write_scenario(Path::new(PATH)).await;
            shared.lock().expect("lock").0 += 1;
            // Keep the storage (and its unsynced write) until the power loss.
            std::future::pending::<()>().await;
        } else {
            let recovered = recover(Path::new(PATH)).await;
            shared.lock().expect("lock").1 = Some(recovered);
        }
    }

    let recovered = sim::run(11, || async {
        let shared: Shared = Arc::default();
        let s2 = shared.clone();
        let node = sim::Handle::current()
            .create_node()
            .name("r0")
            .ip("10.0.0.1".parse().expect("ip"))
            .init(move || start(s2.clone()))
            .build();
        let wait = |done: fn(&(u32, Option<String>)) -> bool| {
            let shared = shared.clone();
            async move {
                for _ in 0..10_000 {
                    if done(&shared.lock().expect("lock")) {
                        return;
                    }
                    time::sleep(Duration::from_millis(1)).await;
                }
                panic!("the node did not get there");
            }
        };
        wait(|g| g.0 >= 2).await;
        assert!(sim_runtime::fault::events().is_empty(), "no fault fired");
        sim::kill(node.id());
        sim::restart(node.id());
        wait(|g| g.1.is_some()).await;
        let recovered = shared.lock().expect("lock").1.clone();
        recovered.expect("recovered")
    });
    assert_pinned(&recovered);
}
