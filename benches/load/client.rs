//! The load client: keep-alive HTTPS connections (rustls, hyper's
//! connection API) sending review bodies, in two modes:
//!
//! - closed loop: `C` connections each send the next request as soon as
//!   the previous answer is in (maximum throughput);
//! - open loop: a pacer thread releases requests at a fixed rate onto a
//!   queue that `C` connections drain; latency counts from the *intended*
//!   send time, so a stalled server is charged for the requests it delayed
//!   (no coordinated omission).
//!
//! Every answer is compared byte for byte with the expected one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper::{header, Method, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Where to send and what to expect (cheap to clone: the bodies are shared).
#[derive(Clone)]
pub struct Target {
    pub name: String,
    pub addr: std::net::SocketAddr,
    /// Request bodies, sent round robin.
    pub bodies: Arc<Vec<Bytes>>,
    /// The expected answer for each body (same index).
    pub expected: Arc<Vec<Bytes>>,
}

/// HTTP version the client speaks (offered through ALPN).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Http {
    #[value(name = "1")]
    #[serde(rename = "1")]
    H1,
    #[value(name = "2")]
    #[serde(rename = "2")]
    H2,
}

/// Client TLS for the fixture's CA, ALPN for `http`.
pub fn tls_connector(ca_pem: &[u8], http: Http) -> anyhow::Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
        roots.add(cert.context("CA certificate")?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![match http {
        Http::H1 => b"http/1.1".to_vec(),
        Http::H2 => b"h2".to_vec(),
    }];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// One keep-alive connection.
enum Conn {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Conn {
    async fn open(
        addr: std::net::SocketAddr,
        tls: &TlsConnector,
        http: Http,
    ) -> anyhow::Result<Conn> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::IpAddress(addr.ip().into());
        let stream = TokioIo::new(tls.connect(name, tcp).await.context("TLS handshake")?);
        Ok(match http {
            Http::H1 => {
                let (send, conn) = http1::handshake(stream).await?;
                tokio::spawn(conn);
                Conn::H1(send)
            }
            Http::H2 => {
                let (send, conn) = http2::handshake(TokioExecutor::new(), stream).await?;
                tokio::spawn(conn);
                Conn::H2(send)
            }
        })
    }

    /// Sends one review and returns the whole answer body.
    async fn send(&mut self, body: Bytes) -> anyhow::Result<Bytes> {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/mutate")
            .header(header::HOST, "127.0.0.1")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        let resp = match self {
            Conn::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Conn::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("HTTP {status}: {}", String::from_utf8_lossy(&bytes));
        }
        Ok(bytes)
    }
}

/// Sends every body once and returns the answers (to check them and to
/// expect them under load).
pub async fn probe(
    addr: std::net::SocketAddr,
    tls: &TlsConnector,
    http: Http,
    bodies: &[Bytes],
) -> anyhow::Result<Vec<Bytes>> {
    let mut conn = Conn::open(addr, tls, http).await?;
    let mut out = Vec::with_capacity(bodies.len());
    for b in bodies {
        out.push(conn.send(b.clone()).await?);
    }
    Ok(out)
}

/// What one run measured.
pub struct Outcome {
    /// Latency in microseconds of the measured requests.
    pub hist: Histogram<u64>,
    /// Answers within the measured window.
    pub ok: u64,
    /// Failed requests or wrong answers (whole run, warm-up included).
    pub errors: u64,
    pub first_error: Option<String>,
    pub measured: Duration,
}

impl Outcome {
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.measured.as_secs_f64()
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 60 s, 3 significant digits
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

struct Shared {
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn error(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut f) = self.first_error.lock() {
            f.get_or_insert(e);
        }
    }
}

async fn exchange(
    conn: &mut Conn,
    target: &Target,
    i: usize,
    shared: &Shared,
) -> anyhow::Result<()> {
    let k = i % target.bodies.len();
    match conn.send(target.bodies[k].clone()).await {
        Ok(answer) if answer == target.expected[k] => Ok(()),
        Ok(answer) => {
            shared.error(format!(
                "{}: unexpected answer to body {k}: {}",
                target.name,
                String::from_utf8_lossy(&answer[..answer.len().min(300)])
            ));
            Ok(())
        }
        Err(e) => {
            shared.error(format!("{}: {e:#}", target.name));
            Err(e)
        }
    }
}

/// Fresh error counters and `connections` open keep-alive connections.
async fn open_conns(
    target: &Target,
    tls: &TlsConnector,
    http: Http,
    connections: usize,
) -> anyhow::Result<(Arc<Shared>, Vec<Conn>)> {
    let shared = Arc::new(Shared {
        errors: AtomicU64::new(0),
        first_error: Default::default(),
    });
    let mut conns = Vec::new();
    for _ in 0..connections {
        conns.push(Conn::open(target.addr, tls, http).await?);
    }
    Ok((shared, conns))
}

/// Maximum throughput: `connections` connections, each sending back to back
/// for `warmup + duration`; only the last `duration` is measured.
pub async fn closed_loop(
    target: &Target,
    tls: &TlsConnector,
    http: Http,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let (shared, conns) = open_conns(target, tls, http, connections).await?;
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::new();
    for (w, mut conn) in conns.into_iter().enumerate() {
        let shared = shared.clone();
        let t = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let mut ok = 0u64;
            let mut i = w;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                if exchange(&mut conn, &t, i, &shared).await.is_err() {
                    break;
                }
                if t0 >= measure_from {
                    let _ = hist.record(t0.elapsed().as_micros().max(1) as u64);
                    ok += 1;
                }
                i += connections;
            }
            (hist, ok)
        }));
    }
    let mut hist = histogram();
    let mut ok = 0;
    for t in tasks {
        let (h, n) = t.await?;
        hist.add(&h).map_err(|e| anyhow!("{e}"))?;
        ok += n;
    }
    Ok(finish(hist, ok, &shared, duration))
}

fn finish(hist: Histogram<u64>, ok: u64, shared: &Shared, measured: Duration) -> Outcome {
    Outcome {
        hist,
        ok,
        errors: shared.errors.load(Ordering::Relaxed),
        first_error: shared.first_error.lock().ok().and_then(|f| f.clone()),
        measured,
    }
}

/// Fixed rate: `rate` requests per second for `warmup + duration`, spread
/// over `connections` keep-alive connections; latency is measured from
/// the time each request was due.
pub async fn open_loop(
    target: &Target,
    tls: &TlsConnector,
    http: Http,
    connections: usize,
    rate: f64,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let (shared, conns) = open_conns(target, tls, http, connections).await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let start = Instant::now() + Duration::from_millis(20);
    let measure_from = start + warmup;
    let total = ((warmup + duration).as_secs_f64() * rate) as usize;
    // The pacer: a plain thread sleeping until each due time (the runtime's
    // timer has 1 ms granularity, too coarse for 1 ms intervals).
    let pacer = std::thread::spawn(move || {
        for i in 0..total {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if tx.send((i, due)).is_err() {
                break;
            }
        }
    });
    let mut tasks = Vec::new();
    for mut conn in conns {
        let (shared, rx) = (shared.clone(), rx.clone());
        let t = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let mut ok = 0u64;
            loop {
                let next = rx.lock().await.recv().await;
                let Some((i, due)) = next else { break };
                if exchange(&mut conn, &t, i, &shared).await.is_err() {
                    break;
                }
                if due >= measure_from {
                    let _ = hist.record(due.elapsed().as_micros().max(1) as u64);
                    ok += 1;
                }
            }
            (hist, ok)
        }));
    }
    let mut hist = histogram();
    let mut ok = 0;
    for t in tasks {
        let (h, n) = t.await?;
        hist.add(&h).map_err(|e| anyhow!("{e}"))?;
        ok += n;
    }
    let _ = pacer.join();
    Ok(finish(hist, ok, &shared, duration))
}
