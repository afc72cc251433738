//! Connections: a cap on how many are open per listener, and a deadline on
//! each one (a first byte soon after it opens, then no long silence), so
//! that neither fresh nor idle connections, on either port, can hold file
//! descriptors and memory forever.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::metrics::{Listener, ListenerLabels, Metrics, Refusal};

/// An I/O stream that fails with `TimedOut` when no byte has arrived within
/// `first_byte` of its start, or when nothing has moved either way for
/// `idle` since. Applied to the application bytes (inside TLS), so a TLS
/// handshake alone does not count as a request starting.
pub struct Deadline<IO> {
    inner: IO,
    sleep: Pin<Box<Sleep>>,
    idle: Duration,
    timed_out: Arc<AtomicBool>,
}

impl<IO> Deadline<IO> {
    /// Wraps `inner`.
    pub fn new(inner: IO, first_byte: Duration, idle: Duration) -> Self {
        Deadline {
            inner,
            sleep: Box::pin(tokio::time::sleep(first_byte)),
            idle,
            timed_out: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A flag that turns true when the deadline passes (readable after the
    /// stream has been handed to the HTTP server).
    pub fn timed_out(&self) -> Arc<AtomicBool> {
        self.timed_out.clone()
    }

    fn moved(&mut self) {
        let next = Instant::now() + self.idle;
        self.sleep.as_mut().reset(next);
    }

    /// A write's result: bytes written move the deadline; a write still
    /// pending past the deadline fails.
    fn written(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.moved();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.timed_out.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection idle past its deadline")
}

impl<IO: AsyncRead + Unpin> AsyncRead for Deadline<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.moved();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Deadline<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, data);
        this.written(cx, polled)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.written(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// How many connections one listener keeps open; past it a new connection
/// is closed at once (and said so in the log, at most every
/// [`LOG_EVERY`]).
pub struct ConnectionCap {
    listener: Listener,
    slots: Arc<Semaphore>,
    max: usize,
    metrics: Arc<Metrics>,
    refused_since_log: AtomicU64,
    last_log_ms: AtomicU64,
}

/// How often the "connection cap reached" line may repeat.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// An open connection's place under the cap; dropping it frees the place.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    gauge: prometheus_client::metrics::gauge::Gauge<i64, std::sync::atomic::AtomicI64>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl ConnectionCap {
    /// A cap of `max` connections on `listener`.
    pub fn new(listener: Listener, max: usize, metrics: Arc<Metrics>) -> Self {
        ConnectionCap {
            listener,
            slots: Arc::new(Semaphore::new(max)),
            max,
            metrics,
            refused_since_log: AtomicU64::new(0),
            last_log_ms: AtomicU64::new(0),
        }
    }

    /// The listener this cap is for.
    pub fn listener(&self) -> Listener {
        self.listener
    }

    /// A place for a new connection, or `None` (counted, logged) at the cap.
    pub fn admit(&self, peer: std::net::SocketAddr) -> Option<Slot> {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let gauge = self
                    .metrics
                    .open_connections
                    .get_or_create(&ListenerLabels {
                        listener: self.listener,
                    })
                    .clone();
                gauge.inc();
                Some(Slot {
                    _permit: permit,
                    gauge,
                })
            }
            Err(_) => {
                self.metrics.refusal(self.listener, Refusal::ConnectionCap);
                let refused = self.refused_since_log.fetch_add(1, Ordering::Relaxed) + 1;
                let now_ms = monotonic_ms();
                let last = self.last_log_ms.load(Ordering::Relaxed);
                let every = u64::try_from(LOG_EVERY.as_millis()).unwrap_or(u64::MAX);
                if now_ms.saturating_sub(last) >= every
                    && self
                        .last_log_ms
                        .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    self.refused_since_log.store(0, Ordering::Relaxed);
                    tracing::warn!(listener = self.listener.as_str(), max = self.max, refused, %peer,
                        "connection cap reached: new connections are closed at once until some close");
                }
                None
            }
        }
    }
}

/// Milliseconds on a monotonic clock since its first use, plus one period
/// (so the first refusal is logged).
fn monotonic_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    let every = u64::try_from(LOG_EVERY.as_millis()).unwrap_or(u64::MAX);
    u64::try_from(start.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(every)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_silent_stream_times_out_at_the_first_byte_deadline() {
        let (a, _b) = tokio::io::duplex(64);
        let mut d = Deadline::new(a, Duration::from_secs(5), Duration::from_secs(60));
        let mut buf = [0u8; 1];
        let err = d.read(&mut buf).await.expect_err("times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(d.timed_out().load(Ordering::Relaxed));
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_move_the_deadline_to_the_idle_timeout() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut d = Deadline::new(a, Duration::from_secs(5), Duration::from_secs(60));
        b.write_all(b"x").await.expect("write");
        let mut buf = [0u8; 1];
        d.read_exact(&mut buf).await.expect("a byte");
        // past the first-byte deadline, well inside the idle one
        tokio::time::advance(Duration::from_secs(30)).await;
        b.write_all(b"y").await.expect("write");
        d.read_exact(&mut buf).await.expect("still open");
        let err = d.read(&mut buf).await.expect_err("idle");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn the_cap_refuses_past_its_size_and_frees_on_drop() {
        let cap = ConnectionCap::new(Listener::Webhook, 2, Arc::new(Metrics::new()));
        let peer: std::net::SocketAddr = ([127, 0, 0, 1], 1).into();
        let a = cap.admit(peer);
        let b = cap.admit(peer);
        assert!(a.is_some() && b.is_some());
        assert!(cap.admit(peer).is_none(), "third refused");
        drop(a);
        assert!(cap.admit(peer).is_some(), "a place freed");
        assert!(cap.metrics.encode().contains("reason=\"connection_cap\""));
    }
}
