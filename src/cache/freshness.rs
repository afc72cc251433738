//! Whether a watch-backed store may be trusted to hold the API server's
//! current objects: it has finished a full list since its watch last broke,
//! and it has heard from the API server (a watch opened, an event, a
//! bookmark) within its trust window. A store that may not be trusted is
//! bypassed by admission's lookups, which ask the API server instead
//! (`Caches::lookup`), so a broken or silently stalled watch bounds how old
//! an applied object can be instead of a reconnect backoff.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// An instant many threads read and move forward without a lock: ms
/// after its creation, in one atomic. It starts at its creation.
#[derive(Debug)]
pub(super) struct AtomicMoment {
    epoch: Instant,
    ms: AtomicU64,
}

impl AtomicMoment {
    pub(super) fn new() -> Self {
        AtomicMoment {
            epoch: Instant::now(),
            ms: AtomicU64::new(0),
        }
    }

    /// Moves the moment to `at`, unless it is later already.
    pub(super) fn advance_to(&self, at: Instant) {
        let ms =
            u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX);
        self.ms.fetch_max(ms, Ordering::SeqCst);
    }

    /// The moment.
    pub(super) fn get(&self) -> Instant {
        self.epoch + Duration::from_millis(self.ms.load(Ordering::SeqCst))
    }
}

/// One store's trust state, written by its watch and read by every lookup
/// (two atomic loads and a clock read: nothing on the hot path waits).
#[derive(Debug)]
pub struct Freshness {
    source: Source,
    /// A full list was stored since the watch last broke.
    synced: AtomicBool,
    /// When the API server was last heard from.
    heard: AtomicMoment,
}

/// Why a store is not trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distrust {
    /// No full list since the watch last broke (or ever).
    NotListed,
    /// Listed, but the API server has not been heard from for this long:
    /// past the window, though the watch has not (yet) been found broken.
    Silent(Duration),
}

impl std::fmt::Display for Distrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Distrust::NotListed => f.write_str("no full list since the watch broke"),
            Distrust::Silent(d) => write!(
                f,
                "the watch has not heard from the API server for {:.1} s",
                d.as_secs_f64()
            ),
        }
    }
}

/// What fills a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Objects handed in once (`doctor`'s snapshot, tests): always current.
    Fixed,
    /// A watch, trusted within this window after it was last heard from.
    Watch { window: Duration },
}

impl Freshness {
    /// A store filled once, with nothing behind it to be newer.
    pub fn fixed() -> Self {
        Self::new(Source::Fixed)
    }

    /// A store kept by a watch, trusted once it has listed and while it has
    /// been heard from within `window`.
    pub fn watched(window: Duration) -> Self {
        Self::new(Source::Watch { window })
    }

    fn new(source: Source) -> Self {
        Freshness {
            source,
            synced: AtomicBool::new(false),
            heard: AtomicMoment::new(),
        }
    }

    /// The API server answered: a watch opened, an event or a bookmark came.
    pub fn heard(&self) {
        self.heard_at(Instant::now());
    }

    fn heard_at(&self, at: Instant) {
        self.heard.advance_to(at);
    }

    /// A full list was stored: the store holds the API server's objects.
    pub fn listed(&self) {
        self.listed_at(Instant::now());
    }

    fn listed_at(&self, at: Instant) {
        self.heard_at(at);
        self.synced.store(true, Ordering::SeqCst);
    }

    /// The watch broke (an error, a stall, 410 Gone): not trusted until the
    /// next full list.
    pub fn broken(&self) {
        self.synced.store(false, Ordering::SeqCst);
    }

    /// Why lookups may not take this store's answer as current, if so.
    pub fn distrust(&self) -> Option<Distrust> {
        self.distrust_at(Instant::now())
    }

    #[cfg(test)]
    fn trusted_at(&self, now: Instant) -> bool {
        self.distrust_at(now).is_none()
    }

    fn distrust_at(&self, now: Instant) -> Option<Distrust> {
        match self.source {
            Source::Fixed => None,
            Source::Watch { window } => {
                let silent = self.silent_for(now);
                if !self.synced.load(Ordering::SeqCst) {
                    Some(Distrust::NotListed)
                } else if silent > window {
                    Some(Distrust::Silent(silent))
                } else {
                    None
                }
            }
        }
    }

    /// How long ago the API server was last heard from.
    fn silent_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.heard.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(4);

    /// What a watch did, at a time after the store was made.
    enum Step {
        Heard(u64),
        Listed(u64),
        Broken,
    }

    #[test]
    fn trust_follows_the_watch() {
        use Step::*;
        // (what happened, at which ms the store is asked, trusted?)
        let table: &[(&str, &[Step], u64, bool)] = &[
            ("never listed", &[], 0, false),
            ("heard but never listed", &[Heard(10)], 20, false),
            ("listed, asked at once", &[Listed(100)], 100, true),
            (
                "listed, asked within the window",
                &[Listed(100)],
                4_100,
                true,
            ),
            (
                "listed, silent past the window",
                &[Listed(100)],
                4_101,
                false,
            ),
            (
                "a bookmark renews the window",
                &[Listed(100), Heard(3_000)],
                7_000,
                true,
            ),
            (
                "a stall after a bookmark",
                &[Listed(100), Heard(3_000)],
                7_001,
                false,
            ),
            (
                "broken: heard again is not enough",
                &[Listed(100), Broken, Heard(200)],
                300,
                false,
            ),
            (
                "broken, then listed again",
                &[Listed(100), Broken, Listed(900)],
                1_000,
                true,
            ),
            // an out-of-order report never moves the time back
            (
                "older news is ignored",
                &[Listed(5_000), Heard(1_000)],
                9_000,
                true,
            ),
        ];
        for (what, steps, asked, want) in table {
            let f = Freshness::watched(WINDOW);
            let at = |ms: &u64| f.heard.epoch + Duration::from_millis(*ms);
            for s in *steps {
                match s {
                    Heard(ms) => f.heard_at(at(ms)),
                    Listed(ms) => f.listed_at(at(ms)),
                    Broken => f.broken(),
                }
            }
            assert_eq!(f.trusted_at(at(asked)), *want, "{what}");
            let reason = f.distrust_at(at(asked));
            let listed = steps.iter().rev().find_map(|s| match s {
                Listed(_) => Some(true),
                Broken => Some(false),
                Heard(_) => None,
            });
            match reason {
                None => assert!(*want, "{what}"),
                Some(Distrust::NotListed) => assert_ne!(listed, Some(true), "{what}"),
                Some(Distrust::Silent(d)) => {
                    assert_eq!(listed, Some(true), "{what}");
                    assert!(d > WINDOW, "{what}: silent {d:?}");
                }
            }
        }
    }

    #[test]
    fn a_fixed_store_is_always_trusted() {
        let f = Freshness::fixed();
        f.broken();
        assert!(f.trusted_at(f.heard.epoch + Duration::from_secs(3_600)));
    }
}
