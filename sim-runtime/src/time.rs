//! Time: real in production, simulated under madsim.
//!
//! [`Instant`] is a newtype so callers never name `std::time::Instant::now` (which clippy
//! forbids outside this crate) and so the type is the same in both modes.

use std::future::Future;
use std::ops::{Add, Sub};

pub use std::time::Duration;
pub use std::time::SystemTime;

/// A monotonic instant: simulated under madsim, real otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(tokio::time::Instant);

impl Instant {
    /// The current instant.
    pub fn now() -> Instant {
        Instant(tokio::time::Instant::now())
    }

    /// Time elapsed since `self`.
    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(&self, earlier: Instant) -> Duration {
        self.0.saturating_duration_since(earlier.0)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant(self.0 + rhs)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

/// Wall-clock time (simulated under madsim, which intercepts the system clock; each simulated
/// node's clock may be off by `fault::set_clock_offset`, as machines' clocks are).
pub fn now_wall() -> SystemTime {
    #[cfg(madsim)]
    {
        let offset = crate::fault::clock_offset_ms();
        let now = SystemTime::now();
        let by = Duration::from_millis(offset.unsigned_abs());
        if offset >= 0 {
            now + by
        } else {
            now.checked_sub(by).unwrap_or(now)
        }
    }
    #[cfg(not(madsim))]
    SystemTime::now()
}

/// [`now_wall`] in microseconds since the Unix epoch (0 for a clock before it).
pub fn unix_micros() -> u64 {
    now_wall()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Sleep for `duration`.
pub async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await
}

/// Sleep until `deadline`.
pub async fn sleep_until(deadline: Instant) {
    tokio::time::sleep_until(deadline.0).await
}

/// The error of a [`timeout`] that expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed;

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl std::error::Error for Elapsed {}

/// Run `future` for at most `duration`.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    tokio::time::timeout(duration, future)
        .await
        .map_err(|_| Elapsed)
}

/// A periodic tick; missed ticks are delayed, never burst.
pub struct Interval(tokio::time::Interval);

/// An interval whose first tick completes after `period`.
pub fn interval(period: Duration) -> Interval {
    let start = tokio::time::Instant::now() + period;
    let mut inner = tokio::time::interval_at(start, period);
    inner.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    Interval(inner)
}

impl Interval {
    /// Wait for the next tick.
    pub async fn tick(&mut self) -> Instant {
        Instant(self.0.tick().await)
    }
}
