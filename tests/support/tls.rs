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

/// A rustls client config trusting `ca_pem`, with these ALPN protocols and
/// protocol versions (default: TLS 1.3 and 1.2).
pub fn client_config(
    ca_pem: &str,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
    suites: Option<Vec<rustls::SupportedCipherSuite>>,
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(c.expect("ca pem")).expect("ca");
    }
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(s) = suites {
        provider.cipher_suites = s;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A TLS stream to `addr` with `config`, named `localhost`.
pub async fn connect(
    addr: std::net::SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name =
        rustls::pki_types::ServerName::try_from("localhost").map_err(std::io::Error::other)?;
    connector.connect(name, tcp).await
}

/// A ClientHello record built byte by byte, for versions and suites no
/// rustls client will send: `legacy_version` in both the record and the
/// hello, no `supported_versions` extension (so the server must take the
/// legacy version at its word), and the usual ECDHE extensions.
pub fn raw_client_hello(legacy_version: u16, suites: &[u16]) -> Vec<u8> {
    fn ext(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
    }
    let mut exts = Vec::new();
    let host = b"localhost";
    let mut sni = Vec::new();
    sni.extend_from_slice(&((host.len() + 3) as u16).to_be_bytes());
    sni.push(0); // host_name
    sni.extend_from_slice(&(host.len() as u16).to_be_bytes());
    sni.extend_from_slice(host);
    ext(&mut exts, 0x0000, &sni); // server_name
    ext(&mut exts, 0x000a, &[0, 4, 0x00, 0x1d, 0x00, 0x17]); // groups: x25519, P-256
    ext(&mut exts, 0x000b, &[1, 0]); // ec_point_formats: uncompressed
    ext(
        &mut exts,
        0x000d, // signature_algorithms: ecdsa_p256_sha256, rsa_pss_sha256, rsa_pkcs1_sha256
        &[0, 6, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01],
    );
    ext(&mut exts, 0x0017, &[]); // extended_master_secret
    ext(&mut exts, 0xff01, &[0]); // renegotiation_info (empty)

    let mut hello = Vec::new();
    hello.extend_from_slice(&legacy_version.to_be_bytes());
    hello.extend_from_slice(&[0x5a; 32]); // random
    hello.push(0); // no session id
    hello.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        hello.extend_from_slice(&s.to_be_bytes());
    }
    hello.extend_from_slice(&[1, 0]); // compression: null only
    hello.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    hello.extend_from_slice(&exts);

    let mut handshake = vec![1]; // client_hello
    handshake.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&hello);

    let mut record = vec![0x16]; // handshake record
    record.extend_from_slice(&legacy_version.to_be_bytes());
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// What the server sent back to a raw ClientHello.
#[derive(Debug, PartialEq, Eq)]
pub enum HelloAnswer {
    /// A handshake record starting with a ServerHello.
    ServerHello,
    /// An alert record with this description code (70 protocol_version,
    /// 40 handshake_failure, ...).
    Alert(u8),
    /// The connection closed with nothing sent.
    Closed,
    /// Anything else (the first bytes).
    Other(Vec<u8>),
}

/// Sends `hello` on a fresh TCP connection and reads the first record back.
pub async fn send_raw_hello(addr: std::net::SocketAddr, hello: &[u8]) -> HelloAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(hello).await.expect("write hello");
    let mut head = [0u8; 6];
    let mut got = 0;
    while got < head.len() {
        match tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tcp.read(&mut head[got..]),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got += n,
            Err(_) => panic!("no answer to the ClientHello within 10 s"),
        }
    }
    match (got, head[0]) {
        (0, _) => HelloAnswer::Closed,
        (6, 0x16) if head[5] == 2 => HelloAnswer::ServerHello,
        (n, 0x15) if n >= 5 => {
            // Alert record: level, description follow the 5-byte header.
            let mut desc = [0u8; 1];
            if n == 6 {
                let _ = tcp.read_exact(&mut desc).await;
            } else {
                let mut two = [0u8; 2];
                let _ = tcp.read_exact(&mut two).await;
                desc[0] = two[1];
            }
            HelloAnswer::Alert(desc[0])
        }
        (n, _) => HelloAnswer::Other(head[..n].to_vec()),
    }
}

/// Waits (up to `tries` x 50 ms) until something accepts TCP connections on
/// loopback `port`: a `serve` process started by a test is listening.
pub async fn wait_for_port(port: u16, tries: usize) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..tries {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
