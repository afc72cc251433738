//! `cargo xtask soak`: issue 20's soak, the harness's `soak` (see
//! tests/e2e/harness/bench/soak.go and docs/reliability.md, "Soak"). It
//! builds what `e2e` builds (the webhook in release mode unless `--debug`
//! or `--webhook`) and passes the soak's flags on after `--`.

use std::time::Duration;

use anyhow::Result;

use crate::e2e::{self, E2eArgs, DEFAULT_K8S};
use crate::process::{target_dir, workspace_root};

/// The flags of `cargo xtask soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// Minutes of load (the criteria skip the first 20%, at most 5 minutes)
    #[arg(long, value_name = "N", default_value = "60", value_parser = positive)]
    pub minutes: u32,
    /// AdmissionReviews per second, open loop, straight to /mutate over TLS
    #[arg(long, value_name = "R", default_value = "200", value_parser = positive)]
    pub rate: u32,
    /// A new serving leaf (same CA) swapped into the webhook's certificate
    /// volume this often, e.g. 10m, 90s
    #[arg(long, value_name = "D", default_value = "10m", value_parser = duration)]
    pub rotate_every: Duration,
    /// The changed ServerConfigs get a new image tag this often, e.g. 3s
    #[arg(long, value_name = "D", default_value = "3s", value_parser = duration)]
    pub change_every: Duration,
    /// Kubernetes version of the control plane
    #[arg(long, value_name = "VERSION", default_value = DEFAULT_K8S)]
    pub k8s: String,
    /// Keep the per-run folder (logs, certificates, kubeconfig)
    #[arg(long)]
    pub keep: bool,
    /// Per-run folder [default: a new temp folder]
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<String>,
    /// Use this webhook binary, do not build one
    #[arg(long, value_name = "PATH")]
    pub webhook: Option<std::path::PathBuf>,
    /// Use the debug build of the webhook [default: release]
    #[arg(long)]
    pub debug: bool,
    /// Folder for soak-samples.csv and soak-summary.json
    /// [default: <target>/soak-results]
    #[arg(long, value_name = "DIR")]
    pub out: Option<String>,
}

/// A count above zero.
fn positive(v: &str) -> Result<u32, String> {
    v.parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{v:?}: want a positive whole number"))
}

/// A positive duration: a whole number followed by ms, s, m or h.
fn duration(v: &str) -> Result<Duration, String> {
    let bad = || format!("{v:?}: want a positive duration such as 500ms, 3s, 10m or 1h");
    let split = v.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = v.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(bad());
    }
    Ok(d)
}

impl SoakArgs {
    /// The soak's own flags as the harness's Go flag package takes them
    /// (after `--`), with `out` as the results folder.
    pub(crate) fn harness_args(&self, out: &str) -> Vec<String> {
        vec![
            "--".into(),
            format!("-minutes={}", self.minutes),
            format!("-rate={}", self.rate),
            format!("-rotate-every={}ms", self.rotate_every.as_millis()),
            format!("-change-every={}ms", self.change_every.as_millis()),
            format!("-out={out}"),
        ]
    }

    /// The e2e options the soak runs with: the shipped flags, progress
    /// lines on (an hour with no output is not a run one can watch).
    pub(crate) fn e2e_args(&self) -> E2eArgs {
        let mut e = E2eArgs::new(&self.k8s);
        e.keep = self.keep;
        e.work_dir = self.work_dir.clone();
        e.webhook = self.webhook.clone();
        e.release = !self.debug;
        e.verbose = true;
        e
    }
}

/// `cargo xtask soak`: builds, then runs the harness's `soak` until it
/// exits; its exit code (1 when a criterion failed) becomes ours.
pub fn run(o: &SoakArgs) -> Result<()> {
    let out = match &o.out {
        Some(d) => d.clone(),
        None => target_dir(&workspace_root()?)
            .join("soak-results")
            .display()
            .to_string(),
    };
    std::fs::create_dir_all(&out)?;
    e2e::drive_with("soak", &o.e2e_args(), &o.harness_args(&out), false)
}
