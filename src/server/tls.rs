//! Serving certificate from files, reloaded when they change (including
//! the kubelet's `..data` symlink swap): a broken new pair keeps the last
//! good one. TLS 1.2 and 1.3 only, rustls' modern AEAD suites only. The
//! leaf's `notAfter` is kept with the pair in use, for the expiry gauge.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use arc_swap::ArcSwapOption;
use rustls::crypto::ring::default_provider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};

use crate::metrics::{Metrics, ResultLabels};

/// Holds the current certificate; the TLS stack asks it on every handshake.
#[derive(Debug, Default)]
pub struct CertStore {
    current: ArcSwapOption<CertifiedKey>,
    /// `notAfter` of the current leaf, Unix seconds (0 before the first load).
    not_after: AtomicI64,
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }
}

impl CertStore {
    /// Whether a certificate has been loaded.
    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// `notAfter` of the leaf of the pair in use, in Unix seconds (0 before
    /// the first load): what the expiry gauge exports.
    pub fn not_after(&self) -> i64 {
        self.not_after.load(Ordering::Relaxed)
    }

    /// Serves `ck` from the next handshake on, and records its leaf's expiry.
    fn install(&self, ck: CertifiedKey) {
        // load_pair refused a leaf that does not parse, so 0 is never kept
        // for a served certificate
        self.not_after
            .store(leaf_not_after(&ck).unwrap_or(0), Ordering::Relaxed);
        self.current.store(Some(Arc::new(ck)));
    }
}

/// The `notAfter` of the chain's leaf, in Unix seconds, read from its DER.
pub fn leaf_not_after(ck: &CertifiedKey) -> anyhow::Result<i64> {
    let leaf = ck
        .end_entity_cert()
        .map_err(|e| anyhow!("no leaf certificate: {e}"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| anyhow!("the leaf certificate is not valid X.509: {e}"))?;
    Ok(cert.validity().not_after.timestamp())
}

/// Reads a PEM certificate chain (leaf first) and its private key.
pub fn load_pair(cert_path: &Path, key_path: &Path) -> anyhow::Result<(CertifiedKey, [u8; 32])> {
    let cert_pem =
        std::fs::read(cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
    let key_pem =
        std::fs::read(key_path).with_context(|| format!("reading {}", key_path.display()))?;
    let fingerprint: [u8; 32] = {
        let mut h = Sha256::new();
        h.update(&cert_pem);
        h.update(&key_pem);
        h.finalize().into()
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing certificates in {}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("no certificate found in {}", cert_path.display()));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .with_context(|| format!("parsing private key in {}", key_path.display()))?
        .ok_or_else(|| anyhow!("no private key found in {}", key_path.display()))?;
    let provider = default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| anyhow!("unusable private key in {}: {e}", key_path.display()))?;
    let ck = CertifiedKey::new(certs, signing_key);
    ck.keys_match().map_err(|e| {
        anyhow!(
            "certificate {} and key {} do not match: {e}",
            cert_path.display(),
            key_path.display()
        )
    })?;
    leaf_not_after(&ck).with_context(|| format!("reading {}", cert_path.display()))?;
    Ok((ck, fingerprint))
}

/// Where the serving certificate comes from and how often to look.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub reload_interval: Duration,
}

/// Builds the rustls server config around `store`; with a client CA,
/// clients (the API server) must present a certificate it signed.
pub fn server_config(
    store: Arc<CertStore>,
    client_ca: Option<&Path>,
) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS versions")?;
    let builder = match client_ca {
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let mut roots = RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                roots
                    .add(cert.with_context(|| format!("parsing {}", path.display()))?)
                    .with_context(|| format!("adding CA from {}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Loads the pair once (an error here is fatal: nothing to serve yet).
pub fn initial_load(store: &CertStore, files: &CertFiles) -> anyhow::Result<[u8; 32]> {
    let (ck, fp) = load_pair(&files.cert, &files.key)?;
    store.install(ck);
    Ok(fp)
}

/// Polls the files and swaps in a new pair when their content changes.
/// Polling (not inotify) sees the kubelet's atomic `..data` symlink swap
/// reliably; a pair that fails to load is logged and the old one kept.
/// The expiry gauge follows the pair in use.
pub async fn reload_loop(
    store: Arc<CertStore>,
    files: CertFiles,
    mut last: [u8; 32],
    metrics: Arc<Metrics>,
) {
    let mut tick = tokio::time::interval(files.reload_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;
    metrics.tls_certificate_expiry.set(store.not_after());
    loop {
        tick.tick().await;
        let files2 = files.clone();
        let loaded =
            tokio::task::spawn_blocking(move || load_pair(&files2.cert, &files2.key)).await;
        match loaded {
            Ok(Ok((ck, fp))) => {
                last_error = None;
                if fp != last {
                    store.install(ck);
                    metrics.tls_certificate_expiry.set(store.not_after());
                    last = fp;
                    metrics
                        .tls_reloads
                        .get_or_create(&ResultLabels {
                            result: "ok".into(),
                        })
                        .inc();
                    tracing::info!(cert = %files.cert.display(), "serving certificate reloaded");
                }
            }
            Ok(Err(e)) => {
                let text = format!("{e:#}");
                if last_error.as_deref() != Some(&text) {
                    metrics
                        .tls_reloads
                        .get_or_create(&ResultLabels {
                            result: "error".into(),
                        })
                        .inc();
                    tracing::warn!(error = %text, "new serving certificate unusable; keeping the last good one");
                    last_error = Some(text);
                }
            }
            Err(e) => tracing::warn!(error = %e, "certificate reload task failed"),
        }
    }
}
