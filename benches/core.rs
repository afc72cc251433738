//! Benchmark 1 of issue 6: one admission in process (decode the review,
//! decide, compute the patch, encode the answer) against the floor (decode
//! + encode of the same review, no logic), same run, same inputs.
//!
//! `cargo bench --bench core` runs criterion, then writes one JSON line per
//! case to `target/bench-results/core.jsonl` (median ns of floor and
//! mutate, their ratio, the target). `CORE_PROFILE=<case>/<floor|mutate>`
//! with `CORE_PROFILE_ITERS=<n>` runs that case n times without criterion,
//! for `valgrind --tool=callgrind` (see BENCHMARKS.md, "Profile").

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

#[path = "support/mod.rs"]
mod support;

use std::io::Write;
use std::time::SystemTime;

use criterion::{BatchSize, Criterion};
use serde_json::{json, Value};
use serverconfig_webhook::admission::Admission;
use support::*;

const APP: &str = "team-a";

/// One benchmark case: a review body and the ratio target against the floor.
struct Case {
    name: &'static str,
    body: Vec<u8>,
    target: f64,
    what: &'static str,
}

/// Copies of each container, extra env entries per container and extra
/// volumes of the `large` case.
const LARGE: (usize, usize, usize) = (20, 50, 100);

fn setup() -> (Admission, Vec<Case>) {
    let (copies, env, vols) = LARGE;
    let ctl = |name: &str| with_images(config(name, CONTROLLER_NS), "platform");
    let team = |name: &str| with_images(config(name, APP), "team");
    let large = |sc: Value| {
        let mut sc = enlarge(sc, copies, env, vols);
        sc["metadata"]["name"] = json!("large");
        sc
    };
    let (ml_srv, tr_srv, large_srv) = (
        server("mlserver", "mlserver", APP),
        server("triton", "triton", APP),
        server("large", "large", APP),
    );
    let ml_sts = statefulset(&ml_srv, &ctl("mlserver"));
    let tr_sts = statefulset(&tr_srv, &ctl("triton"));
    let large_ctl = large(ctl("mlserver"));
    let large_sts = statefulset(&large_srv, &large_ctl);
    let mut plain = ml_sts.clone();
    plain["metadata"]["ownerReferences"] = json!([]);
    plain["metadata"]["name"] = json!("postgres");

    let admission = admission(vec![
        team("mlserver"),
        team("triton"),
        large(team("mlserver")),
        ml_srv,
        tr_srv,
        large_srv,
        ctl("mlserver"),
        ctl("triton"),
        large_ctl,
    ]);

    // The steady state: the controller re-applies an object the webhook
    // already fixed (UPDATE, nothing to change).
    let ml_create = review(&ml_sts, None);
    let applied = apply(&ml_sts, &mutate(&admission, &ml_create));
    let cases = vec![
        Case {
            name: "mlserver",
            body: ml_create,
            target: 3.0,
            what: "CREATE of the controller's 2.9.1 mlserver StatefulSet; patched",
        },
        Case {
            name: "triton",
            body: review(&tr_sts, None),
            target: 3.0,
            what: "CREATE of the controller's 2.9.1 triton StatefulSet; patched",
        },
        Case {
            name: "mlserver_applied",
            body: review(&applied, Some(&applied)),
            target: 3.0,
            what: "UPDATE of an mlserver StatefulSet the webhook already fixed; no patch",
        },
        Case {
            name: "out_of_scope",
            body: review(&plain, None),
            target: 1.2,
            what: "CREATE of a StatefulSet with no Server owner; allowed untouched",
        },
        Case {
            name: "large",
            body: review(&large_sts, None),
            target: 3.0,
            what: "CREATE of a 60-container StatefulSet (+50 env each, +100 volumes); patched",
        },
    ];
    // Each case does what its name says (a bench of the wrong path is worse
    // than none).
    for c in &cases {
        let r = response(&mutate(&admission, &c.body));
        assert_eq!(r["allowed"], true, "{}: {r}", c.name);
        let patched = !r["patch"].is_null();
        let want_patch = matches!(c.name, "mlserver" | "triton" | "large");
        assert_eq!(patched, want_patch, "{}: patch present = {patched}", c.name);
    }
    (admission, cases)
}

fn bench(c: &mut Criterion, admission: &Admission, cases: &[Case]) {
    let mut group = c.benchmark_group("admission");
    for case in cases {
        let body = &case.body;
        group.bench_function(format!("{}/floor", case.name), |b| {
            b.iter_batched(|| body.clone(), |body| floor(&body), BatchSize::SmallInput)
        });
        group.bench_function(format!("{}/mutate", case.name), |b| {
            b.iter_batched(
                || body.clone(),
                |body| mutate(admission, &body),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// Criterion's median estimate (ns) of `admission/<id>`, if written by this run.
fn median(id: &str, since: SystemTime) -> Option<f64> {
    let dir = std::env::var_os("CRITERION_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| target_dir().join("criterion"));
    let path = dir.join("admission").join(id).join("new/estimates.json");
    let fresh = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= since);
    if !fresh {
        return None;
    }
    let v: Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn write_results(cases: &[Case], since: SystemTime) {
    let path = results_path("core.jsonl");
    let mut out = String::new();
    for c in cases {
        let (Some(floor), Some(mutate)) = (
            median(&format!("{}_floor", c.name), since),
            median(&format!("{}_mutate", c.name), since),
        ) else {
            continue;
        };
        let ratio = mutate / floor;
        let line = json!({"bench":"core","case":c.name,"what":c.what,"review_bytes":c.body.len(),
            "floor_median_ns":floor.round(),"mutate_median_ns":mutate.round(),
            "ratio":(ratio * 100.0).round() / 100.0,"target_ratio":c.target,"pass":ratio <= c.target});
        println!("{line}");
        out.push_str(&line.to_string());
        out.push('\n');
    }
    if out.is_empty() {
        return; // a filtered run that measured no whole case
    }
    let mut f = std::fs::File::create(&path).expect("create core.jsonl");
    f.write_all(out.as_bytes()).expect("write core.jsonl");
    println!("wrote {}", path.display());
}

/// Runs one case `CORE_PROFILE_ITERS` times (after one warm-up call), for
/// callgrind: Ir per call = (Ir(n) - Ir(0)) / n.
fn profile(admission: &Admission, cases: &[Case], spec: &str) {
    let (name, path) = spec.split_once('/').unwrap_or((spec, "mutate"));
    let case = cases
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("CORE_PROFILE: no case {name:?}"));
    let iters: usize = std::env::var("CORE_PROFILE_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let run = |body: &[u8]| match path {
        "floor" => floor(body),
        "mutate" => mutate(admission, body),
        other => panic!("CORE_PROFILE: {other:?} is neither floor nor mutate"),
    };
    let mut bytes = run(&case.body).len();
    for _ in 0..iters {
        bytes += std::hint::black_box(run(std::hint::black_box(&case.body))).len();
    }
    eprintln!("profiled {name}/{path} x{iters} ({bytes} answer bytes)");
}

fn main() {
    let (admission, cases) = setup();
    if let Ok(spec) = std::env::var("CORE_PROFILE") {
        profile(&admission, &cases, &spec);
        return;
    }
    let since = SystemTime::now() - std::time::Duration::from_secs(1);
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &admission, &cases);
    c.final_summary();
    write_results(&cases, since);
}
