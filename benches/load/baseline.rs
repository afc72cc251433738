//! Baseline server of benchmark 2 (`cargo bench --bench load`): the least an
//! HTTPS admission endpoint can do. It answers `POST /mutate` with one
//! precomputed response after reading the body, over the webhook's own TLS
//! settings (`server::tls::server_config`: same certificate, TLS 1.2/1.3,
//! ALPN `h2` + `http/1.1`) and the same hyper-util connection builder, on
//! the same default multi-thread Tokio runtime. It prints
//! `listening on ADDR` on stdout once bound and runs until killed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::header;
use axum::routing::post;
use axum::Router;
use clap::Parser;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serverconfig_webhook::server::tls::{self, CertFiles, CertStore};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Command line of the baseline server.
#[derive(Parser)]
#[command(about = "baseline HTTPS server for the load benchmark")]
struct Args {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// PEM certificate chain (the webhook's serving certificate).
    #[arg(long)]
    cert: PathBuf,
    /// PEM private key.
    #[arg(long)]
    key: PathBuf,
    /// File holding the response body to answer with.
    #[arg(long)]
    response: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let response = Bytes::from(std::fs::read(&args.response)?);
    let store = Arc::new(CertStore::default());
    tls::initial_load(
        &store,
        &CertFiles {
            cert: args.cert.clone(),
            key: args.key.clone(),
            client_ca: None,
            reload_interval: std::time::Duration::from_secs(3600),
        },
    )?;
    let acceptor = TlsAcceptor::from(Arc::new(tls::server_config(store, None)?));
    let router = Router::new().route(
        "/mutate",
        post(move |_body: Bytes| {
            let response = response.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], response) }
        }),
    );
    let listener = TcpListener::bind(args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let (acceptor, builder) = (acceptor.clone(), builder.clone());
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            if let Ok(tls) = acceptor.accept(tcp).await {
                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
            }
        });
    }
}
