//! Benchmark 5 of issue 6: how in-process admission time and process RSS
//! grow with the number of cached namespaces (3 ServerConfigs + 3 Servers
//! each) and with the size of the object.
//!
//! `cargo bench --bench growth` re-runs this binary once per point
//! (`--growth-child namespaces <n>` / `--growth-child size <copies>`) so
//! that each RSS figure comes from a fresh process, prints one JSON line
//! per point and writes them all, with the fitted shape, to
//! `target/bench-results/growth.json`. `GROWTH_NAMESPACES=10,100` and
//! `GROWTH_SIZES=1,4` override the points.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

#[path = "support/mod.rs"]
mod support;

use std::process::Command;

use kube::core::DynamicObject;
use serde_json::{json, Value};
use serverconfig_webhook::admission::Admission;
use support::*;

/// The allocator `serve` uses, so the RSS figures are comparable.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NAMESPACES: &[usize] = &[10, 100, 1_000, 10_000];
/// Copies of the mlserver containers (3 each) in the size points.
const SIZES: &[usize] = &[1, 4, 16, 64];
/// ServerConfigs (and Servers) per namespace.
const CONFIGS: [(&str, &str); 3] = [
    ("mlserver", "mlserver"),
    ("triton", "triton"),
    ("mlserver-b", "mlserver"),
];

/// `VmRSS` and `VmHWM` of this process, in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn team_config(ns: &str, name: &str, base: &str) -> Value {
    let mut sc = with_images(config(base, ns), "team");
    sc["metadata"]["name"] = json!(name);
    sc
}

fn controller_config(name: &str, base: &str) -> Value {
    let mut sc = with_images(config(base, CONTROLLER_NS), "platform");
    sc["metadata"]["name"] = json!(name);
    sc
}

/// Median floor and mutate time of `body`, batching calls so that each of
/// the 21 samples lasts about 20 ms.
fn timings(admission: &Admission, body: &[u8]) -> (f64, f64) {
    let batch = |f: &dyn Fn()| {
        let t = std::time::Instant::now();
        f();
        let once = t.elapsed().as_nanos().max(1) as usize;
        (20_000_000 / once).clamp(1, 10_000)
    };
    let fb = batch(&|| {
        floor(body);
    });
    let mb = batch(&|| {
        mutate(admission, body);
    });
    let floor_ns = median_ns(21, fb, || {
        std::hint::black_box(floor(std::hint::black_box(body)));
    });
    let mutate_ns = median_ns(21, mb, || {
        std::hint::black_box(mutate(admission, std::hint::black_box(body)));
    });
    (floor_ns, mutate_ns)
}

/// One point of the namespace series, in this (fresh) process.
fn child_namespaces(n: usize) -> Value {
    let (rss_start, _) = memory_kib();
    // Templates read once; each namespace gets copies with its own name.
    let templates: Vec<(Value, Value)> = CONFIGS
        .iter()
        .map(|(name, base)| (team_config("x", name, base), server(name, name, "x")))
        .collect();
    // Streamed into the caches one at a time (as a watch delivers them), so
    // the figure is what the caches keep, not this fixture's copies.
    let controller = CONFIGS
        .iter()
        .map(|(name, base)| dynamic(controller_config(name, base)));
    let teams = (0..n).flat_map(|i| {
        let ns = format!("ns-{i}");
        templates
            .iter()
            .flat_map(|(sc, srv)| [sc, srv])
            .map(move |o| {
                let mut o = o.clone();
                o["metadata"]["namespace"] = json!(ns);
                let uid = format!("uid-{ns}-{}-{}", o["kind"], o["metadata"]["name"]);
                o["metadata"]["uid"] = json!(uid);
                dynamic(o)
            })
            .collect::<Vec<DynamicObject>>()
    });
    let admission = admission_from(controller.chain(teams));
    let (rss_filled, _) = memory_kib();
    // One CREATE per Server of every namespace, as after a cluster-wide
    // rollout: fills the parse and desired caches (steady state).
    let workloads: Vec<Value> = CONFIGS
        .iter()
        .map(|(name, base)| statefulset(&server(name, name, "x"), &controller_config(name, base)))
        .collect();
    let body_for = |i: usize, k: usize| {
        let mut sts = workloads[k].clone();
        sts["metadata"]["namespace"] = json!(format!("ns-{i}"));
        review(&sts, None)
    };
    for i in 0..n {
        for k in 0..CONFIGS.len() {
            mutate(&admission, &body_for(i, k));
        }
    }
    let (rss_warm, _) = memory_kib();
    let body = body_for(n / 2, 0);
    let (floor_ns, mutate_ns) = timings(&admission, &body);
    let (rss_end, hwm) = memory_kib();
    json!({"bench":"growth","series":"namespaces","namespaces":n,"objects":n * 6 + 3,
        "floor_median_ns":floor_ns.round(),"mutate_median_ns":mutate_ns.round(),
        "ratio":((mutate_ns / floor_ns) * 100.0).round() / 100.0,
        "rss_start_kib":rss_start,"rss_filled_kib":rss_filled,"rss_warm_kib":rss_warm,
        "rss_end_kib":rss_end,"hwm_kib":hwm})
}

/// One point of the object-size series, in this (fresh) process.
fn child_size(copies: usize) -> Value {
    let (rss_start, _) = memory_kib();
    let ns = "team-a";
    let (env, vols) = (10, 4 * copies);
    let mut ctl = enlarge(controller_config("mlserver", "mlserver"), copies, env, vols);
    ctl["metadata"]["name"] = json!("mlserver");
    let team = enlarge(team_config(ns, "mlserver", "mlserver"), copies, env, vols);
    let srv = server("mlserver", "mlserver", ns);
    let body = review(&statefulset(&srv, &ctl), None);
    let admission = admission(vec![ctl, team, srv]);
    let patched = !response(&mutate(&admission, &body))["patch"].is_null();
    assert!(patched, "size {copies}: expected a patch");
    let (floor_ns, mutate_ns) = timings(&admission, &body);
    let (rss_end, hwm) = memory_kib();
    json!({"bench":"growth","series":"size","containers":copies * 3,"env_per_container":env,
        "extra_volumes":vols,"review_bytes":body.len(),
        "floor_median_ns":floor_ns.round(),"mutate_median_ns":mutate_ns.round(),
        "ratio":((mutate_ns / floor_ns) * 100.0).round() / 100.0,
        "mutate_ns_per_review_byte":((mutate_ns / body.len() as f64) * 100.0).round() / 100.0,
        "rss_start_kib":rss_start,"rss_end_kib":rss_end,"hwm_kib":hwm})
}

fn points(var: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(var) {
        Ok(s) => s
            .split(',')
            .map(|p| {
                p.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{var}: {p:?} is not a number"))
            })
            .collect(),
        Err(_) => default.to_vec(),
    }
}

fn run_child(series: &str, n: usize) -> Value {
    let exe = std::env::current_exe().expect("own executable");
    let out = Command::new(exe)
        .args(["--growth-child", series, &n.to_string()])
        .output()
        .expect("run child");
    assert!(
        out.status.success(),
        "child {series} {n} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("");
    let v: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("child output {line:?}: {e}"));
    println!("{v}");
    v
}

/// Least-squares slope of y over x.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let num: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

fn shape(ns: &[Value], sizes: &[Value]) -> Value {
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let mut out = json!({});
    if let (Some(first), Some(last)) = (ns.first(), ns.last()) {
        let time_growth = f(last, "mutate_median_ns") / f(first, "mutate_median_ns");
        let rss: Vec<(f64, f64)> = ns
            .iter()
            .map(|v| (f(v, "namespaces"), f(v, "rss_warm_kib")))
            .collect();
        out["namespaces"] = json!({
            "mutate_time_last_over_first": (time_growth * 100.0).round() / 100.0,
            "time_shape": if time_growth < 1.5 { "constant" } else { "grows" },
            "rss_kib_per_namespace": (slope(&rss) * 100.0).round() / 100.0,
            "rss_shape": "linear in namespaces (fitted slope above)",
        });
    }
    if !sizes.is_empty() {
        let t: Vec<(f64, f64)> = sizes
            .iter()
            .map(|v| (f(v, "review_bytes"), f(v, "mutate_median_ns")))
            .collect();
        let fl: Vec<(f64, f64)> = sizes
            .iter()
            .map(|v| (f(v, "review_bytes"), f(v, "floor_median_ns")))
            .collect();
        out["size"] = json!({
            "mutate_ns_per_review_byte_fitted": (slope(&t) * 100.0).round() / 100.0,
            "floor_ns_per_review_byte_fitted": (slope(&fl) * 100.0).round() / 100.0,
        });
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--growth-child") {
        let series = args.get(i + 1).map(String::as_str).unwrap_or("");
        let n: usize = args.get(i + 2).and_then(|n| n.parse().ok()).unwrap_or(0);
        let v = match series {
            "namespaces" => child_namespaces(n),
            "size" => child_size(n),
            other => panic!("--growth-child: unknown series {other:?}"),
        };
        println!("{v}");
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench -- --list`: nothing criterion-style to list
    }
    let ns: Vec<Value> = points("GROWTH_NAMESPACES", NAMESPACES)
        .into_iter()
        .map(|n| run_child("namespaces", n))
        .collect();
    let sizes: Vec<Value> = points("GROWTH_SIZES", SIZES)
        .into_iter()
        .map(|n| run_child("size", n))
        .collect();
    let shape = shape(&ns, &sizes);
    println!("{}", json!({"bench":"growth","shape":shape}));
    let path = results_path("growth.json");
    let all = json!({"bench":"growth","namespaces":ns,"sizes":sizes,"shape":shape});
    std::fs::write(&path, serde_json::to_vec_pretty(&all).expect("json"))
        .expect("write growth.json");
    println!("wrote {}", path.display());
}
