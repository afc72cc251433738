//! `cargo xtask bench`: the benchmarks of issue 6, in order, with their
//! machine-readable results under `target/bench-results/`:
//!
//! 1. `core`   `cargo bench --bench core` (criterion, in process)
//! 2. `growth` `cargo bench --bench growth`
//! 3. `load`   HTTPS load on `serve` against a baseline server
//!    (benches/load): the harness's `bench-fixture` starts a control plane
//!    with N namespaces x 3 ServerConfigs and Servers and `serve` on top,
//!    then `cargo bench --bench load` drives both servers
//! 4. `e2e`    creates through the real API server with and without the
//!    webhook (the harness's `bench`, via [`crate::e2e::bench`])
//!
//! `--smoke` makes each a few seconds long (debug builds for `load`): it
//! checks that the code paths work and the answers are right, never timing.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::{cargo, e2e};

const ALL: [&str; 4] = ["core", "growth", "load", "e2e"];

const USAGE: &str = "\
usage: cargo xtask bench [flags]

runs, in order: core (cargo bench --bench core), growth (cargo bench --bench growth),
load (HTTPS load on serve vs a baseline server, benches/load), e2e (creates through
the real API server with and without the webhook); results in target/bench-results/

flags:
  --only NAME[,NAME]   run only these of core,growth,load,e2e
  --smoke              seconds, not minutes: check the paths work (no timing)
  --namespaces N       load: namespaces of the fixture (default 1000; smoke 20)
  --k8s VERSION        Kubernetes version of the control plane (default as e2e)
  --load-args ARGS     load: extra flags for benches/load (space separated),
                       e.g. \"--rounds 5 --http 2\"";

struct Opts {
    only: Vec<String>,
    smoke: bool,
    namespaces: Option<usize>,
    k8s: String,
    load_args: Vec<String>,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        only: ALL.iter().map(|s| s.to_string()).collect(),
        smoke: false,
        namespaces: None,
        k8s: e2e::DEFAULT_K8S.to_string(),
        load_args: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = |name: &str| -> Result<String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| anyhow!("{name} needs a value\n{USAGE}")),
            }
        };
        match flag.as_str() {
            "--only" => {
                let v = value("--only")?;
                o.only = v.split(',').map(|s| s.trim().to_string()).collect();
                if let Some(bad) = o.only.iter().find(|n| !ALL.contains(&n.as_str())) {
                    bail!("--only {bad:?}: not one of {}", ALL.join(","));
                }
            }
            "--smoke" => o.smoke = true,
            "--namespaces" => {
                let v = value("--namespaces")?;
                o.namespaces = Some(
                    v.parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| anyhow!("--namespaces {v:?}: want a positive number"))?,
                );
            }
            "--k8s" => o.k8s = value("--k8s")?,
            "--load-args" => {
                o.load_args = value("--load-args")?
                    .split_whitespace()
                    .map(String::from)
                    .collect()
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown flag {other}\n{USAGE}"),
        }
    }
    Ok(o)
}

/// Runs the selected benchmarks in order.
pub fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let results = results_dir()?;
    std::fs::create_dir_all(&results)?;
    for name in ALL.iter().filter(|n| o.only.iter().any(|o| o == *n)) {
        let t = Instant::now();
        eprintln!("xtask bench: === {name}");
        match *name {
            "core" | "growth" => criterion(name, o.smoke)?,
            "load" => load(&o, &results)?,
            "e2e" => e2e_bench(&o, &results)?,
            _ => unreachable!("checked in parse"),
        }
        eprintln!(
            "xtask bench: {name} done in {:.0}s",
            t.elapsed().as_secs_f64()
        );
    }
    eprintln!("xtask bench: results in {}", results.display());
    Ok(())
}

fn results_dir() -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("xtask has no parent folder"))?
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join("bench-results"))
}

/// `cargo bench --bench core|growth`; when smoking, criterion's `--quick`
/// for core and the two smallest points for growth (benches/growth.rs
/// reads `GROWTH_NAMESPACES` and `GROWTH_SIZES`).
fn criterion(name: &str, smoke: bool) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("xtask has no parent folder"))?;
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

#[cfg(unix)]
fn terminate(pid: u32) {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    const SIGTERM: i32 = 15;
    // SAFETY: kill(2) on our own child's pid; no Rust state involved.
    unsafe {
        kill(pid as i32, SIGTERM);
    }
}

#[cfg(not(unix))]
fn terminate(_pid: u32) {}

/// Benchmark 2: fixture up, baseline built, `benches/load` run, fixture down.
fn load(o: &Opts, results: &Path) -> Result<()> {
    let release = !o.smoke;
    let namespaces = o.namespaces.unwrap_or(if o.smoke { 20 } else { 1000 });
    let profile = if release { "release" } else { "debug" };
    let mut build = vec!["build", "--example", "load-baseline"];
    if release {
        build.push("--release");
    }
    cargo(&build)?;
    let mut cmd = e2e::harness_command("bench-fixture", &o.k8s, release)?;
    let baseline = results
        .parent()
        .ok_or_else(|| anyhow!("no target folder"))?
        .join(profile)
        .join("examples/load-baseline");
    if !baseline.is_file() {
        bail!("{} not found after cargo build", baseline.display());
    }
    let fixture_file = results.join("load-fixture.json");
    let _ = std::fs::remove_file(&fixture_file);
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
    let out = results.join(if o.smoke {
        "load-smoke.json"
    } else {
        "load.json"
    });
    let fixture_arg = fixture_file.display().to_string();
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
        "--baseline",
        &baseline_arg,
        "--out",
        &out_arg,
    ]);
    args.extend(o.load_args.iter().map(String::as_str));
    let result = cargo(&args);
    drop(fixture);
    result
}

/// Benchmarks 3, 4 and 6: the harness's `bench` through `cargo xtask bench-e2e`'s plumbing.
fn e2e_bench(o: &Opts, results: &Path) -> Result<()> {
    let out = results.join(if o.smoke {
        "e2e-smoke.jsonl"
    } else {
        "e2e.jsonl"
    });
    let mut args: Vec<String> = vec![
        "--k8s".into(),
        o.k8s.clone(),
        "--out".into(),
        out.display().to_string(),
    ];
    if o.smoke {
        for (f, v) in [
            ("--clients", "5"),
            ("--creates", "20"),
            ("--rounds", "1"),
            ("--warmup", "5"),
        ] {
            args.push(f.into());
            args.push(v.into());
        }
        args.push("--debug".into());
    } else {
        args.extend(["--clients".into(), "50".into()]);
    }
    e2e::bench(&args)
}
