//! One shutdown for every task: the server, the sync loop, the lease, the
//! caches and the TLS reload follow a [`CancellationToken`], and every
//! background task is spawned on a [`TaskTracker`] so that the drain
//! awaits it instead of dropping its handle.
//!
//! Two tokens, one mechanism: `requested` is cancelled by the first signal
//! and starts the server's drain (readiness false, the listener kept for
//! `--shutdown-delay`, in-flight requests finished); the background tasks'
//! token is cancelled after that drain, so the caches stay current while
//! the last requests are answered. A second signal exits at once. After
//! the drain, `serve` and `sync` flush the last OpenTelemetry spans
//! (`crate::telemetry::Telemetry::shutdown`), once nothing can make one.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Exit status after a second signal: the conventional 128 + SIGINT.
pub const EXIT_SECOND_SIGNAL: i32 = 130;

/// The background tasks of one process and the token they stop on.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    /// A shutdown with no tasks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The token background tasks stop on; cancelled when [`Self::drain`] starts.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Spawns a task that stops on the token by itself (it selects on
    /// [`Self::token`], or hands it to a library), awaited by the drain.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Spawns a task that is simply dropped at its next await point once the
    /// token is cancelled (loops with nothing to hand back or clean up).
    pub fn spawn_until_cancelled<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        self.tasks.spawn(async move {
            token.run_until_cancelled(task).await;
        });
    }

    /// Cancels the token and waits for every task, at most `timeout`;
    /// false when some task was still running then.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.token.cancel();
        self.tasks.close();
        tokio::time::timeout(timeout, self.tasks.wait())
            .await
            .is_ok()
    }
}

/// Cancels `requested` on the first SIGTERM or Ctrl-C; a second one exits
/// the process at once with [`EXIT_SECOND_SIGNAL`] (an operator who presses
/// Ctrl-C twice means it).
pub fn cancel_on_signals(requested: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        signal().await;
        tracing::info!("shutdown requested (a second signal exits at once)");
        requested.cancel();
        signal().await;
        tracing::warn!("second signal: exiting without draining");
        std::process::exit(EXIT_SECOND_SIGNAL);
    })
}

/// Resolves on SIGTERM or Ctrl-C.
async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_cancels_and_awaits_every_task() {
        let shutdown = Shutdown::new();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<&str>(4);
        let token = shutdown.token();
        let cleaned = tx.clone();
        shutdown.spawn(async move {
            token.cancelled().await;
            let _ = cleaned.send("cleaned up").await;
        });
        shutdown.spawn_until_cancelled(async move {
            std::future::pending::<()>().await;
            let _ = tx.send("never").await;
        });
        assert!(shutdown.drain(Duration::from_secs(5)).await, "drained");
        assert_eq!(rx.recv().await, Some("cleaned up"));
        assert_eq!(rx.recv().await, None, "the pending task was dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ignores_the_token_makes_drain_report_false() {
        let shutdown = Shutdown::new();
        shutdown.spawn(std::future::pending::<()>());
        assert!(!shutdown.drain(Duration::from_secs(1)).await);
    }
}
