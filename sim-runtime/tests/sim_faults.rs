//! Simulated-mode tests: every fault fires at its knob, and does nothing with the knob at zero.
#![cfg(madsim)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use sim_runtime::disk::{self, File};
use sim_runtime::fault::{self, DiskFaults, LinkFaults};
use sim_runtime::net::{self, FrameError, TcpListener};
use sim_runtime::sim::{self, Handle, NodeHandle, NodeId};
use sim_runtime::time::{self, Duration};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn node(name: &str, addr: &str) -> NodeHandle {
    Handle::current()
        .create_node()
        .name(name)
        .ip(ip(addr))
        .build()
}

/// A fresh node at `addr` whose disk has `faults`.
fn disk_node(addr: &str, faults: DiskFaults) -> NodeId {
    let id = node("disk", addr).id();
    fault::set_disk_faults(id, faults);
    id
}

/// Run `fut` on node `id` (looked up afresh, so it works after a restart) and wait for it.
async fn on<F, T>(id: NodeId, fut: F) -> T
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let spawner = Handle::current().get_node(id).expect("node exists");
    spawner.spawn(fut).await.expect("task finished")
}

fn block(tag: u8, offset: u64, len: usize) -> Vec<u8> {
    // A self-describing block: offset, tag, filler, then an xxh3 checksum of the rest.
    let mut b = vec![tag; len];
    b[..8].copy_from_slice(&offset.to_le_bytes());
    let sum = xxhash_rust::xxh3::xxh3_64(&b[..len - 8]);
    b[len - 8..].copy_from_slice(&sum.to_le_bytes());
    b
}

fn block_valid(b: &[u8]) -> bool {
    let len = b.len();
    let sum = u64::from_le_bytes(b[len - 8..].try_into().unwrap());
    xxhash_rust::xxh3::xxh3_64(&b[..len - 8]) == sum
}

/// On a fresh node with `faults`, write a synced block at 0 and an unsynced one at 4096.
async fn synced_then_unsynced_write(faults: DiskFaults) -> NodeHandle {
    let n = node("disk", "10.0.0.1");
    fault::set_disk_faults(n.id(), faults);
    on(n.id(), async {
        let f = File::open("/data/f").await.unwrap();
        f.write_at(&block(1, 0, 4096), 0).await.unwrap();
        f.sync().await.unwrap();
        f.write_at(&block(2, 4096, 4096), 4096).await.unwrap();
    })
    .await;
    n
}

/// Restart `id` and read back what [`synced_then_unsynced_write`] wrote: the file length,
/// whether the synced block is intact, and whether the unsynced block survived.
async fn restart_and_read_back(id: NodeId) -> (u64, bool, bool) {
    sim::restart(id);
    on(id, async {
        let f = File::open("/data/f").await.unwrap();
        let len = f.len().await.unwrap();
        let mut first = vec![0; 4096];
        f.read_at(&mut first, 0).await.unwrap();
        let mut second = vec![0; 4096];
        let kept = len >= 8192
            && f.read_at(&mut second, 4096).await.is_ok()
            && second == block(2, 4096, 4096);
        (len, first == block(1, 0, 4096), kept)
    })
    .await
}

/// Write a synced block at 0 and an unsynced one at 4096 on a fresh node, then power-cycle it
/// with `faults`; returns the file length after restart and whether the unsynced block survived.
async fn crash_after_unsynced_write(faults: DiskFaults) -> (u64, bool, bool) {
    let id = synced_then_unsynced_write(faults).await.id();
    sim::kill(id);
    restart_and_read_back(id).await
}

/// Goal: after a kill, synced data is kept and unsynced data is lost when the knob says so.
#[test]
fn disk_kill_with_lost_probability_one_loses_unsynced_keeps_synced() {
    let (len, synced_ok, unsynced_kept) = sim::run(1, || async {
        let faults = DiskFaults {
            crash_lost_probability: 1.0,
            ..Default::default()
        };
        let r = crash_after_unsynced_write(faults).await;
        assert_eq!(fault::counters().crash_lost_writes, 1);
        r
    });
    assert!(synced_ok, "synced data must survive a kill");
    assert!(!unsynced_kept, "unsynced data must be lost");
    assert_eq!(len, 4096);
}

/// Goal: with the crash knobs at zero, unsynced writes are kept (the knob is what loses them).
#[test]
fn disk_kill_with_no_crash_faults_keeps_unsynced() {
    let (_, synced_ok, unsynced_kept) = sim::run(1, || async {
        let r = crash_after_unsynced_write(DiskFaults::default()).await;
        assert_eq!(fault::counters().crash_kept_writes, 1);
        r
    });
    assert!(synced_ok && unsynced_kept);
}

/// Goal: `sim::stop` ends a node's tasks (what they hold is freed) with no power loss: with
/// every unsynced write set to be lost by a kill, the stopped node's disk still holds its
/// unsynced write, and no kill or lost write is counted. A kill of the same node would lose it.
#[test]
fn stop_drops_the_tasks_without_a_power_loss() {
    let (held_after, (_, _, unsynced_kept)) = sim::run(1, || async {
        let faults = DiskFaults {
            crash_lost_probability: 1.0,
            ..Default::default()
        };
        let n = synced_then_unsynced_write(faults).await;
        let held = Arc::new(());
        let in_task = Arc::clone(&held);
        n.spawn(async move {
            let _kept = in_task;
            std::future::pending::<()>().await;
        });
        time::sleep(Duration::from_millis(1)).await;
        assert_eq!(Arc::strong_count(&held), 2, "the task holds its value");
        sim::stop(n.id());
        time::sleep(Duration::from_millis(1)).await;
        let held_after = Arc::strong_count(&held);
        let counters = fault::counters();
        assert_eq!((counters.kills, counters.crash_lost_writes), (0, 0));
        // Read the disk back on the node restarted (no power loss: it was stopped).
        (held_after, restart_and_read_back(n.id()).await)
    });
    assert_eq!(held_after, 1, "the stopped node's task was dropped");
    assert!(unsynced_kept, "a stop is no power loss");
}

/// On a fresh node whose power losses tear every unsynced write: `len` bytes of 0x11 at 0,
/// synced, then `(offset, len)` of 0xEE unsynced, then a power loss and a restart. The node.
async fn torn_rewrite(len: usize, (offset, new_len): (u64, usize)) -> NodeId {
    let id = disk_node(
        "10.0.0.1",
        DiskFaults {
            crash_torn_probability: 1.0,
            ..Default::default()
        },
    );
    on(id, async move {
        let f = File::open("f").await.unwrap();
        f.write_at(&vec![0x11; len], 0).await.unwrap();
        f.sync().await.unwrap();
        f.write_at(&vec![0xEE; new_len], offset).await.unwrap();
    })
    .await;
    sim::kill(id);
    sim::restart(id);
    id
}

/// Goal: a torn write persists whole 512-byte sectors only, some old and some new.
#[test]
fn disk_torn_write_cut_at_sector_boundaries() {
    let mut mixed_seen = false;
    for seed in 0..8 {
        let sectors: Vec<u8> = sim::run(seed, || async {
            // Unaligned start and end: the tear must still follow absolute sector bounds.
            let id = torn_rewrite(16 * 512, (256, 14 * 512)).await;
            assert_eq!(fault::counters().crash_torn_writes, 1);
            on(id, async {
                let f = File::open("f").await.unwrap();
                let mut buf = vec![0; 16 * 512];
                f.read_at(&mut buf, 0).await.unwrap();
                // Classify each 256-byte half-sector: every full sector must be uniform.
                buf.chunks(256)
                    .map(|c| {
                        assert!(c.iter().all(|&b| b == c[0]), "a half-sector was split");
                        c[0]
                    })
                    .collect()
            })
            .await
        });
        // Sector k covers half-sectors 2k and 2k+1; sectors 1..=13 lie wholly inside the
        // write (bytes 256..7424), so each must be all old or all new.
        for k in 1..14 {
            assert_eq!(sectors[2 * k], sectors[2 * k + 1], "sector {k} torn inside");
        }
        assert_eq!(sectors[0], 0x11, "bytes before the write untouched");
        let news = sectors.iter().filter(|&&b| b == 0xEE).count();
        if news > 0 && news < 28 {
            mixed_seen = true;
        }
    }
    assert!(
        mixed_seen,
        "some seed must tear a write into old and new sectors"
    );
}

/// Goal: silent bit rot changes stored bytes, and a reader's checksum catches it.
#[test]
fn disk_bit_rot_caught_by_reader_checksum() {
    for (probability, expect_valid) in [(1.0, false), (0.0, true)] {
        let valid = sim::run(3, move || async move {
            let n = node("disk", "10.0.0.1");
            let id = n.id();
            let valid = on(id, async move {
                let f = File::open("f").await.unwrap();
                f.write_at(&block(7, 0, 1024), 0).await.unwrap();
                f.sync().await.unwrap();
                fault::set_disk_faults(
                    sim::current_node(),
                    DiskFaults {
                        bit_rot_probability: probability,
                        ..Default::default()
                    },
                );
                let mut buf = vec![0; 1024];
                f.read_at(&mut buf, 0).await.unwrap();
                block_valid(&buf)
            })
            .await;
            assert_eq!(fault::counters().bit_rots, probability as u64);
            valid
        });
        assert_eq!(valid, expect_valid, "bit rot probability {probability}");
    }
}

/// How many of the four 512-byte copies at `c * 4096` no longer hold `[9; 512]` (read with
/// faults off).
async fn damaged_copies(f: &File) -> usize {
    fault::set_disk_faults(sim::current_node(), DiskFaults::default());
    let mut n = 0;
    for c in 0..4u64 {
        let mut buf = vec![0; 512];
        f.read_at(&mut buf, c * 4096).await.unwrap();
        n += usize::from(buf != vec![9; 512]);
    }
    n
}

/// Goal: redundant copies (`DiskFaults::redundant_copies`) follow the one-fault-per-structure
/// model: with bit rot certain on every read, reading four copies damages only the first;
/// once it is rewritten, the next damaged copy may be another one. Without the group every
/// read rots (the control).
#[test]
fn disk_redundant_copies_never_damaged_two_at_once() {
    for grouped in [true, false] {
        let (rots, damaged_after_reads, damaged_after_rewrite) = sim::run(3, move || async move {
            let id = node("disk", "10.0.0.1").id();
            on(id, async move {
                let f = File::open("f").await.unwrap();
                for c in 0..4u64 {
                    f.write_at(&[9; 512], c * 4096).await.unwrap();
                }
                f.sync().await.unwrap();
                let copies: Vec<(u64, u64)> = (0..4).map(|c| (c * 4096, 512)).collect();
                fault::set_disk_faults(
                    sim::current_node(),
                    DiskFaults {
                        bit_rot_probability: 1.0,
                        redundant_copies: if grouped { vec![copies] } else { vec![] }.into(),
                        ..Default::default()
                    },
                );
                let mut buf = vec![0; 512];
                for c in 0..4u64 {
                    f.read_at(&mut buf, c * 4096).await.unwrap();
                }
                let after_reads = damaged_copies(&f).await;
                // Rewrite copy 0: the next rot may land on another copy.
                f.write_at(&[9; 512], 0).await.unwrap();
                fault::set_disk_faults(
                    sim::current_node(),
                    DiskFaults {
                        bit_rot_probability: 1.0,
                        redundant_copies: if grouped {
                            vec![(0..4).map(|c| (c * 4096, 512)).collect()]
                        } else {
                            vec![]
                        }
                        .into(),
                        ..Default::default()
                    },
                );
                f.read_at(&mut buf, 4096).await.unwrap();
                let after_rewrite = damaged_copies(&f).await;
                (fault::counters().bit_rots, after_reads, after_rewrite)
            })
            .await
        });
        if grouped {
            assert_eq!(
                (rots, damaged_after_reads, damaged_after_rewrite),
                (2, 1, 1)
            );
        } else {
            assert_eq!(
                (rots, damaged_after_reads, damaged_after_rewrite),
                (5, 4, 3)
            );
        }
    }
}

/// Goal: a latent sector error fails reads of that sector until it is rewritten.
#[test]
fn disk_latent_error_fails_reads_until_rewritten() {
    sim::run(4, || async {
        let id = node("disk", "10.0.0.1").id();
        on(id, async {
            let me = sim::current_node();
            let f = File::open("f").await.unwrap();
            f.write_at(&[5; 512], 0).await.unwrap();
            f.sync().await.unwrap();
            let faults = DiskFaults {
                latent_error_probability: 1.0,
                ..Default::default()
            };
            fault::set_disk_faults(me, faults);
            let mut buf = [0; 512];
            assert!(f.read_at(&mut buf, 0).await.is_err());
            fault::set_disk_faults(me, DiskFaults::default());
            assert!(f.read_at(&mut buf, 0).await.is_err(), "the error is sticky");
            f.write_at(&[6; 512], 0).await.unwrap();
            f.read_at(&mut buf, 0).await.unwrap();
            assert_eq!(buf, [6; 512]);
        })
        .await;
        let c = fault::counters();
        assert_eq!((c.latent_errors_injected, c.latent_error_reads), (1, 2));
    });
}

/// Goal: a misdirected write lands elsewhere, detectable by the offset its block names.
#[test]
fn disk_misdirected_write_detectable_by_self_describing_block() {
    sim::run(5, || async {
        let id = node("disk", "10.0.0.1").id();
        on(id, async {
            let f = File::open("f").await.unwrap();
            f.write_at(&vec![0; 64 * 512], 0).await.unwrap();
            fault::set_disk_faults(
                sim::current_node(),
                DiskFaults {
                    misdirect_probability: 1.0,
                    ..Default::default()
                },
            );
            let target = 10 * 512;
            f.write_at(&block(9, target, 512), target).await.unwrap();
            let mut at_target = vec![0; 512];
            f.read_at(&mut at_target, target).await.unwrap();
            assert_ne!(
                at_target,
                block(9, target, 512),
                "the target was not written"
            );
            let mut all = vec![0; 64 * 512 + 1024];
            let len = f.len().await.unwrap() as usize;
            f.read_at(&mut all[..len], 0).await.unwrap();
            let landed = (0..len / 512)
                .find(|s| all[s * 512..s * 512 + 512] == block(9, target, 512)[..])
                .expect("the block landed somewhere");
            let named = u64::from_le_bytes(all[landed * 512..landed * 512 + 8].try_into().unwrap());
            assert_ne!(
                named,
                landed as u64 * 512,
                "the block names an offset it is not at"
            );
        })
        .await;
        assert_eq!(fault::counters().misdirected_writes, 1);
    });
}

/// Goal: an injected fsync failure is surfaced as an error and counted.
#[test]
fn disk_sync_error_surfaced() {
    sim::run(6, || async {
        let id = node("disk", "10.0.0.1").id();
        let result = on(id, async {
            let f = File::open("f").await.unwrap();
            f.write_at(&[1; 512], 0).await.unwrap();
            assert!(f.sync().await.is_ok());
            fault::set_disk_faults(
                sim::current_node(),
                DiskFaults {
                    sync_error_probability: 1.0,
                    ..Default::default()
                },
            );
            f.write_at(&[2; 512], 0).await.unwrap();
            f.sync().await
        })
        .await;
        assert!(result.is_err());
        assert_eq!(fault::counters().sync_errors, 1);
    });
}

/// Goal: writes past the capacity, or drawn by the disk-full knob, fail with StorageFull.
#[test]
fn disk_full_by_capacity_and_by_probability() {
    sim::run(7, || async {
        let id = node("disk", "10.0.0.1").id();
        on(id, async {
            let me = sim::current_node();
            let f = File::open("f").await.unwrap();
            fault::set_disk_faults(
                me,
                DiskFaults {
                    capacity_bytes: Some(1024),
                    ..Default::default()
                },
            );
            f.write_at(&[1; 1024], 0).await.unwrap();
            let e = f.write_at(&[1; 1], 1024).await.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::StorageFull);
            f.write_at(&[2; 512], 0)
                .await
                .expect("overwrite within capacity");
            fault::set_disk_faults(
                me,
                DiskFaults {
                    disk_full_probability: 1.0,
                    ..Default::default()
                },
            );
            assert!(f.write_at(&[3; 1], 0).await.is_err());
        })
        .await;
        assert_eq!(fault::counters().disk_full_errors, 2);
    });
}

const SERVER: &str = "10.0.1.1";
const CLIENT: &str = "10.0.1.2";

/// Send `count` numbered frames from a client node to a server node over `faults`; return the
/// sequence numbers the server received in order, and the error that ended its read, if any.
async fn transfer(faults: LinkFaults, count: u32) -> (Vec<u32>, Option<String>) {
    let server = node("server", SERVER);
    let client = node("client", CLIENT);
    fault::set_link_faults(ip(CLIENT), ip(SERVER), faults);
    let addr: SocketAddr = format!("{SERVER}:9000").parse().unwrap();
    let received = server.spawn(async move {
        let listener = TcpListener::bind(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let (_w, mut r) = net::framed(stream);
        let mut seqs = Vec::new();
        loop {
            match time::timeout(Duration::from_secs(2), r.recv()).await {
                Err(_) => return (seqs, None),
                Ok(Err(FrameError::Closed)) => return (seqs, None),
                Ok(Err(e)) => return (seqs, Some(e.to_string())),
                Ok(Ok(payload)) => {
                    assert_eq!(payload.len(), 64, "a delivered frame is intact");
                    assert!(payload[4..].iter().all(|&b| b == payload[0]));
                    seqs.push(u32::from_le_bytes(payload[..4].try_into().unwrap()));
                }
            }
        }
    });
    client
        .spawn(async move {
            let stream = net::connect_with_backoff(addr, Default::default(), Some(50))
                .await
                .unwrap();
            let (w, _r) = net::framed(stream);
            for seq in 0..count {
                let mut payload = vec![seq as u8; 64];
                payload[..4].copy_from_slice(&seq.to_le_bytes());
                if w.send(payload).await.is_err() {
                    break;
                }
            }
            time::sleep(Duration::from_secs(5)).await;
        })
        .await
        .unwrap();
    received.await.unwrap()
}

fn near(actual: usize, expected: f64, what: &str) {
    let (lo, hi) = (expected * 0.75, expected * 1.25);
    assert!(
        (lo..=hi).contains(&(actual as f64)),
        "{what}: {actual} not within 25% of {expected}"
    );
}

/// Goal: with no link faults every frame arrives once, in order.
#[test]
fn net_no_faults_delivers_every_frame_in_order() {
    let (seqs, err) = sim::run(10, || transfer(LinkFaults::default(), 500));
    assert_eq!(err, None);
    assert_eq!(seqs, (0..500).collect::<Vec<_>>());
}

/// Goal: frames are dropped at about the configured rate.
#[test]
fn net_drop_rate_about_configured() {
    let (seqs, _) = sim::run(11, || async {
        let faults = LinkFaults {
            drop_probability: 0.2,
            ..Default::default()
        };
        let r = transfer(faults, 2000).await;
        near(
            fault::counters().frames_dropped as usize,
            400.0,
            "drop counter",
        );
        r
    });
    near(2000 - seqs.len(), 400.0, "frames missing");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "drops do not reorder");
}

/// Goal: frames are duplicated at about the configured rate.
#[test]
fn net_duplicate_rate_about_configured() {
    let (seqs, _) = sim::run(12, || {
        transfer(
            LinkFaults {
                duplicate_probability: 0.1,
                ..Default::default()
            },
            2000,
        )
    });
    let dups = seqs.windows(2).filter(|w| w[0] == w[1]).count();
    near(dups, 200.0, "duplicates seen");
}

/// Goal: frames are reordered at about the configured rate.
#[test]
fn net_reorder_rate_about_configured() {
    let (seqs, _) = sim::run(13, || {
        transfer(
            LinkFaults {
                reorder_probability: 0.1,
                ..Default::default()
            },
            2000,
        )
    });
    let inversions = seqs.windows(2).filter(|w| w[0] > w[1]).count();
    // A held frame is released after the next one, unless that one was itself held: ~p(1-p).
    near(inversions, 2000.0 * 0.1 * 0.9, "inversions seen");
    let mut sorted = seqs.clone();
    sorted.sort();
    assert_eq!(sorted, (0..2000).collect::<Vec<_>>(), "nothing lost");
}

/// Goal: a corrupted frame is caught by the checksum and never delivered.
#[test]
fn net_corrupt_frame_never_delivered() {
    let (seqs, err) = sim::run(14, || async {
        let r = transfer(
            LinkFaults {
                corrupt_probability: 0.02,
                ..Default::default()
            },
            2000,
        )
        .await;
        assert!(fault::counters().frames_corrupted >= 1);
        r
    });
    // The read ends at the first corrupt frame (checksum or, if the length was hit, size or
    // a later misaligned checksum); everything before it was delivered intact (asserted in
    // `transfer`) and in order.
    let err = err.expect("the corrupt frame surfaced as an error");
    assert!(
        err.contains("checksum") || err.contains("exceeds") || err.contains("i/o"),
        "{err}"
    );
    assert!(seqs.len() < 2000);
    assert_eq!(seqs, (0..seqs.len() as u32).collect::<Vec<_>>());
}

/// Goal: delay slows frames by about the configured amount.
#[test]
fn net_delay_applies() {
    sim::run(15, || async {
        let start = time::Instant::now();
        transfer(
            LinkFaults {
                delay: (Duration::from_millis(10), Duration::from_millis(10)),
                ..Default::default()
            },
            100,
        )
        .await;
        // 100 frames, head-of-line, 10 ms each, plus the 2 s read timeout and setup.
        assert!(start.elapsed() >= Duration::from_millis(1000));
        assert_eq!(fault::counters().frames_delayed, 100);
    });
}

/// Goal: symmetric and asymmetric partitions block frames and heal restores them.
#[test]
fn net_partitions_block_and_heal() {
    sim::run(16, || async {
        let a = node("a", "10.0.2.1");
        let b = node("b", "10.0.2.2");
        let addr: SocketAddr = "10.0.2.1:9000".parse().unwrap();
        let got = Arc::new(std::sync::Mutex::new(Vec::<(char, u8)>::new()));
        // Each side records what it receives; each sends a numbered frame on command.
        let (cmd_a, mut rx_a) = tokio::sync::mpsc::unbounded_channel::<u8>();
        let (cmd_b, mut rx_b) = tokio::sync::mpsc::unbounded_channel::<u8>();
        let got_a = got.clone();
        a.spawn(async move {
            let listener = TcpListener::bind(addr).await.unwrap();
            let (s, _) = listener.accept().await.unwrap();
            let (w, mut r) = net::framed(s);
            sim_runtime::task::spawn(async move {
                while let Some(n) = rx_a.recv().await {
                    w.send(vec![n]).await.unwrap();
                }
            });
            while let Ok(p) = r.recv().await {
                got_a.lock().unwrap().push(('a', p[0]));
            }
        });
        let got_b = got.clone();
        b.spawn(async move {
            let s = net::connect_with_backoff(addr, Default::default(), Some(50))
                .await
                .unwrap();
            let (w, mut r) = net::framed(s);
            sim_runtime::task::spawn(async move {
                while let Some(n) = rx_b.recv().await {
                    w.send(vec![n]).await.unwrap();
                }
            });
            while let Ok(p) = r.recv().await {
                got_b.lock().unwrap().push(('b', p[0]));
            }
        });
        let step = |n: u8| {
            cmd_a.send(n).unwrap();
            cmd_b.send(n).unwrap();
        };
        let settle = || time::sleep(Duration::from_millis(500));
        settle().await;
        step(1);
        settle().await;
        fault::partition(ip("10.0.2.1"), ip("10.0.2.2"));
        step(2);
        settle().await;
        fault::heal_all();
        fault::partition_oneway(ip("10.0.2.1"), ip("10.0.2.2"));
        step(3);
        settle().await;
        fault::heal(ip("10.0.2.1"), ip("10.0.2.2"));
        step(4);
        settle().await;
        let mut got = got.lock().unwrap().clone();
        got.sort();
        // a receives from b: 1, 3 (only a→b blocked), 4; b receives from a: 1, 4.
        assert_eq!(got, vec![('a', 1), ('a', 3), ('a', 4), ('b', 1), ('b', 4)]);
        let c = fault::counters();
        assert_eq!((c.partitions, c.heals, c.frames_partitioned), (3, 3, 3));
    });
}

/// A scenario exercising disk and network faults; returns the fault event log.
fn scenario(seed: u64) -> Vec<fault::FaultEvent> {
    sim::run(seed, || async {
        let id = disk_node(
            "10.0.0.9",
            DiskFaults {
                crash_lost_probability: 0.3,
                crash_torn_probability: 0.3,
                bit_rot_probability: 0.1,
                misdirect_probability: 0.1,
                sync_latency: (Duration::from_micros(10), Duration::from_millis(2)),
                ..Default::default()
            },
        );
        on(id, async {
            let f = File::open("f").await.unwrap();
            for i in 0..50u64 {
                f.write_at(&[i as u8; 1000], i * 1000).await.unwrap();
                if i % 7 == 0 {
                    let _ = f.sync().await;
                }
                let mut buf = [0; 100];
                let _ = f.read_at(&mut buf, i * 10).await;
            }
        })
        .await;
        sim::kill(id);
        transfer(
            LinkFaults {
                drop_probability: 0.05,
                duplicate_probability: 0.05,
                reorder_probability: 0.05,
                delay: (Duration::ZERO, Duration::from_millis(5)),
                ..Default::default()
            },
            300,
        )
        .await;
        fault::events()
    })
}

/// Goal: the same seed gives the same fault events, a different seed different ones.
#[test]
fn faults_same_seed_same_events_different_seed_different() {
    let a = scenario(42);
    let b = scenario(42);
    let c = scenario(43);
    assert!(
        a.len() > 10,
        "the scenario must fire faults ({} events)",
        a.len()
    );
    assert_eq!(a, b);
    assert_ne!(a, c);
}

/// Goal: a restart is always a power loss: restarting a running node first kills it.
#[test]
fn restart_of_running_node_is_a_power_loss() {
    sim::run(17, || async {
        let id = disk_node(
            "10.0.0.1",
            DiskFaults {
                crash_lost_probability: 1.0,
                ..Default::default()
            },
        );
        on(id, async {
            let f = File::open("f").await.unwrap();
            f.write_at(&[1; 512], 0).await.unwrap();
        })
        .await;
        sim::restart(id);
        let c = fault::counters();
        assert_eq!((c.kills, c.restarts, c.crash_lost_writes), (1, 1, 1));
        let len = on(id, async {
            File::open("f").await.unwrap().len().await.unwrap()
        })
        .await;
        assert_eq!(len, 0);
    });
}

/// Goal: pause stops a node's progress without losing anything; resume continues it.
#[test]
fn pause_stops_progress_resume_continues() {
    sim::run(18, || async {
        let n = node("p", "10.0.0.1");
        let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let c2 = counter.clone();
        n.spawn(async move {
            loop {
                time::sleep(Duration::from_millis(10)).await;
                c2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        time::sleep(Duration::from_millis(105)).await;
        sim::pause(n.id());
        let at_pause = counter.load(std::sync::atomic::Ordering::Relaxed);
        time::sleep(Duration::from_millis(500)).await;
        assert!(counter.load(std::sync::atomic::Ordering::Relaxed) <= at_pause + 1);
        sim::resume(n.id());
        time::sleep(Duration::from_millis(200)).await;
        assert!(counter.load(std::sync::atomic::Ordering::Relaxed) > at_pause + 5);
    });
}

/// Goal: a power loss during fsync kills the node before the sync returns; its unsynced
/// writes then follow the crash knobs (here: lost).
#[test]
fn disk_crash_during_sync_kills_before_sync_returns() {
    sim::run(19, || async {
        let n = node("disk", "10.0.0.1");
        let id = n.id();
        fault::set_disk_faults(
            id,
            DiskFaults {
                crash_during_sync_probability: 1.0,
                crash_lost_probability: 1.0,
                ..Default::default()
            },
        );
        let returned = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = returned.clone();
        n.spawn(async move {
            let f = File::open("f").await.unwrap();
            f.write_at(&[7; 512], 0).await.unwrap();
            let _ = f.sync().await;
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        time::sleep(Duration::from_millis(100)).await;
        assert!(sim::is_killed(id), "the node lost power during the sync");
        assert!(
            !returned.load(std::sync::atomic::Ordering::Relaxed),
            "the sync never returned"
        );
        assert_eq!(fault::counters().crashes_during_sync, 1);
        fault::set_disk_faults(id, DiskFaults::default());
        sim::restart(id);
        let len = on(id, async {
            File::open("f").await.unwrap().len().await.unwrap()
        })
        .await;
        assert_eq!(len, 0, "the unsynced write was lost");
    });
}

/// Goal: a node armed to crash on its next fsync dies in that fsync, and only that one.
#[test]
fn disk_armed_crash_fires_on_next_sync_only() {
    sim::run(20, || async {
        let n = node("disk", "10.0.0.1");
        let id = n.id();
        on(id, async {
            let f = File::open("f").await.unwrap();
            f.write_at(&[1; 512], 0).await.unwrap();
            f.sync().await.unwrap();
        })
        .await;
        fault::arm_crash_on_next_sync(id);
        n.spawn(async move {
            let f = File::open("f").await.unwrap();
            f.write_at(&[2; 512], 0).await.unwrap();
            let _ = f.sync().await;
        });
        time::sleep(Duration::from_millis(50)).await;
        assert!(sim::is_killed(id));
        assert_eq!(fault::counters().crashes_during_sync, 1);
        sim::restart(id);
        on(id, async {
            let f = File::open("f").await.unwrap();
            f.write_at(&[3; 512], 0).await.unwrap();
            f.sync().await.unwrap();
        })
        .await;
        assert_eq!(
            fault::counters().crashes_during_sync,
            1,
            "the arm fired once"
        );
    });
}

/// A server that accepts one connection at `addr` and reads nothing for `idle`, then reads
/// `len` bytes: returns them and the simulated time the reading took.
async fn lazy_server(addr: SocketAddr, idle: Duration, len: usize) -> (Vec<u8>, Duration) {
    use tokio::io::AsyncReadExt;
    let listener = TcpListener::bind(addr).await.unwrap();
    let (mut stream, _) = listener.accept().await.unwrap();
    time::sleep(idle).await;
    let start = time::Instant::now();
    let mut all = vec![0u8; len];
    stream.read_exact(&mut all).await.unwrap();
    (all, start.elapsed())
}

/// Goal: flow control — a writer to a connection whose reader reads nothing gets at most the
/// receive window accepted and waits; once the reader reads, every byte arrives intact, and at
/// full speed: a long wait must not slow the link afterwards (a writer that flushed on every
/// tick of its wait queued an empty payload per millisecond, each costing the receiver a timer
/// tick — the megabyte then took seconds, and longer waits slowed links exponentially).
#[test]
fn stream_window_holds_a_writer_while_the_reader_does_not_read() {
    sim::run(20, || async {
        let server = node("server", SERVER);
        let client = node("client", CLIENT);
        let addr: SocketAddr = format!("{SERVER}:9001").parse().unwrap();
        let received = server.spawn(lazy_server(addr, Duration::from_secs(2), 1_000_000));
        let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let w = written.clone();
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = client.spawn(async move {
            use tokio::io::AsyncWriteExt;
            time::sleep(Duration::from_millis(10)).await;
            let mut stream = net::TcpStream::connect(addr).await.unwrap();
            let mut at = 0;
            while at < sent.len() {
                let n = stream.write(&sent[at..]).await.unwrap();
                at += n;
                w.store(at, std::sync::atomic::Ordering::SeqCst);
            }
            stream.flush().await.unwrap();
        });
        time::sleep(Duration::from_secs(1)).await;
        let early = written.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            early > 0 && early as u64 <= fault::STREAM_WINDOW,
            "{early} bytes accepted while the reader read nothing"
        );
        assert!(fault::counters().stream_window_waits > 0);
        writer.await.unwrap();
        let (all, took) = received.await.unwrap();
        assert_eq!(all.len(), data.len());
        assert!(all == data, "the bytes arrive intact and in order");
        // Four windows' worth per round trip of a few ms: well under 200 ms of simulated time.
        assert!(
            took < Duration::from_millis(200),
            "reading 1 MB after the wait took {took:?} (simulated)"
        );
    });
}

/// Goal: a slow reader takes about its pace (here 1,024 bytes per ms: 100 KiB in ~100 ms, at
/// full speed in ~0), and the fault ends when its time is up.
#[test]
fn stream_slow_reader_reads_at_its_pace() {
    for (slow, expect_ms) in [(true, 100u128), (false, 0)] {
        let took = sim::run(21, move || async move {
            let server = node("server", SERVER);
            let client = node("client", CLIENT);
            let addr: SocketAddr = format!("{SERVER}:9002").parse().unwrap();
            if slow {
                fault::slow_reader(ip(CLIENT), ip(SERVER), 1024, Duration::from_secs(60));
            }
            let received = server.spawn(lazy_server(addr, Duration::from_millis(500), 100 * 1024));
            client
                .spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    time::sleep(Duration::from_millis(10)).await;
                    let mut stream = net::TcpStream::connect(addr).await.unwrap();
                    stream.write_all(&vec![7u8; 100 * 1024]).await.unwrap();
                    stream.flush().await.unwrap();
                })
                .await
                .unwrap();
            let (all, took) = received.await.unwrap();
            assert_eq!(all.len(), 100 * 1024);
            took.as_millis()
        });
        assert!(
            took + 5 >= expect_ms && took <= expect_ms + 20,
            "slow {slow}: reading took {took} ms"
        );
    }
}

/// Goal: `copy_durable` gives another node exactly the durable image — synced writes kept,
/// unsynced ones absent — without touching the source's current contents; `discard_disk`
/// drops the copy.
#[test]
fn disk_copy_durable_copies_what_survives_a_power_loss() {
    sim::run(22, || async {
        let source = node("source", "10.0.0.1");
        let copy = node("copy", "10.0.0.2");
        let sid = source.id();
        on(sid, async {
            let f = File::open("/data/f").await.unwrap();
            f.write_at(&block(1, 0, 4096), 0).await.unwrap();
            f.sync().await.unwrap();
            f.write_at(&block(2, 4096, 4096), 4096).await.unwrap();
        })
        .await;
        sim_runtime::disk::copy_durable(sid, copy.id());
        let copied_len = on(copy.id(), async {
            let f = File::open("/data/f").await.unwrap();
            let mut b = vec![0u8; 4096];
            f.read_at(&mut b, 0).await.unwrap();
            assert_eq!(b, block(1, 0, 4096));
            f.len().await.unwrap()
        })
        .await;
        assert_eq!(copied_len, 4096, "the unsynced write is not in the copy");
        let source_len = on(sid, async {
            File::open("/data/f").await.unwrap().len().await.unwrap()
        })
        .await;
        assert_eq!(source_len, 8192, "the source still sees its unsynced write");
        sim_runtime::disk::discard_disk(copy.id());
        let gone = on(copy.id(), async {
            !sim_runtime::disk::exists("/data/f").await.unwrap()
        })
        .await;
        assert!(gone, "a discarded disk holds no file");
    });
}

/// Goal: with replay probability one, every frame arrives, in order, and then again about the
/// replay delay later (at most `REPLAYS_MAX` = 16 copies wait at once).
#[test]
fn net_replay_sends_old_frames_again_later() {
    let (seqs, err) = sim::run(23, || {
        transfer(
            LinkFaults {
                replay_probability: 1.0,
                replay_after: (Duration::from_secs(1), Duration::from_secs(1)),
                ..Default::default()
            },
            20,
        )
    });
    assert_eq!(err, None);
    let expected: Vec<u32> = (0..20).chain(0..16).collect();
    assert_eq!(seqs, expected);
}

/// Goal: with tail probability one, every frame meets a heavy-tail delay (counted and logged)
/// and still arrives once, in order.
#[test]
fn net_tail_delay_holds_frames_long() {
    let (seqs, err, tails, logged) = sim::run(24, || async {
        let (seqs, err) = transfer(
            LinkFaults {
                tail_probability: 1.0,
                tail_delay_max: Duration::from_secs(1),
                ..Default::default()
            },
            20,
        )
        .await;
        let logged = fault::events()
            .iter()
            .filter(|e| e.kind == "net.tail_delay")
            .count();
        (seqs, err, fault::counters().frames_tail_delayed, logged)
    });
    assert_eq!(err, None);
    assert_eq!(seqs, (0..20).collect::<Vec<_>>());
    assert_eq!((tails, logged), (20, 20));
}

/// Read the whole of file `f` on node `id`.
async fn whole_file(id: NodeId, f: &'static str) -> Vec<u8> {
    on(id, async move {
        let file = File::open(f).await.unwrap();
        let mut buf = vec![0u8; file.len().await.unwrap() as usize];
        file.read_at(&mut buf, 0).await.unwrap();
        buf
    })
    .await
}

/// Goal: after a power loss a file reads exactly as its durable image — whatever mix of
/// synced, unsynced (lost, torn, kept), overlapping and extending writes and failed syncs came
/// before. (Power loss restores only the ranges unsynced writes touched; `copy_durable` copies
/// the whole durable image: the two must agree.)
#[test]
fn disk_power_loss_leaves_exactly_the_durable_image() {
    for seed in 30..40 {
        sim::run(seed, || async {
            use madsim::rand::Rng;
            let id = node("disk", "10.0.0.1").id();
            let witness = node("witness", "10.0.0.2").id();
            for round in 0..6u8 {
                fault::set_disk_faults(
                    id,
                    DiskFaults {
                        crash_lost_probability: 0.3,
                        crash_torn_probability: 0.3,
                        sync_error_probability: if round % 3 == 2 { 1.0 } else { 0.0 },
                        ..Default::default()
                    },
                );
                let writes: Vec<(u64, usize, bool)> = (0..8)
                    .map(|_| {
                        let mut rng = madsim::rand::thread_rng();
                        (
                            rng.gen_range(0..64) * 256,
                            rng.gen_range(1..3000),
                            rng.gen_bool(0.3),
                        )
                    })
                    .collect();
                on(id, async move {
                    let f = File::open("f").await.unwrap();
                    for (offset, len, sync) in writes {
                        f.write_at(&vec![round + 1; len], offset).await.unwrap();
                        if sync {
                            let _ = f.sync().await;
                        }
                    }
                })
                .await;
                sim::kill(id);
                sim_runtime::disk::copy_durable(id, witness);
                sim::restart(id);
                let (after, durable) = (whole_file(id, "f").await, whole_file(witness, "f").await);
                assert!(
                    after == durable,
                    "round {round}: the file differs from its durable image"
                );
            }
        });
    }
}

/// Goal (disk oracle): an item accepted as valid over a sector bit rot damaged is a finding;
/// the same range after a rewrite, and a clean range beside it, are not.
#[test]
fn disk_oracle_flags_accepted_bit_rot_until_rewritten() {
    let findings = sim::run(3, || async {
        let n = node("disk", "10.0.0.1");
        on(n.id(), async {
            let f = File::open("f").await.unwrap();
            f.write_at(&block(7, 0, 1024), 0).await.unwrap();
            f.write_at(&block(8, 1024, 1024), 1024).await.unwrap();
            f.sync().await.unwrap();
            let rot = DiskFaults {
                bit_rot_probability: 1.0,
                ..Default::default()
            };
            fault::set_disk_faults(sim::current_node(), rot);
            let mut buf = vec![0; 512];
            f.read_at(&mut buf, 0).await.unwrap(); // rots a byte of sector 0
            fault::set_disk_faults(sim::current_node(), DiskFaults::default());
            disk::accepted(&f, 1024, 1024, "clean item");
            let clean = disk::oracle_violations().len();
            disk::accepted(&f, 0, 1024, "rotten item");
            let rotten = disk::oracle_violations().len();
            f.write_at(&block(7, 0, 1024), 0).await.unwrap();
            disk::accepted(&f, 0, 1024, "rewritten item");
            (clean, rotten, disk::oracle_violations())
        })
        .await
    });
    let (clean, rotten, all) = findings;
    assert_eq!(clean, 0, "{all:?}");
    assert_eq!(rotten, 1, "{all:?}");
    assert_eq!(all.len(), 1, "the rewrite cleared the damage: {all:?}");
    assert!(all[0].contains("rotten item"), "{all:?}");
}

/// Goal (disk oracle, accountability): an item reported faulty where no fault touched its
/// bytes is a finding; one where a fault did — a misdirected write meant for there (whose
/// landing place the oracle marks damaged too), a write pending at a power loss — is not.
#[test]
fn disk_oracle_holds_faulty_reports_to_account() {
    let (all, landed) = sim::run(5, || async {
        let n = node("disk", "10.0.0.1");
        let id = n.id();
        let landed = on(id, async {
            let f = File::open("f").await.unwrap();
            f.write_at(&vec![1; 16 * 512], 0).await.unwrap();
            f.sync().await.unwrap();
            disk::reported_faulty(&f, &[(0, 512)], "an untouched item");
            fault::set_disk_faults(
                sim::current_node(),
                DiskFaults {
                    misdirect_probability: 1.0,
                    ..Default::default()
                },
            );
            f.write_at(&vec![2; 512], 512).await.unwrap();
            fault::set_disk_faults(sim::current_node(), DiskFaults::default());
            disk::reported_faulty(&f, &[(512, 512)], "the item the misdirected write missed");
            // It landed on another sector of the file: accepting each other one finds it.
            let before = disk::oracle_violations().len();
            for s in (0..16).filter(|&s| s != 1) {
                disk::accepted(&f, s * 512, 512, "a sector");
            }
            let landed = disk::oracle_violations().len() - before;
            f.write_at(&vec![3; 512], 12 * 512).await.unwrap(); // pending at the power loss
            landed
        })
        .await;
        sim::kill(id);
        sim::restart(id);
        let all = on(id, async {
            let f = File::open("f").await.unwrap();
            disk::reported_faulty(&f, &[(12 * 512, 512)], "the item pending at the crash");
            disk::reported_faulty(&f, &[(14 * 512, 512)], "another untouched item");
            disk::oracle_violations()
        })
        .await;
        (all, landed)
    });
    let unexplained: Vec<&String> = all.iter().filter(|v| v.contains("faulty")).collect();
    assert_eq!(unexplained.len(), 2, "{all:?}");
    assert!(unexplained[0].contains("an untouched item"), "{all:?}");
    assert!(unexplained[1].contains("another untouched item"), "{all:?}");
    assert_eq!(landed, 1, "the misdirected write's landing place: {all:?}");
}

/// Goal (disk oracle): after a power loss tears a write, an item spanning its kept and lost
/// sectors is a finding; items wholly on one side are not.
#[test]
fn disk_oracle_flags_an_item_straddling_a_torn_write() {
    let mut straddle_seen = false;
    for seed in 0..8 {
        let (whole, sides) = sim::run(seed, || async {
            let id = torn_rewrite(8 * 512, (0, 8 * 512)).await;
            on(id, async {
                let f = File::open("f").await.unwrap();
                let mut buf = vec![0; 8 * 512];
                f.read_at(&mut buf, 0).await.unwrap();
                disk::accepted(&f, 0, 8 * 512, "the whole write");
                let whole = disk::oracle_violations().len();
                for s in 0..8 {
                    disk::accepted(&f, s * 512, 512, "one sector");
                }
                let mixed =
                    buf.chunks(512).any(|c| c[0] == 0xEE) && buf.chunks(512).any(|c| c[0] == 0x11);
                (whole, (disk::oracle_violations().len() - whole, mixed))
            })
            .await
        });
        let (single_sector_findings, mixed) = sides;
        assert_eq!(
            single_sector_findings, 0,
            "seed {seed}: a sector is one side"
        );
        assert_eq!(whole, usize::from(mixed), "seed {seed}: mixed {mixed}");
        straddle_seen |= mixed;
    }
    assert!(straddle_seen, "some seed must tear the write");
}

/// A server on 10.0.4.1 that records when each frame arrives (seconds since `start`), and a
/// client on 10.0.4.2 connected to it (with `user_timeout`, if any) that sends frame `n` at
/// each `(at_s, n)` of `sends`. Partitioned (TCP partitions) over `[cut_s, heal_s)`.
/// Returns the arrivals and, per send, whether the client's writer was still open.
async fn tcp_partition_run(
    user_timeout: Option<Duration>,
    cut_s: f64,
    heal_s: f64,
    sends: &'static [(f64, u8)],
) -> (Vec<(u8, f64)>, Vec<bool>) {
    fault::set_tcp_partitions(true);
    let server = node("server", "10.0.4.1");
    let client = node("client", "10.0.4.2");
    let addr: SocketAddr = "10.0.4.1:9000".parse().unwrap();
    let start = time::Instant::now();
    let arrivals = Arc::new(std::sync::Mutex::new(Vec::new()));
    let got = arrivals.clone();
    server.spawn(async move {
        let listener = TcpListener::bind(addr).await.unwrap();
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let got = got.clone();
            sim_runtime::task::spawn(async move {
                let (_w, mut r) = net::framed(s);
                while let Ok(p) = r.recv().await {
                    got.lock()
                        .unwrap()
                        .push((p[0], start.elapsed().as_secs_f64()));
                }
            });
        }
    });
    let sender = client.spawn(async move {
        time::sleep(Duration::from_millis(10)).await;
        let mut s = net::TcpStream::connect(addr).await.unwrap();
        if let Some(t) = user_timeout {
            net::set_user_timeout(&mut s, t).unwrap();
        }
        let (w, _r) = net::framed(s);
        let mut open = Vec::new();
        for &(at, n) in sends {
            time::sleep_until(start + Duration::from_secs_f64(at)).await;
            open.push(w.send(vec![n]).await.is_ok());
        }
        open
    });
    time::sleep(Duration::from_secs_f64(cut_s)).await;
    fault::partition(ip("10.0.4.1"), ip("10.0.4.2"));
    time::sleep(Duration::from_secs_f64(heal_s - cut_s)).await;
    fault::heal_all();
    let open = sender.await.unwrap();
    time::sleep(Duration::from_secs(60)).await;
    let arrivals = arrivals.lock().unwrap().clone();
    (arrivals, open)
}

/// Goal: with TCP partitions, a partition loses nothing on an open connection, and what it
/// held arrives not at the heal but at the sender's next retransmission: sent at 0.5 s into a
/// partition cut at 0.5 s and healed at 13.5 s, retransmissions fall 0.2, 0.6, 1.4, 3.0, 6.2,
/// 12.6 and 25.4 s after the cut — so frame 2 arrives at 25.9 s, 12.4 s after the heal, and
/// frame 3, sent after the heal, behind it in order. (With the knob off the partition drops
/// frame 2: `net_partitions_block_and_heal`.)
#[test]
fn net_tcp_partition_holds_bytes_until_a_retransmission_after_the_heal() {
    sim::run(41, || async {
        let (arrivals, open) =
            tcp_partition_run(None, 0.5, 13.5, &[(0.2, 1), (0.5, 2), (14.0, 3)]).await;
        assert_eq!(open, vec![true, true, true]);
        let order: Vec<u8> = arrivals.iter().map(|a| a.0).collect();
        assert_eq!(order, vec![1, 2, 3], "nothing lost, in order: {arrivals:?}");
        let (_, two) = arrivals[1];
        assert!(
            (25.85..25.95).contains(&two),
            "frame 2 arrives at the retransmission 25.4 s after the cut, not at the heal: {two}"
        );
        assert!(arrivals[2].1 >= two);
        let c = fault::counters();
        assert_eq!(c.frames_partitioned, 0, "TCP partitions drop no frame");
        assert_eq!((c.partitions, c.heals), (2, 2));
    });
}

/// Goal: a writer with a user timeout gives up on a connection whose bytes a partition held
/// longer than it — its next write fails, what it held is never delivered (not even after the
/// heal), and the counter says so; without the timeout the same run delivers everything late.
#[test]
fn net_user_timeout_gives_up_on_a_held_connection() {
    const SENDS: &[(f64, u8)] = &[(0.2, 1), (0.6, 2), (1.0, 3), (1.8, 4), (2.0, 5)];
    sim::run(42, || async {
        let (arrivals, open) =
            tcp_partition_run(Some(Duration::from_secs(1)), 0.5, 5.0, SENDS).await;
        let order: Vec<u8> = arrivals.iter().map(|a| a.0).collect();
        assert_eq!(
            order,
            vec![1],
            "held bytes of a given-up connection never arrive"
        );
        assert_eq!(open[..3], [true, true, true]);
        assert!(
            !open[4],
            "the writer fails once the timeout fired: {open:?}"
        );
        assert_eq!(fault::counters().stream_user_timeouts, 1);
    });
    sim::run(42, || async {
        let (arrivals, open) = tcp_partition_run(None, 0.5, 5.0, SENDS).await;
        let order: Vec<u8> = arrivals.iter().map(|a| a.0).collect();
        assert_eq!(order, vec![1, 2, 3, 4, 5]);
        assert!(open.iter().all(|&o| o));
        assert_eq!(fault::counters().stream_user_timeouts, 0);
    });
}

/// Goal: a connection opened into a TCP partition completes at the SYN's first retransmission
/// after the heal (1, 3, 7, 15, 31 s after it began: here 31.1 s for a heal at 20 s), and
/// `connect_with_backoff`, bounding each attempt by `net::CONNECT_TIMEOUT`, connects within
/// that timeout and its backoff of the heal instead.
#[test]
fn net_connect_into_a_tcp_partition_waits_for_a_syn_retransmission() {
    sim::run(43, || async {
        fault::set_tcp_partitions(true);
        let server = node("server", "10.0.4.1");
        let client = node("client", "10.0.4.2");
        let addr: SocketAddr = "10.0.4.1:9000".parse().unwrap();
        server.spawn(async move {
            let listener = TcpListener::bind(addr).await.unwrap();
            let mut held = Vec::new();
            loop {
                held.push(listener.accept().await.unwrap());
            }
        });
        // The simulator learns a node's address from its listeners and connections.
        client
            .spawn(async { TcpListener::bind("10.0.4.2:7000").await.unwrap() })
            .await
            .unwrap();
        fault::partition(ip("10.0.4.1"), ip("10.0.4.2"));
        let start = time::Instant::now();
        let plain = client.spawn(async move {
            time::sleep(Duration::from_millis(100)).await;
            net::TcpStream::connect(addr).await.unwrap();
            start.elapsed().as_secs_f64()
        });
        let bounded = client.spawn(async move {
            time::sleep(Duration::from_millis(100)).await;
            let backoff = net::Backoff {
                min: Duration::from_millis(100),
                max: Duration::from_millis(100),
            };
            net::connect_with_backoff(addr, backoff, None)
                .await
                .unwrap();
            start.elapsed().as_secs_f64()
        });
        time::sleep(Duration::from_secs(20)).await;
        fault::heal_all();
        let (plain, bounded) = (plain.await.unwrap(), bounded.await.unwrap());
        assert!((31.09..31.11).contains(&plain), "plain connect at {plain}");
        assert!(
            (20.0..21.2).contains(&bounded),
            "bounded connect within a timeout and a backoff of the heal: {bounded}"
        );
        assert!(fault::counters().stream_connects_held >= 2);
    });
}

/// Goal: a node's clock offset moves its wall clock (and only its own): two nodes reading
/// `now_wall` at the same simulated instant differ by the offsets; monotonic time is shared.
#[test]
fn clock_offset_skews_one_nodes_wall_clock() {
    sim::run(44, || async {
        let ahead = node("ahead", "10.0.5.1").id();
        let behind = node("behind", "10.0.5.2").id();
        fault::set_clock_offset(ahead, 1_500);
        fault::set_clock_offset(behind, -700);
        let read = || async { sim_runtime::time::now_wall() };
        let here = read().await;
        let (a, b) = (on(ahead, read()).await, on(behind, read()).await);
        let ms = |x: std::time::SystemTime, y: std::time::SystemTime| match x.duration_since(y) {
            Ok(d) => d.as_millis() as i64,
            Err(e) => -(e.duration().as_millis() as i64),
        };
        // Spawning on a node takes a little simulated time: within 10 ms.
        let near = |got: i64, want: i64| (want..want + 10).contains(&got);
        assert!(near(ms(a, here), 1_500), "{}", ms(a, here));
        assert!(near(ms(b, here), -700), "{}", ms(b, here));
        fault::set_clock_offset(ahead, 0);
        let zero = ms(on(ahead, read()).await, here);
        assert!(near(zero, 0), "{zero}");
    });
}

/// Goal: a sync covers exactly the writes completed before it was called. A write made while
/// the sync is in flight is not made durable by it: a power loss that loses every unsynced
/// write loses that one and keeps the first (fails if a sync took every pending write when it
/// completed, as it once did).
#[test]
fn disk_sync_covers_only_writes_completed_before_the_call() {
    sim::run(8, || async {
        let id = disk_node(
            "10.0.0.1",
            DiskFaults {
                crash_lost_probability: 1.0,
                sync_latency: (Duration::from_millis(5), Duration::from_millis(5)),
                ..Default::default()
            },
        );
        on(id, async {
            let f = File::open("f").await.unwrap();
            f.write_at(&block(1, 0, 512), 0).await.unwrap();
            let sync = f.sync();
            // Written while the sync is in flight, before it is first polled.
            f.write_at(&block(2, 512, 512), 512).await.unwrap();
            sync.await.unwrap();
        })
        .await;
        sim::kill(id);
        sim::restart(id);
        let (first, second) = on(id, async {
            let f = File::open("f").await.unwrap();
            let mut first = vec![0; 512];
            f.read_at(&mut first, 0).await.unwrap();
            let mut second = vec![0; 512];
            let second = f.read_at(&mut second, 512).await.is_ok() && second == block(2, 512, 512);
            (first == block(1, 0, 512), second)
        })
        .await;
        assert!(first, "the write before the sync is durable");
        assert!(!second, "the write during the sync is not covered by it");
        assert_eq!(fault::counters().crash_lost_writes, 1);
    });
}

/// Time for `n` syncs on a fresh node with `faults`.
async fn sync_time(faults: DiskFaults, n: u32) -> Duration {
    let id = disk_node("10.0.0.1", faults);
    on(id, async move {
        let f = File::open("f").await.unwrap();
        let start = time::Instant::now();
        for i in 0..n {
            f.write_at(&[i as u8; 512], 0).await.unwrap();
            f.sync().await.unwrap();
        }
        start.elapsed()
    })
    .await
}

/// Goal: the stall knob makes syncs stall (log-uniform up to `sync_stall_max`), counted and
/// logged; at zero, a sync takes its latency only.
#[test]
fn disk_sync_stall_knob_stalls_syncs() {
    let latency = (Duration::from_micros(100), Duration::from_micros(100));
    let quick = sim::run(9, move || async move {
        let t = sync_time(
            DiskFaults {
                sync_latency: latency,
                sync_stall_max: Duration::from_millis(500),
                ..Default::default()
            },
            20,
        )
        .await;
        assert_eq!(fault::counters().syncs_stalled, 0);
        t
    });
    // (Simulated sleeps round up to a millisecond.)
    assert!(quick <= Duration::from_millis(25), "{quick:?}");
    let stalled = sim::run(9, move || async move {
        let t = sync_time(
            DiskFaults {
                sync_latency: latency,
                sync_stall_probability: 1.0,
                sync_stall_max: Duration::from_millis(500),
                ..Default::default()
            },
            20,
        )
        .await;
        assert_eq!(fault::counters().syncs_stalled, 20);
        assert!(fault::events().iter().any(|e| e.kind == "disk.sync_stall"));
        t
    });
    assert!(stalled >= quick * 3, "{stalled:?} against {quick:?}");
    assert!(stalled <= Duration::from_secs(11), "{stalled:?}");
}

/// Goal: a torn rewrite whose only changed sector is its first (an entry re-prepared with the
/// same body under a new header) leaves a whole version, old or new, whichever sectors the
/// tear kept: the disk oracle never calls accepting it half of a torn write (soak seed
/// 733014683759 did, when the tear kept body sectors identical to the old ones and lost the
/// header sector: the old entry, intact, was judged torn).
#[test]
fn disk_oracle_torn_rewrite_of_identical_sectors_is_a_whole_version() {
    let mut both = (false, false);
    for seed in 0..16 {
        let (first, violations) = sim::run(seed, || async {
            let id = disk_node(
                "10.0.0.1",
                DiskFaults {
                    crash_torn_probability: 1.0,
                    ..Default::default()
                },
            );
            on(id, async {
                let f = File::open("f").await.unwrap();
                let mut old = vec![0x22; 4 * 512];
                old[..512].fill(0x11);
                f.write_at(&old, 0).await.unwrap();
                f.sync().await.unwrap();
                let mut new = old.clone();
                new[..512].fill(0xEE);
                f.write_at(&new, 0).await.unwrap();
            })
            .await;
            sim::kill(id);
            sim::restart(id);
            on(id, async {
                let f = File::open("f").await.unwrap();
                let mut buf = vec![0; 4 * 512];
                f.read_at(&mut buf, 0).await.unwrap();
                assert!(buf[512..].iter().all(|&b| b == 0x22));
                disk::accepted(&f, 0, 4 * 512, "an entry");
                (buf[0], disk::oracle_violations())
            })
            .await
        });
        assert!(violations.is_empty(), "seed {seed}: {violations:?}");
        match first {
            0x11 => both.0 = true,
            0xEE => both.1 = true,
            other => panic!("sector 0 holds {other:#x}"),
        }
    }
    assert_eq!(
        both,
        (true, true),
        "some seed keeps the new header, some the old"
    );
}
