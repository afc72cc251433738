//! Running the programs every job uses (cargo, bash, rustup, ...), each
//! command echoed on stderr before it runs, and the two signal calls the
//! control-plane jobs need.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// `cargo ARGS` with the cargo that runs xtask (`$CARGO`); fails on a
/// non-zero exit.
pub fn cargo(args: &[&str]) -> Result<()> {
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

/// `PROGRAM ARGS`; fails on a non-zero exit.
pub fn run(program: &str, args: &[&str]) -> Result<()> {
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
pub fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The workspace root: the parent of xtask/ (benchmark sources, `target/`).
pub fn workspace_root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent folder")
}

/// Cargo's target folder: `$CARGO_TARGET_DIR`, else `<root>/target`.
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// Ignore SIGINT and SIGTERM in xtask itself: Ctrl-C reaches the harness
/// too (same process group), which tears its control plane down; xtask must
/// stay alive until it has, to report its exit status.
#[cfg(unix)]
pub fn ignore_interrupts() {
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
pub fn ignore_interrupts() {}

/// SIGTERM to a child of ours, so that it can clean up before it exits.
#[cfg(unix)]
pub fn terminate(pid: u32) {
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
pub fn terminate(_pid: u32) {}
