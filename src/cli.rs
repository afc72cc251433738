//! Command line: `serve`, `sync`, `doctor`, `render`, `certs`, `migrate`. Every `serve` flag has an
//! environment variable equivalent (`SERVERCONFIG_WEBHOOK_*`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::core::mutate::OnMissing;

/// serverconfig-webhook: Seldon Core v2 Servers use the ServerConfig of their own namespace.
#[derive(Debug, Parser)]
#[command(name = "serverconfig-webhook", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the mutating admission webhook over HTTPS.
    Serve(ServeArgs),
    /// Run only the sync loop: placeholders, rollout of ServerConfig changes, heal.
    Sync(SyncCommandArgs),
    /// Check a cluster: per Server, and the environment (controller flags, webhook, RBAC).
    Doctor(DoctorArgs),
    /// Print the object the webhook would produce for files on disk.
    Render(RenderArgs),
    /// Write a CA and a serving certificate (for running without cert-manager).
    Certs(CertsArgs),
    /// Move Seldon resources between namespaces (the seed's Migration Paths A and B), or undo a move.
    Migrate(MigrateArgs),
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// `serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTPS webhook listener.
    #[arg(
        long,
        env = "SERVERCONFIG_WEBHOOK_LISTEN_ADDR",
        default_value = "0.0.0.0:8443"
    )]
    pub listen_addr: SocketAddr,
    #[command(flatten)]
    pub process: ProcessArgs,
    /// PEM certificate chain, leaf first (reloaded when it changes).
    #[arg(
        long,
        env = "SERVERCONFIG_WEBHOOK_TLS_CERT_FILE",
        default_value = "/etc/serverconfig-webhook/tls/tls.crt"
    )]
    pub tls_cert_file: PathBuf,
    /// PEM private key of the certificate.
    #[arg(
        long,
        env = "SERVERCONFIG_WEBHOOK_TLS_KEY_FILE",
        default_value = "/etc/serverconfig-webhook/tls/tls.key"
    )]
    pub tls_key_file: PathBuf,
    /// When set, clients must present a certificate signed by this CA (PEM).
    #[arg(long, env = "SERVERCONFIG_WEBHOOK_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// How often to check the certificate files for changes.
    #[arg(long, env = "SERVERCONFIG_WEBHOOK_CERT_RELOAD_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub cert_reload_interval: Duration,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Also run the sync loop (placeholders, rollout, heal) in this process;
    /// only the replica holding the Lease runs it.
    #[arg(long, env = "SERVERCONFIG_WEBHOOK_SYNC")]
    pub sync: bool,
    #[command(flatten)]
    pub sync_args: SyncArgs,
    /// After SIGTERM, keep serving this long with readiness false.
    #[arg(long, env = "SERVERCONFIG_WEBHOOK_SHUTDOWN_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// After the listener closes, how long in-flight requests may take.
    #[arg(long, env = "SERVERCONFIG_WEBHOOK_DRAIN_TIMEOUT", default_value = "25s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Connections the webhook port keeps open; past it new ones are closed at once.
    #[arg(
        long,
        env = "SERVERCONFIG_WEBHOOK_MAX_CONNECTIONS",
        default_value_t = 1024
    )]
    pub max_connections: usize,
    /// Request body bytes all requests in flight may hold at once (suffixes Ki, Mi); past it, 503.
    #[arg(long, env = "SERVERCONFIG_WEBHOOK_MAX_INFLIGHT_BYTES", default_value = "48Mi", value_parser = parse_bytes)]
    pub max_inflight_bytes: usize,
}

/// The core's [`OnMissing`] as a flag value; the core itself knows no CLI
/// crate, so the flag's names live here, next to the flag.
impl ValueEnum for OnMissing {
    fn value_variants<'a>() -> &'a [Self] {
        &[OnMissing::Allow, OnMissing::Deny, OnMissing::Auto]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let (name, help) = match self {
            OnMissing::Allow => ("allow", "Keep the controller's object and add a warning"),
            OnMissing::Deny => (
                "deny",
                "Reject the request with a message naming namespace and ServerConfig",
            ),
            OnMissing::Auto => (
                "auto",
                "Allow when the controller namespace holds a real (non-placeholder) ServerConfig of that name, deny otherwise",
            ),
        };
        Some(clap::builder::PossibleValue::new(name).help(help))
    }
}

/// A flag value that does not parse; clap prints it after the flag's name.
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    /// Not a size such as `48Mi`.
    #[error("{0:?} is not a size (a number with Ki, Mi or Gi)")]
    NotASize(String),
    /// A size with a unit other than Ki, Mi, Gi.
    #[error("{text:?}: unknown unit {unit:?} (use Ki, Mi or Gi)")]
    UnknownUnit { text: String, unit: String },
    /// A size of zero or past `usize`.
    #[error("{0:?} is not a size greater than zero that fits in memory")]
    SizeOutOfRange(String),
    /// Not a duration such as `5s`.
    #[error("{0:?} is not a duration like 500ms, 5s or 2m")]
    NotADuration(String),
}

/// `123`, `64Ki`, `48Mi` or `1Gi` as a number of bytes.
pub fn parse_bytes(s: &str) -> Result<usize, FlagError> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| FlagError::NotASize(s.to_string()))?;
    let factor: usize = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => {
            return Err(FlagError::UnknownUnit {
                text: s.to_string(),
                unit: unit.to_string(),
            })
        }
    };
    n.checked_mul(factor)
        .filter(|b| *b > 0)
        .ok_or_else(|| FlagError::SizeOutOfRange(s.to_string()))
}

/// What every long-running subcommand (`serve`, `sync`) has: its metrics
/// and probe port and its log format.
#[derive(Debug, Args)]
pub struct ProcessArgs {
    /// Address of the plain-HTTP metrics and probe listener ("" to disable).
    #[arg(
        long,
        env = "SERVERCONFIG_WEBHOOK_METRICS_ADDR",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_addr: String,
    /// Log format.
    #[arg(
        long,
        env = "SERVERCONFIG_WEBHOOK_LOG_FORMAT",
        value_enum,
        default_value = "json"
    )]
    pub log_format: LogFormat,
    /// Export OpenTelemetry traces (one span per admission, per sync-loop
    /// reconcile and per write) over OTLP/gRPC; the endpoint, service name
    /// and sampler come from the standard OTEL_* environment.
    #[arg(long, env = "SERVERCONFIG_WEBHOOK_OTEL")]
    pub otel: bool,
}

/// Where Seldon runs and what the webhook watches (shared by `serve`, `sync`).
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Namespace of the Seldon controller; objects there are never changed.
    #[arg(
        long,
        env = "SERVERCONFIG_WEBHOOK_CONTROLLER_NAMESPACE",
        default_value = "seldon-system"
    )]
    pub controller_namespace: String,
    /// Namespaces to watch, comma separated; empty means all.
    #[arg(
        long,
        env = "SERVERCONFIG_WEBHOOK_WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub watch_namespaces: Vec<String>,
    /// What to do when the namespace has no ServerConfig of the Server's name.
    #[arg(
        long,
        env = "SERVERCONFIG_WEBHOOK_ON_MISSING",
        value_enum,
        default_value = "auto"
    )]
    pub on_missing: OnMissing,
    /// Seconds each watch of Servers and ServerConfigs runs before the API
    /// server ends it and it is reopened; a watch silent for longer (plus
    /// 1 s) is taken as stalled and admission asks the API server instead.
    #[arg(
        long,
        env = "SERVERCONFIG_WEBHOOK_WATCH_TIMEOUT",
        default_value_t = 3,
        value_parser = clap::value_parser!(u32).range(1..=290)
    )]
    pub watch_timeout: u32,
}

impl ClusterArgs {
    /// How the caches' watches run.
    pub fn watch_timing(&self) -> crate::cache::WatchTiming {
        crate::cache::WatchTiming {
            timeout: std::time::Duration::from_secs(u64::from(self.watch_timeout)),
        }
    }

    /// The watched namespaces (`All` when the list is empty).
    pub fn namespaces(&self) -> crate::cache::Namespaces {
        let list: Vec<String> = self
            .watch_namespaces
            .iter()
            .filter(|n| !n.is_empty())
            .cloned()
            .collect();
        if list.is_empty() {
            crate::cache::Namespaces::All
        } else {
            crate::cache::Namespaces::List(list)
        }
    }
}

/// Sync loop flags (shared by `sync` and `serve --sync`).
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Most placeholders one application namespace can cause in the controller namespace.
    #[arg(
        long,
        env = "SERVERCONFIG_WEBHOOK_MAX_PLACEHOLDERS_PER_NAMESPACE",
        default_value_t = 20
    )]
    pub max_placeholders_per_namespace: usize,
    /// How often every Server workload is re-checked and healed.
    #[arg(long, env = "SERVERCONFIG_WEBHOOK_HEAL_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub heal_interval: Duration,
    /// Namespace of the leader-election Lease (the webhook's own namespace).
    #[arg(
        long,
        env = "POD_NAMESPACE",
        default_value = "serverconfig-webhook-system"
    )]
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "SERVERCONFIG_WEBHOOK_LEASE_NAME",
        default_value = "serverconfig-webhook-sync"
    )]
    pub lease_name: String,
    /// This replica's identity in the Lease (defaults to the pod name or hostname).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Lease duration: how long others wait after the Lease last changed
    /// before taking it over; the leader renews every fifth of it and steps
    /// down after two thirds of it without a renewal.
    #[arg(long, env = "SERVERCONFIG_WEBHOOK_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
}

/// `sync` flags.
#[derive(Debug, Args)]
pub struct SyncCommandArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub sync_args: SyncArgs,
    #[command(flatten)]
    pub process: ProcessArgs,
}

/// `doctor` flags.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Name of the MutatingWebhookConfiguration.
    #[arg(long, default_value = "serverconfig-webhook")]
    pub webhook_configuration: String,
    /// Namespace the webhook runs in.
    #[arg(long, default_value = "serverconfig-webhook-system")]
    pub webhook_namespace: String,
    /// ServiceAccount of the webhook (for the RBAC check).
    #[arg(long, default_value = "serverconfig-webhook")]
    pub service_account: String,
    /// Name of the Seldon controller Deployment in the controller namespace.
    #[arg(long, default_value = "seldon-v2-controller-manager")]
    pub controller_deployment: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: DoctorOutput,
}

/// Output format of `doctor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DoctorOutput {
    Table,
    Json,
}

/// `render` flags.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The StatefulSet (or Deployment) as the controller built it (YAML or JSON).
    #[arg(long)]
    pub statefulset: PathBuf,
    /// The Server that owns it.
    #[arg(long)]
    pub server: PathBuf,
    /// The ServerConfig of the workload's namespace.
    #[arg(long)]
    pub serverconfig: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "yaml")]
    pub output: OutputFormat,
    /// Print the JSON Patch instead of the fixed object.
    #[arg(long)]
    pub patch: bool,
    /// Namespace of the Seldon controller (objects there print unchanged).
    #[arg(long, default_value = "seldon-system")]
    pub controller_namespace: String,
}

/// Output format of `render`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
}

/// `certs` flags.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// DNS names (or IPs) for the serving certificate; repeat for more.
    #[arg(long = "dns", required = true)]
    pub dns: Vec<String>,
    /// Directory to write ca.crt, ca.key, tls.crt, tls.key, ca-bundle.b64 into.
    #[arg(long)]
    pub out: PathBuf,
    /// Validity in days.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
}

/// `migrate` flags.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Namespace to move from.
    #[arg(
        long,
        required_unless_present = "rollback",
        conflicts_with = "rollback"
    )]
    pub from: Option<String>,
    /// Namespace to move to (the Seldon controller must watch it).
    #[arg(
        long,
        required_unless_present = "rollback",
        conflicts_with = "rollback"
    )]
    pub to: Option<String>,
    /// Kinds to move, comma separated (serverconfigs, servers, models,
    /// experiments, pipelines); all when not given.
    #[arg(long, value_delimiter = ',', value_parser = parse_kind, conflicts_with = "rollback")]
    pub kinds: Vec<crate::migrate::plan::Kind>,
    /// Label selector: move only objects matching it (every kind).
    #[arg(short = 'l', long, conflicts_with = "rollback")]
    pub selector: Option<String>,
    /// Print the plan (table and a unified diff per object); write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// After the move is verified, delete the source objects.
    #[arg(long, conflicts_with = "rollback")]
    pub delete_source: bool,
    /// Overwrite differing objects in the target; on --rollback, remove
    /// objects changed since the move.
    #[arg(long)]
    pub force: bool,
    /// Undo the move recorded in this rollback file.
    #[arg(long, value_name = "FILE")]
    pub rollback: Option<PathBuf>,
    /// Where to write the rollback file (default
    /// migrate-rollback-<from>-to-<to>-<unix time>.yaml).
    #[arg(long, value_name = "PATH", conflicts_with = "rollback")]
    pub rollback_file: Option<PathBuf>,
    /// How long verification may take.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Namespace of the Seldon controller.
    #[arg(long, default_value = "seldon-system")]
    pub controller_namespace: String,
    /// Name of the Seldon controller Deployment (its flags say what it watches).
    #[arg(long, default_value = "seldon-v2-controller-manager")]
    pub controller_deployment: String,
}

fn parse_kind(s: &str) -> Result<crate::migrate::plan::Kind, crate::migrate::plan::UnknownKind> {
    s.parse()
}

/// Parses "250ms", "5s", "2m" or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, FlagError> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: u64 = num
        .parse()
        .map_err(|_| FlagError::NotADuration(s.to_string()))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(FlagError::NotADuration(s.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_bytes, OnMissing, ValueEnum};

    #[test]
    fn on_missing_flag_names_are_the_serialized_names() {
        for v in OnMissing::value_variants() {
            let flag = v.to_possible_value().map(|p| p.get_name().to_string());
            let serialized = serde_json::to_value(v).ok();
            assert_eq!(
                flag.as_deref(),
                serialized.as_ref().and_then(|s| s.as_str()),
                "{v:?}"
            );
        }
    }

    #[test]
    fn sizes_table() {
        for (text, want) in [
            ("1", Ok::<usize, ()>(1)),
            ("64Ki", Ok(64 << 10)),
            ("48Mi", Ok(48 << 20)),
            ("1Gi", Ok(1 << 30)),
        ] {
            assert_eq!(parse_bytes(text).ok(), want.ok(), "{text}");
        }
        for bad in ["", "0", "12MB", "Mi", "-1", "1.5Mi"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?} accepted");
        }
    }
}
