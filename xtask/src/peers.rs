//! The peers of the end-to-end harness, built with the machine's Go from the
//! pinned modules under `tests/e2e/peers/` into a cache keyed by version
//! (`$SERVERCONFIG_E2E_CACHE`, default `<repo>/.cache/peers`):
//!
//! - [`Peers`]: etcd, kube-apiserver, kube-controller-manager and kubectl
//!   (`k8s-v<ver>/`, `etcd-<ver>/`);
//! - [`DeployPeers`]: for the deploy scenarios, cert-manager's controller and
//!   cainjector (`cert-manager-v<ver>/`), the folder of cert-manager's CRDs
//!   in the Go module cache, and helm, kustomize and krew as
//!   `tests/deploy/lib.sh` builds and caches them;
//! - [`OtelcolPeer`]: for the traces scenarios, a minimal OpenTelemetry
//!   Collector (OTLP receiver, file exporter; `otelcol-v<ver>/`);
//! - [`KyvernoPeer`]: for the Kyverno comparison of `cargo xtask bench-e2e`
//!   only, Kyverno's admission controller (`kyverno-v<ver>/`) and the folder
//!   of its CRDs in the Go module cache;
//! - [`Promtool`]: for `cargo xtask monitoring` (a step of `cargo xtask
//!   test`), Prometheus' promtool (`prometheus-v<ver>/`).
//!
//! A binary already in the cache is never rebuilt; a build writes to a temp
//! name and renames, so an interrupted one never leaves a binary that a later
//! run would take as cached.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// Fails with a sentence naming what to install when `go` does not run.
pub fn check_go() -> Result<()> {
    let out = Command::new("go").arg("version").output().context(
        "the e2e harness builds its peers with Go; `go` was not found on PATH (install Go >= 1.24)",
    )?;
    if !out.status.success() {
        bail!("`go version` failed");
    }
    Ok(())
}

/// A `go` command in `dir` with the environment of every Go build here: no
/// VCS stamping, no toolchain downloads, go.mod/go.sum as committed, static
/// binaries.
pub fn go_cmd(dir: &Path) -> Command {
    let mut c = Command::new("go");
    c.current_dir(dir)
        .env("GOFLAGS", "-buildvcs=false -mod=readonly")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0");
    c
}

/// The peer cache folder: `$SERVERCONFIG_E2E_CACHE` when set and not empty,
/// else `<repo>/.cache/peers`.
fn cache_dir(repo: &Path) -> PathBuf {
    match std::env::var_os("SERVERCONFIG_E2E_CACHE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repo.join(".cache/peers"),
    }
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

/// The control plane's peers for one Kubernetes version: where their pinned
/// modules are and where their cached binaries go.
pub struct Peers {
    version: String,
    k8s_module: PathBuf,
    etcd_version: String,
    etcd_module: PathBuf,
    /// Holds kube-apiserver, kube-controller-manager (the harness's
    /// `--peer-dir`) and kubectl.
    pub k8s_dir: PathBuf,
    etcd_dir: PathBuf,
}

/// One binary to build: what it is, from where, and where it goes.
struct Build {
    name: &'static str,
    version: String,
    module: PathBuf,
    pkg: &'static str,
    out: PathBuf,
    ldflags: String,
}

impl Peers {
    /// Picks the pinned module for `wanted` (`1.35.4`, `v1.35.4`, or a minor
    /// alone such as `1.35`, which takes its newest pinned patch) and the
    /// etcd version that release pins.
    pub fn resolve(repo: &Path, wanted: &str) -> Result<Peers> {
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
        let cache = cache_dir(repo);
        Ok(Peers {
            k8s_dir: cache.join(format!("k8s-v{version}")),
            etcd_dir: cache.join(format!("etcd-{etcd_version}")),
            version,
            k8s_module,
            etcd_version,
            etcd_module,
        })
    }

    /// The cached etcd binary (the harness's `--etcd`).
    pub fn etcd_bin(&self) -> PathBuf {
        self.etcd_dir.join("etcd")
    }

    /// The cached kubectl of this Kubernetes version (the harness's
    /// `--kubectl`, for the `kubectl serverconfig` scenarios).
    pub fn kubectl_bin(&self) -> PathBuf {
        self.k8s_dir.join("kubectl")
    }

    /// The `-ldflags` of the Kubernetes binaries: stripped, and stamped with
    /// the version they report (kubectl version, /version).
    fn k8s_ldflags(&self) -> String {
        let mut p = self.version.split('.');
        let major = p.next().unwrap_or("1");
        let minor = p.next().unwrap_or("0");
        let mut flags = String::from("-s -w");
        for pkg in [
            "k8s.io/component-base/version",
            "k8s.io/client-go/pkg/version",
        ] {
            flags.push_str(&format!(
                " -X {pkg}.gitVersion=v{v} -X {pkg}.gitMajor={major} -X {pkg}.gitMinor={minor} -X {pkg}.gitTreeState=clean",
                v = self.version
            ));
        }
        flags
    }

    /// Builds the binaries not yet in the cache: etcd, kube-apiserver,
    /// kube-controller-manager, kubectl.
    pub fn build(&self) -> Result<()> {
        let kflags = self.k8s_ldflags();
        let all = [
            Build {
                name: "etcd",
                version: self.etcd_version.clone(),
                module: self.etcd_module.clone(),
                pkg: "go.etcd.io/etcd/server/v3",
                out: self.etcd_bin(),
                ldflags: "-s -w".to_string(),
            },
            Build {
                name: "kube-apiserver",
                version: format!("v{}", self.version),
                module: self.k8s_module.clone(),
                pkg: "k8s.io/kubernetes/cmd/kube-apiserver",
                out: self.k8s_dir.join("kube-apiserver"),
                ldflags: kflags.clone(),
            },
            Build {
                name: "kube-controller-manager",
                version: format!("v{}", self.version),
                module: self.k8s_module.clone(),
                pkg: "k8s.io/kubernetes/cmd/kube-controller-manager",
                out: self.k8s_dir.join("kube-controller-manager"),
                ldflags: kflags.clone(),
            },
            Build {
                name: "kubectl",
                version: format!("v{}", self.version),
                module: self.k8s_module.clone(),
                pkg: "k8s.io/kubernetes/cmd/kubectl",
                out: self.kubectl_bin(),
                ldflags: kflags,
            },
        ];
        let n_all = all.len();
        let todo: Vec<Build> = all.into_iter().filter(|b| !b.out.is_file()).collect();
        let cache = self.k8s_dir.parent().unwrap_or(&self.k8s_dir);
        if todo.is_empty() {
            eprintln!(
                "peers: cached, nothing to build (etcd {}, kube-apiserver + kube-controller-manager + kubectl v{} in {})",
                self.etcd_version,
                self.version,
                cache.display()
            );
            return Ok(());
        }
        eprintln!(
            "peers: building {} of {n_all} binaries with {} (a first build downloads modules and takes several minutes; later runs reuse {})",
            todo.len(),
            go_version(),
            cache.display()
        );
        build_each(&todo)
    }
}

/// Builds each of `todo` in turn, showing step k of n and its time.
fn build_each(todo: &[Build]) -> Result<()> {
    let n = todo.len();
    for (k, b) in todo.iter().enumerate() {
        let t = Instant::now();
        eprintln!(
            "peers: [{}/{n}] {} {} ({})",
            k + 1,
            b.name,
            b.version,
            b.pkg
        );
        go_build(&b.module, b.pkg, &b.out, &b.ldflags, b.name)?;
        eprintln!(
            "peers: [{}/{n}] {} {} built in {:.0}s",
            k + 1,
            b.name,
            b.version,
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The machine's Go version (`go1.24.2`), for the build message.
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
    download_modules(module)?;
    let total = count_packages(module, pkg);
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

/// `go mod download` first, so that the package count of the build does not
/// hide a long download.
fn download_modules(module: &Path) -> Result<()> {
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
    Ok(())
}

/// How many packages `pkg` needs (`go list -deps`), for the progress line;
/// 0 when unknown.
fn count_packages(module: &Path, pkg: &str) -> usize {
    go_cmd(module)
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
        .unwrap_or(0)
}

/// The peers of the deploy scenarios (tests/e2e/harness/scenarios/scenario_deploy_*.go):
/// cert-manager's controller and cainjector from the pinned module under
/// `tests/e2e/peers/cert-manager-v<ver>/` into `<cache>/cert-manager-v<ver>/`
/// (built once, like the other peers), the folder of cert-manager's CRDs in
/// the Go module cache, and helm / kustomize as `tests/deploy/lib.sh` builds
/// and caches them.
pub struct DeployPeers {
    cert_manager_dir: PathBuf,
    cert_manager_crds: PathBuf,
    helm: PathBuf,
    kustomize: PathBuf,
    krew: PathBuf,
}

impl DeployPeers {
    /// Builds what is not cached yet and finds the rest.
    pub fn build(repo: &Path) -> Result<DeployPeers> {
        let peers = repo.join("tests/e2e/peers");
        let mut versions = pinned_versions(&peers, "cert-manager-")?;
        let version = versions
            .pop()
            .ok_or_else(|| anyhow!("no tests/e2e/peers/cert-manager-v* module"))?;
        let module = peers.join(format!("cert-manager-{version}"));
        let dir = cache_dir(repo).join(format!("cert-manager-{version}"));
        build_cert_manager(&module, &version, &dir)?;
        Ok(DeployPeers {
            cert_manager_dir: dir,
            cert_manager_crds: cert_manager_crds(&module)?,
            helm: deploy_tool(repo, "helm_bin")?,
            kustomize: deploy_tool(repo, "kustomize_bin")?,
            krew: deploy_tool(repo, "krew_bin")?,
        })
    }

    /// The harness flags that name these peers.
    pub fn harness_args(&self) -> Vec<String> {
        vec![
            format!("--cert-manager-dir={}", self.cert_manager_dir.display()),
            format!("--cert-manager-crds={}", self.cert_manager_crds.display()),
            format!("--helm={}", self.helm.display()),
            format!("--kustomize={}", self.kustomize.display()),
            format!("--krew={}", self.krew.display()),
        ]
    }
}

/// cert-manager's controller and cainjector into `dir`, those not there yet.
fn build_cert_manager(module: &Path, version: &str, dir: &Path) -> Result<()> {
    let ldflags =
        format!("-s -w -X github.com/cert-manager/cert-manager/pkg/util.AppVersion={version}");
    let todo: Vec<Build> = [
        (
            "cert-manager-controller",
            "serverconfig-webhook/e2e/peers/cert-manager/controller",
        ),
        (
            "cert-manager-cainjector",
            "serverconfig-webhook/e2e/peers/cert-manager/cainjector",
        ),
    ]
    .into_iter()
    .map(|(name, pkg)| Build {
        name,
        version: version.to_string(),
        module: module.to_path_buf(),
        pkg,
        out: dir.join(name),
        ldflags: ldflags.clone(),
    })
    .filter(|b| !b.out.is_file())
    .collect();
    build_each(&todo)
}

/// cert-manager's CRDs: they ship in the module's source (deploy/crds), not
/// committed here, so download the module and find it in the module cache.
fn cert_manager_crds(module: &Path) -> Result<PathBuf> {
    let st = go_cmd(module)
        .args(["mod", "download", "github.com/cert-manager/cert-manager"])
        .status()
        .context("go mod download cert-manager")?;
    if !st.success() {
        bail!("go mod download github.com/cert-manager/cert-manager failed");
    }
    let out = go_cmd(module)
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
    Ok(PathBuf::from(moddir).join("deploy/crds"))
}

/// helm, kustomize or krew: the same cached build as tests/deploy/check.sh uses,
/// by calling `tests/deploy/lib.sh`'s `function` (which prints its path).
fn deploy_tool(repo: &Path, function: &str) -> Result<PathBuf> {
    let out = Command::new("bash")
        .current_dir(repo)
        .args(["-c", &format!(". tests/deploy/lib.sh && {function}")])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("tests/deploy/lib.sh {function}"))?;
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || p.is_empty() {
        bail!("tests/deploy/lib.sh {function} failed");
    }
    Ok(PathBuf::from(p))
}

/// The traces scenarios' OTLP receiver (tests/e2e/harness/scenarios/scenario_traces.go):
/// a minimal OpenTelemetry Collector, the collector builder's kind of
/// `main` with the OTLP receiver and the contrib file exporter only, from
/// the pinned module under `tests/e2e/peers/otelcol-v<ver>/` into
/// `<cache>/otelcol-v<ver>/otelcol` (built once, like the other peers).
pub struct OtelcolPeer {
    bin: PathBuf,
}

impl OtelcolPeer {
    /// Builds it unless cached.
    pub fn build(repo: &Path) -> Result<OtelcolPeer> {
        let peers = repo.join("tests/e2e/peers");
        let version = pinned_versions(&peers, "otelcol-")?
            .pop()
            .ok_or_else(|| anyhow!("no tests/e2e/peers/otelcol-v* module"))?;
        let bin = cache_dir(repo)
            .join(format!("otelcol-{version}"))
            .join("otelcol");
        if !bin.is_file() {
            build_each(&[Build {
                name: "otelcol",
                version: version.clone(),
                module: peers.join(format!("otelcol-{version}")),
                pkg: "serverconfig-webhook/e2e/peers/otelcol",
                out: bin.clone(),
                ldflags: "-s -w".to_string(),
            }])?;
        }
        Ok(OtelcolPeer { bin })
    }

    /// The harness flag that names it.
    pub fn harness_args(&self) -> Vec<String> {
        vec![format!("--otelcol={}", self.bin.display())]
    }
}

/// The Kyverno comparison of `cargo xtask bench-e2e` (issue 18; built by no
/// other command): Kyverno's admission controller (`cmd/kyverno` of
/// `github.com/kyverno/kyverno`, unmodified) from the pinned module under
/// `tests/e2e/peers/kyverno-v<ver>/` into `<cache>/kyverno-v<ver>/`, and its
/// CRDs (`config/crds` of the module, read from the Go module cache).
pub struct KyvernoPeer {
    bin: PathBuf,
    crds: PathBuf,
}

impl KyvernoPeer {
    /// Builds it unless cached, and finds its CRDs.
    pub fn build(repo: &Path) -> Result<KyvernoPeer> {
        let peers = repo.join("tests/e2e/peers");
        let version = pinned_versions(&peers, "kyverno-")?
            .pop()
            .ok_or_else(|| anyhow!("no tests/e2e/peers/kyverno-v* module"))?;
        let module = peers.join(format!("kyverno-{version}"));
        let bin = cache_dir(repo)
            .join(format!("kyverno-{version}"))
            .join("kyverno");
        if !bin.is_file() {
            let v = version.trim_start_matches('v');
            let ldflags =
                format!("-s -w -X github.com/kyverno/kyverno/pkg/version.BuildVersion={v}");
            build_each(&[Build {
                name: "kyverno",
                version: version.clone(),
                module: module.clone(),
                pkg: "github.com/kyverno/kyverno/cmd/kyverno",
                out: bin.clone(),
                ldflags,
            }])?;
        }
        let crds = module_dir(&module, "github.com/kyverno/kyverno")?.join("config/crds");
        if !crds.is_dir() {
            bail!("{}: no such folder in the Kyverno module", crds.display());
        }
        Ok(KyvernoPeer { bin, crds })
    }

    /// The harness flags that name it.
    pub fn harness_args(&self) -> Vec<String> {
        vec![
            format!("--kyverno={}", self.bin.display()),
            format!("--kyverno-crds={}", self.crds.display()),
        ]
    }
}

/// Where module `path` (a dependency of `module`) is in the Go module cache,
/// downloaded first.
fn module_dir(module: &Path, path: &str) -> Result<PathBuf> {
    let st = go_cmd(module)
        .args(["mod", "download", path])
        .status()
        .with_context(|| format!("go mod download {path}"))?;
    if !st.success() {
        bail!("go mod download {path} failed");
    }
    let out = go_cmd(module)
        .args(["list", "-m", "-f", "{{.Dir}}", path])
        .output()
        .with_context(|| format!("go list -m {path}"))?;
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || dir.is_empty() {
        bail!("cannot locate {path} in the Go module cache");
    }
    Ok(PathBuf::from(dir))
}

/// Prometheus' promtool (`cmd/promtool` of `github.com/prometheus/prometheus`,
/// unmodified) from the pinned module under `tests/e2e/peers/prometheus-v<ver>/`
/// into `<cache>/prometheus-v<ver>/promtool`, for the alert-rule and metric
/// checks of `cargo xtask monitoring`.
pub struct Promtool {
    /// The cached binary.
    pub bin: PathBuf,
}

impl Promtool {
    /// Builds it unless cached.
    pub fn build(repo: &Path) -> Result<Promtool> {
        let peers = repo.join("tests/e2e/peers");
        let version = pinned_versions(&peers, "prometheus-")?
            .pop()
            .ok_or_else(|| anyhow!("no tests/e2e/peers/prometheus-v* module"))?;
        let module = peers.join(format!("prometheus-{version}"));
        let bin = cache_dir(repo)
            .join(format!("prometheus-{version}"))
            .join("promtool");
        if !bin.is_file() {
            let ldflags = format!(
                "-s -w -X github.com/prometheus/common/version.Version={} -X github.com/prometheus/common/version.Branch=module",
                version.trim_start_matches('v')
            );
            build_each(&[Build {
                name: "promtool",
                version,
                module,
                pkg: "github.com/prometheus/prometheus/cmd/promtool",
                out: bin.clone(),
                ldflags,
            }])?;
        }
        Ok(Promtool { bin })
    }
}
