//! Inputs the fuzzers (fuzz/) found, kept as tests through the same entry
//! points: `Admission::review` (what `/mutate` calls) and `render`.

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
