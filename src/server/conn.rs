//! Connections: a cap on how many are open per listener, and a deadline on
//! each one (a first byte soon after it opens, then no long silence), so
//! that neither fresh nor idle connections, on either port, can hold file
//! descriptors and memory forever.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::log_limit::LogLimit;
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
    /// The connection's slot, told when the first byte arrives (it then
    /// can no longer be evicted).
    fresh: Option<Arc<Fresh>>,
}

impl<IO> Deadline<IO> {
    /// Wraps `inner`; `fresh`, when given, is marked as started at the
    /// first byte read.
    pub fn new(inner: IO, first_byte: Duration, idle: Duration, fresh: Option<Arc<Fresh>>) -> Self {
        Deadline {
            inner,
            sleep: Box::pin(tokio::time::sleep(first_byte)),
            idle,
            timed_out: Arc::new(AtomicBool::new(false)),
            fresh,
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
                    if let Some(f) = this.fresh.take() {
                        f.started.store(true, Ordering::Relaxed);
                    }
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

/// How many connections one listener keeps open. At the cap, the oldest
/// connection that has not sent its first request byte is closed to make
/// room (a client that opens connections and sends nothing only crowds out
/// its own); when every open connection has started a request, the new one
/// is closed at once. Either is counted, and said so in the log at most
/// every [`crate::log_limit::LOG_EVERY`].
pub struct ConnectionCap {
    listener: Listener,
    slots: Arc<Semaphore>,
    max: usize,
    metrics: Arc<Metrics>,
    /// Connections that have not sent a request byte, oldest first.
    fresh: std::sync::Mutex<std::collections::VecDeque<std::sync::Weak<Fresh>>>,
    refused_log: LogLimit,
}

/// Whether a connection has started a request, and how to close it if not.
#[derive(Default)]
pub struct Fresh {
    started: AtomicBool,
    evict: tokio::sync::Notify,
}

/// How long a new connection at the cap waits for the one evicted for it.
const EVICTION_WAIT: Duration = Duration::from_millis(50);

/// An open connection's place under the cap; dropping it frees the place.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    gauge: prometheus_client::metrics::gauge::Gauge<i64, std::sync::atomic::AtomicI64>,
    fresh: Arc<Fresh>,
}

impl Slot {
    /// What the connection's stream marks when the first byte arrives.
    pub fn fresh(&self) -> Arc<Fresh> {
        self.fresh.clone()
    }

    /// Resolves when the cap evicts this connection (it has sent nothing
    /// and a newer one needs the place).
    pub async fn evicted(&self) {
        self.fresh.evict.notified().await;
    }
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
            fresh: std::sync::Mutex::default(),
            refused_log: LogLimit::default(),
        }
    }

    /// The listener this cap is for.
    pub fn listener(&self) -> Listener {
        self.listener
    }

    /// A place for a new connection: a free one, else the place of the
    /// oldest connection that has not started a request; `None` (counted,
    /// logged) when every open connection has.
    pub async fn admit(&self, peer: std::net::SocketAddr) -> Option<Slot> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Some(self.slot(permit));
        }
        if self.evict_oldest_fresh() {
            self.metrics.refusal(self.listener, Refusal::Evicted);
            if let Ok(Ok(permit)) =
                tokio::time::timeout(EVICTION_WAIT, self.slots.clone().acquire_owned()).await
            {
                return Some(self.slot(permit));
            }
        }
        self.refuse(peer);
        None
    }

    fn slot(&self, permit: OwnedSemaphorePermit) -> Slot {
        let gauge = self
            .metrics
            .open_connections
            .get_or_create(&ListenerLabels {
                listener: self.listener,
            })
            .clone();
        gauge.inc();
        let fresh = Arc::new(Fresh::default());
        let mut queue = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
        if queue.len() >= 2 * self.max {
            queue.retain(|w| {
                w.upgrade()
                    .is_some_and(|f| !f.started.load(Ordering::Relaxed))
            });
        }
        queue.push_back(Arc::downgrade(&fresh));
        Slot {
            _permit: permit,
            gauge,
            fresh,
        }
    }

    /// Tells the oldest open connection without a request byte to close;
    /// whether there was one.
    fn evict_oldest_fresh(&self) -> bool {
        let mut queue = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(weak) = queue.pop_front() {
            if let Some(f) = weak
                .upgrade()
                .filter(|f| !f.started.load(Ordering::Relaxed))
            {
                f.evict.notify_one();
                return true;
            }
        }
        false
    }

    fn refuse(&self, peer: std::net::SocketAddr) {
        self.metrics.refusal(self.listener, Refusal::ConnectionCap);
        if let Some(refused) = self.refused_log.occurred() {
            tracing::warn!(listener = self.listener.as_str(), max = self.max, refused, %peer,
                "connection cap reached and every open connection is busy: new connections are closed at once");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_silent_stream_times_out_at_the_first_byte_deadline() {
        let (a, _b) = tokio::io::duplex(64);
        let mut d = Deadline::new(a, Duration::from_secs(5), Duration::from_secs(60), None);
        let mut buf = [0u8; 1];
        let err = d.read(&mut buf).await.expect_err("times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(d.timed_out().load(Ordering::Relaxed));
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_move_the_deadline_to_the_idle_timeout() {
        let (a, mut b) = tokio::io::duplex(64);
        let fresh = Arc::new(Fresh::default());
        let mut d = Deadline::new(
            a,
            Duration::from_secs(5),
            Duration::from_secs(60),
            Some(fresh.clone()),
        );
        b.write_all(b"x").await.expect("write");
        let mut buf = [0u8; 1];
        d.read_exact(&mut buf).await.expect("a byte");
        assert!(
            fresh.started.load(Ordering::Relaxed),
            "the first byte starts it"
        );
        // past the first-byte deadline, well inside the idle one
        tokio::time::advance(Duration::from_secs(30)).await;
        b.write_all(b"y").await.expect("write");
        d.read_exact(&mut buf).await.expect("still open");
        let err = d.read(&mut buf).await.expect_err("idle");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn at_the_cap_an_idle_connection_makes_room_and_a_busy_one_does_not() {
        let cap = ConnectionCap::new(Listener::Webhook, 2, Arc::new(Metrics::new()));
        let peer: std::net::SocketAddr = ([127, 0, 0, 1], 1).into();
        let busy = cap.admit(peer).await.expect("a place");
        busy.fresh().started.store(true, Ordering::Relaxed);
        let idle = cap.admit(peer).await.expect("a place");
        // the idle one is told to go; its task drops its slot
        let evicted = tokio::spawn(async move {
            idle.evicted().await;
            drop(idle);
        });
        let third = cap.admit(peer).await;
        assert!(third.is_some(), "the idle connection made room");
        evicted.await.expect("evicted");
        if let Some(t) = &third {
            t.fresh().started.store(true, Ordering::Relaxed);
        }
        assert!(cap.admit(peer).await.is_none(), "both busy: refused");
        drop(busy);
        assert!(cap.admit(peer).await.is_some(), "a place freed");
        let text = cap.metrics.encode();
        assert!(text.contains("reason=\"connection_cap\""), "{text}");
        assert!(text.contains("reason=\"evicted\""), "{text}");
    }
}
