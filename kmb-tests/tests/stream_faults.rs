//! Issue 11's fault dimensions must fire: byte-stream link faults (`Swarm::links`,
//! `sim_runtime::net` streams: resets, stalls, fragmented reads) and the hostile client
//! (`Payloads::hostile`). Each seed drawn with them must pass, and the faults must have acted
//! — a reset that broke a live connection, a stall, a fragmented link, a hostile request sent.
#![cfg(madsim)]

use kmb_tests::swarm::{Swarm, SwarmOptions};
use kmb_tests::vopr::{run_seed, Outcome, RunOptions};

/// The first `n` seeds whose swarm satisfies `wanted`.
fn seeds(n: usize, wanted: impl Fn(&Swarm) -> bool) -> Vec<u64> {
    (0..)
        .filter(|&s| wanted(&Swarm::from_seed(s, SwarmOptions::default())))
        .take(n)
        .collect()
}

/// Run `seeds`; each must pass; the summed fault counters.
fn fired(seeds: &[u64], counters: &[&str]) -> Vec<u64> {
    let mut sums = vec![0; counters.len()];
    for &seed in seeds {
        let record = run_seed(seed, &RunOptions::default());
        let line = serde_json::to_string(&record).unwrap();
        assert_eq!(record.outcome, Outcome::Pass, "seed {seed}: {line}");
        for (sum, name) in sums.iter_mut().zip(counters) {
            *sum += record.fault_counters.get(*name).copied().unwrap_or(0);
        }
    }
    sums
}

/// Goal: link resets break live connections and stalls hold links, and the seeds pass.
#[test]
fn link_resets_and_stalls_act() {
    let seeds = seeds(3, |s| s.links.rate > 0.5);
    let sums = fired(&seeds, &["stream_resets_seen", "stream_stalls"]);
    assert!(sums.iter().all(|&n| n > 0), "{seeds:?}: {sums:?}");
}

/// Goal: fragmented reads and the hostile client act, and the seeds pass.
#[test]
fn fragmented_reads_and_the_hostile_client_act() {
    let seeds = seeds(2, |s| s.links.fragment && s.payloads.hostile);
    let sums = fired(&seeds, &["stream_fragments", "client.hostile_requests"]);
    assert!(sums.iter().all(|&n| n > 0), "{seeds:?}: {sums:?}");
}

/// Goal: slow readers act on client and peer links — writers to them fill the receive window
/// and wait (flow control) — and the seeds pass.
#[test]
fn slow_readers_push_back_on_their_writers() {
    let seeds = seeds(3, |s| s.links.slow_readers > 0.5 && s.payloads.large > 0.1);
    let sums = fired(&seeds, &["stream_slow_readers", "stream_window_waits"]);
    assert!(sums.iter().all(|&n| n > 0), "{seeds:?}: {sums:?}");
}

/// Goal: time-travelling frames (issue 12) — heavy-tail delays and frames sent again seconds
/// later — fire, stale messages of older views reach replicas that moved on (coverage marks
/// `stale_*`), and the seeds pass.
#[test]
fn time_travelling_frames_reach_replicas_that_moved_on() {
    let seeds = seeds(4, |s| s.net.tail > 0.005 && s.net.replay > 0.01);
    let mut sums = fired(&seeds, &["frames_tail_delayed", "frames_replayed"]);
    let stale: u64 = seeds
        .iter()
        .map(|&seed| {
            let record = run_seed(seed, &RunOptions::default());
            record
                .marks
                .iter()
                .filter(|(name, _)| name.starts_with("stale_"))
                .map(|(_, n)| n)
                .sum::<u64>()
        })
        .sum();
    sums.push(stale);
    assert!(
        sums.iter().all(|&n| n > 0),
        "{seeds:?}: tail, replayed, stale {sums:?}"
    );
}

/// Goal: aimed faults (issue 12) — right after an op commits, crash exactly the replicas that
/// acknowledged it, partition exactly the others, or isolate the primary — hit replicas, and
/// the seeds pass.
#[test]
fn aimed_faults_hit_the_replicas_that_acknowledged() {
    let seeds = seeds(3, |s| s.aimed > 0.5);
    let sums = fired(&seeds, &["aimed.replicas_hit"]);
    assert!(sums.iter().all(|&n| n > 0), "{seeds:?}: {sums:?}");
}

/// Goal: the TCP-partition dimension acts in the VOPR: partitions drop no frame, peer links
/// give up on bytes held past their user timeout and reconnect (connects held by the
/// partition), and the seeds pass. (Without the dimension the same partitions drop frames.)
#[test]
fn tcp_partitions_hold_bytes_and_peer_links_give_up_on_them() {
    let seeds = seeds(3, |s| {
        s.links.tcp_partitions && s.partition_rate > 0.5 && s.fault_duration_ms.1 > 2000
    });
    let sums = fired(
        &seeds,
        &[
            "partitions",
            "stream_user_timeouts",
            "stream_connects_held",
            "frames_partitioned",
        ],
    );
    assert!(sums[..3].iter().all(|&n| n > 0), "{seeds:?}: {sums:?}");
    assert_eq!(sums[3], 0, "{seeds:?}: a TCP partition drops nothing");
}
