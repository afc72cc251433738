//! The HTTPS shell: axum routes over rustls, a metrics listener, readiness,
//! limits and graceful drain. It depends on the core through
//! [`crate::admission`], never the other way round.

pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
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
use tower_http::timeout::TimeoutLayer;

use crate::admission::Admission;
use crate::cache::Caches;
use tls::CertStore;

/// Largest review body accepted: an AdmissionReview carries `object` and,
/// on UPDATE, `oldObject`; each is at most the API server's default 3 MiB
/// request limit, plus 1 MiB for the envelope.
pub const BODY_LIMIT: usize = 7 * 1024 * 1024;

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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(5),
            shutdown_delay: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(25),
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

#[derive(Clone)]
struct AppState {
    admission: Arc<Admission>,
    readiness: Arc<Readiness>,
}

async fn mutate(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        let msg = format!("content type must be application/json, got {content_type:?}");
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, msg).into_response();
    }
    let answer = state.admission.review(&body).await;
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
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
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
        Ok(Server {
            listener,
            metrics_listener,
            tls: Arc::new(tls),
            state: AppState {
                admission,
                readiness,
            },
            limits,
        })
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

    /// Serves until `shutdown` resolves, then drains: readiness goes false,
    /// the listener stays open for `shutdown_delay`, closes, and in-flight
    /// requests get `drain_timeout` to finish.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let Server {
            listener,
            metrics_listener,
            tls,
            state,
            limits,
        } = self;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        if let Some(ml) = metrics_listener {
            let router = metrics_router(state.clone());
            let mut rx = stop_rx.clone();
            tokio::spawn(async move {
                let stop = async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                if let Err(e) = axum::serve(ml, router).with_graceful_shutdown(stop).await {
                    tracing::warn!(error = %e, "metrics listener failed");
                }
            });
        }
        let router = webhook_router(state.clone(), &limits);
        let acceptor = TlsAcceptor::from(tls);
        let graceful = GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(256);
        let builder = Arc::new(builder);

        let readiness = state.readiness.clone();
        let delay = limits.shutdown_delay;
        let stop_signal = async move {
            shutdown.await;
            readiness.stopping.store(true, Ordering::SeqCst);
            tracing::info!(
                delay_ms = delay.as_millis() as u64,
                "shutdown requested; readiness is now false"
            );
            tokio::time::sleep(delay).await;
        };
        tokio::pin!(stop_signal);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let service = TowerToHyperService::new(router.clone());
                    let builder = builder.clone();
                    let watcher = graceful.watcher();
                    let handshake_timeout = limits.handshake_timeout;
                    tokio::spawn(async move {
                        let mut first = [0u8; 1];
                        if let Ok(Ok(1)) = tokio::time::timeout(handshake_timeout, tcp.peek(&mut first)).await {
                            if first[0].is_ascii_alphabetic() {
                                reject_plain_http(tcp).await;
                                return;
                            }
                        }
                        let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                        let conn = builder.serve_connection(TokioIo::new(tls), service);
                        if let Err(e) = watcher.watch(conn).await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                _ = &mut stop_signal => break,
            }
        }
        drop(listener);
        let _ = stop_tx.send(true);
        tracing::info!("listener closed; draining in-flight requests");
        if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("drain timeout reached; closing remaining connections");
        }
        Ok(())
    }
}

/// For `sync` alone: `/metrics`, `/healthz` and `/readyz` (ready once the
/// caches synced) on plain HTTP until `shutdown` resolves.
pub async fn serve_metrics_until(
    addr: Option<SocketAddr>,
    metrics: Arc<crate::metrics::Metrics>,
    caches: Arc<Caches>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Some(addr) = addr else {
        shutdown.await;
        return Ok(());
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let ready_caches = caches.clone();
    let router = Router::new()
        .route(
            "/metrics",
            get(move || {
                let (m, c) = (metrics.clone(), caches.clone());
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
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
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

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
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
