//! The binary itself: `render` exit codes and output, `certs`, and `serve`
//! draining an in-flight request on a real SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_serverconfig-webhook");
const APP: &str = "financial-mlops-pytorch";

fn write(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_yaml_ng::to_string(v).expect("yaml")).expect("write");
    p
}

fn team() -> Value {
    real_server_config("triton", APP, "mlserver-config", |old| {
        format!("harbor.test/team/{}", old.rsplit('/').next().unwrap_or(old))
    })
}

fn render(args: &[&Path], extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("render")
        .arg("--statefulset")
        .arg(args[0])
        .arg("--server")
        .arg(args[1])
        .arg("--serverconfig")
        .arg(args[2])
        .args(extra)
        .output()
        .expect("run render");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn render_prints_the_fixed_object_and_the_patch() {
    let tmp = tempfile::tempdir().expect("tmp");
    let srv = server(APP, "mlserver", "mlserver-config", json!({}));
    let sts = controller_statefulset(
        &srv,
        &placeholder(
            "seldon-system",
            "mlserver-config",
            &["rclone", "agent", "triton"],
        ),
    );
    let files = [
        write(tmp.path(), "sts.yaml", &sts),
        write(tmp.path(), "server.yaml", &srv),
        write(tmp.path(), "sc.yaml", &team()),
    ];
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (code, out, err) = render(&paths, &[]);
    assert_eq!(code, 0, "{err}");
    let fixed: Value = serde_yaml_ng::from_str(&out).expect("yaml output");
    assert_eq!(images(&fixed).len(), 3);
    assert!(
        images(&fixed)
            .iter()
            .all(|i| i.starts_with("harbor.test/team/")),
        "{:?}",
        images(&fixed)
    );
    let (code, out, _) = render(&paths, &["--patch", "-o", "json"]);
    assert_eq!(code, 0);
    let patch: Value = serde_json::from_str(&out).expect("json patch");
    assert!(patch.as_array().is_some_and(|a| !a.is_empty()));
    // Rendering the fixed object again gives an empty patch (fixed point).
    let fixed_path = write(tmp.path(), "fixed.yaml", &fixed);
    let (code, out, _) = render(
        &[&fixed_path, paths[1], paths[2]],
        &["--patch", "-o", "json"],
    );
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json"),
        json!([])
    );
}

#[test]
fn render_leaves_out_of_scope_objects_unchanged() {
    let tmp = tempfile::tempdir().expect("tmp");
    let srv = server("seldon-system", "mlserver", "mlserver-config", json!({}));
    let mut sc = team();
    sc["metadata"]["namespace"] = json!("seldon-system");
    let sts = controller_statefulset(&srv, &sc);
    let files = [
        write(tmp.path(), "sts.yaml", &sts),
        write(tmp.path(), "server.yaml", &srv),
        write(tmp.path(), "sc.yaml", &sc),
    ];
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (code, out, err) = render(&paths, &["-o", "json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).expect("json"), sts);
}

#[test]
fn render_bad_input_exits_2_with_one_sentence() {
    let tmp = tempfile::tempdir().expect("tmp");
    let srv = server(APP, "mlserver", "mlserver-config", json!({}));
    let sts = controller_statefulset(&srv, &team());
    let other_server = server(APP, "other", "mlserver-config", json!({}));
    let mut foreign_sc = team();
    foreign_sc["metadata"]["namespace"] = json!("team-b");
    let good = [
        write(tmp.path(), "sts.yaml", &sts),
        write(tmp.path(), "server.yaml", &srv),
        write(tmp.path(), "sc.yaml", &team()),
    ];
    let other = write(tmp.path(), "other.yaml", &other_server);
    let foreign = write(tmp.path(), "foreign.yaml", &foreign_sc);
    let garbage = tmp.path().join("garbage.yaml");
    std::fs::write(&garbage, "kind: [unclosed").expect("write");
    let missing = tmp.path().join("missing.yaml");
    // a file far beyond any object, and one of 400,000 documents
    let huge = tmp.path().join("huge.yaml");
    std::fs::write(&huge, vec![b'#'; 5 << 20]).expect("write");
    let many = tmp.path().join("many.yaml");
    let sts_text = std::fs::read_to_string(&good[0]).expect("read");
    let mut many_text = sts_text.clone();
    many_text.push_str(&"---\na: 1\n".repeat(400_000));
    std::fs::write(&many, many_text).expect("write");
    let zero = Path::new("/dev/zero");
    // (name, [sts, server, sc], text on stderr)
    let cases: Vec<(&str, [&Path; 3], &str)> = vec![
        (
            "unreadable file",
            [&missing, &good[1], &good[2]],
            "cannot read",
        ),
        (
            "not YAML",
            [&garbage, &good[1], &good[2]],
            "not valid YAML or JSON",
        ),
        (
            "wrong kind",
            [&good[1], &good[1], &good[2]],
            "must be an apps/v1 StatefulSet or Deployment",
        ),
        (
            "server given as serverconfig",
            [&good[0], &good[1], &good[1]],
            "expected a ServerConfig",
        ),
        (
            "server not owning the object",
            [&good[0], &other, &good[2]],
            "is owned by Server \"mlserver\", not by the given Server \"other\"",
        ),
        (
            "serverconfig from another namespace",
            [&good[0], &good[1], &foreign],
            "only uses objects of the workload's own namespace",
        ),
        (
            "a file larger than any object",
            [&huge, &good[1], &good[2]],
            "is larger than 4 MiB",
        ),
        (
            "a device that never ends",
            [zero, &good[1], &good[2]],
            "is larger than 4 MiB",
        ),
        (
            "400,000 documents",
            [&many, &good[1], &good[2]],
            "holds more than one document",
        ),
    ];
    for (name, files, text) in cases {
        let (code, out, err) = render(&files, &[]);
        assert_eq!(code, 2, "case {name}: {err}");
        assert!(out.is_empty(), "case {name}: nothing on stdout");
        assert!(err.contains(text), "case {name}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "case {name}: one sentence: {err}"
        );
    }
}

#[test]
fn render_into_a_closed_pipe_stops_quietly() {
    let tmp = tempfile::tempdir().expect("tmp");
    let srv = server(APP, "mlserver", "mlserver-config", json!({}));
    let sts = controller_statefulset(&srv, &placeholder("seldon-system", "mlserver-config", &[]));
    let files = [
        write(tmp.path(), "sts.yaml", &sts),
        write(tmp.path(), "server.yaml", &srv),
        write(tmp.path(), "sc.yaml", &team()),
    ];
    let mut child = Command::new(BIN)
        .arg("render")
        .arg("--statefulset")
        .arg(&files[0])
        .arg("--server")
        .arg(&files[1])
        .arg("--serverconfig")
        .arg(&files[2])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // `| head -c 0`: the reader goes away before anything is written
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.trim().is_empty(), "quiet: {err}");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn certs_writes_a_usable_pair_without_committing_keys() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = Command::new(BIN)
        .args([
            "certs",
            "--dns",
            "serverconfig-webhook.serverconfig-webhook-system.svc",
            "--out",
        ])
        .arg(tmp.path())
        .output()
        .expect("run certs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["ca.crt", "ca.key", "tls.crt", "tls.key", "ca-bundle.b64"] {
        assert!(tmp.path().join(f).exists(), "{f}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(tmp.path().join("tls.key"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    serverconfig_webhook::server::tls::load_pair(
        &tmp.path().join("tls.crt"),
        &tmp.path().join("tls.key"),
    )
    .expect("pair loads");
}

#[test]
fn serve_finishes_an_in_flight_request_after_sigterm() {
    let tmp = tempfile::tempdir().expect("tmp");
    let g = support::tls::pair();
    let certs = support::tls::SecretDir::new(tmp.path(), &g.cert, &g.key);
    let port = free_port();
    let mut child = support::serve::Serve::default().spawn(tmp.path(), &certs, port);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let result = rt.block_on(async {
        support::tls::wait_for_port(port, 100).await;
        let srv = server(APP, "mlserver", "mlserver-config", json!({}));
        let obj = controller_statefulset(&srv, &team());
        let review = json!({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{
            "uid":"u1","kind":{"group":"apps","version":"v1","kind":"StatefulSet"},
            "resource":{"group":"apps","version":"v1","resource":"statefulsets"},
            "name":"mlserver","namespace":APP,"operation":"CREATE","userInfo":{},"object":obj}});
        let body = serde_json::to_vec(&review).expect("json");
        let (head, tail) = body.split_at(body.len() / 2);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(2);
        tx.send(Ok(bytes::Bytes::copy_from_slice(head)))
            .await
            .expect("head");
        let c = support::tls::client(&[&g.ca_cert], false);
        let req = tokio::spawn(support::tls::post_streamed(
            c,
            format!("https://localhost:{port}/mutate"),
            rx,
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        support::serve::terminate(&child);
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send(Ok(bytes::Bytes::copy_from_slice(tail)))
            .await
            .expect("tail");
        drop(tx);
        let resp = req
            .await
            .expect("task")
            .expect("in-flight request answered after SIGTERM");
        let status = resp.status();
        let v: Value = resp.json().await.expect("json");
        (status, v)
    });
    let (status, v) = result;
    assert_eq!(status, 200);
    assert_eq!(v["response"]["uid"], "u1");
    let status = support::serve::exit_within(&mut child, 100).expect("serve exits after SIGTERM");
    assert!(status.success(), "exit status {status}");
    let _ = std::io::stderr().flush();
}

#[test]
fn a_second_sigterm_exits_at_once_with_130() {
    let tmp = tempfile::tempdir().expect("tmp");
    let g = support::tls::pair();
    let certs = support::tls::SecretDir::new(tmp.path(), &g.cert, &g.key);
    let port = free_port();
    // A drain that would take a minute: only the second signal ends it soon.
    let serve = support::serve::Serve {
        shutdown_delay: "60s",
        ..Default::default()
    };
    let mut child = serve.spawn(tmp.path(), &certs, port);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(support::tls::wait_for_port(port, 100));
    support::serve::terminate(&child);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        matches!(child.try_wait(), Ok(None)),
        "still draining after the first signal"
    );
    support::serve::terminate(&child);
    let status = support::serve::exit_within(&mut child, 100)
        .expect("serve exits within 5 s of the second signal");
    assert_eq!(status.code(), Some(130), "exit status {status}");
}

fn free_port() -> u16 {
    support::serve::free_port()
}

#[test]
fn leaf_plus_chain_pem_loads_and_bad_pairs_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let g = support::tls::pair();
    let other = support::tls::pair();
    let chain = tmp.path().join("chain.crt");
    std::fs::write(&chain, format!("{}{}", g.cert, g.ca_cert)).expect("chain");
    let key = tmp.path().join("tls.key");
    std::fs::write(&key, &g.key).expect("key");
    let (ck, _) =
        serverconfig_webhook::server::tls::load_pair(&chain, &key).expect("leaf + chain loads");
    assert_eq!(ck.cert.len(), 2, "the whole chain is served");
    let wrong_key = tmp.path().join("wrong.key");
    std::fs::write(&wrong_key, &other.key).expect("key");
    let err = serverconfig_webhook::server::tls::load_pair(&chain, &wrong_key)
        .expect_err("mismatch refused");
    assert!(format!("{err:#}").contains("do not match"), "{err:#}");
    let empty = tmp.path().join("empty.crt");
    std::fs::write(&empty, "").expect("empty");
    let err =
        serverconfig_webhook::server::tls::load_pair(&empty, &key).expect_err("empty refused");
    assert!(
        format!("{err:#}").contains("no certificate found"),
        "{err:#}"
    );
}

/// `migrate` with bad input: exit 2 and one sentence naming the problem,
/// before anything talks to a cluster (KUBECONFIG points nowhere).
#[test]
fn migrate_rejects_bad_input_with_exit_2() {
    let tmp = tempfile::tempdir().expect("tmp");
    let garbage = tmp.path().join("garbage.yaml");
    std::fs::write(&garbage, "apiVersion: v1\nkind: ConfigMap\n").expect("write");
    let missing = tmp.path().join("missing.yaml");
    let g = garbage.to_string_lossy().into_owned();
    let m = missing.to_string_lossy().into_owned();
    // (args, fragment of stderr)
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--from", "team-a", "--to", "team-a"],
            "nothing would move",
        ),
        (
            vec!["--from", "Team_A", "--to", "seldon-system"],
            "not a namespace name",
        ),
        (vec!["--from", "team-a"], "--to"),
        (
            vec!["--from", "team-a", "--to", "b", "--kinds", "pods"],
            "not a kind migrate moves",
        ),
        (
            vec!["--from", "team-a", "--to", "b", "--timeout", "soon"],
            "not a duration",
        ),
        (
            vec!["--rollback", &g, "--from", "team-a"],
            "cannot be used with",
        ),
        (vec!["--rollback", &m], "cannot read the rollback file"),
        (vec!["--rollback", &g], "not a rollback file"),
        (
            vec!["--from", "team-a", "--to", "b", "--rollback-file", &g],
            "exists already",
        ),
    ];
    for (args, want) in cases {
        let out = Command::new(BIN)
            .arg("migrate")
            .args(&args)
            .env("KUBECONFIG", tmp.path().join("no-kubeconfig"))
            .output()
            .expect("run migrate");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {want:?} not in {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
