//! This replica's own workload writes that the sync loop's workload store
//! has not shown yet. kube-runtime's Controller reads the object from its
//! watch store when a reconcile starts; a second trigger right after a
//! write (a relist of the caches, a second ServerConfig event) would find
//! the version from before the write and re-admit the workload again. A
//! reconcile that sees the version a write started from is deferred
//! instead: the store's own event of the write triggers the next one (as
//! the Kubernetes job controller does since KEP-5647).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a write waits to be seen: after that the workload is
/// reconciled from whatever the store holds (a watch that never shows the
/// write must not hold the workload forever).
pub const SEEN_WITHIN: Duration = Duration::from_secs(30);
/// When a deferred reconcile looks again, should the store's event of the
/// write not come.
pub const RECHECK: Duration = Duration::from_secs(5);

/// One write not yet seen: the resourceVersion it started from, and the
/// one it made (`None`: a delete).
#[derive(Debug)]
struct Unseen {
    from: String,
    to: Option<String>,
    at: Instant,
}

impl Unseen {
    /// Whether a store at `seen` has not shown this write yet: it is at
    /// the version the write started from, or at one the API server
    /// numbered before the write's (another writer's change in between,
    /// such as kube-controller-manager's status update). Versions are
    /// compared as numbers only when both are numbers, as Kubernetes'
    /// resource version comparison does; otherwise only equality counts.
    fn not_shown_at(&self, seen: Option<&str>) -> bool {
        let Some(seen) = seen else {
            return false;
        };
        let numbered = |v: &str| v.parse::<u64>().ok();
        seen == self.from
            || matches!(
                (numbered(seen), self.to.as_deref().and_then(numbered)),
                (Some(seen), Some(to)) if seen < to
            )
    }
}

/// Per workload key (`namespace/name`), its last write not yet seen.
#[derive(Debug, Default)]
pub struct OwnWrites {
    unseen: Mutex<HashMap<String, Unseen>>,
}

impl OwnWrites {
    /// Notes a write of `key` that turned resourceVersion `from` into
    /// `to`; a write that changed nothing (same version) is not waited for.
    pub fn wrote(&self, key: &str, from: Option<&str>, to: Option<&str>, now: Instant) {
        let mut unseen = self.lock();
        unseen.retain(|_, u| now.saturating_duration_since(u.at) < SEEN_WITHIN);
        match from {
            Some(from) if Some(from) != to => {
                unseen.insert(
                    key.to_string(),
                    Unseen {
                        from: from.to_string(),
                        to: to.map(str::to_string),
                        at: now,
                    },
                );
            }
            _ => {
                unseen.remove(key);
            }
        }
    }

    /// Whether the store's copy of `key` (at resourceVersion `seen`) is
    /// still from before this replica's last write of it, so a reconcile
    /// of it would act on what was already changed. A copy that shows the
    /// write, or a write older than [`SEEN_WITHIN`], clears the note.
    pub fn before_own_write(&self, key: &str, seen: Option<&str>, now: Instant) -> bool {
        let mut unseen = self.lock();
        let stale = unseen.get(key).is_some_and(|u| {
            u.not_shown_at(seen) && now.saturating_duration_since(u.at) < SEEN_WITHIN
        });
        if !stale {
            unseen.remove(key);
        }
        stale
    }

    /// How many writes are waiting to be seen (bounded by the writes of
    /// the last [`SEEN_WITHIN`]).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Unseen>> {
        self.unseen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconcile_is_deferred_only_while_the_store_shows_the_version_before_the_write() {
        let t0 = Instant::now();
        let later = |s: u64| t0 + Duration::from_secs(s);
        // (write from, write to, store shows, seconds after the write, deferred)
        type Case = (
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
            u64,
            bool,
        );
        let cases: Vec<Case> = vec![
            (Some("1"), Some("2"), Some("1"), 0, true),
            (Some("1"), Some("2"), Some("2"), 0, false),
            // someone else wrote after us: act on the newer version
            (Some("1"), Some("2"), Some("3"), 0, false),
            // someone else wrote before us (a status update): still older
            (Some("10"), Some("12"), Some("11"), 0, true),
            // versions that are not numbers: only equality counts
            (Some("a"), Some("c"), Some("b"), 0, false),
            (Some("a"), Some("c"), Some("a"), 0, true),
            // a delete: the store still holding the version it removed
            (Some("1"), None, Some("1"), 0, true),
            (Some("1"), None, Some("0"), 0, false),
            (Some("1"), Some("2"), Some("1"), 29, true),
            (Some("1"), Some("2"), Some("1"), 30, false),
            // a write that changed nothing is not waited for
            (Some("1"), Some("1"), Some("1"), 0, false),
            (None, Some("2"), None, 0, false),
            (Some("1"), Some("2"), None, 0, false),
        ];
        for (from, to, seen, after, want) in cases {
            let w = OwnWrites::default();
            w.wrote("ns/a", from, to, t0);
            assert_eq!(
                w.before_own_write("ns/a", seen, later(after)),
                want,
                "write {from:?} -> {to:?}, store at {seen:?}, {after} s later"
            );
            assert!(
                !w.before_own_write("ns/b", seen, later(after)),
                "another key is never deferred"
            );
        }
    }

    #[test]
    fn a_seen_write_is_forgotten_and_old_ones_are_dropped() {
        let t0 = Instant::now();
        let w = OwnWrites::default();
        w.wrote("ns/a", Some("1"), Some("2"), t0);
        assert!(!w.before_own_write("ns/a", Some("2"), t0));
        // seen once: the same old version later is not deferred again
        assert!(!w.before_own_write("ns/a", Some("1"), t0));
        assert_eq!(w.len(), 0);

        for i in 0..100 {
            w.wrote(&format!("ns/w{i}"), Some("1"), Some("2"), t0);
        }
        assert_eq!(w.len(), 100);
        w.wrote("ns/last", Some("1"), Some("2"), t0 + SEEN_WITHIN);
        assert_eq!(w.len(), 1, "writes older than SEEN_WITHIN are dropped");
    }
}
