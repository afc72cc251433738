//! The command line: every documented `cargo xtask` invocation parses, and
//! the flags reach the harness as they did before clap.

use super::*;
use clap::CommandFactory;

fn parse(line: &str) -> Result<Task, clap::Error> {
    let words = split(line);
    Cli::try_parse_from(
        ["cargo xtask"]
            .into_iter()
            .chain(words.iter().map(|s| s.as_str())),
    )
    .map(|c| c.task)
}

/// Splits like the shell for the quoting the docs use ('...' and "...").
fn split(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote = None;
    for c in line.chars() {
        match (quote, c) {
            (None, ' ') => words.extend(word.take()),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (Some(q), c) if c == q => quote = None,
            (_, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

#[test]
fn the_cli_is_well_formed() {
    Cli::command().debug_assert();
}

/// Every `cargo xtask ...` invocation in README.md, docs/, BENCHMARKS.md,
/// ARCHITECTURE.md, tests/ and .ci/run (environment variables dropped),
/// and the flags the old usage texts listed.
#[test]
fn documented_invocations_parse() {
    let documented = [
        "test",
        "test --no-e2e",
        "test --k8s 1.35 --run pattern1",
        "demo",
        "demo --k8s 1.35 --keep -v",
        "e2e",
        "e2e --k8s 1.35",
        "e2e --k8s=1.35.4",
        "e2e --quiet-seconds 60",
        "e2e --run 'pattern1|quiet' --keep",
        "e2e --build-only",
        "e2e --keep",
        "e2e --release --run fault-memory",
        "e2e --release --run '^fault-memory$'",
        "e2e --release --run '^fault-'",
        "e2e --release --run '^fault-cert-rotation$'",
        "e2e --release --run '^fault-sigterm$'",
        "e2e --release --run '^fault-apiserver-restart$'",
        "e2e --release --run '^fault-hostile-clients$'",
        "e2e --run '^webhook-down'",
        "e2e --run '^tenant-isolation'",
        "e2e --run '^hostile-tenants$'",
        "e2e --run 'quiet-shared-name|upgrade-legacy'",
        "e2e --run '^oracle'",
        "e2e --run '^deploy-cert'",
        "e2e --webhook /bin/true --webhook-flags minimal --work-dir /tmp/x --crds c.yaml --verbose",
        "bench",
        "bench --only core",
        "bench --only core,growth",
        "bench --smoke",
        "bench --only load",
        "bench --only load --smoke",
        "bench --only load --namespaces 1000",
        "bench --only load --load-args \"--http 2 --rounds 1\"",
        "bench --only load --namespaces 100 --load-args \"--rounds 1 --duration 3 --warmup 1\"",
        "bench --only load --namespaces 1000 --load-args \"--rounds 1 --duration 3 --warmup 1\"",
        "bench --k8s 1.36 --only e2e",
        "bench-e2e",
        "bench-e2e --k8s 1.36",
        "bench-e2e --rounds 4 --out fieldpatch.jsonl",
        "bench-e2e --k8s 1.36 --out bench-e2e-136.jsonl",
        "bench-e2e --k8s 1.36 --clients 1 --creates 150 --rounds 4 --warmup 20 --out bench-e2e-136-c1.jsonl",
        "bench-e2e --namespaces 3 --modes none,webhook --sync --debug --webhook-flags minimal",
        "bench-e2e --clients 1,50 --modes none,webhook,kyverno --namespaces 1000 --rounds 3 --out kyverno.jsonl",
        "bench-e2e --no-kyverno --modes none,webhook",
        "bench-e2e --webhook target/release/serverconfig-webhook --clients 1,50 --modes none,webhook,kyverno --namespaces 1000 --rounds 3 --out target/bench-results/kyverno.jsonl",
        "soak",
        "soak --minutes 3",
        "soak --minutes 10",
        "soak --minutes 60 --rate 200 --rotate-every 10m --change-every 3s",
        "soak --k8s 1.35 --keep --work-dir /tmp/soak --webhook target/release/serverconfig-webhook",
        "soak --debug --out target/soak-results",
        "deny",
        "monitoring",
    ];
    for line in documented {
        if let Err(e) = parse(line) {
            panic!("cargo xtask {line}: {e}");
        }
    }
}

#[test]
fn bad_invocations_fail() {
    for line in [
        "",
        "frobnicate",
        "e2e --nope",
        "e2e --k8s",
        "bench --only core,nope",
        "bench --only ''",
        "bench --namespaces 0",
        "bench --namespaces x",
        "test --sync",
        "deny --k8s 1.35",
        "monitoring --k8s 1.35",
        "soak --minutes 0",
        "soak --minutes 1.5",
        "soak --rate 0",
        "soak --rotate-every 10",
        "soak --rotate-every 0s",
        "soak --change-every 3x",
        "soak --change-every -3s",
        "soak --run x",
    ] {
        assert!(parse(line).is_err(), "cargo xtask {line} parsed");
    }
}

#[test]
fn a_flag_given_twice_takes_the_last_value() {
    let Ok(Task::E2e(o)) = parse("e2e --k8s 1.34 --release --k8s 1.35 --release") else {
        panic!("e2e did not parse");
    };
    assert_eq!(o.k8s, "1.35");
    assert!(o.release);
    let Ok(Task::Bench(o)) = parse("bench --only core --only load,e2e") else {
        panic!("bench did not parse");
    };
    assert_eq!(o.only, Some(bench::Only(vec!["load".into(), "e2e".into()])));
}

#[test]
fn defaults() {
    let Ok(Task::Test(o)) = parse("test") else {
        panic!("test did not parse");
    };
    assert!(!o.no_e2e);
    assert_eq!(o.e2e.k8s, e2e::DEFAULT_K8S);
    let Ok(Task::Bench(o)) = parse("bench") else {
        panic!("bench did not parse");
    };
    assert_eq!((o.only, o.smoke, o.namespaces), (None, false, None));
    assert_eq!(o.k8s, e2e::DEFAULT_K8S);
}

#[test]
fn load_args_may_start_with_a_dash() {
    let Ok(Task::Bench(o)) = parse("bench --only load --load-args \"--http 2 --rounds 1\"") else {
        panic!("bench did not parse");
    };
    assert_eq!(o.load_args.as_deref(), Some("--http 2 --rounds 1"));
    assert_eq!(o.namespaces, None);
}

#[test]
fn e2e_flags_reach_the_harness_as_before() {
    let Ok(Task::E2e(o)) = parse(
        "e2e --run=^x$ --keep -v --quiet-seconds 60 --webhook-flags minimal --work-dir w --crds c",
    ) else {
        panic!("e2e did not parse");
    };
    assert_eq!(
        o.harness_args(),
        [
            "--quiet-seconds=60",
            "--run=^x$",
            "--webhook-flags=minimal",
            "--work-dir=w",
            "--crds=c",
            "--keep",
            "-v"
        ]
    );
}

#[test]
fn bench_e2e_flags_reach_the_harness_as_go_flags() {
    let Ok(Task::BenchE2e(o)) = parse(
        "bench-e2e --k8s 1.36 --sync --clients 1 --creates=150 --out f.jsonl --modes none,map --debug",
    ) else {
        panic!("bench-e2e did not parse");
    };
    assert_eq!(o.e2e.k8s, "1.36");
    assert!(o.debug && !o.e2e.release);
    assert_eq!(
        o.harness_args(),
        [
            "-clients=1",
            "-creates=150",
            "-modes=none,map",
            "-out=f.jsonl",
            "-sync=true"
        ]
    );
    // the bench's --namespaces is the harness's, not bench's fixture size
    let Ok(Task::BenchE2e(o)) = parse("bench-e2e --namespaces 3") else {
        panic!("bench-e2e did not parse");
    };
    assert_eq!(o.harness_args(), ["-namespaces=3"]);
}

#[test]
fn bench_e2e_kyverno_is_on_unless_no_kyverno() {
    let Ok(Task::BenchE2e(o)) = parse("bench-e2e --clients 1,50 --modes none,kyverno") else {
        panic!("bench-e2e did not parse");
    };
    assert!(!o.no_kyverno);
    // a list of client counts reaches the harness as given
    assert_eq!(o.harness_args(), ["-clients=1,50", "-modes=none,kyverno"]);
    let Ok(Task::BenchE2e(o)) = parse("bench-e2e --no-kyverno") else {
        panic!("bench-e2e --no-kyverno did not parse");
    };
    assert!(o.no_kyverno);
    // --no-kyverno is the driver's: the harness only misses -kyverno
    assert!(o.harness_args().is_empty());
    // `test` has no such flag: it never builds Kyverno
    assert!(parse("test --no-kyverno").is_err());
}

#[test]
fn soak_flags_reach_the_harness_after_a_double_dash() {
    let Ok(Task::Soak(o)) = parse("soak") else {
        panic!("soak did not parse");
    };
    assert_eq!((o.minutes, o.rate), (60, 200));
    assert_eq!(
        o.harness_args("r"),
        [
            "--",
            "-minutes=60",
            "-rate=200",
            "-rotate-every=600000ms",
            "-change-every=3000ms",
            "-out=r"
        ]
    );
    let e = o.e2e_args();
    assert!(e.release && e.verbose && !e.keep);
    assert_eq!(e.k8s, e2e::DEFAULT_K8S);
    let Ok(Task::Soak(o)) = parse(
        "soak --minutes 3 --rate 50 --rotate-every 90s --change-every 500ms --debug --keep --work-dir w",
    ) else {
        panic!("soak did not parse");
    };
    assert_eq!(
        o.harness_args("r")[1..5],
        [
            "-minutes=3",
            "-rate=50",
            "-rotate-every=90000ms",
            "-change-every=500ms"
        ]
    );
    let e = o.e2e_args();
    assert!(!e.release && e.keep);
    assert_eq!(e.work_dir.as_deref(), Some("w"));
    assert_eq!(e.harness_args(), ["--work-dir=w", "--keep", "-v"]);
    let Ok(Task::Soak(o)) = parse("soak --rotate-every 1h") else {
        panic!("soak did not parse");
    };
    assert_eq!(o.rotate_every, std::time::Duration::from_secs(3600));
}
