//! The floor of benchmark 2 (`cargo bench --bench load`): what any
//! admission webhook on `serve`'s stack pays before it looks anything up.
//!
//! It is `serve`'s own HTTPS listener (`server::Server`: the webhook's TLS
//! config, connection cap and deadlines, hyper-util's HTTP/1.1 + HTTP/2
//! builder with the same settings, the body limit and in-flight budget, the
//! concurrency limit and timeout, default [`Limits`]) on the same default
//! multi-thread Tokio runtime with the same allocator (mimalloc), whose
//! review handler is replaced (`Server::answering_with`) by [`allow`]:
//! decode the body as `serve` does (UTF-8 check, then
//! `AdmissionReview<RawObject>`, the type `Admission::review` decodes into)
//! and encode an allowed `AdmissionResponse` for the request, with no scope
//! check, no lookup, no patch and no log line. It prints `listening on ADDR`
//! on stdout once bound and runs until killed.
//!
//! The precomputed-response server (`baseline.rs`) stays beside it as a
//! second line: it reads the body and parses nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use serverconfig_webhook::admission::{Admission, Answer, RawObject};
use serverconfig_webhook::cache::Caches;
use serverconfig_webhook::core::mutate::{OnMissing, Settings};
use serverconfig_webhook::metrics::Metrics;
use serverconfig_webhook::server::tls::{self, CertFiles, CertStore};
use serverconfig_webhook::server::{Limits, Readiness, Server};

/// `serve`'s allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Command line of the floor server.
#[derive(Parser)]
#[command(about = "floor HTTPS server for the load benchmark: decode and allow")]
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
}

/// An answer of 400 with the review's own error form, as `serve` answers
/// a body it cannot read.
fn invalid(message: String) -> Answer {
    let review = AdmissionResponse::invalid(message).into_review();
    Answer {
        status: 400,
        body: serde_json::to_vec(&review).unwrap_or_default(),
    }
}

/// Decodes the review into the types `Admission::review` uses and allows
/// it: `AdmissionResponse::from(&request)` encoded by serde_json, the path
/// `admission::encode_review` takes for an answer without a patch.
fn allow(body: &[u8]) -> Answer {
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => return invalid(format!("not UTF-8: {e}")),
    };
    let review: AdmissionReview<RawObject> = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) => return invalid(format!("not an AdmissionReview: {e}")),
    };
    if review.types.api_version != "admission.k8s.io/v1" || review.types.kind != "AdmissionReview" {
        return invalid("not an admission.k8s.io/v1 AdmissionReview".into());
    }
    let request: AdmissionRequest<RawObject> = match review.try_into() {
        Ok(r) => r,
        Err(_) => return invalid("the AdmissionReview has no request".into()),
    };
    let review = AdmissionResponse::from(&request).into_review();
    Answer {
        status: 200,
        body: serde_json::to_vec(&review).unwrap_or_default(),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // `serve`'s runtime: the default multi-thread one
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
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
    let config = tls::server_config(store.clone(), None)?;
    // The server needs an Admission for its metrics; its caches stay empty
    // and are never asked.
    let metrics = Arc::new(Metrics::new());
    let caches = Caches::from_objects([], metrics.clone());
    let admission = Arc::new(Admission {
        desired: Default::default(),
        settings: Settings {
            controller_namespace: "seldon-system".into(),
            on_missing: OnMissing::Auto,
        },
        caches: caches.clone(),
        metrics,
    });
    let server = Server::bind(
        args.listen,
        None,
        config,
        admission,
        Readiness::new(caches, store),
        Limits::default(),
    )
    .await?
    .answering_with(allow);
    println!("listening on {}", server.local_addr()?);
    server.run(tokio_util::sync::CancellationToken::new()).await
}
