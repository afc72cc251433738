//! `kubectl serverconfig`: the same binary run under the name
//! `kubectl-serverconfig` (how kubectl and krew find a plugin) offers
//! `doctor`, `render` and `migrate` with kubectl's connection flags
//! (`--kubeconfig`, `--context`, `--cluster`, `--user`, `-n/--namespace`,
//! `-A/--all-namespaces`, `--request-timeout`). The flags are mapped onto the
//! normal subcommands' arguments here, before anything talks to a cluster;
//! `serve`, `sync` and `certs` are not plugin commands.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};

use crate::cli::{DoctorArgs, MigrateArgs, RenderArgs};

/// The file name that selects plugin mode: kubectl runs `kubectl-<name>`
/// from PATH for `kubectl <name>`.
pub const PLUGIN_BINARY: &str = "kubectl-serverconfig";

/// How the plugin names itself in messages and help (`kubectl serverconfig`).
pub const PLUGIN_COMMAND: &str = "kubectl serverconfig";

/// The subcommands of the normal binary that the plugin does not offer.
const NOT_PLUGIN_COMMANDS: [&str; 3] = ["serve", "sync", "certs"];

/// True when `argv0` (the name the binary was started by) is
/// `kubectl-serverconfig`, with any directory and an optional `.exe`.
pub fn invoked_as_plugin(argv0: &OsStr) -> bool {
    Path::new(argv0)
        .file_name()
        .and_then(OsStr::to_str)
        .map(|name| name.strip_suffix(".exe").unwrap_or(name) == PLUGIN_BINARY)
        .unwrap_or(false)
}

/// `kubectl serverconfig`: check a cluster, render files, move resources.
#[derive(Debug, Parser)]
#[command(name = PLUGIN_BINARY, bin_name = PLUGIN_COMMAND, version, about)]
pub struct PluginCli {
    /// kubectl's connection flags.
    #[command(flatten)]
    pub kube: KubeFlags,
    /// doctor, render or migrate.
    #[command(subcommand)]
    pub command: PluginCommand,
}

/// The plugin's subcommands: the cluster-reading and offline ones of the
/// normal binary, with the same flags.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Check a cluster: per Server, and the environment (controller flags, webhook, RBAC).
    Doctor(DoctorArgs),
    /// Print the object the webhook would produce for files on disk.
    Render(RenderArgs),
    /// Move Seldon resources between namespaces (the seed's Migration Paths A and B), or undo a move.
    Migrate(MigrateArgs),
}

/// kubectl's connection flags, accepted before or after the subcommand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct KubeFlags {
    /// Path to the kubeconfig file (default: KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current-context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The kubeconfig cluster to use (default: the context's).
    #[arg(long, global = true, value_name = "NAME")]
    pub cluster: Option<String>,
    /// The kubeconfig user to use (default: the context's).
    #[arg(long, global = true, value_name = "NAME")]
    pub user: Option<String>,
    /// doctor: check only this namespace; migrate: the namespace to move from (--from).
    #[arg(short = 'n', long, global = true, value_name = "NAME")]
    pub namespace: Option<String>,
    /// doctor: check every namespace, whatever the context's namespace.
    #[arg(short = 'A', long, global = true, conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// Give up on a single request to the API server after this long (0: never).
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_request_timeout)]
    pub request_timeout: Option<Duration>,
}

impl KubeFlags {
    /// The first cluster flag given, by its name, for `render`'s refusal.
    fn first_given(&self) -> Option<&'static str> {
        [
            ("--kubeconfig", self.kubeconfig.is_some()),
            ("--context", self.context.is_some()),
            ("--cluster", self.cluster.is_some()),
            ("--user", self.user.is_some()),
            ("--namespace", self.namespace.is_some()),
            ("--all-namespaces", self.all_namespaces),
            ("--request-timeout", self.request_timeout.is_some()),
        ]
        .into_iter()
        .find_map(|(name, given)| given.then_some(name))
    }

    /// Where the client comes from: the flags that pick it out of a
    /// kubeconfig, and the per-request timeout.
    fn target(&self) -> KubeTarget {
        KubeTarget {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            cluster: self.cluster.clone(),
            user: self.user.clone(),
            request_timeout: self.request_timeout.filter(|t| !t.is_zero()),
        }
    }
}

/// `--request-timeout`: a duration as the other flags take it (`500ms`,
/// `5s`, `2m`, bare seconds) or hours (`1h`); `0` means no timeout.
fn parse_request_timeout(s: &str) -> Result<Duration, crate::cli::FlagError> {
    match s.trim().strip_suffix('h').map(str::parse::<u64>) {
        Some(Ok(hours)) => Ok(Duration::from_secs(hours.saturating_mul(3600))),
        Some(Err(_)) => Err(crate::cli::FlagError::NotADuration(s.to_string())),
        None => crate::cli::parse_duration(s),
    }
}

/// What doctor checks when `-n` and `-A` are not given and no
/// `--watch-namespaces` was set: kubectl's rule, the namespace of the
/// kubeconfig context when it names one, else every namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoctorScope {
    /// The namespaces in the arguments are final.
    AsGiven,
    /// Use the context's namespace, if the context sets one.
    ContextNamespace,
}

/// One plugin command, its flags mapped onto the normal subcommand's.
#[derive(Debug)]
pub enum PluginJob {
    /// doctor's arguments, and whether the context may still pick its namespace.
    Doctor(DoctorArgs, DoctorScope),
    /// render's arguments (no cluster flag was given).
    Render(RenderArgs),
    /// migrate's arguments, `-n` already moved into `--from`.
    Migrate(MigrateArgs),
}

/// A parsed plugin command line: what to run and against which cluster.
#[derive(Debug)]
pub struct Invocation {
    /// The subcommand to run, with the normal binary's argument types.
    pub job: PluginJob,
    /// Where its Kubernetes client comes from.
    pub target: KubeTarget,
}

/// A plugin command line that cannot run; each says what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// clap's own error (bad flag, `--help`, `--version`): printed by clap.
    #[error("{0}")]
    Clap(#[from] clap::Error),
    /// `serve`, `sync` or `certs` under the plugin name.
    #[error("`{0}` is not a kubectl plugin command: `kubectl serverconfig` offers doctor, render and migrate; run `serverconfig-webhook {0}` for it")]
    NotAPluginCommand(String),
    /// `render` with a cluster flag: it reads files only.
    #[error("render reads files only and never talks to a cluster: drop {0}")]
    RenderTakesNoClusterFlags(&'static str),
    /// Two flags that both name doctor's namespaces.
    #[error("doctor: {0} and --watch-namespaces both name the namespaces to check; give one")]
    DoctorNamespacesTwice(&'static str),
    /// `migrate -n` together with `--from`.
    #[error(
        "migrate: -n/--namespace is the namespace to move from, and --from was given too; give one"
    )]
    MigrateFromTwice,
    /// `migrate -n` with `--rollback`.
    #[error("migrate --rollback takes its namespaces from the rollback file: drop -n/--namespace")]
    NamespaceWithRollback,
    /// `migrate` with neither `-n` nor `--from` (nor `--rollback`).
    #[error("migrate needs the namespace to move from: -n/--namespace NAME or --from NAME (the context's namespace is never taken, so that a move always names its source)")]
    MigrateNoSource,
    /// `migrate -A`.
    #[error(
        "migrate moves from one namespace: -A/--all-namespaces does not apply (use -n or --from)"
    )]
    AllNamespacesWithMigrate,
}

impl PluginError {
    /// The exit code: clap's (0 for `--help` and `--version`, 2 for bad
    /// flags), 2 for the rest (bad input, before any cluster access).
    pub fn exit_code(&self) -> u8 {
        match self {
            PluginError::Clap(e) if !e.use_stderr() => 0,
            _ => 2,
        }
    }
}

/// The plugin's clap command. `migrate --from` is optional here (`-n` can
/// give it, also before the subcommand, where clap's requirement check
/// cannot see it): [`migrate_job`] asks for one of them.
fn command() -> clap::Command {
    PluginCli::command().mut_subcommand("migrate", |c| {
        c.mut_arg("from", |a| {
            let fresh = Arg::new("from")
                .long("from")
                .value_name("FROM")
                .action(ArgAction::Set)
                .value_parser(clap::value_parser!(String))
                .conflicts_with("rollback");
            match a.get_help() {
                Some(help) => fresh.help(help.clone()),
                None => fresh,
            }
        })
    })
}

/// Parses a plugin command line (`args` with the program name first) and
/// maps kubectl's flags onto the subcommand's arguments.
pub fn parse<I, T>(args: I) -> Result<Invocation, PluginError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command().try_get_matches_from(args).map_err(refine)?;
    let cli = PluginCli::from_arg_matches(&matches)?;
    let target = cli.kube.target();
    let job = match cli.command {
        PluginCommand::Doctor(args) => {
            let sub = subcommand_matches(&matches, "doctor")?;
            let (args, scope) = doctor_job(args, &cli.kube, sub)?;
            PluginJob::Doctor(args, scope)
        }
        PluginCommand::Render(args) => match cli.kube.first_given() {
            Some(flag) => return Err(PluginError::RenderTakesNoClusterFlags(flag)),
            None => PluginJob::Render(args),
        },
        PluginCommand::Migrate(args) => PluginJob::Migrate(migrate_job(args, &cli.kube)?),
    };
    Ok(Invocation { job, target })
}

/// The matches of the subcommand clap just parsed.
fn subcommand_matches<'a>(
    matches: &'a ArgMatches,
    name: &str,
) -> Result<&'a ArgMatches, PluginError> {
    matches.subcommand_matches(name).ok_or_else(|| {
        PluginError::Clap(clap::Error::raw(
            ErrorKind::MissingSubcommand,
            format!("internal: no matches for {name}"),
        ))
    })
}

/// `serve`, `sync`, `certs` as a subcommand get a sentence of their own;
/// every other clap error is kept.
fn refine(e: clap::Error) -> PluginError {
    if e.kind() == ErrorKind::InvalidSubcommand {
        if let Some(ContextValue::String(name)) = e.get(ContextKind::InvalidSubcommand) {
            if NOT_PLUGIN_COMMANDS.contains(&name.as_str()) {
                return PluginError::NotAPluginCommand(name.clone());
            }
        }
    }
    PluginError::Clap(e)
}

/// doctor: `-n NS` checks NS, `-A` every namespace; otherwise
/// `--watch-namespaces` (flag or environment) when set, else the context's
/// namespace ([`DoctorScope::ContextNamespace`]).
fn doctor_job(
    mut args: DoctorArgs,
    kube: &KubeFlags,
    matches: &ArgMatches,
) -> Result<(DoctorArgs, DoctorScope), PluginError> {
    let watch_source = matches.value_source("watch_namespaces");
    let on_command_line = watch_source == Some(ValueSource::CommandLine);
    let scope_flag = match (&kube.namespace, kube.all_namespaces) {
        (Some(_), _) => Some("-n/--namespace"),
        (None, true) => Some("-A/--all-namespaces"),
        (None, false) => None,
    };
    if let (Some(flag), true) = (scope_flag, on_command_line) {
        return Err(PluginError::DoctorNamespacesTwice(flag));
    }
    if let Some(ns) = &kube.namespace {
        args.cluster.watch_namespaces = vec![ns.clone()];
        return Ok((args, DoctorScope::AsGiven));
    }
    if kube.all_namespaces {
        args.cluster.watch_namespaces = Vec::new();
        return Ok((args, DoctorScope::AsGiven));
    }
    let set = matches!(
        watch_source,
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    );
    let scope = if set {
        DoctorScope::AsGiven
    } else {
        DoctorScope::ContextNamespace
    };
    Ok((args, scope))
}

/// migrate: `-n NS` is `--from NS`; never the context's namespace, so that
/// a move or a delete always names its source.
fn migrate_job(mut args: MigrateArgs, kube: &KubeFlags) -> Result<MigrateArgs, PluginError> {
    if kube.all_namespaces {
        return Err(PluginError::AllNamespacesWithMigrate);
    }
    let Some(ns) = &kube.namespace else {
        if args.from.is_none() && args.rollback.is_none() {
            return Err(PluginError::MigrateNoSource);
        }
        return Ok(args);
    };
    if args.rollback.is_some() {
        return Err(PluginError::NamespaceWithRollback);
    }
    if args.from.is_some() {
        return Err(PluginError::MigrateFromTwice);
    }
    args.from = Some(ns.clone());
    Ok(args)
}

/// Which kubeconfig, context, cluster and user the client comes from, and
/// its per-request timeout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeTarget {
    /// `--kubeconfig`; else KUBECONFIG, then ~/.kube/config.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`; else the kubeconfig's current-context.
    pub context: Option<String>,
    /// `--cluster`; else the context's.
    pub cluster: Option<String>,
    /// `--user`; else the context's.
    pub user: Option<String>,
    /// `--request-timeout` when not zero.
    pub request_timeout: Option<Duration>,
}

/// A kubeconfig that cannot give the client the flags ask for.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// `--kubeconfig PATH` unreadable or not a kubeconfig.
    #[error("cannot read --kubeconfig {}: {source}", path.display())]
    ReadKubeconfig {
        path: PathBuf,
        #[source]
        source: KubeconfigError,
    },
    /// `--context`, `--cluster` or `--user` without any kubeconfig to look in.
    #[error("{flag} needs a kubeconfig, and none could be read (KUBECONFIG or ~/.kube/config): {source}")]
    NoKubeconfig {
        flag: &'static str,
        #[source]
        source: KubeconfigError,
    },
    /// A context, cluster or user name the kubeconfig does not have.
    #[error("{what} {name:?} is not in the kubeconfig (it has: {})", list(known))]
    UnknownName {
        what: &'static str,
        name: String,
        known: Vec<String>,
    },
    /// Neither `--context` nor a current-context.
    #[error("the kubeconfig has no current-context: pick one with --context (it has: {})", list(.0))]
    NoContext(Vec<String>),
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// Where the client comes from, once the kubeconfig has been read.
#[derive(Clone)]
pub enum ClientSource {
    /// As the normal binary: KUBECONFIG or ~/.kube/config, else the
    /// in-cluster ServiceAccount.
    Default,
    /// A kubeconfig read and checked against the flags.
    Kubeconfig {
        kubeconfig: Box<Kubeconfig>,
        options: KubeConfigOptions,
        request_timeout: Option<Duration>,
        /// The namespace the chosen context sets, if any.
        context_namespace: Option<String>,
    },
}

/// The client could not be built. The cause is kept and printed in the
/// message itself (not as `source`), so that a `{:#}` chain says it once,
/// as the normal binary always has.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No kubeconfig and no in-cluster ServiceAccount.
    #[error("cannot build a Kubernetes client (kubeconfig or in-cluster): {0}")]
    Infer(kube::Error),
    /// The kubeconfig's context, cluster or user does not make a config.
    #[error("cannot build a Kubernetes client from the kubeconfig: {0}")]
    Kubeconfig(KubeconfigError),
    /// The config does not make a client (TLS, proxy).
    #[error("cannot build a Kubernetes client: {0}")]
    Client(kube::Error),
}

impl KubeTarget {
    /// Reads the kubeconfig the flags name (or KUBECONFIG / ~/.kube/config)
    /// and checks that it has the context, cluster and user asked for.
    /// Without any flag and without a readable kubeconfig, the client is
    /// the normal binary's (in-cluster).
    pub fn resolve(&self) -> Result<ClientSource, TargetError> {
        let kubeconfig = match &self.kubeconfig {
            Some(path) => {
                Kubeconfig::read_from(path).map_err(|source| TargetError::ReadKubeconfig {
                    path: path.clone(),
                    source,
                })?
            }
            None => match (Kubeconfig::read(), self.first_name_flag()) {
                (Ok(k), _) => k,
                (Err(_), None) if self.request_timeout.is_none() => {
                    return Ok(ClientSource::Default)
                }
                (Err(source), flag) => {
                    return Err(TargetError::NoKubeconfig {
                        flag: flag.unwrap_or("--request-timeout"),
                        source,
                    })
                }
            },
        };
        let context_namespace = self.check_names(&kubeconfig)?;
        Ok(ClientSource::Kubeconfig {
            kubeconfig: Box::new(kubeconfig),
            options: KubeConfigOptions {
                context: self.context.clone(),
                cluster: self.cluster.clone(),
                user: self.user.clone(),
            },
            request_timeout: self.request_timeout,
            context_namespace,
        })
    }

    fn first_name_flag(&self) -> Option<&'static str> {
        [
            ("--context", self.context.is_some()),
            ("--cluster", self.cluster.is_some()),
            ("--user", self.user.is_some()),
        ]
        .into_iter()
        .find_map(|(flag, given)| given.then_some(flag))
    }

    /// The chosen context, cluster and user exist; returns the namespace
    /// the context sets.
    fn check_names(&self, k: &Kubeconfig) -> Result<Option<String>, TargetError> {
        let contexts: Vec<String> = k.contexts.iter().map(|c| c.name.clone()).collect();
        let name = match (&self.context, &k.current_context) {
            (Some(n), _) => n,
            (None, Some(n)) => n,
            (None, None) => return Err(TargetError::NoContext(contexts)),
        };
        let what = if self.context.is_some() {
            "context"
        } else {
            "current-context"
        };
        let context = k.contexts.iter().find(|c| &c.name == name).ok_or_else(|| {
            TargetError::UnknownName {
                what,
                name: name.clone(),
                known: contexts,
            }
        })?;
        let unknown = |what, name: &String, known: Vec<String>| {
            (!known.contains(name)).then(|| TargetError::UnknownName {
                what,
                name: name.clone(),
                known,
            })
        };
        if let Some(c) = &self.cluster {
            let known = k.clusters.iter().map(|c| c.name.clone()).collect();
            if let Some(e) = unknown("cluster", c, known) {
                return Err(e);
            }
        }
        if let Some(u) = &self.user {
            let known = k.auth_infos.iter().map(|u| u.name.clone()).collect();
            if let Some(e) = unknown("user", u, known) {
                return Err(e);
            }
        }
        Ok(context
            .context
            .as_ref()
            .and_then(|c| c.namespace.clone())
            .filter(|ns| !ns.is_empty()))
    }
}

impl ClientSource {
    /// The namespace the kubeconfig context sets, if any.
    pub fn context_namespace(&self) -> Option<&str> {
        match self {
            ClientSource::Default => None,
            ClientSource::Kubeconfig {
                context_namespace, ..
            } => context_namespace.as_deref(),
        }
    }

    /// The Kubernetes client.
    pub async fn client(&self) -> Result<kube::Client, ClientError> {
        match self {
            ClientSource::Default => kube::Client::try_default()
                .await
                .map_err(ClientError::Infer),
            ClientSource::Kubeconfig {
                kubeconfig,
                options,
                request_timeout,
                ..
            } => {
                let mut config =
                    kube::Config::from_custom_kubeconfig(kubeconfig.as_ref().clone(), options)
                        .await
                        .map_err(ClientError::Kubeconfig)?;
                if let Some(t) = request_timeout {
                    config.connect_timeout = Some(*t);
                    config.read_timeout = Some(*t);
                    config.write_timeout = Some(*t);
                    config.reset_reader_on_write = true;
                }
                kube::Client::try_from(config).map_err(ClientError::Client)
            }
        }
    }
}

/// doctor's namespaces once the context is known: `ContextNamespace`
/// becomes the context's namespace when it sets one.
pub fn apply_doctor_scope(args: &mut DoctorArgs, scope: DoctorScope, source: &ClientSource) {
    if scope == DoctorScope::ContextNamespace {
        if let Some(ns) = source.context_namespace() {
            args.cluster.watch_namespaces = vec![ns.to_string()];
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_name_it_is_called_by_selects_plugin_mode() {
        for (argv0, want) in [
            ("kubectl-serverconfig", true),
            ("/usr/local/bin/kubectl-serverconfig", true),
            ("./kubectl-serverconfig", true),
            ("/home/u/.krew/bin/kubectl-serverconfig", true),
            ("kubectl-serverconfig.exe", true),
            ("serverconfig-webhook", false),
            ("/usr/bin/serverconfig-webhook", false),
            ("kubectl-serverconfig-old", false),
            ("kubectl_serverconfig", false),
            ("kubectl", false),
            ("/opt/kubectl-serverconfig/serverconfig-webhook", false),
            ("", false),
        ] {
            assert_eq!(invoked_as_plugin(OsStr::new(argv0)), want, "{argv0:?}");
        }
    }

    fn argv(line: &str) -> Vec<String> {
        std::iter::once(PLUGIN_BINARY.to_string())
            .chain(line.split_whitespace().map(String::from))
            .collect()
    }

    fn doctor(line: &str) -> (DoctorArgs, DoctorScope, KubeTarget) {
        match parse(argv(line)) {
            Ok(Invocation {
                job: PluginJob::Doctor(a, s),
                target,
            }) => (a, s, target),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn doctor_namespace_flags_map_onto_watch_namespaces() {
        use DoctorScope::*;
        for (line, want_ns, want_scope) in [
            ("doctor", vec![""], ContextNamespace),
            ("doctor -n team-a", vec!["team-a"], AsGiven),
            ("doctor --namespace team-a", vec!["team-a"], AsGiven),
            ("doctor --namespace=team-a", vec!["team-a"], AsGiven),
            ("-n team-a doctor", vec!["team-a"], AsGiven),
            ("doctor -A", vec![], AsGiven),
            ("doctor --all-namespaces", vec![], AsGiven),
            ("doctor --watch-namespaces a,b", vec!["a", "b"], AsGiven),
            ("doctor -o json -n x", vec!["x"], AsGiven),
        ] {
            let (args, scope, _) = doctor(line);
            assert_eq!(args.cluster.watch_namespaces, want_ns, "{line}");
            assert_eq!(scope, want_scope, "{line}");
        }
    }

    #[test]
    fn kubectl_flags_pick_the_kubeconfig_target() {
        for (line, want) in [
            ("doctor", KubeTarget::default()),
            (
                "doctor --kubeconfig /k --context c --cluster cl --user u",
                KubeTarget {
                    kubeconfig: Some("/k".into()),
                    context: Some("c".into()),
                    cluster: Some("cl".into()),
                    user: Some("u".into()),
                    request_timeout: None,
                },
            ),
            (
                "--context=c doctor --request-timeout 5s",
                KubeTarget {
                    context: Some("c".into()),
                    request_timeout: Some(Duration::from_secs(5)),
                    ..KubeTarget::default()
                },
            ),
            (
                "doctor --request-timeout 0",
                KubeTarget::default(), // 0: no timeout
            ),
            (
                "doctor --request-timeout 1h",
                KubeTarget {
                    request_timeout: Some(Duration::from_secs(3600)),
                    ..KubeTarget::default()
                },
            ),
        ] {
            assert_eq!(doctor(line).2, want, "{line}");
        }
    }

    fn migrate(line: &str) -> Result<MigrateArgs, PluginError> {
        match parse(argv(line))?.job {
            PluginJob::Migrate(a) => Ok(a),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn migrate_namespace_is_the_source() {
        for (line, want_from) in [
            ("migrate -n team-a --to seldon-system", "team-a"),
            ("-n team-a migrate --to seldon-system --dry-run", "team-a"),
            ("migrate --from team-b --to seldon-system", "team-b"),
        ] {
            let args = migrate(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(args.from.as_deref(), Some(want_from), "{line}");
            assert_eq!(args.to.as_deref(), Some("seldon-system"), "{line}");
        }
        let rollback = migrate("migrate --rollback f.yaml").expect("rollback");
        assert_eq!(rollback.from, None);
    }

    #[test]
    fn bad_plugin_lines_say_what_to_do() {
        for (line, code, says) in [
            ("serve", 2, "is not a kubectl plugin command"),
            ("sync", 2, "serverconfig-webhook sync"),
            (
                "certs --dns x --out d",
                2,
                "offers doctor, render and migrate",
            ),
            ("migrate --to x", 2, "-n/--namespace NAME or --from NAME"),
            ("migrate --to x --dry-run", 2, "never taken"),
            ("migrate -n a --from b --to x", 2, "give one"),
            ("migrate -n a --rollback f", 2, "rollback file"),
            ("migrate -A --from a --to b", 2, "-A/--all-namespaces"),
            ("doctor -n a --watch-namespaces b", 2, "give one"),
            ("doctor -A --watch-namespaces b", 2, "give one"),
            ("doctor -n a -A", 2, "cannot be used with"),
            ("doctor --request-timeout soon", 2, "not a duration"),
            (
                "render --statefulset a --server b --serverconfig c --context x",
                2,
                "drop --context",
            ),
            (
                "render -n x --statefulset a --server b --serverconfig c",
                2,
                "drop --namespace",
            ),
            ("--help", 0, "doctor"),
            ("--version", 0, env!("CARGO_PKG_VERSION")),
        ] {
            match parse(argv(line)) {
                Ok(i) => panic!("{line}: parsed as {i:?}"),
                Err(e) => {
                    let text = match &e {
                        PluginError::Clap(c) => c.render().to_string(),
                        other => other.to_string(),
                    };
                    assert_eq!(e.exit_code(), code, "{line}: {text}");
                    assert!(text.contains(says), "{line}: {text}");
                }
            }
        }
    }

    #[test]
    fn render_without_cluster_flags_parses() {
        let i = parse(argv(
            "render --statefulset a --server b --serverconfig c -o json",
        ))
        .expect("render");
        assert!(matches!(i.job, PluginJob::Render(_)), "{:?}", i.job);
    }

    fn kubeconfig_file(dir: &Path) -> PathBuf {
        let p = dir.join("config");
        std::fs::write(
            &p,
            "apiVersion: v1\nkind: Config\ncurrent-context: plain\n\
             clusters:\n- name: c1\n  cluster: {server: 'https://127.0.0.1:1'}\n\
             users:\n- name: u1\n  user: {token: t}\n\
             contexts:\n- name: plain\n  context: {cluster: c1, user: u1}\n\
             - name: team\n  context: {cluster: c1, user: u1, namespace: team-a}\n",
        )
        .expect("write kubeconfig");
        p
    }

    #[test]
    fn the_kubeconfig_is_checked_against_the_flags() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = kubeconfig_file(dir.path());
        let target =
            |context: Option<&str>, cluster: Option<&str>, user: Option<&str>| KubeTarget {
                kubeconfig: Some(path.clone()),
                context: context.map(String::from),
                cluster: cluster.map(String::from),
                user: user.map(String::from),
                request_timeout: None,
            };
        for (t, want_ns) in [
            (target(None, None, None), None),
            (target(Some("team"), None, None), Some("team-a")),
            (target(Some("plain"), Some("c1"), Some("u1")), None),
        ] {
            let source = t.resolve().expect("resolve");
            assert_eq!(source.context_namespace(), want_ns, "{t:?}");
        }
        for (t, says) in [
            (
                target(Some("nope"), None, None),
                "context \"nope\" is not in the kubeconfig (it has: plain, team)",
            ),
            (target(None, Some("c9"), None), "cluster \"c9\""),
            (target(None, None, Some("u9")), "user \"u9\""),
            (
                KubeTarget {
                    kubeconfig: Some(dir.path().join("missing")),
                    ..KubeTarget::default()
                },
                "cannot read --kubeconfig",
            ),
        ] {
            match t.resolve() {
                Ok(_) => panic!("{t:?} resolved"),
                Err(e) => assert!(e.to_string().contains(says), "{t:?}: {e}"),
            }
        }
    }

    #[test]
    fn doctor_takes_the_context_namespace_only_when_nothing_named_one() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = kubeconfig_file(dir.path());
        let kc = path.display().to_string();
        for (line, want) in [
            (
                format!("doctor --kubeconfig {kc} --context team"),
                vec!["team-a"],
            ),
            (
                format!("doctor --kubeconfig {kc} --context plain"),
                vec![""],
            ),
            (
                format!("doctor --kubeconfig {kc} --context team -n b"),
                vec!["b"],
            ),
            (
                format!("doctor --kubeconfig {kc} --context team -A"),
                vec![],
            ),
        ] {
            let (mut args, scope, target) = doctor(&line);
            let source = target.resolve().expect("resolve");
            apply_doctor_scope(&mut args, scope, &source);
            assert_eq!(args.cluster.watch_namespaces, want, "{line}");
        }
    }
}
