//! `migrate`: moves Seldon ServerConfigs, Servers, Models, Experiments and
//! Pipelines between namespaces (the seed's Migration Paths A and B),
//! refusing unsafe moves, writing a rollback file, and verifying the result.
//!
//! [`plan`], [`rollback`] and [`verify`] are pure; [`cluster`] (reading,
//! writing) and `wait` (verification loop) do the I/O.

pub mod cluster;
pub mod plan;
pub mod rollback;
pub mod verify;
mod wait;

use std::path::PathBuf;
use std::time::Duration;

use plan::Kind;

/// Exit code: moved (or rolled back) and verified; a dry run with nothing refused.
pub const EXIT_OK: u8 = 0;
/// Exit code: the cluster could not be read or written, or verification
/// failed within `--timeout` (what was written is in the rollback file).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad input (flags, selector, rollback file); nothing written.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: refused (differing object in the target, unwatched target
/// namespace, a reference left behind, a changed object on rollback);
/// nothing written.
pub const EXIT_REFUSED: u8 = 3;

/// Why `migrate` stopped; each maps to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Bad input: exit 2.
    #[error("{0}")]
    Usage(String),
    /// Refused before writing anything: exit 3.
    #[error("{0}")]
    Refused(String),
    /// Failed while reading, writing or verifying: exit 1.
    #[error("{0}")]
    Failed(String),
}

impl MigrateError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            MigrateError::Usage(_) => EXIT_USAGE,
            MigrateError::Refused(_) => EXIT_REFUSED,
            MigrateError::Failed(_) => EXIT_FAILED,
        }
    }
}

/// A move.
#[derive(Clone, Debug)]
pub struct MoveConfig {
    pub from: String,
    pub to: String,
    /// Kinds to move (all when empty).
    pub kinds: Vec<Kind>,
    /// Label selector applied to every kind.
    pub selector: Option<String>,
    pub dry_run: bool,
    pub delete_source: bool,
    pub force: bool,
    /// Where the rollback file goes.
    pub rollback_file: PathBuf,
    pub timeout: Duration,
    pub controller_namespace: String,
    pub controller_deployment: String,
}

/// An undo.
#[derive(Clone, Debug)]
pub struct RollbackConfig {
    pub file: PathBuf,
    pub dry_run: bool,
    pub force: bool,
    pub timeout: Duration,
}

/// Checks a move's flags before anything talks to the cluster.
pub fn validate(cfg: &MoveConfig) -> Result<(), MigrateError> {
    if cfg.from.is_empty() || cfg.to.is_empty() {
        return Err(MigrateError::Usage(
            "--from and --to must name namespaces".into(),
        ));
    }
    if cfg.from == cfg.to {
        return Err(MigrateError::Usage(format!(
            "--from and --to are both {:?}: nothing would move",
            cfg.from
        )));
    }
    for ns in [&cfg.from, &cfg.to] {
        let ok = ns.len() <= 63
            && ns
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !ns.starts_with('-')
            && !ns.ends_with('-');
        if !ok {
            return Err(MigrateError::Usage(format!(
                "{ns:?} is not a namespace name (lower-case letters, digits and '-', at most 63)"
            )));
        }
    }
    Ok(())
}

/// Refuses to overwrite an existing rollback file (it may be the only undo
/// of an earlier move); a dry run writes none.
pub fn check_rollback_file(cfg: &MoveConfig) -> Result<(), MigrateError> {
    if !cfg.dry_run && cfg.rollback_file.exists() {
        return Err(MigrateError::Usage(format!(
            "the rollback file {} exists already (it may be the only undo of an earlier move): choose another --rollback-file",
            cfg.rollback_file.display()
        )));
    }
    Ok(())
}

/// The rollback file's default name: `migrate-rollback-<from>-to-<to>-<unix seconds>.yaml`.
pub fn default_rollback_file(from: &str, to: &str, unix_secs: u64) -> PathBuf {
    PathBuf::from(format!("migrate-rollback-{from}-to-{to}-{unix_secs}.yaml"))
}
