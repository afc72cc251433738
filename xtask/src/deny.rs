//! `cargo xtask deny`, also a step of `cargo xtask test`: `cargo deny` on
//! licences, bans and sources always; security advisories whenever the
//! RustSec database can be had, and a loud "NOT CHECKED" (never a silent
//! pass) when it cannot.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::process::cargo;

/// The cargo-deny release this project's deny.toml is written for.
const VERSION: &str = "0.20.2";

/// Set to 1 to fail, instead of warn, when advisories cannot be checked.
const REQUIRE: &str = "DENY_REQUIRE_ADVISORIES";

fn installed_version() -> Option<String> {
    let out = Command::new("cargo")
        .args(["deny", "--version"])
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .last()
            .unwrap_or("")
            .to_string()
    })
}

/// Installs cargo-deny at [`VERSION`] when it is missing or another version.
fn ensure_installed() -> Result<()> {
    if installed_version().as_deref() == Some(VERSION) {
        return Ok(());
    }
    cargo(&["install", "--locked", "cargo-deny", "--version", VERSION])
}

/// Installs cargo-deny when needed and runs the checks; see the module doc.
pub fn check() -> Result<()> {
    ensure_installed()?;
    cargo(&["deny", "check", "licenses", "bans", "sources"])?;
    eprintln!("xtask: cargo deny fetch db");
    let fetched = Command::new("cargo")
        .args(["deny", "fetch", "db"])
        .status()
        .context("running cargo deny fetch db")?
        .success();
    if fetched {
        return cargo(&["deny", "check", "advisories"]);
    }
    if has_local_db() {
        eprintln!(
            "xtask: WARNING: advisory database not refreshed; checking against the local copy in {}",
            db_dir().display()
        );
        return cargo(&["deny", "check", "--disable-fetch", "advisories"]);
    }
    let required = std::env::var(REQUIRE).is_ok_and(|v| v == "1");
    let banner = "\
xtask: ==================================================================
xtask: SECURITY ADVISORIES NOT CHECKED: the RustSec advisory database
xtask: (https://github.com/RustSec/advisory-db) could not be fetched.
xtask: Licences, bans and sources passed. To check advisories, run
xtask: `cargo deny check advisories` where github.com is reachable, or
xtask: clone that repository into $CARGO_HOME/advisory-dbs/ first.
xtask: ==================================================================";
    eprintln!("{banner}");
    if required {
        bail!("advisories not checked and {REQUIRE}=1");
    }
    Ok(())
}

/// Where cargo-deny keeps advisory databases (its default `db-path`).
fn db_dir() -> std::path::PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cargo")))
        .unwrap_or_default();
    home.join("advisory-dbs")
}

/// Whether an earlier fetch (or a copy put there by hand) left a database.
fn has_local_db() -> bool {
    std::fs::read_dir(db_dir())
        .is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.path().join("crates").is_dir())))
}
