//! `migrate`: moves Seldon ServerConfigs, Servers, Models, Experiments and
//! Pipelines between namespaces (the seed's Migration Paths A and B),
//! refusing unsafe moves, writing a rollback file, and verifying the result.
//!
//! [`plan`], [`rollback`] and [`verify`] are pure; [`cluster`] (reading,
//! writing) and `wait` (verification loop) do the I/O, both through `api`
//! (the dynamic-object calls): cluster -> wait -> api, cluster -> api;
//! [`journal`] keeps the rollback file on disk: cluster -> journal -> rollback.

mod api;
pub mod cluster;
pub mod journal;
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

/// Why `migrate` stopped; [`MigrateError::exit_code`] sorts each case into
/// bad input (2), refused (3) or failed (1).
///
/// Display is the whole sentence the CLI prints, the cause's text included
/// (as `... : <cause>`); `source()` hands out the same cause typed, so a
/// printer shows Display alone rather than also walking the chain.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Bad flags: exit 2.
    #[error("{0}")]
    Usage(String),
    /// The `--rollback` file cannot be read: exit 2.
    #[error("cannot read the rollback file {}: {source}", .path.display())]
    ReadRollbackFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The `--rollback` file is larger than any `migrate` writes: exit 2.
    #[error("the rollback file {} is larger than {limit} bytes: not one migrate wrote", .path.display())]
    RollbackFileTooLarge { path: PathBuf, limit: u64 },
    /// The `--rollback` file is not one `migrate` wrote: exit 2.
    #[error("{}: {source}", .path.display())]
    BadRollbackFile {
        path: PathBuf,
        #[source]
        source: rollback::RollbackFileError,
    },
    /// The API server rejected `--selector`: exit 2.
    #[error("--selector {selector:?} is not a valid label selector: {source}")]
    BadSelector {
        selector: String,
        #[source]
        source: kube::Error,
    },
    /// Refused before writing anything: exit 3.
    #[error("{0}")]
    Refused(String),
    /// No Kubernetes client (kubeconfig or in-cluster): exit 1.
    #[error("{0:#}")]
    Client(#[source] anyhow::Error),
    /// A read or write of the cluster failed; `what` says which: exit 1.
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// A write lost against a change made meanwhile (409): exit 1.
    #[error("{what}: it changed meanwhile ({source})")]
    Changed {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// A replace that lost against changes twice: exit 1.
    #[error("{what}: it kept changing")]
    KeptChanging { what: String },
    /// An object did not convert between JSON and the API's type: exit 1.
    #[error("{what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// An object about to be written is of no kind `migrate` moves: exit 1.
    #[error("{object} is not a moved kind")]
    NotMovedKind { object: String },
    /// The rollback file did not encode as YAML: exit 1.
    #[error("cannot encode the rollback file: {0}")]
    EncodeRollbackFile(#[source] serde_yaml_ng::Error),
    /// The rollback file cannot be written: exit 1.
    #[error("cannot write the rollback file {}: {source}", .path.display())]
    WriteRollbackFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The moved objects did not verify within `--timeout`: exit 1.
    #[error("verification failed within {timeout:?} ({source}); the sources are kept")]
    MoveNotVerified {
        timeout: Duration,
        #[source]
        source: verify::Failing,
    },
    /// The undo did not verify within `--timeout`: exit 1.
    #[error("rolled back, but verification failed within {timeout:?} ({source})")]
    RollbackNotVerified {
        timeout: Duration,
        #[source]
        source: verify::Failing,
    },
    /// A failure after a move wrote something: the cause's exit code, with
    /// the way back (the rollback file) appended.
    #[error(
        "{source}; the rollback file {} records what was written (migrate --rollback {})",
        .rollback_file.display(),
        .rollback_file.display()
    )]
    AfterWrites {
        #[source]
        source: Box<MigrateError>,
        rollback_file: PathBuf,
    },
    /// A bug: a state the code rules out was reached: exit 1.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl MigrateError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        use MigrateError::*;
        match self {
            Usage(_)
            | ReadRollbackFile { .. }
            | RollbackFileTooLarge { .. }
            | BadRollbackFile { .. }
            | BadSelector { .. } => EXIT_USAGE,
            Refused(_) => EXIT_REFUSED,
            AfterWrites { source, .. } => source.exit_code(),
            Client(_)
            | Kube { .. }
            | Changed { .. }
            | KeptChanging { .. }
            | Json { .. }
            | NotMovedKind { .. }
            | EncodeRollbackFile(_)
            | WriteRollbackFile { .. }
            | MoveNotVerified { .. }
            | RollbackNotVerified { .. }
            | Internal(_) => EXIT_FAILED,
        }
    }

    /// Reading or writing the cluster failed: `what` names the call.
    fn kube(what: impl Into<String>, source: kube::Error) -> MigrateError {
        MigrateError::Kube {
            what: what.into(),
            source,
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
