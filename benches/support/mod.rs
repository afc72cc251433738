//! Inputs shared by the in-process benchmarks (`core`, `growth`): the real
//! Seldon 2.9.1 ServerConfigs and Servers from `tests/fixtures`, the
//! StatefulSet the stock controller writes for them, AdmissionReview
//! bodies, and the floor (decode + encode with no logic).

#![allow(dead_code)] // each bench target uses a different subset

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::DynamicObject;
use serde_json::{json, Value};
use serverconfig_webhook::admission::Admission;
use serverconfig_webhook::cache::Caches;
use serverconfig_webhook::core::desired::desired;
use serverconfig_webhook::core::model::{Server, ServerConfig};
use serverconfig_webhook::core::mutate::{OnMissing, Settings};
use serverconfig_webhook::metrics::Metrics;

/// Namespace of the Seldon controller (holds the shared ServerConfigs).
pub const CONTROLLER_NS: &str = "seldon-system";

fn documents(file: &str) -> Vec<Value> {
    let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("fixture yaml"))
        .filter(|d: &Value| !d.is_null())
        .collect()
}

fn named(file: &str, name: &str) -> Value {
    documents(file)
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {file}"))
}

/// The 2.9.1 ServerConfig `name` (`mlserver` or `triton`) placed in `ns`,
/// with a resourceVersion like every object a watch cache holds.
pub fn config(name: &str, ns: &str) -> Value {
    let mut sc = named("serverconfigs.yaml", name);
    sc["metadata"]["namespace"] = json!(ns);
    sc["metadata"]["uid"] = json!(format!("uid-sc-{ns}-{name}"));
    sc["metadata"]["resourceVersion"] = json!("1");
    sc
}

/// The 2.9.1 Server `name` in `ns`, using ServerConfig `sc`.
pub fn server(name: &str, sc: &str, ns: &str) -> Value {
    let base = if name == "mlserver" || name == "triton" {
        name
    } else {
        "mlserver"
    };
    let mut s = named("servers.yaml", base);
    s["metadata"]["name"] = json!(name);
    s["metadata"]["namespace"] = json!(ns);
    s["metadata"]["uid"] = json!(format!("uid-server-{ns}-{name}"));
    s["metadata"]["resourceVersion"] = json!("1");
    s["spec"]["serverConfig"] = json!(sc);
    s
}

/// Replaces every container image with `<prefix>/<container>:1`.
pub fn with_images(mut sc: Value, prefix: &str) -> Value {
    for c in sc["spec"]["podSpec"]["containers"]
        .as_array_mut()
        .expect("containers")
    {
        c["image"] = json!(format!("{prefix}/{}:1", c["name"].as_str().unwrap_or("x")));
    }
    sc
}

/// Makes a ServerConfig large: `copies` copies of each container (renamed),
/// each with `env` extra env entries, plus `volumes` extra volumes.
pub fn enlarge(mut sc: Value, copies: usize, env: usize, volumes: usize) -> Value {
    let containers = sc["spec"]["podSpec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut many = Vec::new();
    for i in 0..copies {
        for c in &containers {
            let mut c = c.clone();
            if i > 0 {
                c["name"] = json!(format!("{}-{i}", c["name"].as_str().unwrap_or("c")));
            }
            let extra =
                (0..env).map(|j| json!({"name": format!("EXTRA_{j}"), "value": format!("{j}")}));
            let mut all: Vec<Value> = c["env"].as_array().cloned().unwrap_or_default();
            all.extend(extra);
            c["env"] = json!(all);
            many.push(c);
        }
    }
    sc["spec"]["podSpec"]["containers"] = json!(many);
    let mut vols: Vec<Value> = sc["spec"]["podSpec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    vols.extend((0..volumes).map(|i| json!({"name": format!("extra-{i}"), "emptyDir": {}})));
    sc["spec"]["podSpec"]["volumes"] = json!(vols);
    sc
}

/// The StatefulSet the stock controller writes for `server` from
/// `controller_config` (the controller-namespace ServerConfig).
pub fn statefulset(server: &Value, controller_config: &Value) -> Value {
    let s = Server::from_value(server).expect("server");
    let c = ServerConfig::from_value(controller_config).expect("config");
    let d = desired(&s, &c);
    json!({"apiVersion":"apps/v1","kind":"StatefulSet",
        "metadata":{"name":s.meta.name,"namespace":s.meta.namespace,"labels":d.labels,"annotations":d.annotations,
            "ownerReferences":[{"apiVersion":"mlops.seldon.io/v1alpha1","kind":"Server","name":s.meta.name,
                "uid":s.meta.uid,"controller":true,"blockOwnerDeletion":true}]},
        "spec":{"serviceName":s.meta.name,"replicas":1,"selector":d.selector,"podManagementPolicy":"Parallel",
            "template":{"metadata":{"labels":d.template_labels,"annotations":d.template_annotations},"spec":d.pod_spec},
            "volumeClaimTemplates":d.volume_claim_templates}})
}

/// An AdmissionReview body for `object` (`CREATE`, or `UPDATE` with `old`).
pub fn review(object: &Value, old: Option<&Value>) -> Vec<u8> {
    let mut request = json!({
        "uid":"705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind":{"group":"apps","version":"v1","kind":"StatefulSet"},
        "resource":{"group":"apps","version":"v1","resource":"statefulsets"},
        "requestKind":{"group":"apps","version":"v1","kind":"StatefulSet"},
        "requestResource":{"group":"apps","version":"v1","resource":"statefulsets"},
        "name":object["metadata"]["name"],"namespace":object["metadata"]["namespace"],
        "operation":"CREATE",
        "userInfo":{"username":"system:serviceaccount:seldon-system:seldon-v2-controller-manager",
            "uid":"u","groups":["system:serviceaccounts","system:authenticated"]},
        "object":object,"oldObject":null,"dryRun":false,
        "options":{"apiVersion":"meta.k8s.io/v1","kind":"CreateOptions","fieldManager":"manager"}});
    if let Some(old) = old {
        request["operation"] = json!("UPDATE");
        request["oldObject"] = old.clone();
        request["options"]["kind"] = json!("UpdateOptions");
    }
    serde_json::to_vec(
        &json!({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":request}),
    )
    .expect("json")
}

/// The floor: decode the review and encode an allow answer, no logic.
/// Decodes as the handler does (UTF-8 check, then `from_str`, which is
/// cheaper than `from_slice` as strings need no second validation).
pub fn floor(body: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(body).expect("utf-8");
    let review: AdmissionReview<DynamicObject> = serde_json::from_str(text).expect("review");
    let req: AdmissionRequest<DynamicObject> = review.try_into().expect("request");
    serde_json::to_vec(&AdmissionResponse::from(&req).into_review()).expect("encode")
}

/// `object` as the caches hold it.
pub fn dynamic(object: Value) -> DynamicObject {
    serde_json::from_value(object).expect("object")
}

/// The handler with caches pre-filled from `objects` (no API server).
pub fn admission(objects: Vec<Value>) -> Admission {
    admission_from(objects.into_iter().map(dynamic))
}

/// [`admission`] from objects already converted with [`dynamic`].
pub fn admission_from(objects: impl IntoIterator<Item = DynamicObject>) -> Admission {
    let metrics = Arc::new(Metrics::new());
    Admission {
        desired: Default::default(),
        settings: Settings {
            controller_namespace: CONTROLLER_NS.into(),
            on_missing: OnMissing::Auto,
        },
        caches: Caches::from_objects(objects, metrics.clone()),
        metrics,
    }
}

/// One full admission: the response body.
pub fn mutate(admission: &Admission, body: &[u8]) -> Vec<u8> {
    futures::executor::block_on(admission.review(body)).body
}

/// The decoded response of an answer body.
pub fn response(answer: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(answer).expect("answer json");
    v["response"].clone()
}

/// Applies the response's patch (base64 or byte array) to `object`.
pub fn apply(object: &Value, answer: &[u8]) -> Value {
    use base64::Engine;
    let r = response(answer);
    let bytes = match &r["patch"] {
        Value::String(s) => base64::engine::general_purpose::STANDARD
            .decode(s)
            .expect("base64 patch"),
        Value::Null => return object.clone(),
        other => serde_json::from_value::<Vec<u8>>(other.clone()).expect("byte patch"),
    };
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch");
    let mut out = object.clone();
    json_patch::patch(&mut out, &patch).expect("patch applies");
    out
}

/// Median wall time of `f` in nanoseconds over `samples` samples of `batch`
/// calls each (for the `growth` bench, which runs outside criterion).
pub fn median_ns(samples: usize, batch: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..batch {
        f();
    }
    let mut times: Vec<f64> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                f();
            }
            t.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// `target/` of this workspace (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target")))
}

/// `target/bench-results/<file>`, with the directory created.
pub fn results_path(file: &str) -> PathBuf {
    let dir = target_dir().join("bench-results");
    std::fs::create_dir_all(&dir).expect("create target/bench-results");
    dir.join(file)
}
