//! The merge port against the library it imitates: each case is merged by
//! the Rust core and by `tests/mergo-oracle` (Go: the real dario.cat/mergo
//! v1.0.0 on the real k8s.io/api v0.33.2 types, called the way Seldon 2.9.1
//! calls it), and the two results must be the same pod spec.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Map, Value};
use serverconfig_webhook::core::defaults::normalize;
use serverconfig_webhook::core::merge::{merge_pod_specs, update_capabilities};
use support::*;

fn oracle_binary() -> std::path::PathBuf {
    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mergo-oracle");
    let dir = format!("{}/tests/mergo-oracle", env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("go")
        .args(["build", "-trimpath", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&dir)
        .status()
        .expect("the Go toolchain is needed for this test (see README)");
    assert!(status.success(), "building the mergo oracle failed");
    out
}

fn obj(v: &Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn rust_merge(case: &Value) -> Value {
    let sc = obj(&case["serverConfig"]);
    let over = case["override"].as_object().cloned();
    let mut merged = merge_pod_specs(&sc, over.as_ref());
    let strings = |k: &str| -> Vec<String> {
        case[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    update_capabilities(
        &strings("capabilities"),
        &strings("extraCapabilities"),
        &mut merged,
    );
    Value::Object(merged)
}

fn cases() -> Vec<Value> {
    let mlserver =
        real_server_config("mlserver", "ns", "c", |i| i.to_string())["spec"]["podSpec"].clone();
    let triton =
        real_server_config("triton", "ns", "c", |i| i.to_string())["spec"]["podSpec"].clone();
    let small = json!({"containers":[{"name":"a","image":"a:1","env":[{"name":"SELDON_SERVER_CAPABILITIES","value":"x,y"}],
        "ports":[{"containerPort":80,"name":"http"}],
        "livenessProbe":{"httpGet":{"port":"http","path":"/l"},"periodSeconds":5},
        "readinessProbe":{"tcpSocket":{"port":8080}},
        "securityContext":{"runAsUser":1000,"allowPrivilegeEscalation":false},
        "resources":{"limits":{"cpu":"1","memory":"1Gi"},"requests":{"cpu":"500m"}}},
        {"name":"b","image":"b:1","args":["--x"]}],
      "terminationGracePeriodSeconds":120,"automountServiceAccountToken":true,
      "nodeSelector":{"pool":"cpu"},"tolerations":[{"key":"a","operator":"Exists"}],
      "securityContext":{"fsGroup":2000,"runAsNonRoot":true},
      "volumes":[{"name":"v","emptyDir":{"sizeLimit":"1Gi"}}],
      "affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"k","operator":"In","values":["1"]}]}]}}}});
    let overrides = vec![
        ("no override", Value::Null, json!([]), json!([])),
        ("empty override", json!({}), json!([]), json!([])),
        (
            "image override",
            json!({"containers":[{"name":"a","image":"team/a:2"}]}),
            json!([]),
            json!([]),
        ),
        (
            "env appended",
            json!({"containers":[{"name":"a","env":[{"name":"SELDON_SERVER_CAPABILITIES","value":"z"},{"name":"N","value":"1"}]}]}),
            json!([]),
            json!([]),
        ),
        ("capabilities", json!(null), json!(["p", "q"]), json!([])),
        ("extra capabilities", json!(null), json!([]), json!(["r"])),
        (
            "both capability lists",
            json!({"containers":[{"name":"a","env":[{"name":"SELDON_SERVER_CAPABILITIES","value":"dup"}]}]}),
            json!(["p"]),
            json!(["r"]),
        ),
        (
            "resources key-wise",
            json!({"containers":[{"name":"a","resources":{"limits":{"memory":"2Gi","nvidia.com/gpu":"1"},"requests":{"memory":"1Gi"}}}]}),
            json!([]),
            json!([]),
        ),
        (
            "new container first",
            json!({"containers":[{"name":"c","image":"c:1"},{"name":"b","args":["--y"]}]}),
            json!([]),
            json!([]),
        ),
        (
            "zero overrides do not clear",
            json!({"terminationGracePeriodSeconds":0,"automountServiceAccountToken":false,"hostNetwork":false,"containers":[{"name":"a","securityContext":{"runAsUser":0,"allowPrivilegeEscalation":true}}]}),
            json!([]),
            json!([]),
        ),
        (
            "pointer fields fill when absent",
            json!({"shareProcessNamespace":false,"priority":0,"enableServiceLinks":false}),
            json!([]),
            json!([]),
        ),
        (
            "int port over string port",
            json!({"containers":[{"name":"a","livenessProbe":{"httpGet":{"port":9000}}}]}),
            json!([]),
            json!([]),
        ),
        (
            "string port over int port",
            json!({"containers":[{"name":"a","readinessProbe":{"tcpSocket":{"port":"grpc"}}}]}),
            json!([]),
            json!([]),
        ),
        (
            "lists appended",
            json!({"tolerations":[{"key":"b","operator":"Exists"}],"volumes":[{"name":"w","emptyDir":{}}],"imagePullSecrets":[{"name":"s"}],"initContainers":[{"name":"i","image":"i:1"}]}),
            json!([]),
            json!([]),
        ),
        (
            "maps key-wise",
            json!({"nodeSelector":{"pool":"gpu","zone":"a"}}),
            json!([]),
            json!([]),
        ),
        (
            "nested structs",
            json!({"securityContext":{"fsGroup":3000,"runAsUser":5},"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"z","operator":"Exists"}]}]}}}}),
            json!([]),
            json!([]),
        ),
        (
            "scalars win",
            json!({"serviceAccountName":"team","priorityClassName":"high","dnsPolicy":"None","schedulerName":"s","restartPolicy":"Always"}),
            json!([]),
            json!([]),
        ),
        (
            "fields outside Seldon's type dropped",
            json!({"hostUsers":false,"os":{"name":"linux"},"schedulingGates":[{"name":"g"}]}),
            json!([]),
            json!([]),
        ),
        (
            "args and command appended",
            json!({"containers":[{"name":"b","command":["/bin/b"],"args":["--z"]}]}),
            json!([]),
            json!([]),
        ),
        (
            "probe fields merged",
            json!({"containers":[{"name":"a","livenessProbe":{"periodSeconds":30,"failureThreshold":9}}]}),
            json!([]),
            json!([]),
        ),
    ];
    let mut out = Vec::new();
    for (base_name, base) in [
        ("small", &small),
        ("mlserver", &mlserver),
        ("triton", &triton),
    ] {
        for (name, over, caps, extra) in &overrides {
            let mut over = over.clone();
            // On the real configs, aim container overrides at real names.
            if base_name != "small" {
                if let Some(cs) = over.get_mut("containers").and_then(Value::as_array_mut) {
                    for c in cs {
                        if c["name"] == "a" {
                            c["name"] = json!(if base_name == "mlserver" {
                                "mlserver"
                            } else {
                                "triton"
                            });
                        }
                        if c["name"] == "b" {
                            c["name"] = json!("agent");
                        }
                    }
                }
            }
            out.push(json!({"name": format!("{base_name}: {name}"), "serverConfig": base, "override": over,
                "capabilities": caps, "extraCapabilities": extra}));
        }
    }
    out
}

/// The first path where two JSON values differ, with both sides.
fn first_difference(path: &str, a: &Value, b: &Value) -> Option<(String, String, String)> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                first_difference(
                    &format!("{path}/{k}"),
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                )
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(&format!("{path}/{i}"), p, q)),
        _ if a == b => None,
        _ => {
            let short = |v: &Value| v.to_string().chars().take(160).collect::<String>();
            Some((path.to_string(), short(a), short(b)))
        }
    }
}

#[test]
fn rust_merge_equals_real_mergo_on_kubernetes_types() {
    let oracle = oracle_binary();
    let cases = cases();
    let mut child = Command::new(&oracle)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run oracle");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(serde_json::to_vec(&cases).expect("json").as_slice())
        .expect("write cases");
    let out = child.wait_with_output().expect("oracle output");
    assert!(out.status.success());
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).expect("oracle json");
    assert_eq!(results.len(), cases.len());
    let mut mismatches = Vec::new();
    for (case, go) in cases.iter().zip(&results) {
        assert!(
            go.get("error").is_none(),
            "{}: oracle error {}",
            case["name"],
            go["error"]
        );
        let rust = normalize(&rust_merge(case));
        let want = normalize(&go["podSpec"]);
        if let Some((path, r, g)) = first_difference("", &rust, &want) {
            mismatches.push(format!("{}: at {path}: rust {r} / go {g}", case["name"]));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} cases differ:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
}
