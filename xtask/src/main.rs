//! Project tasks: `cargo xtask test` (what CI runs), `e2e`, `demo`, `bench`.

mod bench;
mod deny;
mod e2e;

use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

const USAGE: &str = "\
usage: cargo xtask <task> [flags]

tasks:
  test    fmt check, clippy -D warnings, unit/HTTP/CLI tests, the deploy checks,
          the Dockerfile's static binary, then the e2e suite and a seconds-long
          smoke run of the HTTPS load benchmark (answers checked, no timing)
  e2e     the end-to-end suite on a local control plane (see `cargo xtask e2e --help`)
  demo    local control plane + stock-controller stand-in + webhook, until Ctrl-C
  bench   issue 6 benchmarks: core, growth, load (HTTPS), e2e; results in
          target/bench-results (see `cargo xtask bench --help`)
  bench-e2e  issue 6 benchmarks 3/4/6 on the real control plane: creates with and without
          the webhook (and a MutatingAdmissionPolicy on --k8s 1.36), JSON lines";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((task, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match task.as_str() {
        "test" => test(rest),
        "e2e" => e2e::run(rest),
        "demo" => e2e::demo(rest),
        "bench" => bench::run(rest),
        "bench-e2e" => e2e::bench(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("unknown task {other:?}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    eprintln!("xtask: {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("{program} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Whether `program` answers `--version` (it is on PATH and runs).
fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The musl target and `musl-gcc` (ring's C code) that the static build
/// needs; a fresh machine has neither, so `cargo xtask test` installs them:
/// the target with rustup, musl-tools with apt-get when run as root.
fn musl_toolchain(target: &str) -> Result<()> {
    if runs("rustup") {
        run("rustup", &["target", "add", target])?;
    }
    if runs("musl-gcc") {
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !(root && runs("apt-get")) {
        bail!(
            "the static build needs musl-gcc, which is not installed; install musl-tools \
             (Debian/Ubuntu: apt-get install musl-tools) and run again"
        );
    }
    run("apt-get", &["update", "-qq"])?;
    run("apt-get", &["install", "-y", "-qq", "musl-tools"])
}

/// The static musl binary the Dockerfile copies (Docker cannot run here):
/// built as the Dockerfile builds it, then checked to be static and to run.
fn static_binary() -> Result<()> {
    const TARGET: &str = "x86_64-unknown-linux-musl";
    musl_toolchain(TARGET)?;
    cargo(&[
        "build",
        "--release",
        "--locked",
        "--target",
        TARGET,
        "--bin",
        "serverconfig-webhook",
    ])?;
    let bin = format!("target/{TARGET}/release/serverconfig-webhook");
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

/// Everything CI checks, in order of cost; `--no-e2e` skips the control plane.
fn test(args: &[String]) -> Result<()> {
    let skip_e2e = args.iter().any(|a| a == "--no-e2e");
    let e2e_args: Vec<String> = args.iter().filter(|a| *a != "--no-e2e").cloned().collect();
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    deny::check()?;
    cargo(&["test", "--workspace"])?;
    run("bash", &["tests/deploy/check.sh"])?;
    static_binary()?;
    if skip_e2e {
        eprintln!("xtask test: e2e skipped on request (--no-e2e)");
        return Ok(());
    }
    e2e::run(&e2e_args)?;
    // a few seconds of the HTTPS load benchmark: answers checked, no timing
    bench::run(&["--only".into(), "load".into(), "--smoke".into()])
}
