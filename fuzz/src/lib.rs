//! Shared set-up of the fuzz targets: the admission handler over caches
//! filled from the real Seldon 2.9.1 fixtures (no API server: a miss is
//! final), and the objects `render` is given besides the fuzzed one.

use std::sync::{Arc, OnceLock};

use serde_json::{json, Value};
use serverconfig_webhook::admission::Admission;
use serverconfig_webhook::cache::Caches;
use serverconfig_webhook::core::desired::desired;
use serverconfig_webhook::core::model::{Server, ServerConfig};
use serverconfig_webhook::core::mutate::{OnMissing, Settings};
use serverconfig_webhook::metrics::Metrics;

/// Namespace of the tenant's objects.
pub const TEAM: &str = "team-a";
/// Namespace of the Seldon controller (out of scope; holds placeholders).
pub const CONTROLLER_NS: &str = "seldon-system";

const SERVER_CONFIGS: &str = include_str!("../../tests/fixtures/serverconfigs.yaml");

fn docs(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .filter_map(|d| serde::Deserialize::deserialize(d).ok())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The real 2.9.1 ServerConfig `name`, placed in `ns` as `new_name`.
pub fn real_config(name: &str, ns: &str, new_name: &str) -> Value {
    let mut sc = docs(SERVER_CONFIGS)
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("fixture has no ServerConfig {name}"));
    sc["metadata"]["namespace"] = json!(ns);
    sc["metadata"]["name"] = json!(new_name);
    sc["metadata"]["uid"] = json!(format!("uid-{ns}-{new_name}"));
    sc["metadata"]["resourceVersion"] = json!("7");
    sc
}

/// A Server in `ns` named `name` using ServerConfig `sc`.
pub fn server(ns: &str, name: &str, sc: &str) -> Value {
    json!({"apiVersion":"mlops.seldon.io/v1alpha1","kind":"Server",
        "metadata":{"name":name,"namespace":ns,"uid":format!("uid-{name}"),"resourceVersion":"3"},
        "spec":{"serverConfig":sc,"replicas":1}})
}

fn placeholder(name: &str, containers: &[&str]) -> Value {
    let cs: Vec<Value> = containers.iter().map(|c| json!({"name": c})).collect();
    json!({"apiVersion":"mlops.seldon.io/v1alpha1","kind":"ServerConfig",
        "metadata":{"name":name,"namespace":CONTROLLER_NS,"uid":format!("uid-ph-{name}"),"resourceVersion":"1",
            "labels":{"app.kubernetes.io/managed-by":"serverconfig-webhook"}},
        "spec":{"podSpec":{"containers":cs},"volumeClaimTemplates":[]}})
}

/// Every object the caches hold: a Server with its namespace-local
/// ServerConfig (and a placeholder of that name in the controller
/// namespace), a Server whose ServerConfig exists only in the controller
/// namespace, one with an empty `serverConfig`, and one whose ServerConfig
/// has a pod spec that is not a valid pod spec.
pub fn objects() -> Vec<Value> {
    let mut bad = real_config("mlserver", TEAM, "broken-config");
    bad["spec"]["podSpec"]["containers"] = json!("not a list");
    vec![
        server(TEAM, "mlserver", "mlserver-config"),
        real_config("mlserver", TEAM, "mlserver-config"),
        placeholder("mlserver-config", &["rclone", "agent", "mlserver"]),
        server(TEAM, "triton", "triton"),
        real_config("triton", CONTROLLER_NS, "triton"),
        server(TEAM, "empty", ""),
        server(TEAM, "broken", "broken-config"),
        bad,
    ]
}

/// The StatefulSet the stock controller writes for Server `name` built
/// from ServerConfig `config` (as the webhook receives it).
pub fn controller_statefulset(server_v: &Value, config_v: &Value) -> Value {
    let (Ok(server), Ok(config)) = (
        Server::from_value(server_v),
        ServerConfig::from_value(config_v),
    ) else {
        panic!("seed objects must parse");
    };
    let d = desired(&server, &config);
    let (ns, name) = (&server.meta.namespace, &server.meta.name);
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": ns, "labels": d.labels, "annotations": d.annotations,
            "ownerReferences": [{"apiVersion":"mlops.seldon.io/v1alpha1","kind":"Server","name":name,
                "uid":server.meta.uid,"controller":true,"blockOwnerDeletion":true}]},
        "spec": {"serviceName": name, "replicas": 1, "podManagementPolicy": "Parallel",
            "selector": d.selector,
            "template": {"metadata": {"labels": d.template_labels, "annotations": d.template_annotations},
                "spec": d.pod_spec},
            "volumeClaimTemplates": d.volume_claim_templates}
    })
}

/// An `admission.k8s.io/v1` review of `object`.
pub fn review(operation: &str, object: &Value, old: Option<&Value>) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "e911857d-c318-11e8-bbad-025000000001",
            "kind": {"group": "apps", "version": "v1", "kind": object["kind"]},
            "resource": {"group": "apps", "version": "v1", "resource": "statefulsets"},
            "name": object["metadata"]["name"], "namespace": object["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:seldon-system:seldon-v2-controller-manager"},
            "object": object, "oldObject": old, "dryRun": false
        }
    })
}

/// The handler and a single-threaded runtime to drive it, built once.
pub fn admission() -> &'static (Admission, tokio::runtime::Runtime) {
    static CELL: OnceLock<(Admission, tokio::runtime::Runtime)> = OnceLock::new();
    CELL.get_or_init(|| {
        let metrics = Arc::new(Metrics::new());
        let objects = objects()
            .into_iter()
            .map(|v| serde_json::from_value(v).expect("fixture objects are DynamicObjects"));
        let caches = Caches::from_objects(objects, metrics.clone());
        let admission = Admission {
            settings: Settings {
                controller_namespace: CONTROLLER_NS.into(),
                on_missing: OnMissing::Auto,
            },
            caches,
            metrics,
            desired: Default::default(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        (admission, rt)
    })
}

/// What `render` is given besides the fuzzed document: a controller-built
/// StatefulSet, its Server and the namespace-local ServerConfig.
pub fn render_inputs() -> &'static (Value, Value, Value) {
    static CELL: OnceLock<(Value, Value, Value)> = OnceLock::new();
    CELL.get_or_init(|| {
        let srv = server(TEAM, "mlserver", "mlserver-config");
        let sc = real_config("mlserver", TEAM, "mlserver-config");
        let seldon = real_config("mlserver", CONTROLLER_NS, "mlserver");
        let sts = controller_statefulset(&server(TEAM, "mlserver", "mlserver"), &seldon);
        (sts, srv, sc)
    })
}

/// Runs one review body through the handler, as `/mutate` does, and checks
/// what any answer must satisfy: status 200 or 400, a JSON AdmissionReview
/// body, and a patch that applies to the request's object.
pub fn check_review(data: &[u8]) {
    let (admission, rt) = admission();
    let answer = rt.block_on(admission.review(data));
    assert!(
        answer.status == 200 || answer.status == 400,
        "status {}",
        answer.status
    );
    let body: Value = serde_json::from_slice(&answer.body).expect("answer is JSON");
    assert_eq!(body["kind"], "AdmissionReview", "{body}");
    let response = &body["response"];
    assert!(response["allowed"].is_boolean(), "{body}");
    if answer.status == 400 {
        assert_eq!(response["allowed"], false, "{body}");
        return;
    }
    if let Some(b64) = response.get("patch").and_then(Value::as_str) {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("patch is base64");
        let patch: json_patch::Patch =
            serde_json::from_slice(&bytes).expect("patch is a JSON Patch");
        let input: Value = serde_json::from_slice(data).expect("a 200 answer had JSON input");
        let mut object = input["request"]["object"].clone();
        if let Err(e) = json_patch::patch(&mut object, &patch) {
            panic!("patch does not apply to the request's object: {e}\npatch: {patch:?}");
        }
    }
}

/// Parses one file as `render` does and feeds the document in each of its
/// three roles; a computed patch that does not apply is the only failure.
pub fn check_render(data: &[u8]) {
    use serverconfig_webhook::render::{parse_document, render};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(doc) = parse_document(text) else {
        return;
    };
    let (sts, srv, sc) = render_inputs();
    for result in [
        render(&doc, srv, sc, CONTROLLER_NS),
        render(sts, &doc, sc, CONTROLLER_NS),
        render(sts, srv, &doc, CONTROLLER_NS),
    ] {
        if let Err(e) = result {
            assert!(!e.0.starts_with("internal error"), "{}", e.0);
        }
    }
}
