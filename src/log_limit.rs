//! A warning that input from outside can repeat at will (a refused
//! connection, a throttled lookup) is logged at most once per period, with
//! how many times it happened since: the log costs what the period allows,
//! not what a client sends.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// How often each such line may repeat.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// One rate-limited log line.
pub struct LogLimit {
    limiter: DefaultDirectRateLimiter,
    since_last: AtomicU64,
}

impl LogLimit {
    /// A line logged at most once per `period` (the first at once).
    pub fn new(period: Duration) -> Self {
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::MIN);
        LogLimit {
            limiter: RateLimiter::direct(quota),
            since_last: AtomicU64::new(0),
        }
    }

    /// Counts one occurrence; `Some(n)` when it is to be logged now, `n`
    /// being the occurrences since the last line (this one included).
    pub fn occurred(&self) -> Option<u64> {
        self.since_last.fetch_add(1, Ordering::Relaxed);
        self.limiter.check().ok()?;
        Some(self.since_last.swap(0, Ordering::Relaxed))
    }
}

impl Default for LogLimit {
    fn default() -> Self {
        LogLimit::new(LOG_EVERY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_one_line_then_counted() {
        let l = LogLimit::new(Duration::from_secs(3600));
        assert_eq!(l.occurred(), Some(1), "the first is logged");
        let logged: Vec<_> = (0..1000).filter_map(|_| l.occurred()).collect();
        assert!(
            logged.is_empty(),
            "within the period nothing more: {logged:?}"
        );
    }

    #[test]
    fn after_the_period_the_line_says_how_many_it_stands_for() {
        let l = LogLimit::new(Duration::from_millis(20));
        assert_eq!(l.occurred(), Some(1));
        for _ in 0..9 {
            assert_eq!(l.occurred(), None);
        }
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(l.occurred(), Some(10), "9 suppressed + this one");
    }
}
