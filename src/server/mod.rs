//! The HTTPS shell: axum routes over rustls, a metrics listener, readiness,
//! limits and graceful drain. It depends on the core through
//! [`crate::admission`], never the other way round.

mod body;
mod conn;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::admission::{Admission, Answer};
use crate::cache::Caches;
use crate::metrics::{Listener, Metrics, Refusal};
use conn::{ConnectionCap, Deadline};
use tls::CertStore;

/// Largest review body accepted. The largest real review is an UPDATE:
/// `object` is at most the API server's request limit (3 MiB of JSON by
/// default, `--max-request-bytes`) and `oldObject` at most what etcd
/// stores (1.5 MiB by default, `--max-request-bytes` of etcd), each
/// re-encoded by the API server as JSON; 3 + 1.5 + 1 MiB for the envelope
/// and the re-encoding, rounded up.
pub const BODY_LIMIT: usize = 6 * 1024 * 1024;
/// Default budget of request bytes held at once by all requests in flight
/// (`--max-inflight-bytes`): with the bounds on what is parsed
/// (`core::bounds`), the memory a burst of requests can take.
pub const INFLIGHT_BYTES: usize = 48 * 1024 * 1024;

/// Timing and limits of the listener.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Time a client has to send the request headers.
    pub header_timeout: Duration,
    /// Time to read the body and answer (the API server gives up after the
    /// webhook's `timeoutSeconds`, at most 30 s).
    pub request_timeout: Duration,
    /// Time for the TLS handshake.
    pub handshake_timeout: Duration,
    /// After SIGTERM, how long to keep serving with readiness false so
    /// endpoints can drop this pod before the listener closes.
    pub shutdown_delay: Duration,
    /// After the listener closes, how long in-flight requests may take.
    pub drain_timeout: Duration,
    /// Time from accepting a connection (after the TLS handshake) to its
    /// first request byte.
    pub first_byte_timeout: Duration,
    /// Time a connection may stay silent both ways before it is closed
    /// (the API server's HTTP/2 client pings well within it).
    pub idle_timeout: Duration,
    /// Connections the webhook port keeps open; past it new ones are closed.
    pub max_connections: usize,
    /// Connections the metrics port keeps open.
    pub max_metrics_connections: usize,
    /// Request body bytes all requests in flight may hold at once.
    pub max_inflight_bytes: usize,
    /// Reviews answered at once; more wait for a place.
    pub max_concurrent_reviews: usize,
    /// HTTP/2 streams one connection may have open.
    pub max_streams_per_connection: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(5),
            shutdown_delay: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(25),
            first_byte_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(90),
            max_connections: 1024,
            max_metrics_connections: 64,
            max_inflight_bytes: INFLIGHT_BYTES,
            max_concurrent_reviews: 256,
            max_streams_per_connection: 32,
        }
    }
}

/// Why the server is or is not ready.
pub struct Readiness {
    listening: AtomicBool,
    stopping: AtomicBool,
    caches: Arc<Caches>,
    certs: Arc<CertStore>,
}

impl Readiness {
    /// New readiness state: not ready until listening, synced and certified.
    pub fn new(caches: Arc<Caches>, certs: Arc<CertStore>) -> Arc<Readiness> {
        Arc::new(Readiness {
            listening: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            caches,
            certs,
        })
    }

    /// `Ok` when ready, else the first reason it is not.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err("shutting down");
        }
        if !self.listening.load(Ordering::SeqCst) {
            return Err("listener not bound");
        }
        if !self.certs.is_loaded() {
            return Err("no serving certificate loaded");
        }
        if !self.caches.is_ready() {
            return Err("caches not synced");
        }
        Ok(())
    }
}

/// Answers one review body in place of [`Admission::review`] (see
/// [`Server::answering_with`]).
pub type ReviewFn = Arc<dyn Fn(&[u8]) -> Answer + Send + Sync>;

#[derive(Clone)]
struct AppState {
    admission: Arc<Admission>,
    readiness: Arc<Readiness>,
    budget: Arc<body::Budget>,
    /// `None` in `serve`: reviews go to `admission`.
    review: Option<ReviewFn>,
}

async fn mutate(State(state): State<AppState>, headers: HeaderMap, request_body: Body) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        let msg = format!("content type must be application/json, got {content_type:?}");
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, msg).into_response();
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let metrics = &state.admission.metrics;
    let (body, _held) = match body::read(&state.budget, request_body, declared, BODY_LIMIT).await {
        Ok(read) => read,
        Err(e @ body::BodyError::TooLarge { .. }) => {
            metrics.refusal(Listener::Webhook, Refusal::TooLarge);
            return (StatusCode::PAYLOAD_TOO_LARGE, e.to_string()).into_response();
        }
        Err(e @ body::BodyError::OverBudget { .. }) => {
            metrics.refusal(Listener::Webhook, Refusal::InflightBytes);
            tracing::warn!(error = %e, "request refused: in-flight byte budget used up");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                e.to_string(),
            )
                .into_response();
        }
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let answer = match &state.review {
        None => {
            let span = crate::admission::review_span();
            crate::telemetry::continue_trace(&span, &headers);
            state.admission.review_in(&body, &span).await
        }
        Some(review) => review(&body),
    };
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        answer.body,
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.readiness.check() {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

fn webhook_router(state: AppState, limits: &Limits) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(GlobalConcurrencyLimitLayer::new(
            limits.max_concurrent_reviews,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .with_state(state)
}

fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(s): State<AppState>| async move {
                s.admission.caches.record_sizes();
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    s.admission.metrics.encode(),
                )
            }),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// A bound server, ready to run until `shutdown` resolves.
pub struct Server {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    tls: Arc<rustls::ServerConfig>,
    state: AppState,
    limits: Limits,
}

impl Server {
    /// Binds the listeners (readiness starts only after this).
    pub async fn bind(
        addr: SocketAddr,
        metrics_addr: Option<SocketAddr>,
        tls: rustls::ServerConfig,
        admission: Arc<Admission>,
        readiness: Arc<Readiness>,
        limits: Limits,
    ) -> anyhow::Result<Server> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let metrics_listener = match metrics_addr {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .with_context(|| format!("binding {a}"))?,
            ),
            None => None,
        };
        readiness.listening.store(true, Ordering::SeqCst);
        let budget = Arc::new(body::Budget::new(
            limits.max_inflight_bytes,
            admission.metrics.clone(),
        ));
        Ok(Server {
            listener,
            metrics_listener,
            tls: Arc::new(tls),
            state: AppState {
                admission,
                readiness,
                budget,
                review: None,
            },
            limits,
        })
    }

    /// Answers every review with `review` instead of [`Admission::review`],
    /// keeping the rest of the listener as it is (TLS, connection cap and
    /// deadlines, HTTP/1.1 and HTTP/2 settings, body limit and budget,
    /// concurrency limit and timeout, `/healthz`, `/readyz`, metrics). For
    /// the load benchmark's floor (`benches/load/floor.rs`): the same
    /// stack decoding the review and allowing it, nothing else. `serve`
    /// never calls it.
    pub fn answering_with(
        mut self,
        review: impl Fn(&[u8]) -> Answer + Send + Sync + 'static,
    ) -> Server {
        self.state.review = Some(Arc::new(review));
        self
    }

    /// The address the webhook listener is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address the metrics listener is bound to.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` is cancelled, then drains: readiness goes
    /// false, the listener stays open for `shutdown_delay`, closes, and
    /// in-flight requests get `drain_timeout` to finish. The metrics port
    /// closes after the webhook port has drained.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Server {
            listener,
            metrics_listener,
            tls,
            state,
            limits,
        } = self;
        let metrics_stop = CancellationToken::new();
        let metrics_task = metrics_listener.map(|ml| {
            let accept = Acceptor::metrics(
                metrics_router(state.clone()),
                &limits,
                state.admission.metrics.clone(),
            );
            tokio::spawn(accept.serve(ml, metrics_stop.clone().cancelled_owned()))
        });
        let accept = Acceptor::webhook(tls, &limits, &state);
        accept
            .serve(
                listener,
                stop_after_delay(shutdown, &state, limits.shutdown_delay),
            )
            .await;
        metrics_stop.cancel();
        if let Some(t) = metrics_task {
            let _ = t.await;
        }
        Ok(())
    }
}

/// Resolves `delay` after `shutdown` is cancelled, with readiness turned
/// false at once, so that endpoints drop this replica before the listener
/// closes.
async fn stop_after_delay(shutdown: CancellationToken, state: &AppState, delay: Duration) {
    let readiness = state.readiness.clone();
    shutdown.cancelled().await;
    readiness.stopping.store(true, Ordering::SeqCst);
    tracing::info!(
        delay_ms = delay.as_millis() as u64,
        "shutdown requested; readiness is now false"
    );
    tokio::time::sleep(delay).await;
}

/// One listener's connection handling: the cap, the TLS handshake (webhook
/// port), the deadlines, HTTP/1.1 and HTTP/2 with their limits, and the
/// graceful drain.
struct Acceptor {
    router: Router,
    tls: Option<TlsAcceptor>,
    cap: Arc<ConnectionCap>,
    limits: Limits,
    metrics: Arc<Metrics>,
}

impl Acceptor {
    /// The webhook port: TLS, the webhook router and `max_connections`.
    fn webhook(tls: Arc<rustls::ServerConfig>, limits: &Limits, state: &AppState) -> Self {
        let metrics = state.admission.metrics.clone();
        Acceptor {
            router: webhook_router(state.clone(), limits),
            tls: Some(TlsAcceptor::from(tls)),
            cap: Arc::new(ConnectionCap::new(
                Listener::Webhook,
                limits.max_connections,
                metrics.clone(),
            )),
            limits: limits.clone(),
            metrics,
        }
    }

    /// A plain-HTTP metrics port with its own, smaller connection cap.
    fn metrics(router: Router, limits: &Limits, metrics: Arc<Metrics>) -> Self {
        Acceptor {
            router,
            tls: None,
            cap: Arc::new(ConnectionCap::new(
                Listener::Metrics,
                limits.max_metrics_connections,
                metrics.clone(),
            )),
            limits: limits.clone(),
            metrics,
        }
    }

    /// Accepts until `stop` resolves, then closes the listener and gives
    /// open connections `drain_timeout` to finish.
    async fn serve(self, listener: TcpListener, stop: impl std::future::Future<Output = ()>) {
        let graceful = GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.limits.max_streams_per_connection);
        let builder = Arc::new(builder);
        let this = Arc::new(self);
        let mut connections = tokio::task::JoinSet::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Some(slot) = this.cap.admit(peer).await else {
                        drop(tcp);
                        continue;
                    };
                    let watcher = graceful.watcher();
                    let (this, builder) = (this.clone(), builder.clone());
                    connections.spawn(async move {
                        tokio::select! {
                            () = this.connection(tcp, peer, &builder, watcher, slot.fresh()) => {}
                            () = slot.evicted() => {
                                tracing::debug!(%peer, "connection closed: it had sent nothing and the cap needed its place");
                            }
                        }
                        drop(slot);
                    });
                }
                _ = &mut stop => break,
            }
        }
        drop(listener);
        tracing::info!("listener closed; draining in-flight requests");
        if tokio::time::timeout(this.limits.drain_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("drain timeout reached; closing remaining connections");
        }
        connections.shutdown().await;
    }

    /// Serves one connection to its end.
    async fn connection(
        &self,
        tcp: tokio::net::TcpStream,
        peer: SocketAddr,
        builder: &auto::Builder<TokioExecutor>,
        watcher: hyper_util::server::graceful::Watcher,
        fresh: Arc<conn::Fresh>,
    ) {
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(self.router.clone());
        let (first, idle) = (self.limits.first_byte_timeout, self.limits.idle_timeout);
        let (result, timed_out) = match &self.tls {
            None => {
                let io = Deadline::new(tcp, first, idle, Some(fresh));
                let timed_out = io.timed_out();
                let conn = builder.serve_connection(TokioIo::new(io), service);
                (watcher.watch(conn).await, timed_out)
            }
            Some(acceptor) => {
                let Some(tls) = self.handshake(acceptor, tcp, peer).await else {
                    return;
                };
                let io = Deadline::new(tls, first, idle, Some(fresh));
                let timed_out = io.timed_out();
                let conn = builder.serve_connection(TokioIo::new(io), service);
                (watcher.watch(conn).await, timed_out)
            }
        };
        if timed_out.load(std::sync::atomic::Ordering::Relaxed) {
            self.metrics.refusal(self.cap.listener(), Refusal::Idle);
            tracing::debug!(%peer, "connection closed: idle past its deadline");
        } else if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }

    /// The TLS handshake within `handshake_timeout`; plain HTTP gets a
    /// readable 400 instead.
    async fn handshake(
        &self,
        acceptor: &TlsAcceptor,
        tcp: tokio::net::TcpStream,
        peer: SocketAddr,
    ) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
        let timeout = self.limits.handshake_timeout;
        let mut first = [0u8; 1];
        match tokio::time::timeout(timeout, tcp.peek(&mut first)).await {
            Ok(Ok(1)) if first[0].is_ascii_alphabetic() => {
                reject_plain_http(tcp).await;
                return None;
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => {
                self.metrics.refusal(Listener::Webhook, Refusal::Idle);
                tracing::debug!(%peer, "no TLS handshake within the handshake timeout");
                return None;
            }
        }
        match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                None
            }
        }
    }
}

/// For `sync` alone: `/metrics`, `/healthz` and `/readyz` (ready once the
/// caches synced) on plain HTTP until `shutdown` resolves, with the same
/// connection limits as `serve`'s metrics port.
pub async fn serve_metrics_until(
    addr: Option<SocketAddr>,
    metrics: Arc<crate::metrics::Metrics>,
    caches: Arc<Caches>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Some(addr) = addr else {
        shutdown.cancelled().await;
        return Ok(());
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let ready_caches = caches.clone();
    let scrape_metrics = metrics.clone();
    let router = Router::new()
        .route(
            "/metrics",
            get(move || {
                let (m, c) = (scrape_metrics.clone(), caches.clone());
                async move {
                    c.record_sizes();
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(healthz))
        .route(
            "/readyz",
            get(move || {
                let c = ready_caches.clone();
                async move {
                    if c.is_ready() {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
                    }
                }
            }),
        );
    let accept = Acceptor::metrics(router, &Limits::default(), metrics);
    accept.serve(listener, shutdown.cancelled_owned()).await;
    Ok(())
}

/// Answers plain HTTP on the TLS port with a clear 400 instead of a TLS
/// alert the client cannot read.
async fn reject_plain_http(mut tcp: tokio::net::TcpStream) {
    let body = "this port speaks HTTPS only\n";
    let msg = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(msg.as_bytes())).await;
    let _ = tcp.shutdown().await;
}
