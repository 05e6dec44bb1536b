//! The simulation-only frame interposer: network faults applied to whole frames.

use std::net::IpAddr;

use madsim::rand::Rng;
use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::sync::mpsc;

use super::{write_frame, Frame, TcpStream};

use crate::fault;
use crate::time::Duration;

/// A frame held back for reordering is sent at the latest this long after it was held.
const HOLD_MAX: Duration = Duration::from_millis(20);

/// At most this many frames wait per connection to be sent again (`replay_probability`).
const REPLAYS_MAX: usize = 16;

/// Write one frame without flushing it: the writer flushes (one simulated payload) only once no
/// further frame is queued, so a burst of frames travels as one payload, as a kernel coalesces
/// a burst into full segments. (madsim delivers each payload a timer tick after the previous
/// one: flushing every frame of a backlog of thousands capped a connection at a thousand
/// frames per simulated second, far below what any real link carries — a replica flooded with
/// a backlog after a heal fell further behind every second.)
async fn write_unflushed(
    write: &mut WriteHalf<TcpStream>,
    frame: &[u8],
    unflushed: &mut bool,
) -> std::io::Result<()> {
    write.write_all(frame).await?;
    *unflushed = true;
    Ok(())
}

/// Flush what [`write_unflushed`] left unflushed (when the queue is empty, and before any wait).
async fn flush(write: &mut WriteHalf<TcpStream>, unflushed: &mut bool) -> std::io::Result<()> {
    if std::mem::take(unflushed) {
        write.flush().await?;
    }
    Ok(())
}

/// What the fault layer decided for one frame.
struct Plan {
    drop: bool,
    delay: Duration,
    corrupt_bit: Option<usize>,
    duplicate: bool,
    reorder: bool,
    /// Send a copy again this long after the frame.
    replay_after: Option<Duration>,
}

fn plan(src: IpAddr, dst: IpAddr, frame_len: usize) -> Plan {
    fault::with(|s| {
        s.counters.frames_sent += 1;
        let link = || format!("{src} -> {dst}");
        let mut plan = Plan {
            drop: false,
            delay: Duration::ZERO,
            corrupt_bit: None,
            duplicate: false,
            reorder: false,
            replay_after: None,
        };
        if !s.tcp_partitions && s.blocked.contains_key(&(src, dst)) {
            s.counters.frames_partitioned += 1;
            plan.drop = true;
            return plan;
        }
        let faults = s.link_faults(src, dst);
        if s.chance(faults.drop_probability) {
            s.counters.frames_dropped += 1;
            s.record("net.drop", link());
            plan.drop = true;
            return plan;
        }
        plan.delay = s.uniform(faults.delay);
        if !plan.delay.is_zero() {
            s.counters.frames_delayed += 1;
        }
        if s.chance(faults.tail_probability) {
            plan.delay = s.log_uniform(faults.delay.1, faults.tail_delay_max);
            s.counters.frames_tail_delayed += 1;
            s.record("net.tail_delay", format!("{} {:?}", link(), plan.delay));
        }
        if s.chance(faults.corrupt_probability) {
            let bit = s.rng.gen_range(0..frame_len * 8);
            s.counters.frames_corrupted += 1;
            s.record("net.corrupt", format!("{} bit {bit}", link()));
            plan.corrupt_bit = Some(bit);
        }
        if s.chance(faults.duplicate_probability) {
            s.counters.frames_duplicated += 1;
            s.record("net.duplicate", link());
            plan.duplicate = true;
        }
        if s.chance(faults.reorder_probability) {
            s.counters.frames_reordered += 1;
            s.record("net.reorder", link());
            plan.reorder = true;
        }
        if s.chance(faults.replay_probability) {
            plan.replay_after = Some(s.uniform(faults.replay_after));
        }
        plan
    })
}

pub(super) async fn writer_task(
    mut write: WriteHalf<TcpStream>,
    mut rx: mpsc::Receiver<Frame>,
    link: Option<(IpAddr, IpAddr)>,
) {
    let mut held: Option<Vec<u8>> = None;
    let mut unflushed = false;
    // Copies of earlier frames to send again, with when (`LinkFaults::replay_probability`).
    let mut replays: Vec<(crate::time::Instant, Vec<u8>)> = Vec::new();
    loop {
        // Replays that are due go out first (a partition catches them like any frame).
        let now = crate::time::Instant::now();
        while let Some(i) = replays.iter().position(|(at, _)| *at <= now) {
            let (_, frame) = replays.remove(i);
            let (src, dst) = link.expect("replays only on faulted links");
            if fault::drops_frames(src, dst) {
                continue;
            }
            fault::with(|s| {
                s.counters.frames_replayed += 1;
                s.record("net.replay", format!("{src} -> {dst}"));
            });
            if write_frame(&mut write, &frame).await.is_err() {
                return;
            }
        }
        let replay_at = replays.iter().map(|(at, _)| *at).min();
        if rx.is_empty() && flush(&mut write, &mut unflushed).await.is_err() {
            return;
        }
        let next = if held.is_some() {
            let now = crate::time::Instant::now();
            let hold_until = now + HOLD_MAX;
            let until = replay_at.map_or(hold_until, |r| r.min(hold_until));
            match crate::time::timeout(until - now, rx.recv()).await {
                Ok(next) => next,
                Err(_) if crate::time::Instant::now() < hold_until => continue,
                Err(_) => {
                    let frame = held.take().expect("held frame");
                    if write_frame(&mut write, &frame).await.is_err() {
                        return;
                    }
                    continue;
                }
            }
        } else if let Some(at) = replay_at {
            let wait = at - crate::time::Instant::now();
            match crate::time::timeout(wait, rx.recv()).await {
                Ok(next) => next,
                Err(_) => continue,
            }
        } else {
            rx.recv().await
        };
        let Some(frame) = next else { break };
        let mut frame = frame.into_bytes();
        let Some((src, dst)) = link else {
            // Flushed at the top of the loop once the queue is empty.
            if write_unflushed(&mut write, &frame, &mut unflushed)
                .await
                .is_err()
            {
                return;
            }
            continue;
        };
        let plan = plan(src, dst, frame.len());
        if plan.drop {
            continue;
        }
        if !plan.delay.is_zero() {
            if flush(&mut write, &mut unflushed).await.is_err() {
                return;
            }
            crate::time::sleep(plan.delay).await;
            // A partition that began during the delay catches the frame too.
            if fault::drops_frames(src, dst) {
                fault::with(|s| s.counters.frames_partitioned += 1);
                continue;
            }
        }
        if let Some(bit) = plan.corrupt_bit {
            frame[bit / 8] ^= 1 << (bit % 8);
        }
        if let Some(after) = plan.replay_after {
            if replays.len() < REPLAYS_MAX {
                replays.push((crate::time::Instant::now() + after, frame.clone()));
            }
        }
        if plan.reorder && held.is_none() {
            held = Some(frame);
            continue;
        }
        let copies = if plan.duplicate { 2 } else { 1 };
        for _ in 0..copies {
            if write_unflushed(&mut write, &frame, &mut unflushed)
                .await
                .is_err()
            {
                return;
            }
        }
        if let Some(frame) = held.take() {
            if write_unflushed(&mut write, &frame, &mut unflushed)
                .await
                .is_err()
            {
                return;
            }
        }
        if rx.is_empty() && flush(&mut write, &mut unflushed).await.is_err() {
            return;
        }
    }
    if let Some(frame) = held.take() {
        let _ = write_frame(&mut write, &frame).await;
    }
    let _ = flush(&mut write, &mut unflushed).await;
    let _ = write.shutdown().await;
}
