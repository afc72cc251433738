//! Inputs the fuzzers (fuzz/) found, kept as tests through the same entry
//! points: `Admission::review` (what `/mutate` calls), `render`, and
//! `migrate --rollback`'s file parsing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::sync::Arc;

use serde_json::{json, Value};
use serverconfig_webhook::admission::Admission;
use serverconfig_webhook::cache::Caches;
use serverconfig_webhook::core::mutate::{OnMissing, Settings};
use serverconfig_webhook::metrics::Metrics;
use support::*;

const APP: &str = "team-a";

fn admission() -> Admission {
    let team = real_server_config("mlserver", APP, "mlserver-config", |old| {
        format!("harbor.test/team/{}", old.rsplit('/').next().unwrap_or(old))
    });
    let objects = vec![
        serde_json::from_value(server(APP, "mlserver", "mlserver-config", json!({})))
            .expect("server"),
        serde_json::from_value(team).expect("config"),
    ];
    let metrics = Arc::new(Metrics::new());
    Admission {
        settings: Settings {
            controller_namespace: "seldon-system".into(),
            on_missing: OnMissing::Auto,
        },
        caches: Caches::from_objects(objects, metrics.clone()),
        metrics,
        desired: Default::default(),
    }
}

fn review_bytes() -> Vec<u8> {
    let srv = server(APP, "mlserver", "mlserver-config", json!({}));
    let obj = controller_statefulset(
        &srv,
        &placeholder(
            "seldon-system",
            "mlserver-config",
            &["rclone", "agent", "mlserver"],
        ),
    );
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u1",
            "kind": {"group": "apps", "version": "v1", "kind": "StatefulSet"},
            "resource": {"group": "apps", "version": "v1", "resource": "statefulsets"},
            "name": "mlserver", "namespace": APP, "operation": "CREATE",
            "userInfo": {}, "object": obj
        }
    }))
    .expect("json")
}

/// fuzz `review`, crash-c9c2f846: bytes that are not UTF-8 in a field the
/// review's types ignore were accepted (`serde_json::from_slice` skips
/// ignored strings without checking them) and the object patched. A body
/// that is not UTF-8 is not JSON: 400 with the reason.
#[test]
fn invalid_utf8_in_an_ignored_field_is_a_400_not_a_patch() {
    let good = review_bytes();
    let field = b"\"operation\":\"CREATE\"";
    let at = good
        .windows(field.len())
        .position(|w| w == field)
        .expect("the review has an operation");
    let mut bad = good[..at].to_vec();
    bad.extend_from_slice(b"\"ignoredField\":\"\xfe\xff\",");
    bad.extend_from_slice(&good[at..]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let a = admission();
    let ok = rt.block_on(a.review(&good));
    assert_eq!(ok.status, 200, "the untouched review is fine");
    let answer = rt.block_on(a.review(&bad));
    assert_eq!(answer.status, 400);
    let v: Value = serde_json::from_slice(&answer.body).expect("json answer");
    assert_eq!(v["response"]["allowed"], false, "{v}");
    assert!(v["response"].get("patch").is_none(), "{v}");
    let message = v["response"]["status"]["message"].as_str().unwrap_or("");
    assert!(message.contains("not UTF-8"), "{message}");
}

/// fuzz `review`, crash-d855bc2d: a StatefulSet whose `spec.template` is a
/// number got a patch adding `/spec/template/metadata`, which cannot
/// apply. Parts the patch writes into must be objects: denied, named.
#[test]
fn a_template_that_is_not_an_object_is_denied_not_patched() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let a = admission();
    let mut review: Value = serde_json::from_slice(&review_bytes()).expect("json");
    for (path, value, part) in [
        ("/spec/template", json!(1), "spec.template"),
        (
            "/spec/template/metadata",
            json!("x"),
            "spec.template.metadata",
        ),
        ("/spec/template/spec", json!([]), "spec.template.spec"),
        ("/spec", json!(null), "spec"),
    ] {
        let mut r = review.clone();
        *r.pointer_mut(&format!("/request/object{path}"))
            .expect("path exists") = value;
        let answer = rt.block_on(a.review(&serde_json::to_vec(&r).expect("json")));
        assert_eq!(answer.status, 200, "{path}");
        let v: Value = serde_json::from_slice(&answer.body).expect("json answer");
        assert_eq!(v["response"]["allowed"], false, "{path}: {v}");
        assert!(v["response"].get("patch").is_none(), "{path}: {v}");
        let message = v["response"]["status"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains(&format!("the object's {part} is not a JSON object")),
            "{path}: {message}"
        );
    }
    // The untouched review still gets its patch.
    review["request"]["uid"] = json!("u2");
    let answer = rt.block_on(a.review(&serde_json::to_vec(&review).expect("json")));
    let v: Value = serde_json::from_slice(&answer.body).expect("json answer");
    assert!(v["response"]["patch"].is_string(), "{v}");
}

/// `n` aliases to an anchor of `k` scalars under `key`: about 2 (k + n)
/// bytes of text, k * n values once expanded.
fn laughs(key: &str, k: usize, n: usize) -> String {
    format!(
        "x: &a [{}]\n{key}: [{}]\n",
        vec!["x"; k].join(","),
        vec!["*a"; n].join(",")
    )
}

/// Found checking the fuzz targets' parsers for alias expansion ("billion
/// laughs"): a 50 KB file of 10,000 aliases to a 10,000-entry anchor took
/// `render` 69 s and 4 GB (serde_yaml_ng limits the number of aliases, not
/// what they replay). Now the decode stops at 2 units per byte of text.
#[test]
fn render_refuses_aliases_that_expand_past_the_budget() {
    use serverconfig_webhook::render::{parse_document, DocumentError};
    use serverconfig_webhook::yaml::YamlError;
    let text = laughs("spec", 10_000, 10_000);
    let started = std::time::Instant::now();
    let err = parse_document(&text).expect_err("100 M values");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        matches!(err, DocumentError::Syntax(YamlError::Expands { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("aliases expand"), "{err}");
    // A few aliases are still fine.
    let small = parse_document(&laughs("spec", 3, 3)).expect("9 values");
    assert_eq!(small["spec"][2], json!(["x", "x", "x"]));
}

/// The same for `migrate --rollback`'s file (the same decoder).
#[test]
fn a_rollback_file_whose_aliases_expand_past_the_budget_is_refused() {
    use serverconfig_webhook::migrate::rollback::{RollbackFile, RollbackFileError};
    use serverconfig_webhook::yaml::YamlError;
    let head = "apiVersion: serverconfig-webhook/v1\nkind: MigrationRollback\nfrom: a\nto: b\n";
    let text = format!("{head}{}", laughs("deleted", 10_000, 10_000));
    let started = std::time::Instant::now();
    let err = RollbackFile::parse(&text).expect_err("100 M values");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        matches!(err, RollbackFileError::Syntax(YamlError::Expands { .. })),
        "{err}"
    );
    // An alias of one object is still a file.
    let ok = format!(
        "{head}created:\n- &o {{apiVersion: mlops.seldon.io/v1alpha1, kind: Server, metadata: {{name: s, namespace: b}}}}\nreplaced:\n- {{before: *o, after: *o}}\n"
    );
    let file = RollbackFile::parse(&ok).expect("a valid file");
    assert_eq!(file.replaced[0].before, file.created[0]);
}
