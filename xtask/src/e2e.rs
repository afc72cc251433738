//! `cargo xtask e2e` and `cargo xtask demo`: the end-to-end harness driver.
//!
//! 1. builds the peers (etcd, kube-apiserver, kube-controller-manager) from
//!    the pinned Go modules under `tests/e2e/peers/` into a cache folder
//!    keyed by version (`.cache/peers/k8s-v<ver>/`, `.cache/peers/etcd-<ver>/`);
//!    a binary already there is never rebuilt;
//!    and, for the deploy scenarios, cert-manager's controller and
//!    cainjector (`tests/e2e/peers/cert-manager-v<ver>/`, cached in
//!    `cert-manager-v<ver>/`), and finds helm and kustomize through
//!    `tests/deploy/lib.sh` (same cache);
//! 2. builds the webhook (`cargo build --bin serverconfig-webhook`);
//! 3. builds the Go harness (`tests/e2e/harness`) and runs it, which starts a
//!    control plane in a temp folder, runs the scenarios (or the demo) and
//!    tears everything down on exit, failure or Ctrl-C.
//!
//! See tests/e2e/README.md.

use anyhow::{anyhow, bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Kubernetes version used when `--k8s` is not given.
pub const DEFAULT_K8S: &str = "1.33.13";

const USAGE: &str = "\
usage: cargo xtask e2e [flags]     run the end-to-end scenarios
       cargo xtask demo [flags]    local control plane + webhook + seed Pattern 1, until Ctrl-C

flags:
  --k8s VERSION          Kubernetes version of the peers (default 1.33.13; pinned
                         modules exist for the versions under tests/e2e/peers/, e.g. 1.35.4;
                         a minor alone like 1.35 picks the pinned patch)
  --quiet-seconds N      quiet steady state window (default 10)
  --run REGEX            only scenarios whose name matches (e2e only)
  --release              use the release build of the webhook
  --webhook PATH         use this webhook binary, do not build one
  --webhook-flags MODE   shipped (default): the flags of deploy/kustomize/deployment.yaml,
                         addresses and certificate paths replaced; minimal: only
                         --controller-namespace
  --keep                 keep the per-run folder (logs, certs, kubeconfig)
  --work-dir DIR         per-run folder (default: a new temp folder)
  --crds FILE            Seldon CRDs (default ../shared/seldon-v2.9.1/crds.yaml)
  --build-only           build the peers, the webhook and the harness, run nothing
  -v                     verbose
environment:
  SERVERCONFIG_E2E_CACHE  peer cache folder (default <repo>/.cache/peers)";

#[derive(Debug, Default)]
struct Opts {
    k8s: String,
    quiet_seconds: Option<String>,
    run: Option<String>,
    release: bool,
    webhook: Option<PathBuf>,
    webhook_flags: Option<String>,
    keep: bool,
    work_dir: Option<String>,
    crds: Option<String>,
    build_only: bool,
    verbose: bool,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        k8s: DEFAULT_K8S.to_string(),
        ..Default::default()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = |name: &str| -> Result<String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            it.next()
                .cloned()
                .ok_or_else(|| anyhow!("{name} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--k8s" => o.k8s = value("--k8s")?,
            "--quiet-seconds" => o.quiet_seconds = Some(value("--quiet-seconds")?),
            "--run" => o.run = Some(value("--run")?),
            "--release" => o.release = true,
            "--webhook" => o.webhook = Some(PathBuf::from(value("--webhook")?)),
            "--webhook-flags" => o.webhook_flags = Some(value("--webhook-flags")?),
            "--keep" => o.keep = true,
            "--work-dir" => o.work_dir = Some(value("--work-dir")?),
            "--crds" => o.crds = Some(value("--crds")?),
            "--build-only" => o.build_only = true,
            "-v" | "--verbose" => o.verbose = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown flag {other}\n{USAGE}"),
        }
    }
    Ok(o)
}

pub fn run(args: &[String]) -> Result<()> {
    drive("run", args)
}

pub fn demo(args: &[String]) -> Result<()> {
    drive("demo", args)
}

/// Benchmark 3/4 of issue 6 (the harness's `bench`): concurrent StatefulSet
/// creates through the real API server with the webhook, without it and,
/// on 1.36+, with the MutatingAdmissionPolicy fixture; JSON lines on stdout.
/// Takes the flags of `e2e` plus the bench's own ([`BENCH_FLAGS`]); builds
/// the webhook in release mode unless `--debug` or `--webhook` is given.
pub fn bench(args: &[String]) -> Result<()> {
    let mut common = Vec::new();
    let mut own = Vec::new();
    let mut release = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let flag = a.split_once('=').map_or(a.as_str(), |(f, _)| f);
        if a == "--debug" {
            release = false;
        } else if a == "--sync" {
            own.push("-sync=true".into());
        } else if BENCH_FLAGS.contains(&flag) {
            // the harness's flag package takes -name=value
            let value = match a.split_once('=') {
                Some((_, v)) => v.to_string(),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| anyhow!("{flag} needs a value\n{BENCH_USAGE}"))?,
            };
            own.push(format!("-{}={value}", flag.trim_start_matches('-')));
        } else if a == "-h" || a == "--help" {
            println!("{BENCH_USAGE}");
            return Ok(());
        } else {
            common.push(a.clone());
        }
    }
    if release && !common.iter().any(|a| a == "--release") {
        common.push("--release".into());
    }
    drive_with("bench", &common, &own)
}

/// The flags `cargo xtask bench-e2e` passes through to the harness's `bench`.
pub const BENCH_FLAGS: [&str; 7] = [
    "--clients",
    "--creates",
    "--rounds",
    "--warmup",
    "--namespaces",
    "--modes",
    "--out",
];

const BENCH_USAGE: &str = "\
usage: cargo xtask bench-e2e [e2e flags] [bench flags]
bench flags:
  --clients N      concurrent clients (default 50)
  --creates N      StatefulSet creates per mode in each round (default 500)
  --rounds N       rounds, each runs every mode once in rotated order (default 6)
  --warmup N       untimed creates per mode before the first round (default 100)
  --namespaces N   team namespaces with a ServerConfig and a Server (default 10)
  --modes LIST     subset of none,webhook,webhook-unchanged,map,map-jsonpatch
                   (default: all the server supports; map* need --k8s 1.36)
  --out FILE       also write the JSON lines (one per mode) to FILE
  --sync           keep --sync in the webhook's shipped flags (default: off; its sync loop
                   would heal every StatefulSet the no-webhook rounds create)
  --debug          use the debug build of the webhook (default: --release)
e2e flags: --k8s, --webhook, --webhook-flags, --keep, --work-dir, --crds, -v, --build-only";

fn drive(mode: &str, args: &[String]) -> Result<()> {
    drive_with(mode, args, &[])
}

/// `drive` with extra arguments passed to the harness as given.
fn drive_with(mode: &str, args: &[String], extra: &[String]) -> Result<()> {
    let o = parse(args)?;
    let repo = repo_root()?;
    let t0 = Instant::now();
    check_go()?;
    let peers = Peers::resolve(&repo, &o.k8s)?;
    peers.build()?;
    let deploy_peers = DeployPeers::build(&repo)?;
    let webhook = build_webhook(&repo, &o)?;
    let harness = build_harness(&repo)?;
    eprintln!("e2e: builds ready in {:.1}s", t0.elapsed().as_secs_f64());
    if o.build_only {
        return Ok(());
    }

    let mut cmd = Command::new(&harness);
    cmd.arg(mode)
        .arg(format!("--peer-dir={}", peers.k8s_dir.display()))
        .arg(format!("--etcd={}", peers.etcd_bin().display()))
        .arg(format!("--webhook={}", webhook.display()))
        .arg(format!("--repo={}", repo.display()))
        .args(deploy_peers.harness_args())
        .current_dir(&repo);
    if let Some(v) = &o.quiet_seconds {
        cmd.arg(format!("--quiet-seconds={v}"));
    }
    if let Some(v) = &o.run {
        cmd.arg(format!("--run={v}"));
    }
    if let Some(v) = &o.webhook_flags {
        cmd.arg(format!("--webhook-flags={v}"));
    }
    if let Some(v) = &o.work_dir {
        cmd.arg(format!("--work-dir={v}"));
    }
    if let Some(v) = &o.crds {
        cmd.arg(format!("--crds={v}"));
    }
    if o.keep {
        cmd.arg("--keep");
    }
    if o.verbose {
        cmd.arg("-v");
    }
    cmd.args(extra);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("start {}", harness.display()))?;
    // Ctrl-C reaches the harness too (same process group); it tears the
    // control plane down and exits. Stay alive until it has.
    ignore_interrupts();
    let status = child.wait()?;
    eprintln!("e2e: total {:.1}s", t0.elapsed().as_secs_f64());
    exit_status(status)
}

fn exit_status(status: ExitStatus) -> Result<()> {
    match status.code() {
        Some(0) => Ok(()),
        Some(c) => std::process::exit(c),
        None => bail!("harness killed by a signal"),
    }
}

#[cfg(unix)]
fn ignore_interrupts() {
    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    const SIGINT: i32 = 2;
    const SIGTERM: i32 = 15;
    const SIG_IGN: usize = 1;
    // SAFETY: setting a signal's disposition to SIG_IGN is async-signal-safe
    // and touches no Rust state.
    unsafe {
        signal(SIGINT, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
    }
}

#[cfg(not(unix))]
fn ignore_interrupts() {}

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

fn check_go() -> Result<()> {
    let out = Command::new("go").arg("version").output().context(
        "the e2e harness builds its peers with Go; `go` was not found on PATH (install Go >= 1.24)",
    )?;
    if !out.status.success() {
        bail!("`go version` failed");
    }
    Ok(())
}

/// Environment for every `go` command: no VCS stamping, no toolchain
/// downloads, go.mod/go.sum as committed, static binaries.
fn go_cmd(dir: &Path) -> Command {
    let mut c = Command::new("go");
    c.current_dir(dir)
        .env("GOFLAGS", "-buildvcs=false -mod=readonly")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0");
    c
}

struct Peers {
    version: String,
    k8s_module: PathBuf,
    etcd_version: String,
    etcd_module: PathBuf,
    k8s_dir: PathBuf,
    etcd_dir: PathBuf,
}

/// Versions of the pinned peer modules `<peers>/<prefix><version>/`, sorted.
fn pinned_versions(peers: &Path, prefix: &str) -> Result<Vec<String>> {
    let mut versions: Vec<String> = std::fs::read_dir(peers)
        .with_context(|| format!("read {}", peers.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix(prefix))
                .map(String::from)
        })
        .collect();
    versions.sort();
    Ok(versions)
}

impl Peers {
    fn resolve(repo: &Path, wanted: &str) -> Result<Peers> {
        let peers = repo.join("tests/e2e/peers");
        let wanted = wanted.trim_start_matches('v');
        let versions = pinned_versions(&peers, "k8s-v")?;
        let version = versions
            .iter()
            .rev()
            .find(|v| v.as_str() == wanted || v.starts_with(&format!("{wanted}.")))
            .cloned()
            .ok_or_else(|| {
                anyhow!(
                    "no pinned module for Kubernetes {wanted} under {} (have: {}); add one with \
                     tests/e2e/peers/gen-k8s-module.sh {wanted}",
                    peers.display(),
                    versions.join(", ")
                )
            })?;
        let k8s_module = peers.join(format!("k8s-v{version}"));
        // the etcd version this Kubernetes release pins (gen-k8s-module.sh
        // writes it; tidy drops etcd/server from the wrapper's go.mod)
        let etcd_version = std::fs::read_to_string(k8s_module.join("etcd-version"))
            .with_context(|| format!("{}/etcd-version", k8s_module.display()))?
            .trim()
            .to_string();
        let etcd_module = peers.join(format!("etcd-{etcd_version}"));
        if !etcd_module.join("go.mod").is_file() {
            bail!(
                "no pinned etcd module {}; run tests/e2e/peers/gen-k8s-module.sh {version}",
                etcd_module.display()
            );
        }
        let cache = match std::env::var_os("SERVERCONFIG_E2E_CACHE") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => repo.join(".cache/peers"),
        };
        Ok(Peers {
            k8s_dir: cache.join(format!("k8s-v{version}")),
            etcd_dir: cache.join(format!("etcd-{etcd_version}")),
            version,
            k8s_module,
            etcd_version,
            etcd_module,
        })
    }

    fn etcd_bin(&self) -> PathBuf {
        self.etcd_dir.join("etcd")
    }

    fn build(&self) -> Result<()> {
        let (major, minor) = {
            let mut p = self.version.split('.');
            (
                p.next().unwrap_or("1").to_string(),
                p.next().unwrap_or("0").to_string(),
            )
        };
        // the version the binaries report (kubectl version, /version)
        let mut kflags = String::from("-s -w");
        for pkg in [
            "k8s.io/component-base/version",
            "k8s.io/client-go/pkg/version",
        ] {
            kflags.push_str(&format!(
                " -X {pkg}.gitVersion=v{v} -X {pkg}.gitMajor={major} -X {pkg}.gitMinor={minor} -X {pkg}.gitTreeState=clean",
                v = self.version
            ));
        }
        let all = [
            (
                "etcd",
                self.etcd_version.clone(),
                self.etcd_module.clone(),
                "go.etcd.io/etcd/server/v3",
                self.etcd_bin(),
                "-s -w".to_string(),
            ),
            (
                "kube-apiserver",
                format!("v{}", self.version),
                self.k8s_module.clone(),
                "k8s.io/kubernetes/cmd/kube-apiserver",
                self.k8s_dir.join("kube-apiserver"),
                kflags.clone(),
            ),
            (
                "kube-controller-manager",
                format!("v{}", self.version),
                self.k8s_module.clone(),
                "k8s.io/kubernetes/cmd/kube-controller-manager",
                self.k8s_dir.join("kube-controller-manager"),
                kflags,
            ),
        ];
        let todo: Vec<_> = all.iter().filter(|s| !s.4.is_file()).collect();
        if todo.is_empty() {
            eprintln!(
                "peers: cached, nothing to build (etcd {}, kube-apiserver + kube-controller-manager v{} in {})",
                self.etcd_version,
                self.version,
                self.k8s_dir.parent().unwrap_or(&self.k8s_dir).display()
            );
            return Ok(());
        }
        eprintln!(
            "peers: building {} of 3 binaries with {} (a first build downloads modules and takes several minutes; later runs reuse {})",
            todo.len(),
            go_version(),
            self.k8s_dir.parent().unwrap_or(&self.k8s_dir).display()
        );
        let n = todo.len();
        for (k, (name, ver, module, pkg, out, ldflags)) in todo.into_iter().enumerate() {
            let t = Instant::now();
            eprintln!("peers: [{}/{}] {name} {ver} ({pkg})", k + 1, n);
            go_build(module, pkg, out, ldflags, name)?;
            eprintln!(
                "peers: [{}/{}] {name} {ver} built in {:.0}s",
                k + 1,
                n,
                t.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }
}

fn go_version() -> String {
    Command::new("go")
        .arg("version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.split_whitespace().nth(2).unwrap_or("go").to_string())
        .unwrap_or_else(|| "go".into())
}

/// `go build` one main package, showing how many of its packages are
/// compiled so far; writes to a temp name and renames, so an interrupted
/// build never leaves a binary that a later run would take as cached.
fn go_build(module: &Path, pkg: &str, out: &Path, ldflags: &str, name: &str) -> Result<()> {
    std::fs::create_dir_all(out.parent().unwrap())?;
    // download first, so that the package count below does not hide it
    let t = Instant::now();
    let st = go_cmd(module)
        .args(["mod", "download"])
        .status()
        .context("go mod download")?;
    if !st.success() {
        bail!("go mod download failed in {}", module.display());
    }
    if t.elapsed() > Duration::from_secs(2) {
        eprintln!(
            "peers:       modules downloaded in {:.0}s",
            t.elapsed().as_secs_f64()
        );
    }
    let total = go_cmd(module)
        .args(["list", "-deps", pkg])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            o.stdout
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .count()
        })
        .unwrap_or(0);
    let tmp = out.with_extension("partial");
    let mut child = go_cmd(module)
        .args(["build", "-v", "-trimpath", "-ldflags", ldflags, "-o"])
        .arg(&tmp)
        .arg(pkg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("go build")?;
    let stderr = child.stderr.take().unwrap();
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let errs = errors.clone();
    let name = name.to_string();
    let reader = std::thread::spawn(move || {
        let started = Instant::now();
        let mut last = Instant::now();
        let mut done = 0usize;
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            // `go build -v` prints each package path as it is compiled;
            // anything else (with spaces or colons) is a message
            if line.contains(' ') || line.contains(':') {
                errs.lock().unwrap().push(line);
                continue;
            }
            done += 1;
            if last.elapsed() >= Duration::from_secs(10) {
                last = Instant::now();
                let pct = (done * 100).checked_div(total).unwrap_or(0).min(99);
                eprintln!(
                    "peers:       {name}: {done}/{total} packages compiled (~{pct}%), {:.0}s",
                    started.elapsed().as_secs_f64()
                );
            }
        }
    });
    let status = child.wait()?;
    let _ = reader.join();
    if !status.success() {
        let _ = std::fs::remove_file(&tmp);
        bail!(
            "go build {pkg} failed:\n{}",
            errors.lock().unwrap().join("\n")
        );
    }
    std::fs::rename(&tmp, out)?;
    Ok(())
}

fn build_webhook(repo: &Path, o: &Opts) -> Result<PathBuf> {
    if let Some(p) = &o.webhook {
        if !p.is_file() {
            bail!("--webhook {}: no such file", p.display());
        }
        return Ok(std::fs::canonicalize(p)?);
    }
    eprintln!(
        "webhook: cargo build --bin serverconfig-webhook{}",
        if o.release { " --release" } else { "" }
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut c = Command::new(cargo);
    c.current_dir(repo)
        .args(["build", "--bin", "serverconfig-webhook"]);
    if o.release {
        c.arg("--release");
    }
    let st = c.status().context("cargo build")?;
    if !st.success() {
        bail!("cargo build --bin serverconfig-webhook failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"));
    let bin = target
        .join(if o.release { "release" } else { "debug" })
        .join("serverconfig-webhook");
    if !bin.is_file() {
        bail!("{} not found after cargo build", bin.display());
    }
    Ok(bin)
}

/// The harness is small; `go build` is a no-op when nothing changed.
fn build_harness(repo: &Path) -> Result<PathBuf> {
    let dir = repo.join("tests/e2e/harness");
    let out = repo.join(".cache/e2e/harness");
    std::fs::create_dir_all(out.parent().unwrap())?;
    let st = go_cmd(&dir)
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

/// The peers of the deploy scenarios (tests/e2e/harness/scenarios/scenario_deploy_*.go):
/// cert-manager's controller and cainjector from the pinned module under
/// `tests/e2e/peers/cert-manager-v<ver>/` into `<cache>/cert-manager-v<ver>/`
/// (built once, like the other peers), the folder of cert-manager's CRDs in
/// the Go module cache, and helm / kustomize as `tests/deploy/lib.sh` builds
/// and caches them.
struct DeployPeers {
    cert_manager_dir: PathBuf,
    cert_manager_crds: PathBuf,
    helm: PathBuf,
    kustomize: PathBuf,
}

impl DeployPeers {
    fn build(repo: &Path) -> Result<DeployPeers> {
        let peers = repo.join("tests/e2e/peers");
        let mut versions = pinned_versions(&peers, "cert-manager-")?;
        let version = versions
            .pop()
            .ok_or_else(|| anyhow!("no tests/e2e/peers/cert-manager-v* module"))?;
        let module = peers.join(format!("cert-manager-{version}"));
        let cache = match std::env::var_os("SERVERCONFIG_E2E_CACHE") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => repo.join(".cache/peers"),
        };
        let dir = cache.join(format!("cert-manager-{version}"));
        let ldflags =
            format!("-s -w -X github.com/cert-manager/cert-manager/pkg/util.AppVersion={version}");
        let bins = [
            (
                "cert-manager-controller",
                "serverconfig-webhook/e2e/peers/cert-manager/controller",
            ),
            (
                "cert-manager-cainjector",
                "serverconfig-webhook/e2e/peers/cert-manager/cainjector",
            ),
        ];
        let todo: Vec<_> = bins.iter().filter(|b| !dir.join(b.0).is_file()).collect();
        let n = todo.len();
        for (k, (name, pkg)) in todo.into_iter().enumerate() {
            let t = Instant::now();
            eprintln!("peers: [{}/{n}] {name} {version} ({pkg})", k + 1);
            go_build(&module, pkg, &dir.join(name), &ldflags, name)?;
            eprintln!(
                "peers: [{}/{n}] {name} {version} built in {:.0}s",
                k + 1,
                t.elapsed().as_secs_f64()
            );
        }
        // the CRDs ship in the module's source (deploy/crds), not committed here
        let st = go_cmd(&module)
            .args(["mod", "download", "github.com/cert-manager/cert-manager"])
            .status()
            .context("go mod download cert-manager")?;
        if !st.success() {
            bail!("go mod download github.com/cert-manager/cert-manager failed");
        }
        let out = go_cmd(&module)
            .args([
                "list",
                "-m",
                "-f",
                "{{.Dir}}",
                "github.com/cert-manager/cert-manager",
            ])
            .output()
            .context("go list -m cert-manager")?;
        let moddir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || moddir.is_empty() {
            bail!("cannot locate the cert-manager module in the Go module cache");
        }
        let crds = PathBuf::from(moddir).join("deploy/crds");
        // helm and kustomize: the same cached builds as tests/deploy/check.sh
        let tool = |f: &str| -> Result<PathBuf> {
            let out = Command::new("bash")
                .current_dir(repo)
                .args(["-c", &format!(". tests/deploy/lib.sh && {f}")])
                .stderr(Stdio::inherit())
                .output()
                .with_context(|| format!("tests/deploy/lib.sh {f}"))?;
            let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !out.status.success() || p.is_empty() {
                bail!("tests/deploy/lib.sh {f} failed");
            }
            Ok(PathBuf::from(p))
        };
        Ok(DeployPeers {
            cert_manager_dir: dir,
            cert_manager_crds: crds,
            helm: tool("helm_bin")?,
            kustomize: tool("kustomize_bin")?,
        })
    }

    fn harness_args(&self) -> Vec<String> {
        vec![
            format!("--cert-manager-dir={}", self.cert_manager_dir.display()),
            format!("--cert-manager-crds={}", self.cert_manager_crds.display()),
            format!("--helm={}", self.helm.display()),
            format!("--kustomize={}", self.kustomize.display()),
        ]
    }
}

/// For `cargo xtask bench`: builds the peers, the webhook (release or
/// debug) and the harness, and returns the harness command for `mode` with
/// the control-plane flags set; the caller adds the mode's own flags.
pub fn harness_command(mode: &str, k8s: &str, release: bool) -> Result<Command> {
    let repo = repo_root()?;
    check_go()?;
    let peers = Peers::resolve(&repo, k8s)?;
    peers.build()?;
    let o = Opts {
        k8s: k8s.to_string(),
        release,
        ..Default::default()
    };
    let webhook = build_webhook(&repo, &o)?;
    let harness = build_harness(&repo)?;
    let mut cmd = Command::new(&harness);
    cmd.arg(mode)
        .arg(format!("--peer-dir={}", peers.k8s_dir.display()))
        .arg(format!("--etcd={}", peers.etcd_bin().display()))
        .arg(format!("--webhook={}", webhook.display()))
        .arg(format!("--repo={}", repo.display()))
        .current_dir(&repo);
    Ok(cmd)
}
