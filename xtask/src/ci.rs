//! `cargo xtask test`: everything CI checks (`.ci/run` calls it), in order
//! of cost, so that a cheap failure stops the run before the expensive steps.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::bench::{self, BenchArgs, Only};
use crate::e2e::{self, E2eArgs, DEFAULT_K8S};
use crate::process::{cargo, run, runs, target_dir, workspace_root};

/// The flags of `cargo xtask test`: `--no-e2e`, and those of `e2e`, which
/// the e2e step takes.
#[derive(Debug, Clone, clap::Args)]
pub struct TestArgs {
    /// Stop after the static binary: no e2e suite, no load smoke
    #[arg(long)]
    pub no_e2e: bool,
    // the e2e step's flags
    #[command(flatten, next_help_heading = "E2e flags (for the e2e step)")]
    pub e2e: E2eArgs,
}

/// The steps, in order: fmt, clippy, cargo deny, the Rust tests, the deploy
/// checks, the monitoring checks, the Dockerfile's static binary, then (unless `--no-e2e`) the e2e
/// suite and a seconds-long smoke run of the HTTPS load benchmark.
pub fn test(o: &TestArgs) -> Result<()> {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    crate::deny::check()?;
    cargo(&["test", "--workspace"])?;
    run("bash", &["tests/deploy/check.sh"])?;
    monitoring()?;
    static_binary()?;
    if o.no_e2e {
        eprintln!("xtask test: e2e skipped on request (--no-e2e)");
        return Ok(());
    }
    e2e::run(&o.e2e)?;
    load_smoke()
}

/// `cargo xtask monitoring`: the chart's alert rules and dashboard against
/// promtool (built from its pinned module, cached by version) and a scrape
/// of the debug binary's `/metrics` (tests/deploy/monitoring.sh).
pub fn monitoring() -> Result<()> {
    let root = workspace_root()?;
    let promtool = crate::peers::Promtool::build(&root)?;
    cargo(&["build", "--bin", "serverconfig-webhook"])?;
    let webhook = target_dir(&root).join("debug/serverconfig-webhook");
    run(
        "bash",
        &[
            "tests/deploy/monitoring.sh",
            &promtool.bin.to_string_lossy(),
            &webhook.to_string_lossy(),
        ],
    )
}

/// A few seconds of the HTTPS load benchmark (`cargo xtask bench --only load
/// --smoke`): answers checked, no timing.
fn load_smoke() -> Result<()> {
    bench::run(&BenchArgs {
        only: Some(Only(vec!["load".into()])),
        smoke: true,
        namespaces: None,
        k8s: DEFAULT_K8S.to_string(),
        load_args: None,
    })
}

/// The target of the Dockerfile's static binary.
const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

/// The static musl binary the Dockerfile copies (Docker cannot run here):
/// built as the Dockerfile builds it, then checked to be static and to run.
fn static_binary() -> Result<()> {
    musl_toolchain()?;
    cargo(&[
        "build",
        "--release",
        "--locked",
        "--target",
        MUSL_TARGET,
        "--bin",
        "serverconfig-webhook",
    ])?;
    let bin = format!("target/{MUSL_TARGET}/release/serverconfig-webhook");
    let ldd = Command::new("ldd")
        .arg(&bin)
        .output()
        .context("running ldd")?;
    let text =
        String::from_utf8_lossy(&ldd.stdout).to_string() + &String::from_utf8_lossy(&ldd.stderr);
    if !(text.contains("statically linked") || text.contains("not a dynamic executable")) {
        bail!("{bin} is not static: {text}");
    }
    run(&bin, &["--version"])?;
    eprintln!("xtask: {bin} is static and runs");
    Ok(())
}

/// The musl target and `musl-gcc` (ring's C code) that the static build
/// needs. The target is added with rustup (no root needed); `musl-gcc` is
/// only checked for: installing it takes root, which is the machine's setup
/// step (README.md, "Two commands"; `.ci/run` does it when run as root).
fn musl_toolchain() -> Result<()> {
    if runs("rustup") {
        run("rustup", &["target", "add", MUSL_TARGET])?;
    }
    if runs("musl-gcc") {
        return Ok(());
    }
    bail!(
        "the static build needs musl-gcc, which is not installed: run the setup step of \
         README.md (\"Two commands\"), i.e. install musl-tools (Debian/Ubuntu: \
         `sudo apt-get install musl-tools`; `.ci/run` does it when run as root), and run again"
    )
}
