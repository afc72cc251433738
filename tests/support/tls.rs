//! TLS helpers for tests: certificates in the kubelet's `..data` symlink
//! layout, and a client that reports which certificate the server served.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serverconfig_webhook::certs;

/// A Secret volume as the kubelet lays it out: `tls.crt` and `tls.key` are
/// links into `..data`, itself a link to a timestamped folder.
pub struct SecretDir {
    pub dir: PathBuf,
    generation: u32,
}

impl SecretDir {
    pub fn new(dir: &Path, cert: &str, key: &str) -> SecretDir {
        let mut s = SecretDir {
            dir: dir.to_path_buf(),
            generation: 0,
        };
        s.swap(cert, key);
        std::os::unix::fs::symlink("..data/tls.crt", dir.join("tls.crt")).expect("link crt");
        std::os::unix::fs::symlink("..data/tls.key", dir.join("tls.key")).expect("link key");
        s
    }

    /// Writes a new generation and swaps `..data` atomically, like the kubelet.
    pub fn swap(&mut self, cert: &str, key: &str) {
        self.generation += 1;
        let gen = format!("..2026_11_25_{:04}", self.generation);
        let gen_dir = self.dir.join(&gen);
        std::fs::create_dir_all(&gen_dir).expect("gen dir");
        std::fs::write(gen_dir.join("tls.crt"), cert).expect("crt");
        std::fs::write(gen_dir.join("tls.key"), key).expect("key");
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&gen, &tmp).expect("tmp link");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("swap");
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("tls.key")
    }
}

/// A fresh CA + serving pair for 127.0.0.1 and localhost.
pub fn pair() -> certs::Generated {
    certs::generate(&["localhost".into(), "127.0.0.1".into()], 1).expect("certs")
}

/// DER of the first certificate in a PEM text.
pub fn leaf_der(pem: &str) -> Vec<u8> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .expect("a cert")
        .expect("valid pem")
        .to_vec()
}

/// Connects with TLS trusting `ca_pems` and returns the served leaf's DER.
pub async fn served_leaf(addr: std::net::SocketAddr, ca_pems: &[&str]) -> std::io::Result<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in ca_pems {
        for c in rustls_pemfile::certs(&mut pem.as_bytes()) {
            roots.add(c?).map_err(std::io::Error::other)?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name =
        rustls::pki_types::ServerName::try_from("localhost").map_err(std::io::Error::other)?;
    let tls = connector.connect(name, tcp).await?;
    let (_, conn) = tls.get_ref();
    Ok(conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default())
}

/// A reqwest client trusting these CAs.
pub fn client(ca_pems: &[&str], http2_only: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder().use_rustls_tls();
    for pem in ca_pems {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("ca"));
    }
    b = if http2_only {
        b.http2_prior_knowledge()
    } else {
        b.http1_only()
    };
    b.build().expect("client")
}

/// POSTs a review whose body arrives from `rx` as it is sent, so the
/// request can be kept in flight (drain and SIGTERM tests).
pub async fn post_streamed(
    c: reqwest::Client,
    url: String,
    rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
) -> reqwest::Result<reqwest::Response> {
    c.post(url)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .send()
        .await
}
