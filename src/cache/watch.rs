//! One watch per kind and scope, kept on kube's list and watch requests,
//! writing into a [`Store`] and telling its [`Freshness`](super::freshness)
//! when the store may be trusted. `kube::runtime::watcher` hides what the
//! caches need to know: when a watch broke (it retries inside), when it was
//! last heard from (it swallows bookmarks), and when a relist has caught up.
//!
//! The cycle: a full list (paged, a consistent read), then watches from its
//! resourceVersion, each asked to end after [`WatchTiming::timeout`] with
//! bookmarks on, and reopened from the last resourceVersion seen. Anything
//! else ends the cycle: a failed request, an error event, 410 Gone, or a
//! watch that neither delivers nor ends within its window (a silent stall).
//! Then the store is not trusted until the next full list, which starts
//! after a short jittered backoff.

use std::time::Duration;

use backon::BackoffBuilder;
use futures::StreamExt;
use kube::api::{Api, DynamicObject, ListParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use kube::ResourceExt;

use super::store::{Relist, Store};
use super::Notify;
use crate::metrics::{Metrics, WatchRestart};

/// How the watches run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchTiming {
    /// Each watch request's `timeoutSeconds`: a healthy idle watch ends and
    /// is reopened this often, so silence longer than this (plus a margin)
    /// is a stall.
    pub timeout: Duration,
}

impl Default for WatchTiming {
    fn default() -> Self {
        WatchTiming {
            timeout: Duration::from_secs(3),
        }
    }
}

/// How late a watch's end may be before the watch is taken as stalled.
const STALL_MARGIN: Duration = Duration::from_secs(1);
/// The reconnect backoff after a broken watch: jittered, doubling from the
/// first to the last, back to the first after a full list.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_LAST: Duration = Duration::from_secs(2);
/// Objects per page of a list: kube's client decodes a page three times
/// over (text, a buffered tree, `DynamicObject`s) before it is compacted,
/// so the page size sets the list's peak memory (the figures that chose
/// 10: docs/history.md).
const LIST_PAGE_SIZE: u32 = 10;

impl WatchTiming {
    /// How long a store is trusted after its watch was last heard from.
    pub fn window(&self) -> Duration {
        self.timeout + STALL_MARGIN
    }

    fn timeout_secs(&self) -> u32 {
        u32::try_from(self.timeout.as_secs())
            .unwrap_or(u32::MAX)
            .max(1)
    }
}

/// Why a watch cycle ended.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// A list request failed.
    #[error("list failed: {0}")]
    List(#[source] kube::Error),
    /// A watch request failed to open.
    #[error("watch request failed: {0}")]
    Open(#[source] kube::Error),
    /// An open watch's stream failed.
    #[error("watch stream failed: {0}")]
    Stream(#[source] kube::Error),
    /// The API server sent an error event (410 Gone among them).
    #[error("the API server ended the watch: {} {}", .0.code, .0.message)]
    Status(Box<kube::core::Status>),
    /// Nothing came and the watch did not end within its window.
    #[error("no event, bookmark or end of watch within {0:?}: stalled")]
    Stalled(Duration),
}

impl WatchError {
    /// The `reason` label of `watch_restarts_total`.
    pub fn restart(&self) -> WatchRestart {
        match self {
            WatchError::Status(s) if s.code == 410 => WatchRestart::Gone,
            WatchError::Stalled(_) => WatchRestart::Stalled,
            _ => WatchRestart::Error,
        }
    }
}

/// One kind in one scope: where it writes and whom it tells.
pub(super) struct Watch {
    pub api: Api<DynamicObject>,
    pub store: std::sync::Arc<Store>,
    pub notify: Notify,
    pub timing: WatchTiming,
    pub metrics: std::sync::Arc<Metrics>,
}

impl Watch {
    /// Lists and follows until cancelled (the caller's task ends it).
    pub async fn run(self) {
        let backoff_builder = backon::ExponentialBuilder::default()
            .with_min_delay(BACKOFF_FIRST)
            .with_max_delay(BACKOFF_LAST)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        let mut backoff = backoff_builder.build();
        loop {
            let error = match self.list().await {
                Ok(version) => {
                    backoff = backoff_builder.build();
                    self.follow(version).await
                }
                Err(e) => e,
            };
            self.broken(&error);
            tokio::time::sleep(backoff.next().unwrap_or(BACKOFF_LAST)).await;
        }
    }

    /// A full list into the store (replacing it when complete); returns the
    /// list's resourceVersion, where the watch starts.
    async fn list(&self) -> Result<String, WatchError> {
        let mut relist: Relist = None;
        self.store.apply(watcher::Event::Init, &mut relist);
        let mut params = ListParams::default().limit(LIST_PAGE_SIZE);
        loop {
            let page = tokio::time::timeout(self.timing.window(), self.api.list(&params))
                .await
                .map_err(|_| WatchError::Stalled(self.timing.window()))?
                .map_err(WatchError::List)?;
            self.store.freshness.heard();
            for o in page.items {
                self.store.apply(watcher::Event::InitApply(o), &mut relist);
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => {
                    self.apply(watcher::Event::InitDone, &mut relist);
                    self.store.freshness.listed();
                    return Ok(page.metadata.resource_version.unwrap_or_default());
                }
            }
        }
    }

    /// Watches from `version`, reopening each watch the API server ends,
    /// until something goes wrong.
    async fn follow(&self, mut version: String) -> WatchError {
        let params = WatchParams::default().timeout(self.timing.timeout_secs());
        let window = self.timing.window();
        loop {
            let opened = tokio::time::timeout(window, self.api.watch(&params, &version)).await;
            let stream = match opened {
                Err(_) => return WatchError::Stalled(window),
                Ok(Err(e)) => return WatchError::Open(e),
                Ok(Ok(s)) => s,
            };
            self.store.freshness.heard();
            let mut stream = std::pin::pin!(stream);
            loop {
                let event = match tokio::time::timeout(window, stream.next()).await {
                    Err(_) => return WatchError::Stalled(window),
                    // the API server ended the watch at its timeout: reopen
                    Ok(None) => break,
                    Ok(Some(Err(e))) => return WatchError::Stream(e),
                    Ok(Some(Ok(event))) => event,
                };
                self.store.freshness.heard();
                match event {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                        version = o.resource_version().unwrap_or(version);
                        self.apply(watcher::Event::Apply(o), &mut None);
                    }
                    WatchEvent::Deleted(o) => {
                        version = o.resource_version().unwrap_or(version);
                        self.apply(watcher::Event::Delete(o), &mut None);
                    }
                    WatchEvent::Bookmark(b) => version = b.metadata.resource_version,
                    WatchEvent::Error(status) => return WatchError::Status(status),
                }
            }
        }
    }

    /// Stores `event`, then tells the change feed (so whoever reacts reads
    /// the new state).
    fn apply(&self, event: watcher::Event<DynamicObject>, relist: &mut Relist) {
        let change = self.notify.change_of(&event);
        self.store.apply(event, relist);
        self.notify.applied(change);
    }

    /// The store is not trusted from now until the next full list.
    fn broken(&self, error: &WatchError) {
        self.store.freshness.broken();
        self.metrics
            .watch_restart(self.notify.kind_name(), error.restart());
        tracing::warn!(
            kind = self.notify.kind_name(),
            namespace = self.notify.namespace.as_deref().unwrap_or(""),
            %error,
            "watch interrupted: lookups go to the API server until a new list completes"
        );
    }
}
