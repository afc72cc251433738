//! The rates at which one namespace's churn may make the sync loop work,
//! so that a tenant flooding its namespace with ServerConfigs delays only
//! itself: placeholder creates, and the cap Warning.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// How soon a pass that left creates for later runs again.
pub const DEFERRED_RETRY: Duration = Duration::from_secs(2);
/// At most one `PlaceholderCapReached` per namespace this often.
pub const EVENT_PERIOD: Duration = Duration::from_secs(30);
/// Placeholder creates one namespace may cause per minute, after a burst
/// of its cap (all its names at once).
const CREATES_PER_MINUTE: u32 = 30;

/// Rate limiters keyed by namespace.
pub struct PerNamespace {
    pub creates: DefaultKeyedRateLimiter<String>,
    pub events: DefaultKeyedRateLimiter<String>,
}

impl PerNamespace {
    /// Limiters for a cap of `cap` placeholders per namespace.
    pub fn new(cap: usize) -> Self {
        let burst = NonZeroU32::new(u32::try_from(cap.max(1)).unwrap_or(u32::MAX))
            .unwrap_or(NonZeroU32::MIN);
        let per_minute = NonZeroU32::new(CREATES_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        let events =
            Quota::with_period(EVENT_PERIOD).unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN));
        PerNamespace {
            creates: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            events: RateLimiter::keyed(events),
        }
    }
}
