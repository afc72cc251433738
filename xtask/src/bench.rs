//! `cargo xtask bench`: the benchmarks of issue 6, in order, with their
//! machine-readable results under `target/bench-results/`:
//!
//! 1. `core`   `cargo bench --bench core` (criterion, in process)
//! 2. `growth` `cargo bench --bench growth`
//! 3. `load`   HTTPS load on `serve` against its floor (serve's listener
//!    decoding and allowing) and a precomputed-response baseline
//!    (benches/load): the harness's `bench-fixture` starts a control plane
//!    with N namespaces x 3 ServerConfigs and Servers and `serve` on top,
//!    then `cargo bench --bench load` drives the three servers
//! 4. `e2e`    creates through the real API server with and without the
//!    webhook (the harness's `bench`, as `cargo xtask bench-e2e` runs it:
//!    [`bench_e2e`])
//!
//! `--smoke` makes each a few seconds long (debug builds for `load`): it
//! checks that the code paths work and the answers are right, never timing.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::e2e::{self, Builds, E2eArgs, DEFAULT_K8S};
use crate::peers::{self, KyvernoPeer};
use crate::process::{cargo, target_dir, terminate, workspace_root};

/// The benchmarks, in the order they run.
const ALL: [&str; 4] = ["core", "growth", "load", "e2e"];

/// The flags of `cargo xtask bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Run only these of core,growth,load,e2e (comma separated; they run in
    /// that order whatever the order given) [default: all]
    #[arg(long, value_name = "NAME[,NAME]", value_parser = parse_only)]
    pub only: Option<Only>,
    /// Seconds, not minutes: check that the paths work and the answers are
    /// right (no timing)
    #[arg(long)]
    pub smoke: bool,
    /// load: namespaces of the fixture [default: 1000; with --smoke 20]
    #[arg(long, value_name = "N", value_parser = positive)]
    pub namespaces: Option<usize>,
    /// Kubernetes version of the control plane (load, e2e)
    #[arg(long, value_name = "VERSION", default_value = DEFAULT_K8S)]
    pub k8s: String,
    /// load: extra flags for benches/load, space separated, e.g.
    /// "--rounds 5 --http 2"
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub load_args: Option<String>,
}

/// The benchmarks `--only` names, each one of [`ALL`].
#[derive(Debug, Clone, PartialEq)]
pub struct Only(pub Vec<String>);

/// `--only`'s value: comma-separated names of [`ALL`], blanks around them ignored.
fn parse_only(v: &str) -> Result<Only, String> {
    let names: Vec<String> = v.split(',').map(|s| s.trim().to_string()).collect();
    if let Some(bad) = names.iter().find(|n| !ALL.contains(&n.as_str())) {
        return Err(format!("{bad:?}: not one of {}", ALL.join(",")));
    }
    Ok(Only(names))
}

/// A count above zero.
fn positive(v: &str) -> Result<usize, String> {
    v.parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{v:?}: want a positive number"))
}

impl BenchArgs {
    /// Whether benchmark `name` was selected.
    fn selected(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|Only(names)| names.iter().any(|n| n == name))
    }

    /// `--load-args`, split at whitespace.
    fn load_args(&self) -> Vec<&str> {
        self.load_args
            .as_deref()
            .map(|a| a.split_whitespace().collect())
            .unwrap_or_default()
    }
}

/// `cargo xtask bench`: runs the selected benchmarks in order.
pub fn run(o: &BenchArgs) -> Result<()> {
    let results = results_dir()?;
    std::fs::create_dir_all(&results)?;
    for name in ALL.into_iter().filter(|n| o.selected(n)) {
        let t = Instant::now();
        eprintln!("xtask bench: === {name}");
        match name {
            "core" | "growth" => criterion(name, o.smoke)?,
            "load" => load(o, &results)?,
            "e2e" => e2e_bench(o, &results)?,
            _ => unreachable!("--only takes names of ALL only"),
        }
        eprintln!(
            "xtask bench: {name} done in {:.0}s",
            t.elapsed().as_secs_f64()
        );
    }
    eprintln!("xtask bench: results in {}", results.display());
    Ok(())
}

/// `<target>/bench-results`.
fn results_dir() -> Result<PathBuf> {
    Ok(target_dir(&workspace_root()?).join("bench-results"))
}

/// `cargo bench --bench core|growth`; when smoking, criterion's `--quick`
/// for core and the two smallest points for growth (benches/growth.rs
/// reads `GROWTH_NAMESPACES` and `GROWTH_SIZES`).
fn criterion(name: &str, smoke: bool) -> Result<()> {
    let root = workspace_root()?;
    if !root.join(format!("benches/{name}.rs")).is_file()
        && !root.join(format!("benches/{name}/main.rs")).is_file()
    {
        bail!("no bench target {name:?} (benches/{name}.rs) yet; skip it with --only");
    }
    let mut args = vec!["bench", "--bench", name];
    if smoke && name == "growth" {
        std::env::set_var("GROWTH_NAMESPACES", "10,100");
        std::env::set_var("GROWTH_SIZES", "1,4");
    } else if smoke {
        args.extend(["--", "--quick", "--noplot"]);
    }
    cargo(&args)
}

/// The harness's `bench-fixture`, stopped (SIGTERM, so it tears the control
/// plane down) when dropped.
struct Fixture(Child);

impl Drop for Fixture {
    fn drop(&mut self) {
        terminate(self.0.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Benchmark 2: floor and baseline built, fixture up, `benches/load` run,
/// fixture down.
fn load(o: &BenchArgs, results: &Path) -> Result<()> {
    let release = !o.smoke;
    let namespaces = o.namespaces.unwrap_or(if o.smoke { 20 } else { 1000 });
    let [floor, baseline] = build_servers(results, release)?;
    let fixture_file = results.join("load-fixture.json");
    let fixture = start_fixture(&o.k8s, release, namespaces, &fixture_file)?;
    let out = results.join(if o.smoke {
        "load-smoke.json"
    } else {
        "load.json"
    });
    let fixture_arg = fixture_file.display().to_string();
    let floor_arg = floor.display().to_string();
    let baseline_arg = baseline.display().to_string();
    let out_arg = out.display().to_string();
    // smoke: the test profile (a debug build, no optimised rebuild)
    let mut args: Vec<&str> = if o.smoke {
        vec!["test", "--bench", "load", "--", "--smoke"]
    } else {
        vec!["bench", "--bench", "load", "--"]
    };
    args.extend([
        "--fixture",
        &fixture_arg,
        "--floor",
        &floor_arg,
        "--baseline",
        &baseline_arg,
        "--out",
        &out_arg,
    ]);
    args.extend(o.load_args());
    let result = cargo(&args);
    drop(fixture);
    result
}

/// The floor and the baseline servers of the load benchmark
/// (`examples/load-floor`, `examples/load-baseline`), built in the profile
/// of the webhook they are compared with.
fn build_servers(results: &Path, release: bool) -> Result<[PathBuf; 2]> {
    let mut build = vec![
        "build",
        "--example",
        "load-floor",
        "--example",
        "load-baseline",
    ];
    if release {
        build.push("--release");
    }
    cargo(&build)?;
    let profile = if release { "release" } else { "debug" };
    let dir = results
        .parent()
        .ok_or_else(|| anyhow!("no target folder"))?
        .join(profile)
        .join("examples");
    let bins = ["load-floor", "load-baseline"].map(|name| dir.join(name));
    for bin in &bins {
        if !bin.is_file() {
            bail!("{} not found after cargo build", bin.display());
        }
    }
    Ok(bins)
}

/// Builds the control plane's parts and starts the harness's
/// `bench-fixture`; returns once it has written `fixture_file` (it is ready).
fn start_fixture(
    k8s: &str,
    release: bool,
    namespaces: usize,
    fixture_file: &Path,
) -> Result<Fixture> {
    let mut cmd = Builds::prepare(k8s, false, None, release)?.harness_command("bench-fixture");
    let _ = std::fs::remove_file(fixture_file);
    cmd.arg("--")
        .arg(format!("-namespaces={namespaces}"))
        .arg(format!("-out={}", fixture_file.display()));
    eprintln!("xtask bench: starting the load fixture ({namespaces} namespaces)");
    let mut fixture = Fixture(
        cmd.spawn()
            .context("starting the harness's bench-fixture")?,
    );
    let deadline = Instant::now() + Duration::from_secs(900);
    while !fixture_file.is_file() {
        if let Some(status) = fixture.0.try_wait()? {
            bail!("the harness's bench-fixture ended ({status}) before it was ready");
        }
        if Instant::now() > deadline {
            bail!("the harness's bench-fixture was not ready after 15 minutes");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(fixture)
}

/// Benchmarks 3, 4 and 6: `cargo xtask bench-e2e` with the figures of a
/// full run (50 clients, release webhook) or, smoking, of a few seconds'.
fn e2e_bench(o: &BenchArgs, results: &Path) -> Result<()> {
    let out = results.join(if o.smoke {
        "e2e-smoke.jsonl"
    } else {
        "e2e.jsonl"
    });
    let mut args = BenchE2eArgs::new(E2eArgs::new(&o.k8s));
    args.out = Some(out.display().to_string());
    if o.smoke {
        args.clients = Some("5".into());
        args.creates = Some("20".into());
        args.rounds = Some("1".into());
        args.warmup = Some("5".into());
        args.debug = true;
        // Kyverno is a long first build: the smoke run leaves it out
        args.no_kyverno = true;
    } else {
        // one client (latency alone) and 50 (under concurrency), in turn
        args.clients = Some("1,50".into());
    }
    bench_e2e(&args)
}

/// The flags of `cargo xtask bench-e2e`: those of `e2e`, and the bench's own,
/// which go to the harness's `bench` as Go flags (`-name=value`).
#[derive(Debug, Clone, clap::Args)]
pub struct BenchE2eArgs {
    // the e2e flags, passed on as `cargo xtask e2e` passes them
    #[command(flatten, next_help_heading = "E2e flags")]
    pub e2e: E2eArgs,
    /// Concurrent clients [harness default: 50]
    #[arg(long, value_name = "N", help_heading = "Bench flags")]
    pub clients: Option<String>,
    /// StatefulSet creates per mode in each round [harness default: 500]
    #[arg(long, value_name = "N", help_heading = "Bench flags")]
    pub creates: Option<String>,
    /// Rounds, each runs every mode once in rotated order [harness default: 6]
    #[arg(long, value_name = "N", help_heading = "Bench flags")]
    pub rounds: Option<String>,
    /// Untimed creates per mode before the first round [harness default: 100]
    #[arg(long, value_name = "N", help_heading = "Bench flags")]
    pub warmup: Option<String>,
    /// Team namespaces with a ServerConfig and a Server [harness default: 10]
    #[arg(long, value_name = "N", help_heading = "Bench flags")]
    pub namespaces: Option<String>,
    /// Subset of none,webhook,webhook-unchanged,kyverno,map,map-jsonpatch
    /// [harness default: all available; map* need --k8s 1.36, kyverno is
    /// off with --no-kyverno]
    #[arg(long, value_name = "LIST", help_heading = "Bench flags")]
    pub modes: Option<String>,
    /// Also write the JSON lines (one per mode) to FILE
    #[arg(long, value_name = "FILE", help_heading = "Bench flags")]
    pub out: Option<String>,
    /// Keep --sync in the webhook's shipped flags (default: off; its sync loop
    /// would heal every StatefulSet the no-webhook rounds create)
    #[arg(long, help_heading = "Bench flags")]
    pub sync: bool,
    /// Use the debug build of the webhook [default: --release]
    #[arg(long, help_heading = "Bench flags")]
    pub debug: bool,
    /// Leave Kyverno out: do not build its admission controller
    /// (tests/e2e/peers/kyverno-v*) and run no kyverno mode
    #[arg(long, help_heading = "Bench flags")]
    pub no_kyverno: bool,
}

impl BenchE2eArgs {
    /// `e2e`'s options and none of the bench's own (the harness's defaults).
    pub fn new(e2e: E2eArgs) -> BenchE2eArgs {
        BenchE2eArgs {
            e2e,
            clients: None,
            creates: None,
            rounds: None,
            warmup: None,
            namespaces: None,
            modes: None,
            out: None,
            sync: false,
            debug: false,
            no_kyverno: false,
        }
    }

    /// The bench's own flags as the harness's Go flag package takes them.
    pub(crate) fn harness_args(&self) -> Vec<String> {
        let valued = [
            ("clients", &self.clients),
            ("creates", &self.creates),
            ("rounds", &self.rounds),
            ("warmup", &self.warmup),
            ("namespaces", &self.namespaces),
            ("modes", &self.modes),
            ("out", &self.out),
        ];
        let mut args: Vec<String> = valued
            .into_iter()
            .filter_map(|(name, v)| v.as_ref().map(|v| format!("-{name}={v}")))
            .collect();
        if self.sync {
            args.push("-sync=true".into());
        }
        args
    }
}

/// `cargo xtask bench-e2e`, benchmarks 3/4/6 of issue 6 (the harness's
/// `bench`): concurrent StatefulSet creates through the real API server with
/// the webhook, without it, with Kyverno's admission controller and the
/// ClusterPolicy of tests/e2e/fixtures/kyverno-serverconfig-policy.yaml
/// (issue 18; unless `--no-kyverno`) and, on 1.36+, with the
/// MutatingAdmissionPolicy fixture; JSON lines on stdout. Builds the webhook
/// in release mode unless `--debug` or `--webhook` is given, and Kyverno
/// (cached by version) unless `--no-kyverno`: the only command that does.
pub fn bench_e2e(o: &BenchE2eArgs) -> Result<()> {
    let mut e2e = o.e2e.clone();
    e2e.release |= !o.debug;
    let mut args = o.harness_args();
    if !o.no_kyverno {
        peers::check_go()?;
        args.extend(KyvernoPeer::build(&workspace_root()?)?.harness_args());
    }
    e2e::drive("bench", &e2e, &args)
}
