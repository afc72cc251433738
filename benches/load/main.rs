//! Benchmark 2 of issue 6: `serverconfig-webhook serve` under HTTPS load,
//! against its floor and a baseline server in the same run with the same
//! client and TLS.
//!
//! `cargo xtask bench --only load` starts the fixture (`e2e bench-fixture`:
//! a real API server with N namespaces x 3 ServerConfigs and 3 Servers, and
//! `serve` with its caches filled from it) and runs
//!
//! ```text
//! cargo bench --bench load -- --fixture FILE --floor target/release/examples/load-floor \
//!     --baseline target/release/examples/load-baseline --out FILE
//! ```
//!
//! which checks every review body's answer (the patch really applies the
//! namespace's images), starts the floor (benches/load/floor.rs: `serve`'s
//! own listener decoding each review and allowing it, no lookup, no patch)
//! and checks its answer to every body (allowed, same uid, no patch), starts
//! the baseline (benches/load/baseline.rs: parses nothing) with serve's
//! certificate answering serve's own precomputed answer, then for each
//! round runs, for the three servers in an order rotating by one per round,
//! a closed-loop maximum-throughput run and an open-loop fixed-rate run,
//! and writes the medians, the same-round ratios to the floor and to the
//! baseline and the servers' peak RSS as JSON. It exits non-zero when any
//! request failed or any answer differed; never on a timing figure.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

#[path = "../../tests/support/mod.rs"]
mod support;

mod bodies;
mod client;

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use clap::Parser;
use serde_json::{json, Value};

use client::{Http, Outcome, Target};

/// Command line (after `cargo bench --bench load --`).
#[derive(Parser, Debug)]
#[command(about = "HTTPS load benchmark of serve against its floor and a baseline server")]
struct Args {
    /// Fixture description written by `e2e bench-fixture -out FILE`.
    #[arg(long)]
    fixture: PathBuf,
    /// The floor server binary (`cargo build --release --example load-floor`).
    #[arg(long)]
    floor: PathBuf,
    /// The baseline server binary (`cargo build --release --example load-baseline`).
    #[arg(long)]
    baseline: PathBuf,
    /// Write the results (JSON) here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Rounds; each runs every server in both modes (medians are reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds before each run's measurement.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Connections in the closed-loop (maximum throughput) runs.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Requests per second in the open-loop runs.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Connections the open-loop runs spread their requests over.
    #[arg(long, default_value_t = 16)]
    rate_connections: usize,
    /// Distinct review bodies, spread over the fixture's Servers.
    #[arg(long, default_value_t = 300)]
    bodies: usize,
    /// HTTP version (the API server itself speaks HTTP/2 to webhooks).
    #[arg(long, value_enum, default_value = "1")]
    http: Http,
    /// A few seconds in all: check the code paths and the answers only.
    #[arg(long)]
    smoke: bool,
    /// Ignored (cargo bench passes it).
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> std::process::ExitCode {
    let mut args = Args::parse();
    if args.smoke {
        args.rounds = 1;
        args.duration = 1.0;
        args.warmup = 0.25;
        args.rate = args.rate.min(200.0);
    }
    // One client thread (plus the open loop's pacer): the machine has few
    // cores and the servers need them.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("load: cannot start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match rt.block_on(run(&args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// A server child (the floor or the baseline); killed when dropped.
struct ServerChild {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bin` with serve's certificate and `extra` arguments, and waits
/// for its `listening on ADDR`.
fn start_server(
    bin: &std::path::Path,
    fx: &bodies::Fixture,
    extra: &[&std::ffi::OsStr],
) -> anyhow::Result<ServerChild> {
    let mut child = Command::new(bin)
        .args(["--cert", &fx.cert, "--key", &fx.key])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok());
    let Some(addr) = addr else {
        let _ = child.kill();
        bail!("{} did not start (said {line:?})", bin.display());
    };
    Ok(ServerChild { child, addr })
}

/// A process's memory from `/proc/PID/status`, in KiB.
struct Memory {
    /// `VmHWM`: peak resident set.
    peak: u64,
    /// `VmRSS`: resident set now.
    now: u64,
    /// `RssAnon`: of it, private memory (heap, stacks).
    anon: u64,
    /// `RssFile`: of it, mapped files (the binary's code, shared page cache).
    file: u64,
}

fn memory_kib(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("no {name} in /proc/{pid}/status"))
    };
    Ok(Memory {
        peak: field("VmHWM:")?,
        now: field("VmRSS:")?,
        anon: field("RssAnon:")?,
        file: field("RssFile:")?,
    })
}

fn summary(o: &Outcome) -> Value {
    let us = |q: f64| o.hist.value_at_quantile(q) as f64 / 1000.0;
    json!({
        "requests": o.ok, "errors": o.errors, "rps": o.rps(),
        "p50_ms": us(0.50), "p99_ms": us(0.99), "p999_ms": us(0.999),
        "max_ms": o.hist.max() as f64 / 1000.0,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let fx: bodies::Fixture = serde_json::from_slice(
        &std::fs::read(&args.fixture)
            .with_context(|| format!("reading {}", args.fixture.display()))?,
    )
    .with_context(|| format!("{} is not a bench fixture", args.fixture.display()))?;
    let serve_addr: std::net::SocketAddr = fx
        .url
        .strip_prefix("https://")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| anyhow!("fixture url {:?} is not https://IP:PORT", fx.url))?;
    let tls = client::tls_connector(&std::fs::read(&fx.ca)?, args.http)?;
    let bodies = bodies::bodies(&fx, args.bodies)?;
    let sizes: Vec<usize> = bodies.iter().map(|b| b.bytes.len()).collect();
    let raw: Vec<Bytes> = bodies.iter().map(|b| b.bytes.clone()).collect();

    // 1. serve answers every body correctly; its answers become the expected ones
    let answers = client::probe(serve_addr, &tls, args.http, &raw).await?;
    for (b, a) in bodies.iter().zip(&answers) {
        bodies::check_mutation(b, a)
            .with_context(|| format!("serve's answer for {} in {} is wrong", b.uid, b.namespace))?;
    }
    eprintln!(
        "load: serve answered all {} bodies ({}..{} bytes) with the namespace's images",
        bodies.len(),
        sizes.iter().min().unwrap_or(&0),
        sizes.iter().max().unwrap_or(&0)
    );

    // 2. the floor allows every body: its uid, no patch
    let floor = start_server(&args.floor, &fx, &[])?;
    let floor_answers = client::probe(floor.addr, &tls, args.http, &raw).await?;
    for (b, a) in bodies.iter().zip(&floor_answers) {
        bodies::check_allowed(b, a)
            .with_context(|| format!("the floor's answer for {} is wrong", b.uid))?;
    }

    // 3. the baseline answers serve's first answer to every body
    let response_file = tempfile::NamedTempFile::new()?;
    std::fs::write(response_file.path(), &answers[0])?;
    let baseline = start_server(
        &args.baseline,
        &fx,
        &["--response".as_ref(), response_file.path().as_os_str()],
    )?;
    let baseline_answers = client::probe(baseline.addr, &tls, args.http, &raw[..1]).await?;
    if baseline_answers[0] != answers[0] {
        bail!("the baseline server's answer differs from the precomputed one");
    }
    eprintln!(
        "load: the floor allowed all {} bodies (no patch); the baseline answers the precomputed answer",
        bodies.len()
    );
    let raw = Arc::new(raw);
    let targets = [
        Target {
            name: "serve".into(),
            addr: serve_addr,
            bodies: raw.clone(),
            expected: Arc::new(answers.clone()),
        },
        Target {
            name: "floor".into(),
            addr: floor.addr,
            bodies: raw.clone(),
            expected: Arc::new(floor_answers),
        },
        Target {
            name: "baseline".into(),
            addr: baseline.addr,
            bodies: raw.clone(),
            expected: Arc::new(vec![answers[0].clone(); raw.len()]),
        },
    ];
    let pids = [fx.pid, floor.child.id(), baseline.child.id()];

    // 4. rounds, the order rotating by one per round
    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    let mut runs = Vec::new();
    let mut errors = 0u64;
    let mut first_error = None;
    for round in 0..args.rounds {
        for k in 0..targets.len() {
            let target = &targets[(round + k) % targets.len()];
            let closed =
                client::closed_loop(target, &tls, args.http, args.connections, warmup, duration)
                    .await?;
            let open = client::open_loop(
                target,
                &tls,
                args.http,
                args.rate_connections,
                args.rate,
                warmup,
                duration,
            )
            .await?;
            for (mode, o) in [("closed", &closed), ("open", &open)] {
                errors += o.errors;
                if first_error.is_none() {
                    first_error.clone_from(&o.first_error);
                }
                let s = summary(o);
                eprintln!(
                    "load: round {round} {:<8} {mode:<6} {:>8.0} req/s  p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  errors {}",
                    target.name, s["rps"].as_f64().unwrap_or(0.0), s["p50_ms"].as_f64().unwrap_or(0.0),
                    s["p99_ms"].as_f64().unwrap_or(0.0), s["p999_ms"].as_f64().unwrap_or(0.0), o.errors
                );
                runs.push(
                    json!({"round": round, "server": target.name, "mode": mode, "result": s}),
                );
            }
        }
    }
    let mems = [
        memory_kib(pids[0])?,
        memory_kib(pids[1])?,
        memory_kib(pids[2])?,
    ];
    let serve_hwm = mems[0].peak;

    // 5. medians and same-round ratios
    let med = |server: &str, mode: &str, key: &str| {
        median(
            runs.iter()
                .filter(|r| r["server"] == server && r["mode"] == mode)
                .filter_map(|r| r["result"][key].as_f64())
                .collect(),
        )
    };
    let mut servers = serde_json::Map::new();
    for (target, mem) in targets.iter().zip(&mems) {
        let name = target.name.as_str();
        let mut m = serde_json::Map::new();
        for mode in ["closed", "open"] {
            m.insert(
                mode.into(),
                json!({
                    "rps": med(name, mode, "rps"), "p50_ms": med(name, mode, "p50_ms"),
                    "p99_ms": med(name, mode, "p99_ms"), "p999_ms": med(name, mode, "p999_ms"),
                }),
            );
        }
        let mib = |kib: u64| json!(kib as f64 / 1024.0);
        m.insert("peak_rss_mib".into(), mib(mem.peak));
        m.insert("rss_after_mib".into(), mib(mem.now));
        m.insert("rss_after_anon_mib".into(), mib(mem.anon));
        m.insert("rss_after_file_mib".into(), mib(mem.file));
        servers.insert(name.into(), Value::Object(m));
    }
    // `a`'s figure over `b`'s, per round (the same round: the machine's
    // load moves between rounds more than between neighbouring runs)
    let per_round = |a: &str, b: &str, mode: &str, key: &str| -> Vec<f64> {
        let at = |round: usize, server: &str| {
            runs.iter()
                .find(|r| r["round"] == round && r["server"] == server && r["mode"] == mode)
                .and_then(|r| r["result"][key].as_f64())
        };
        (0..args.rounds)
            .filter_map(|round| Some(at(round, a)? / at(round, b)?))
            .collect()
    };
    let ratio = |a: &str, b: &str, mode: &str, key: &str| median(per_round(a, b, mode, key));
    let pairs = [
        ("serve", "floor"),
        ("serve", "baseline"),
        ("floor", "baseline"),
    ];
    let mut ratios = serde_json::Map::new();
    let mut rounds_json = serde_json::Map::new();
    for (a, b) in pairs {
        for (mode, key) in [("closed", "rps"), ("open", "p99_ms")] {
            let name = format!("{mode}_{}_{a}_over_{b}", key.trim_end_matches("_ms"));
            ratios.insert(name.clone(), json!(ratio(a, b, mode, key)));
            rounds_json.insert(name, json!(per_round(a, b, mode, key)));
        }
    }
    ratios.insert("per_round".into(), Value::Object(rounds_json));
    let (rps_vs_floor, p99_vs_floor) = (
        ratio("serve", "floor", "closed", "rps"),
        ratio("serve", "floor", "open", "p99_ms"),
    );
    let rps_vs_baseline = ratio("serve", "baseline", "closed", "rps");
    let result = json!({
        "benchmark": "load",
        "smoke": args.smoke,
        "machine": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "note": "client (1 runtime thread + pacer) shares the cores with the server under test and the idle control plane"},
        "config": {"rounds": args.rounds, "duration_s": args.duration, "warmup_s": args.warmup,
            "connections": args.connections, "rate": args.rate, "rate_connections": args.rate_connections,
            "http": args.http, "bodies": bodies.len(), "body_bytes_min": sizes.iter().min(),
            "body_bytes_max": sizes.iter().max(),
            "answer_bytes_min": answers.iter().map(Bytes::len).min(),
            "answer_bytes_max": answers.iter().map(Bytes::len).max(),
            "namespaces": fx.namespaces,
            "servers": fx.servers.len(), "serve_args": fx.serve_args},
        "servers": servers,
        "ratios": ratios,
        "targets": {
            "note": "ratios are medians over rounds of the same round's serve / floor",
            "closed_rps_over_floor_min": 0.8, "open_p99_over_floor_max": 1.5, "peak_rss_mib_max": 32.0,
            "met": {
                "throughput_vs_floor": rps_vs_floor >= 0.8,
                "p99_vs_floor": p99_vs_floor <= 1.5,
                "rss": (serve_hwm as f64 / 1024.0) <= 32.0,
            },
            "second_line": {
                "note": "issue 6's targets, against the precomputed-response baseline",
                "closed_rps_over_baseline_min": 0.8, "open_p99_ms_max": 2.0,
                "met": {
                    "throughput_vs_baseline": rps_vs_baseline >= 0.8,
                    "p99": med("serve", "open", "p99_ms") <= 2.0,
                }
            }
        },
        "errors": errors,
        "first_error": first_error,
        "runs": runs,
    });
    let text = serde_json::to_string_pretty(&result)?;
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, &text)?;
        eprintln!("load: wrote {}", out.display());
    }
    println!("{}", serde_json::to_string(&result["servers"])?);
    eprintln!(
        "load: serve/floor closed-loop throughput {rps_vs_floor:.2}, open-loop p99 {p99_vs_floor:.2} (same-round medians); serve/baseline throughput {rps_vs_baseline:.2}; serve open-loop p99 {:.3} ms at {} req/s; peak RSS serve {:.1} MiB, floor {:.1} MiB, baseline {:.1} MiB; after the runs serve {:.1} MiB private + {:.1} MiB mapped files",
        med("serve", "open", "p99_ms"),
        args.rate,
        serve_hwm as f64 / 1024.0,
        mems[1].peak as f64 / 1024.0,
        mems[2].peak as f64 / 1024.0,
        mems[0].anon as f64 / 1024.0,
        mems[0].file as f64 / 1024.0
    );
    if errors > 0 {
        bail!(
            "{errors} requests failed or got a wrong answer; first: {}",
            first_error.unwrap_or_default()
        );
    }
    let total: u64 = runs
        .iter()
        .filter_map(|r| r["result"]["requests"].as_u64())
        .sum();
    if total == 0 {
        bail!("no request completed");
    }
    Ok(())
}
