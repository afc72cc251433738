//! The `serverconfig-webhook` binary.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use serverconfig_webhook::admission::Admission;
use serverconfig_webhook::cache::Caches;
use serverconfig_webhook::cli::{
    Cli, ClusterArgs, Command, DoctorArgs, DoctorOutput, LogFormat, MigrateArgs, OutputFormat,
    ProcessArgs, RenderArgs, ServeArgs, SyncArgs, SyncCommandArgs,
};
use serverconfig_webhook::core::mutate::Settings;
use serverconfig_webhook::metrics::Metrics;
use serverconfig_webhook::server::{self, tls, Limits, Readiness};
use serverconfig_webhook::shutdown::{cancel_on_signals, Shutdown};
use serverconfig_webhook::sync::{self, lease::LeaseConfig, SyncConfig};
use serverconfig_webhook::telemetry::{self, Telemetry, TelemetryConfig};
use tokio_util::sync::CancellationToken;

/// mimalloc instead of the C library's allocator: the admission path makes
/// many small JSON allocations, and the caches' long-lived strings
/// interleaved with transient list decoding left glibc's heap fragmented
/// and resident (what it bought: ARCHITECTURE.md, "The cache stack").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use serverconfig_webhook::plugin::{self, ClientSource, PluginJob};
use serverconfig_webhook::{certs, doctor, migrate, render};

/// How the normal binary names itself in messages.
const PROG: &str = "serverconfig-webhook";

/// Once the caches hold their first full lists, returns to the OS the
/// memory that decoding them used: mimalloc purges freed memory only when
/// some thread allocates again, and an idle process does not.
fn release_memory_after_sync(caches: Arc<Caches>, shutdown: &Shutdown) {
    shutdown.spawn_until_cancelled(async move {
        caches.synced().await;
        // SAFETY: `mi_collect` has no preconditions; `true` also purges
        // the freed memory of every arena at once.
        #[allow(unsafe_code)] // the one exception to the crate's `unsafe_code = "deny"`
        unsafe {
            libmimalloc_sys::mi_collect(true)
        };
        tracing::debug!("freed memory returned to the OS after the initial list");
    });
}

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if plugin::invoked_as_plugin(&argv0) {
        return run_plugin();
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Serve(args) => run_serve(args),
        Command::Sync(args) => run_sync(args),
        Command::Doctor(args) => run_doctor(
            args,
            plugin::DoctorScope::AsGiven,
            "serverconfig-webhook doctor",
            None,
        ),
        Command::Render(args) => run_render(&args, PROG),
        Command::Migrate(args) => run_migrate(&args, PROG, None),
        Command::Certs(args) => match certs::generate(&args.dns, args.days)
            .and_then(|g| certs::write_dir(&g, &args.out))
        {
            Ok(()) => {
                println!(
                    "wrote ca.crt, ca.key, tls.crt, tls.key and ca-bundle.b64 to {}",
                    args.out.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("serverconfig-webhook certs: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}

/// `kubectl serverconfig ...`: the plugin's command line, its kubectl
/// flags mapped onto doctor, render or migrate (src/plugin.rs).
fn run_plugin() -> ExitCode {
    let prog = plugin::PLUGIN_COMMAND;
    let invocation = match plugin::parse(std::env::args_os()) {
        Ok(i) => i,
        Err(plugin::PluginError::Clap(e)) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
        Err(e) => {
            eprintln!("{prog}: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    match invocation.job {
        PluginJob::Render(args) => run_render(&args, prog),
        PluginJob::Doctor(args, scope) => run_doctor(
            args,
            scope,
            &format!("{prog} doctor"),
            Some(&invocation.target),
        ),
        PluginJob::Migrate(args) => run_migrate(&args, prog, Some(&invocation.target)),
    }
}

/// The client source of a plugin `target` (its kubeconfig read and
/// checked; exit 2 with a sentence when it cannot give what the flags ask),
/// or the normal binary's.
fn client_source(
    target: Option<&plugin::KubeTarget>,
    prog: &str,
) -> Result<ClientSource, ExitCode> {
    match target {
        None => Ok(ClientSource::Default),
        Some(t) => t.resolve().map_err(|e| {
            eprintln!("{prog}: {e}");
            ExitCode::from(2)
        }),
    }
}

fn run_render(args: &RenderArgs, prog: &str) -> ExitCode {
    let result = (|| {
        let workload = render::read_document(&args.statefulset)?;
        let server = render::read_document(&args.server)?;
        let config = render::read_document(&args.serverconfig)?;
        render::render(&workload, &server, &config, &args.controller_namespace)
    })();
    let rendered = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{prog} render: {e}");
            return ExitCode::from(2);
        }
    };
    for w in &rendered.warnings {
        let _ = writeln!(std::io::stderr(), "warning: {w}");
    }
    let value = if args.patch {
        &rendered.patch
    } else {
        &rendered.object
    };
    let text = match args.output {
        OutputFormat::Json => serde_json::to_string_pretty(value).map_err(|e| e.to_string()),
        OutputFormat::Yaml => serde_yaml_ng::to_string(value).map_err(|e| e.to_string()),
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{prog} render: cannot encode output: {e}");
            return ExitCode::from(1);
        }
    };
    match writeln!(std::io::stdout().lock(), "{}", text.trim_end()) {
        Ok(()) => ExitCode::SUCCESS,
        // a closed pipe (`render ... | head`): stop quietly, as Unix tools do
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "{prog} render: cannot write the output: {e}"
            );
            ExitCode::from(1)
        }
    }
}

/// A multi-thread Tokio runtime, or exit code 1 with a sentence.
fn runtime(command: &str) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("serverconfig-webhook {command}: cannot start the runtime: {e}");
            ExitCode::from(1)
        })
}

/// The runtime, and logging plus (with `--otel`) tracing set up inside it
/// (the OTLP exporter's channel runs on it); or exit code 1 with a sentence.
fn runtime_with_telemetry(
    command: &str,
    process: &ProcessArgs,
) -> Result<(tokio::runtime::Runtime, Telemetry), ExitCode> {
    let runtime = runtime(command)?;
    let telemetry = {
        let _inside = runtime.enter();
        telemetry::init(TelemetryConfig {
            json_logs: process.log_format == LogFormat::Json,
            otel: process.otel,
        })
    };
    match telemetry {
        Ok(t) => Ok((runtime, t)),
        Err(e) => {
            eprintln!("serverconfig-webhook {command}: {e}");
            Err(ExitCode::from(1))
        }
    }
}

fn run_serve(args: ServeArgs) -> ExitCode {
    let (runtime, telemetry) = match runtime_with_telemetry("serve", &args.process) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = runtime.block_on(async move {
        let served = serve(args).await;
        telemetry.shutdown().await;
        served
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "serve failed");
            ExitCode::from(1)
        }
    }
}

fn parse_metrics_addr(addr: &str) -> anyhow::Result<Option<std::net::SocketAddr>> {
    if addr.is_empty() {
        return Ok(None);
    }
    addr.parse()
        .map(Some)
        .map_err(|e| anyhow::anyhow!("--metrics-addr {addr:?}: {e}"))
}

async fn kube_client() -> anyhow::Result<kube::Client> {
    Ok(ClientSource::Default.client().await?)
}

fn sync_config(cluster: &ClusterArgs, args: &SyncArgs) -> SyncConfig {
    let identity = args.identity.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| format!("serverconfig-webhook-{}", std::process::id()))
    });
    SyncConfig {
        settings: settings(cluster),
        namespaces: cluster.namespaces(),
        max_placeholders_per_namespace: args.max_placeholders_per_namespace,
        heal_interval: args.heal_interval,
        lease: LeaseConfig::new(
            args.lease_namespace.clone(),
            args.lease_name.clone(),
            identity,
            args.lease_duration,
        ),
    }
}

fn settings(cluster: &ClusterArgs) -> Settings {
    Settings {
        controller_namespace: cluster.controller_namespace.clone(),
        on_missing: cluster.on_missing,
    }
}

/// How long the background tasks (caches, sync loop and its lease, TLS
/// reload) get to stop once the server has drained.
const BACKGROUND_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// The caches and, with `sync`, the sync loop: the background both `serve`
/// and `sync` run, on `shutdown`'s tasks.
fn start_background(
    client: kube::Client,
    cluster: &ClusterArgs,
    sync: Option<&SyncArgs>,
    metrics: &Arc<Metrics>,
    shutdown: &Shutdown,
) -> Arc<Caches> {
    let caches = Caches::start(
        client.clone(),
        &cluster.namespaces(),
        &cluster.controller_namespace,
        cluster.watch_timing(),
        metrics.clone(),
        shutdown,
    );
    release_memory_after_sync(caches.clone(), shutdown);
    if let Some(args) = sync {
        shutdown.spawn(sync::run(
            client,
            caches.clone(),
            sync_config(cluster, args),
            metrics.clone(),
            shutdown.token(),
        ));
    }
    caches
}

/// Stops the background after the server drained, saying so when some
/// task outlived [`BACKGROUND_DRAIN`]; then the signal watcher, whose
/// second signal would now have nothing left to cut short.
async fn stop_background(shutdown: &Shutdown, signals: tokio::task::JoinHandle<()>) {
    if !shutdown.drain(BACKGROUND_DRAIN).await {
        tracing::warn!(
            timeout_s = BACKGROUND_DRAIN.as_secs(),
            "background tasks still running after the drain timeout; exiting anyway"
        );
    }
    signals.abort();
    let _ = signals.await;
}

/// The serving certificate, loaded once and then reloaded on `shutdown`'s
/// tasks; the rustls configuration that reads it.
fn start_tls(
    args: &ServeArgs,
    metrics: &Arc<Metrics>,
    shutdown: &Shutdown,
) -> anyhow::Result<(Arc<tls::CertStore>, rustls::ServerConfig)> {
    let cert_files = tls::CertFiles {
        cert: args.tls_cert_file.clone(),
        key: args.tls_key_file.clone(),
        client_ca: args.client_ca.clone(),
        reload_interval: args.cert_reload_interval,
    };
    let cert_store = Arc::new(tls::CertStore::default());
    let fingerprint = tls::initial_load(&cert_store, &cert_files)?;
    let tls_config = tls::server_config(cert_store.clone(), cert_files.client_ca.as_deref())?;
    shutdown.spawn_until_cancelled(tls::reload_loop(
        cert_store.clone(),
        cert_files,
        fingerprint,
        metrics.clone(),
    ));
    Ok((cert_store, tls_config))
}

fn server_limits(args: &ServeArgs) -> Limits {
    Limits {
        shutdown_delay: args.shutdown_delay,
        drain_timeout: args.drain_timeout,
        max_connections: args.max_connections,
        max_inflight_bytes: args.max_inflight_bytes,
        ..Limits::default()
    }
}

/// `serve`: TLS, caches, optionally the sync loop, then the server until
/// a signal; the server drains first, the background after it.
async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let background = Shutdown::new();
    let requested = CancellationToken::new();
    let signals = cancel_on_signals(requested.clone());
    let (cert_store, tls_config) = start_tls(&args, &metrics, &background)?;
    let client = kube_client().await?;
    let sync = args.sync.then_some(&args.sync_args);
    let caches = start_background(client, &args.cluster, sync, &metrics, &background);
    let admission = Arc::new(Admission {
        desired: Default::default(),
        settings: settings(&args.cluster),
        caches: caches.clone(),
        metrics,
    });
    let readiness = Readiness::new(caches, cert_store);
    let srv = server::Server::bind(
        args.listen_addr,
        parse_metrics_addr(&args.process.metrics_addr)?,
        tls_config,
        admission,
        readiness,
        server_limits(&args),
    )
    .await?;
    tracing::info!(addr = %srv.local_addr()?, metrics = ?srv.metrics_addr(), namespaces = ?args.cluster.namespaces(),
        controller_namespace = %args.cluster.controller_namespace, on_missing = ?args.cluster.on_missing,
        sync = args.sync, "serving");
    let result = srv.run(requested).await;
    stop_background(&background, signals).await;
    result
}

fn run_sync(args: SyncCommandArgs) -> ExitCode {
    let (runtime, telemetry) = match runtime_with_telemetry("sync", &args.process) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = runtime.block_on(async move {
        let metrics = Arc::new(Metrics::new());
        let background = Shutdown::new();
        let requested = CancellationToken::new();
        let signals = cancel_on_signals(requested.clone());
        let metrics_addr = parse_metrics_addr(&args.process.metrics_addr)?;
        let client = kube_client().await?;
        let caches = start_background(
            client,
            &args.cluster,
            Some(&args.sync_args),
            &metrics,
            &background,
        );
        tracing::info!(namespaces = ?args.cluster.namespaces(), controller_namespace = %args.cluster.controller_namespace, "sync loop running");
        let served = server::serve_metrics_until(metrics_addr, metrics, caches, requested).await;
        stop_background(&background, signals).await;
        telemetry.shutdown().await;
        served
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "sync failed");
            ExitCode::from(1)
        }
    }
}

/// `doctor`; `prog` names it in messages (`serverconfig-webhook doctor`,
/// `kubectl serverconfig doctor`), `target` is the plugin's cluster choice.
fn run_doctor(
    mut args: DoctorArgs,
    scope: plugin::DoctorScope,
    prog: &str,
    target: Option<&plugin::KubeTarget>,
) -> ExitCode {
    let source = match client_source(target, prog) {
        Ok(s) => s,
        Err(code) => return code,
    };
    plugin::apply_doctor_scope(&mut args, scope, &source);
    let runtime = match runtime("doctor") {
        Ok(r) => r,
        Err(code) => return code,
    };
    let cfg = doctor::DoctorConfig {
        settings: settings(&args.cluster),
        namespaces: args.cluster.namespaces(),
        webhook_configuration: args.webhook_configuration.clone(),
        webhook_namespace: args.webhook_namespace.clone(),
        service_account: args.service_account.clone(),
        controller_deployment: args.controller_deployment.clone(),
    };
    let report = runtime.block_on(async {
        let client = source.client().await?;
        doctor::run(client, &cfg).await
    });
    match report {
        Ok(r) => {
            match args.output {
                DoctorOutput::Table => print!("{}", r.table()),
                DoctorOutput::Json => match serde_json::to_string_pretty(&r) {
                    Ok(t) => println!("{t}"),
                    Err(e) => eprintln!("{prog}: {e}"),
                },
            }
            if r.healthy() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("{prog}: cannot read the cluster: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// What `migrate` was asked to do, checked before anything talks to the
/// cluster.
enum MigrateJob {
    Move(migrate::MoveConfig),
    Rollback(migrate::RollbackConfig, migrate::rollback::RollbackFile),
}

/// An undo: the rollback file read and parsed.
fn rollback_job(
    args: &MigrateArgs,
    path: &std::path::Path,
) -> Result<MigrateJob, migrate::MigrateError> {
    let file = migrate::journal::read(path)?;
    let cfg = migrate::RollbackConfig {
        file: path.to_path_buf(),
        dry_run: args.dry_run,
        force: args.force,
        timeout: args.timeout,
    };
    Ok(MigrateJob::Rollback(cfg, file))
}

/// A move: its flags validated and its rollback file free.
fn move_job(args: &MigrateArgs) -> Result<MigrateJob, migrate::MigrateError> {
    let from = args.from.clone().unwrap_or_default();
    let to = args.to.clone().unwrap_or_default();
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let cfg = migrate::MoveConfig {
        rollback_file: args
            .rollback_file
            .clone()
            .unwrap_or_else(|| migrate::default_rollback_file(&from, &to, unix)),
        from,
        to,
        kinds: args.kinds.clone(),
        selector: args.selector.clone(),
        dry_run: args.dry_run,
        delete_source: args.delete_source,
        force: args.force,
        timeout: args.timeout,
        controller_namespace: args.controller_namespace.clone(),
        controller_deployment: args.controller_deployment.clone(),
    };
    migrate::validate(&cfg)?;
    migrate::check_rollback_file(&cfg)?;
    Ok(MigrateJob::Move(cfg))
}

fn run_migrate(args: &MigrateArgs, prog: &str, target: Option<&plugin::KubeTarget>) -> ExitCode {
    let fail = |e: migrate::MigrateError| {
        eprintln!("{prog} migrate: {e}");
        ExitCode::from(e.exit_code())
    };
    let job = match &args.rollback {
        Some(path) => rollback_job(args, path),
        None => move_job(args),
    };
    let job = match job {
        Ok(job) => job,
        Err(e) => return fail(e),
    };
    let source = match client_source(target, &format!("{prog} migrate")) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let runtime = match runtime("migrate") {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let client = source
            .client()
            .await
            .map_err(|e| migrate::MigrateError::Client(e.into()))?;
        match &job {
            MigrateJob::Move(cfg) => migrate::cluster::run_move(client, cfg).await,
            MigrateJob::Rollback(cfg, file) => {
                migrate::cluster::run_rollback(client, cfg, file).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}
