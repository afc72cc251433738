//! The real `serve` binary with a kubeconfig that points at no API server:
//! the caches never sync, lookups miss, and the webhook still answers (a
//! denial naming the Server). For tests of the process itself (signals,
//! logs).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::tls::SecretDir;

const BIN: &str = env!("CARGO_BIN_EXE_serverconfig-webhook");

/// How to start it.
pub struct Serve<'a> {
    /// `--shutdown-delay`.
    pub shutdown_delay: &'a str,
    /// `--log-format`.
    pub log_format: &'a str,
    /// The kubeconfig's user token (tests look for it in logs).
    pub token: &'a str,
    /// Where stderr goes (`None`: discarded).
    pub stderr: Option<std::fs::File>,
}

impl Default for Serve<'_> {
    fn default() -> Self {
        Serve {
            shutdown_delay: "300ms",
            log_format: "text",
            token: "t",
            stderr: None,
        }
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl Serve<'_> {
    /// Starts `serve` on `127.0.0.1:port` with the certificate in `certs`,
    /// its kubeconfig written into `dir`; no metrics port, no RUST_LOG.
    pub fn spawn(self, dir: &Path, certs: &SecretDir, port: u16) -> Child {
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, format!("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: {}\n", self.token)).expect("kubeconfig");
        let stderr = self.stderr.map_or_else(Stdio::null, Stdio::from);
        Command::new(BIN)
            .args([
                "serve",
                "--listen-addr",
                &format!("127.0.0.1:{port}"),
                "--metrics-addr",
                "",
                "--shutdown-delay",
                self.shutdown_delay,
                "--log-format",
                self.log_format,
            ])
            .arg("--tls-cert-file")
            .arg(certs.cert())
            .arg("--tls-key-file")
            .arg(certs.key())
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn serve")
    }
}

/// Sends SIGTERM to the process.
pub fn terminate(child: &Child) {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
}

/// Its exit status, if it exits within `tries` x 50 ms (killed otherwise).
pub fn exit_within(child: &mut Child, tries: usize) -> Option<std::process::ExitStatus> {
    for _ in 0..tries {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}
