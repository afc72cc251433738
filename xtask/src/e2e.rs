//! `cargo xtask e2e` and `cargo xtask demo`: the end-to-end harness driver.
//!
//! 1. builds the peers ([`crate::peers`]): etcd, kube-apiserver,
//!    kube-controller-manager, kubectl, for the deploy scenarios cert-manager,
//!    helm, kustomize and krew, and for the traces scenarios an OpenTelemetry
//!    Collector, each cached by version;
//! 2. builds the webhook (`cargo build --bin serverconfig-webhook`) unless
//!    `--webhook` names one;
//! 3. builds the Go harness (`tests/e2e/harness`) and runs it, which starts a
//!    control plane in a temp folder, runs the scenarios (or the demo) and
//!    tears everything down on exit, failure or Ctrl-C.
//!
//! See tests/e2e/README.md.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::peers::{self, DeployPeers, OtelcolPeer, Peers};
use crate::process::{ignore_interrupts, target_dir};

/// Kubernetes version used when `--k8s` is not given.
pub const DEFAULT_K8S: &str = "1.33.13";

/// The flags of `e2e` and `demo` (and of `test` and `bench-e2e`, which pass
/// them on): which control plane, which webhook, what to keep.
#[derive(Debug, Clone, clap::Args)]
pub struct E2eArgs {
    /// Kubernetes version of the peers; pinned modules exist for the versions
    /// under tests/e2e/peers/ (e.g. 1.35.4); a minor alone like 1.35 picks the
    /// pinned patch
    #[arg(long, value_name = "VERSION", default_value = DEFAULT_K8S)]
    pub k8s: String,
    /// Quiet steady state window in seconds [harness default: 10]
    #[arg(long, value_name = "N")]
    pub quiet_seconds: Option<String>,
    /// Only the scenarios whose name matches this regular expression (e2e only)
    #[arg(long, value_name = "REGEX", allow_hyphen_values = true)]
    pub run: Option<String>,
    /// Use the release build of the webhook
    #[arg(long)]
    pub release: bool,
    /// Use this webhook binary, do not build one
    #[arg(long, value_name = "PATH")]
    pub webhook: Option<PathBuf>,
    /// The webhook's flags: shipped (the flags of deploy/kustomize/deployment.yaml,
    /// addresses and certificate paths replaced) or minimal (only
    /// --controller-namespace) [harness default: shipped]
    #[arg(long, value_name = "MODE")]
    pub webhook_flags: Option<String>,
    /// Keep the per-run folder (logs, certs, kubeconfig)
    #[arg(long)]
    pub keep: bool,
    /// Per-run folder [default: a new temp folder]
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<String>,
    /// Seldon CRDs [harness default: ../shared/seldon-v2.9.1/crds.yaml]
    #[arg(long, value_name = "FILE")]
    pub crds: Option<String>,
    /// Build the peers, the webhook and the harness, run nothing
    #[arg(long)]
    pub build_only: bool,
    /// Verbose harness output
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

impl E2eArgs {
    /// The options when only `--k8s` is given: a debug webhook built here,
    /// the harness's defaults for the rest.
    pub fn new(k8s: &str) -> E2eArgs {
        E2eArgs {
            k8s: k8s.to_string(),
            quiet_seconds: None,
            run: None,
            release: false,
            webhook: None,
            webhook_flags: None,
            keep: false,
            work_dir: None,
            crds: None,
            build_only: false,
            verbose: false,
        }
    }

    /// The harness flags these options set (besides the binaries).
    pub(crate) fn harness_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let valued = [
            ("quiet-seconds", &self.quiet_seconds),
            ("run", &self.run),
            ("webhook-flags", &self.webhook_flags),
            ("work-dir", &self.work_dir),
            ("crds", &self.crds),
        ];
        for (name, value) in valued {
            if let Some(v) = value {
                args.push(format!("--{name}={v}"));
            }
        }
        if self.keep {
            args.push("--keep".into());
        }
        if self.verbose {
            args.push("-v".into());
        }
        args
    }
}

/// `cargo xtask e2e`: the scenarios (the harness's `run`).
pub fn run(o: &E2eArgs) -> Result<()> {
    drive("run", o, &[])
}

/// `cargo xtask demo`: control plane, stand-in and webhook until Ctrl-C
/// (the harness's `demo`).
pub fn demo(o: &E2eArgs) -> Result<()> {
    drive("demo", o, &[])
}

/// Everything the harness needs, built: the peers, the webhook, the harness.
pub struct Builds {
    repo: PathBuf,
    peers: Peers,
    deploy_peers: Option<DeployPeers>,
    otelcol: Option<OtelcolPeer>,
    webhook: PathBuf,
    harness: PathBuf,
}

impl Builds {
    /// Builds, in order, the peers of `k8s`, the scenarios' own peers (when
    /// `deploy`: the deploy peers and the collector), the webhook (or takes
    /// `webhook`) and the harness.
    pub fn prepare(
        k8s: &str,
        deploy: bool,
        webhook: Option<&Path>,
        release: bool,
    ) -> Result<Builds> {
        let repo = repo_root()?;
        peers::check_go()?;
        let peers = Peers::resolve(&repo, k8s)?;
        peers.build()?;
        let (deploy_peers, otelcol) = if deploy {
            (
                Some(DeployPeers::build(&repo)?),
                Some(OtelcolPeer::build(&repo)?),
            )
        } else {
            (None, None)
        };
        let webhook = build_webhook(&repo, webhook, release)?;
        let harness = build_harness(&repo)?;
        Ok(Builds {
            repo,
            peers,
            deploy_peers,
            otelcol,
            webhook,
            harness,
        })
    }

    /// The harness command for `mode` with the control-plane flags set, run
    /// from the repository root; the caller adds the mode's own flags.
    pub fn harness_command(&self, mode: &str) -> Command {
        let mut cmd = Command::new(&self.harness);
        cmd.arg(mode)
            .arg(format!("--peer-dir={}", self.peers.k8s_dir.display()))
            .arg(format!("--etcd={}", self.peers.etcd_bin().display()))
            .arg(format!("--kubectl={}", self.peers.kubectl_bin().display()))
            .arg(format!("--webhook={}", self.webhook.display()))
            .arg(format!("--repo={}", self.repo.display()))
            .current_dir(&self.repo);
        if let Some(d) = &self.deploy_peers {
            cmd.args(d.harness_args());
        }
        if let Some(o) = &self.otelcol {
            cmd.args(o.harness_args());
        }
        cmd
    }
}

/// Builds everything, then runs the harness's `mode` with the flags of `o`
/// and `extra` (passed as given) until it exits; its exit code becomes ours.
pub fn drive(mode: &str, o: &E2eArgs, extra: &[String]) -> Result<()> {
    drive_with(mode, o, extra, true)
}

/// [`drive`], building the deploy scenarios' peers (cert-manager, helm,
/// kustomize, krew, the collector) only when `deploy`: a mode that runs no
/// scenario (the soak) does not need them.
pub fn drive_with(mode: &str, o: &E2eArgs, extra: &[String], deploy: bool) -> Result<()> {
    let t0 = Instant::now();
    let builds = Builds::prepare(&o.k8s, deploy, o.webhook.as_deref(), o.release)?;
    eprintln!("e2e: builds ready in {:.1}s", t0.elapsed().as_secs_f64());
    if o.build_only {
        return Ok(());
    }
    let mut cmd = builds.harness_command(mode);
    cmd.args(o.harness_args()).args(extra);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("start {}", builds.harness.display()))?;
    // Ctrl-C reaches the harness too (same process group); it tears the
    // control plane down and exits. Stay alive until it has.
    ignore_interrupts();
    let status = child.wait()?;
    eprintln!("e2e: total {:.1}s", t0.elapsed().as_secs_f64());
    exit_status(status)
}

/// The harness's exit code, passed on: 0 is success, any other code exits
/// xtask with it (so that CI sees the harness's own code).
fn exit_status(status: ExitStatus) -> Result<()> {
    match status.code() {
        Some(0) => Ok(()),
        Some(c) => std::process::exit(c),
        None => bail!("harness killed by a signal"),
    }
}

/// The repository root: the parent of xtask/ when it holds tests/e2e,
/// else the nearest ancestor of the current folder that does.
fn repo_root() -> Result<PathBuf> {
    let is_root = |p: &Path| p.join("tests/e2e/harness/go.mod").is_file();
    let from_manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf);
    if let Some(p) = from_manifest.filter(|p| is_root(p)) {
        return Ok(p);
    }
    let mut dir = std::env::current_dir()?;
    loop {
        if is_root(&dir) {
            return Ok(dir);
        }
        if !dir.pop() {
            bail!("cannot find the repository root (a folder with tests/e2e/harness/go.mod)");
        }
    }
}

/// The webhook binary: `given` when there is one (it must exist), else
/// `cargo build --bin serverconfig-webhook [--release]`'s output.
fn build_webhook(repo: &Path, given: Option<&Path>, release: bool) -> Result<PathBuf> {
    if let Some(p) = given {
        if !p.is_file() {
            bail!("--webhook {}: no such file", p.display());
        }
        return Ok(std::fs::canonicalize(p)?);
    }
    eprintln!(
        "webhook: cargo build --bin serverconfig-webhook{}",
        if release { " --release" } else { "" }
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut c = Command::new(cargo);
    c.current_dir(repo)
        .args(["build", "--bin", "serverconfig-webhook"]);
    if release {
        c.arg("--release");
    }
    let st = c.status().context("cargo build")?;
    if !st.success() {
        bail!("cargo build --bin serverconfig-webhook failed");
    }
    let bin = target_dir(repo)
        .join(if release { "release" } else { "debug" })
        .join("serverconfig-webhook");
    if !bin.is_file() {
        bail!("{} not found after cargo build", bin.display());
    }
    Ok(bin)
}

/// The harness, built into `.cache/e2e/harness`; it is small, and `go build`
/// is a no-op when nothing changed.
fn build_harness(repo: &Path) -> Result<PathBuf> {
    let dir = repo.join("tests/e2e/harness");
    let out = repo.join(".cache/e2e/harness");
    std::fs::create_dir_all(out.parent().unwrap())?;
    let st = peers::go_cmd(&dir)
        .args(["build", "-trimpath", "-o"])
        .arg(&out)
        .arg(".")
        .status()
        .context("go build tests/e2e/harness")?;
    if !st.success() {
        bail!("building the e2e harness (tests/e2e/harness) failed");
    }
    Ok(out)
}
