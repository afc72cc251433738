//! The binary under the name `kubectl-serverconfig` (a symlink and a copy
//! in a temp dir, as krew and a manual install make): plugin mode, kubectl's
//! flags, its refusals, and the normal binary unchanged beside it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_serverconfig-webhook");

/// How the plugin is put on PATH.
#[derive(Clone, Copy, Debug)]
enum Install {
    Symlink,
    Copy,
}

/// `dir/kubectl-serverconfig`, linked or copied from the built binary.
fn install(dir: &Path, how: Install) -> PathBuf {
    let p = dir.join("kubectl-serverconfig");
    match how {
        Install::Symlink => std::os::unix::fs::symlink(BIN, &p).expect("symlink"),
        Install::Copy => {
            std::fs::copy(BIN, &p).expect("copy");
        }
    }
    p
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `bin args` with KUBECONFIG pointing at `kubeconfig` (or nowhere).
fn run(bin: &Path, args: &[&str], kubeconfig: &Path) -> Out {
    let out = Command::new(bin)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("SERVERCONFIG_WEBHOOK_WATCH_NAMESPACES")
        .output()
        .expect("run");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A kubeconfig: context `local` (current) on a closed port of loopback,
/// context `team` (namespace team-a) on `team_port`.
fn kubeconfig_with(dir: &Path, team_port: u16) -> PathBuf {
    let p = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: local\n\
         clusters:\n- name: closed\n  cluster: {{server: 'https://127.0.0.1:1'}}\n\
         - name: listening\n  cluster: {{server: 'https://127.0.0.1:{team_port}'}}\n\
         users:\n- name: me\n  user: {{token: t}}\n\
         contexts:\n- name: local\n  context: {{cluster: closed, user: me}}\n\
         - name: team\n  context: {{cluster: listening, user: me, namespace: team-a}}\n"
    );
    std::fs::write(&p, text).expect("write kubeconfig");
    p
}

fn kubeconfig(dir: &Path) -> PathBuf {
    kubeconfig_with(dir, 1)
}

#[test]
fn help_and_version_name_the_plugin_and_only_its_commands() {
    let tmp = tempfile::tempdir().expect("tmp");
    for how in [Install::Symlink, Install::Copy] {
        let dir = tmp.path().join(format!("{how:?}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let plugin = install(&dir, how);
        let help = run(&plugin, &["--help"], &dir.join("none"));
        assert_eq!(help.code, 0, "{how:?}: {}", help.stderr);
        assert!(
            help.stdout.contains("Usage: kubectl serverconfig"),
            "{how:?}: {}",
            help.stdout
        );
        for cmd in [
            "doctor",
            "render",
            "migrate",
            "--kubeconfig",
            "--context",
            "--namespace",
        ] {
            assert!(
                help.stdout.contains(cmd),
                "{how:?}: no {cmd} in {}",
                help.stdout
            );
        }
        for cmd in ["serve", "certs"] {
            assert!(
                !help.stdout.contains(&format!("  {cmd} ")),
                "{how:?}: {cmd} in {}",
                help.stdout
            );
        }
        let version = run(&plugin, &["--version"], &dir.join("none"));
        assert_eq!(version.code, 0);
        assert_eq!(
            version.stdout.trim(),
            format!("kubectl-serverconfig {}", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn bad_plugin_input_exits_2_with_a_sentence_before_any_cluster_access() {
    let tmp = tempfile::tempdir().expect("tmp");
    let plugin = install(tmp.path(), Install::Symlink);
    let kc = kubeconfig(tmp.path());
    let kcs = kc.to_string_lossy().into_owned();
    let missing = tmp.path().join("missing").to_string_lossy().into_owned();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["serve"], "`serve` is not a kubectl plugin command"),
        (vec!["sync"], "run `serverconfig-webhook sync`"),
        (
            vec!["certs", "--dns", "x", "--out", "d"],
            "offers doctor, render and migrate",
        ),
        (
            vec!["doctor", "--context", "nope"],
            "context \"nope\" is not in the kubeconfig (it has: local, team)",
        ),
        (
            vec!["doctor", "--kubeconfig", &kcs, "--cluster", "c9"],
            "cluster \"c9\" is not in the kubeconfig",
        ),
        (
            vec!["doctor", "--user", "u9"],
            "user \"u9\" is not in the kubeconfig",
        ),
        (
            vec!["doctor", "--kubeconfig", &missing],
            "cannot read --kubeconfig",
        ),
        (
            vec!["doctor", "-n", "a", "--watch-namespaces", "b"],
            "give one",
        ),
        (
            vec!["doctor", "--request-timeout", "soon"],
            "not a duration",
        ),
        (
            vec!["migrate", "--to", "seldon-system"],
            "-n/--namespace NAME or --from NAME",
        ),
        (
            vec!["migrate", "--context", "team", "--to", "x", "--dry-run"],
            "never taken",
        ),
        (
            vec!["migrate", "-n", "a", "--from", "b", "--to", "x"],
            "give one",
        ),
        (
            vec!["migrate", "-n", "a", "--to", "a"],
            "nothing would move",
        ),
        (
            vec!["migrate", "-n", "a", "--to", "b", "--context", "nope"],
            "context \"nope\"",
        ),
        (
            vec![
                "render",
                "--statefulset",
                "a",
                "--server",
                "b",
                "--serverconfig",
                "c",
                "-n",
                "x",
            ],
            "render reads files only and never talks to a cluster: drop --namespace",
        ),
    ];
    for (args, want) in cases {
        let out = run(&plugin, &args, &kc);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains(want),
            "{args:?}: {want:?} not in {}",
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
}

/// Whether a TCP connection reached `l` (the kernel completes it into the
/// accept queue even though nothing answers).
fn was_dialled(l: &std::net::TcpListener) -> bool {
    l.set_nonblocking(true).expect("nonblocking");
    l.accept().is_ok()
}

#[test]
fn doctor_dials_the_cluster_of_the_context_the_flags_name() {
    let tmp = tempfile::tempdir().expect("tmp");
    let plugin = install(tmp.path(), Install::Copy);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let kc = kubeconfig_with(tmp.path(), port);
    // the current context: its closed port, exit 1, nothing reaches ours
    let out = run(&plugin, &["doctor", "--request-timeout", "2s"], &kc);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("kubectl serverconfig doctor: cannot read the cluster"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Connection refused"), "{}", out.stderr);
    assert!(
        !was_dialled(&listener),
        "the current context dialled the team cluster"
    );
    // --context team: our listener is dialled; nothing answers TLS, and
    // --request-timeout ends the wait
    let started = std::time::Instant::now();
    let out = run(
        &plugin,
        &["doctor", "--context", "team", "--request-timeout", "2s"],
        &kc,
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        was_dialled(&listener),
        "--context team did not dial 127.0.0.1:{port}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn render_under_the_plugin_name_prints_what_the_normal_binary_does() {
    let tmp = tempfile::tempdir().expect("tmp");
    let plugin = install(tmp.path(), Install::Symlink);
    let app = "financial-mlops-pytorch";
    let srv = server(app, "mlserver", "mlserver-config", json!({}));
    let sts = controller_statefulset(
        &srv,
        &placeholder(
            "seldon-system",
            "mlserver-config",
            &["rclone", "agent", "triton"],
        ),
    );
    let team = real_server_config("triton", app, "mlserver-config", |old| {
        format!("harbor.test/team/{}", old.rsplit('/').next().unwrap_or(old))
    });
    let mut args: Vec<String> = vec!["render".into()];
    for (flag, name, v) in [
        ("--statefulset", "sts.yaml", &sts),
        ("--server", "server.yaml", &srv),
        ("--serverconfig", "sc.yaml", &team),
    ] {
        let p = tmp.path().join(name);
        std::fs::write(&p, serde_yaml_ng::to_string(v).expect("yaml")).expect("write");
        args.push(flag.into());
        args.push(p.to_string_lossy().into_owned());
    }
    args.extend(["-o".to_string(), "json".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let none = tmp.path().join("none");
    let via_plugin = run(&plugin, &args, &none);
    let normal = run(Path::new(BIN), &args, &none);
    assert_eq!(via_plugin.code, 0, "{}", via_plugin.stderr);
    assert_eq!(via_plugin.stdout, normal.stdout);
    let fixed: Value = serde_json::from_str(&via_plugin.stdout).expect("json");
    assert!(
        images(&fixed)
            .iter()
            .all(|i| i.starts_with("harbor.test/team/")),
        "{:?}",
        images(&fixed)
    );
}

#[test]
fn the_normal_binary_takes_no_kubectl_flags() {
    let tmp = tempfile::tempdir().expect("tmp");
    let none = tmp.path().join("none");
    for args in [
        vec!["doctor", "-n", "team-a"],
        vec!["doctor", "--context", "x"],
        vec!["migrate", "-n", "a", "--to", "b"],
    ] {
        let out = run(Path::new(BIN), &args, &none);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("unexpected argument"),
            "{args:?}: {}",
            out.stderr
        );
    }
    let help = run(Path::new(BIN), &["--help"], &none);
    assert!(help.stdout.contains("serve"), "{}", help.stdout);
}
