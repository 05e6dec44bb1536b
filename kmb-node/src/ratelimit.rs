//! Rate-limited warnings: the same warning about the same source (a peer's address and a
//! reason) is logged at most once per period, with the number suppressed since the last one,
//! so a misconfigured or hostile peer retrying in a loop cannot flood the log.
//!
//! Pure: the caller passes the time (from `sim_runtime::time`).

use std::collections::BTreeMap;

use sim_runtime::time::{Duration, Instant};

/// How often a given warning may be logged.
pub const WARN_PERIOD: Duration = Duration::from_secs(60);
/// Distinct sources remembered; when full, entries older than the period are forgotten, and
/// if none is, warnings from new sources are suppressed until one is.
pub const WARN_SOURCES_MAX: usize = 1024;

/// Remembers when each source's warning was last logged.
#[derive(Debug)]
pub struct WarnLimiter<K: Ord> {
    period: Duration,
    last: BTreeMap<K, (Instant, u64)>,
}

impl<K: Ord + Clone> WarnLimiter<K> {
    /// A limiter allowing one warning per source per `period`.
    pub fn new(period: Duration) -> WarnLimiter<K> {
        WarnLimiter {
            period,
            last: BTreeMap::new(),
        }
    }

    /// Whether to log `key`'s warning at `now`: `Some(suppressed)` (the number of this
    /// source's warnings dropped since it was last logged), or `None` to stay quiet.
    pub fn check(&mut self, key: &K, now: Instant) -> Option<u64> {
        if let Some((at, suppressed)) = self.last.get_mut(key) {
            if now.saturating_duration_since(*at) < self.period {
                *suppressed += 1;
                return None;
            }
            let dropped = *suppressed;
            *at = now;
            *suppressed = 0;
            return Some(dropped);
        }
        if self.last.len() >= WARN_SOURCES_MAX {
            let period = self.period;
            self.last
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < period);
            if self.last.len() >= WARN_SOURCES_MAX {
                return None;
            }
        }
        self.last.insert(key.clone(), (now, 0));
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: one warning per source per period, counting the suppressed ones; sources are
    /// independent.
    #[test]
    fn once_per_source_per_period() {
        let mut limiter = WarnLimiter::new(WARN_PERIOD);
        let t0 = Instant::now();
        assert_eq!(limiter.check(&"a", t0), Some(0));
        for i in 1..100 {
            assert_eq!(
                limiter.check(&"a", t0 + Duration::from_millis(i * 100)),
                None
            );
        }
        assert_eq!(limiter.check(&"b", t0 + Duration::from_secs(1)), Some(0));
        assert_eq!(limiter.check(&"a", t0 + Duration::from_secs(59)), None);
        assert_eq!(limiter.check(&"a", t0 + WARN_PERIOD), Some(100));
        assert_eq!(limiter.check(&"a", t0 + WARN_PERIOD), None);
    }

    /// Goal: the table of sources is bounded; old sources make room for new ones.
    #[test]
    fn sources_are_bounded() {
        let mut limiter = WarnLimiter::new(WARN_PERIOD);
        let t0 = Instant::now();
        for k in 0..WARN_SOURCES_MAX {
            assert_eq!(limiter.check(&k, t0), Some(0));
        }
        assert_eq!(limiter.check(&usize::MAX, t0), None);
        assert_eq!(limiter.last.len(), WARN_SOURCES_MAX);
        assert_eq!(limiter.check(&usize::MAX, t0 + WARN_PERIOD), Some(0));
        assert_eq!(limiter.last.len(), 1);
    }
}
