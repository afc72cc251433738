//! Project tasks, `cargo xtask <task>` (the alias is in .cargo/config.toml):
//! the command line and its dispatch. Each task lives in its own module:
//! `ci` (`test`, what CI runs), `e2e` (`e2e`, `demo`), `bench` (`bench`,
//! `bench-e2e`), `soak`, `deny`; `peers` builds the e2e peers, `process` runs
//! programs.

mod bench;
mod ci;
mod deny;
mod e2e;
mod peers;
mod process;
mod soak;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// serverconfig-webhook's developer tasks. A fresh machine needs Rust (via
/// rustup) and Go; `test` also needs musl-gcc (README.md, "Two commands").
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

/// The tasks. A flag given twice takes its last value, as it always has.
#[derive(Debug, Subcommand)]
enum Task {
    /// Everything CI checks (.ci/run calls it), in order of cost
    ///
    /// fmt check, clippy -D warnings, cargo deny, unit/HTTP/CLI tests, the
    /// deploy checks, the monitoring checks, the Dockerfile's static binary, then the e2e suite (with
    /// the e2e flags given here) and a seconds-long smoke run of the HTTPS load
    /// benchmark (answers checked, no timing). The static binary needs
    /// musl-gcc (Debian/Ubuntu: apt-get install musl-tools).
    #[command(args_override_self = true)]
    Test(ci::TestArgs),
    /// The end-to-end suite on a local control plane
    ///
    /// Builds the peers (etcd, kube-apiserver, kube-controller-manager,
    /// cert-manager, helm, kustomize) from their pinned Go modules, cached by
    /// version, the webhook and the Go harness, then runs the scenarios; see
    /// tests/e2e/README.md.
    #[command(
        args_override_self = true,
        after_help = "Environment:\n  SERVERCONFIG_E2E_CACHE  peer cache folder [default: <repo>/.cache/peers]"
    )]
    E2e(e2e::E2eArgs),
    /// Local control plane + stock-controller stand-in + webhook, seeded with
    /// Pattern 1, until Ctrl-C
    ///
    /// Builds what `e2e` builds and takes its flags.
    #[command(
        args_override_self = true,
        after_help = "Environment:\n  SERVERCONFIG_E2E_CACHE  peer cache folder [default: <repo>/.cache/peers]"
    )]
    Demo(e2e::E2eArgs),
    /// Issue 6 benchmarks: core, growth, load (HTTPS), e2e; results in
    /// target/bench-results
    ///
    /// Runs, in order: core (cargo bench --bench core), growth (cargo bench
    /// --bench growth), load (HTTPS load on serve vs a baseline server,
    /// benches/load), e2e (creates through the real API server with and
    /// without the webhook, as bench-e2e); see BENCHMARKS.md.
    #[command(args_override_self = true)]
    Bench(bench::BenchArgs),
    /// Issue 6 benchmarks 3/4/6 on the real control plane, JSON lines on
    /// stdout
    ///
    /// Concurrent StatefulSet creates through the real API server with and
    /// without the webhook (and a MutatingAdmissionPolicy on --k8s 1.36).
    /// Takes the e2e flags and the bench flags, which go to the harness's
    /// `bench`; builds the webhook in release mode unless --debug or
    /// --webhook is given.
    #[command(name = "bench-e2e", args_override_self = true)]
    BenchE2e(bench::BenchE2eArgs),
    /// Issue 20's soak: reviews at a fixed rate for an hour while
    /// ServerConfigs change and the certificate rotates (not part of `test`)
    ///
    /// The load fixture's 1,000 namespaces on the e2e control plane, `serve`
    /// with the shipped flags (release build unless --debug or --webhook);
    /// every answer's images checked against the ServerConfig history (5 s
    /// staleness bound), RSS, descriptors and threads sampled every 10 s.
    /// Exits 1 when a review failed or was stale, or memory, descriptors or
    /// threads grew; samples and summary in --out. See docs/reliability.md.
    #[command(
        args_override_self = true,
        after_help = "Environment:\n  SERVERCONFIG_E2E_CACHE  peer cache folder [default: <repo>/.cache/peers]"
    )]
    Soak(soak::SoakArgs),
    /// The chart's alert rules and dashboard against promtool and a scrape
    ///
    /// Builds promtool from its pinned module (tests/e2e/peers/prometheus-v*,
    /// cached by version) and the debug webhook, then runs
    /// tests/deploy/monitoring.sh: promtool check rules, promtool test rules,
    /// promtool check metrics on a scrape of `serve`, and every metric the
    /// rules and the dashboard name checked against that scrape.
    Monitoring,
    /// cargo deny alone, as `test` runs it
    ///
    /// Licences, bans and sources; advisories when the RustSec database can
    /// be fetched (or a local copy exists), else a loud NOT CHECKED banner
    /// (a failure with DENY_REQUIRE_ADVISORIES=1). Installs cargo-deny 0.20.2
    /// when missing.
    Deny,
}

impl Task {
    /// The task's name on the command line, for error messages.
    fn name(&self) -> &'static str {
        match self {
            Task::Test(_) => "test",
            Task::E2e(_) => "e2e",
            Task::Demo(_) => "demo",
            Task::Bench(_) => "bench",
            Task::BenchE2e(_) => "bench-e2e",
            Task::Soak(_) => "soak",
            Task::Monitoring => "monitoring",
            Task::Deny => "deny",
        }
    }
}

fn main() -> ExitCode {
    let task = Cli::parse().task;
    let result = match &task {
        Task::Test(o) => ci::test(o),
        Task::E2e(o) => e2e::run(o),
        Task::Demo(o) => e2e::demo(o),
        Task::Bench(o) => bench::run(o),
        Task::BenchE2e(o) => bench::bench_e2e(o),
        Task::Soak(o) => soak::run(o),
        Task::Monitoring => ci::monitoring(),
        Task::Deny => deny::check(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {}: {e:#}", task.name());
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests;
