//! Benchmark 1 of issue 6: one admission in process (decode the review,
//! decide, compute the patch, encode the answer) against the floor (decode
//! + encode of the same review, no logic), same run, same inputs.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::DynamicObject;
use serde_json::{json, Value};
use serverconfig_webhook::admission::Admission;
use serverconfig_webhook::cache::Caches;
use serverconfig_webhook::core::desired::desired;
use serverconfig_webhook::core::model::{Server, ServerConfig};
use serverconfig_webhook::core::mutate::{OnMissing, Settings};
use serverconfig_webhook::metrics::Metrics;

const APP: &str = "team-a";

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/serverconfigs.yaml"
    ))
    .expect("fixture");
    let mut sc = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
        .find(|d: &Value| d["metadata"]["name"] == name)
        .expect("config");
    sc["metadata"]["namespace"] = json!(APP);
    sc
}

fn with_images(mut sc: Value, prefix: &str) -> Value {
    for c in sc["spec"]["podSpec"]["containers"]
        .as_array_mut()
        .expect("containers")
    {
        c["image"] = json!(format!("{prefix}/{}:1", c["name"].as_str().unwrap_or("x")));
    }
    sc
}

fn server(name: &str, sc: &str) -> Value {
    json!({"apiVersion":"mlops.seldon.io/v1alpha1","kind":"Server",
        "metadata":{"name":name,"namespace":APP,"uid":"u"},"spec":{"serverConfig":sc,"replicas":1}})
}

/// A StatefulSet as the controller writes it (from `controller_config`).
fn statefulset(server_v: &Value, controller_config: &Value) -> Value {
    let s = Server::from_value(server_v).expect("server");
    let c = ServerConfig::from_value(controller_config).expect("config");
    let d = desired(&s, &c);
    json!({"apiVersion":"apps/v1","kind":"StatefulSet",
        "metadata":{"name":s.meta.name,"namespace":APP,"labels":d.labels,"annotations":d.annotations,
            "ownerReferences":[{"apiVersion":"mlops.seldon.io/v1alpha1","kind":"Server","name":s.meta.name,"uid":"u","controller":true}]},
        "spec":{"serviceName":s.meta.name,"replicas":1,"selector":d.selector,"podManagementPolicy":"Parallel",
            "template":{"metadata":{"labels":d.template_labels,"annotations":d.template_annotations},"spec":d.pod_spec}}})
}

fn review(object: &Value) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{
        "uid":"b1","kind":{"group":"apps","version":"v1","kind":"StatefulSet"},
        "resource":{"group":"apps","version":"v1","resource":"statefulsets"},
        "name":object["metadata"]["name"],"namespace":object["metadata"]["namespace"],
        "operation":"CREATE","userInfo":{"username":"controller"},"object":object}}),
    )
    .expect("json")
}

/// The floor: decode the review and encode an allow answer, no logic.
fn floor(body: &[u8]) -> Vec<u8> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body).expect("review");
    let req: AdmissionRequest<DynamicObject> = review.try_into().expect("request");
    serde_json::to_vec(&AdmissionResponse::from(&req).into_review()).expect("encode")
}

fn large(ctl: &Value) -> (Value, Value, Value) {
    let mut sc = with_images(fixture("mlserver"), "team");
    let containers = sc["spec"]["podSpec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut many = Vec::new();
    for i in 0..20 {
        for c in &containers {
            let mut c = c.clone();
            c["name"] = json!(format!("{}-{i}", c["name"].as_str().unwrap_or("c")));
            let env: Vec<Value> = (0..50)
                .map(|j| json!({"name": format!("E{j}"), "value": format!("{j}")}))
                .collect();
            c["env"] = json!(env);
            many.push(c);
        }
    }
    sc["spec"]["podSpec"]["containers"] = json!(many);
    sc["spec"]["podSpec"]["volumes"] = json!((0..100)
        .map(|i| json!({"name": format!("v{i}"), "emptyDir": {}}))
        .collect::<Vec<_>>());
    sc["metadata"]["name"] = json!("large");
    let srv = server("large", "large");
    let mut ctl_large = ctl.clone();
    ctl_large["metadata"]["name"] = json!("large");
    let sts = statefulset(&srv, &ctl_large);
    (sc, srv, sts)
}

fn bench(c: &mut Criterion) {
    let ctl = |name: &str| {
        let mut p = with_images(fixture(name), "platform");
        p["metadata"]["namespace"] = json!("seldon-system");
        p
    };
    let ml_team = with_images(fixture("mlserver"), "team");
    let tr_team = with_images(fixture("triton"), "team");
    let (large_sc, large_srv, large_sts) = large(&ctl("mlserver"));
    let ml_srv = server("mlserver", "mlserver");
    let tr_srv = server("triton", "triton");
    let mut out_of_scope = statefulset(&ml_srv, &ctl("mlserver"));
    out_of_scope["metadata"]["ownerReferences"] = json!([]);
    let cases = vec![
        ("mlserver", review(&statefulset(&ml_srv, &ctl("mlserver")))),
        ("triton", review(&statefulset(&tr_srv, &ctl("triton")))),
        ("out_of_scope", review(&out_of_scope)),
        ("large", review(&large_sts)),
    ];
    let objects: Vec<DynamicObject> = [
        ml_team,
        tr_team,
        large_sc,
        ml_srv,
        tr_srv,
        large_srv,
        ctl("mlserver"),
        ctl("triton"),
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v).expect("object"))
    .collect();
    let metrics = Arc::new(Metrics::new());
    let admission = Admission {
        desired: Default::default(),
        settings: Settings {
            controller_namespace: "seldon-system".into(),
            on_missing: OnMissing::Auto,
        },
        caches: Caches::from_objects(objects, metrics.clone()),
        metrics,
    };
    let mut group = c.benchmark_group("admission");
    for (name, body) in &cases {
        group.bench_function(format!("{name}/floor"), |b| {
            b.iter_batched(|| body.clone(), |body| floor(&body), BatchSize::SmallInput)
        });
        group.bench_function(format!("{name}/mutate"), |b| {
            b.iter_batched(
                || body.clone(),
                |body| futures::executor::block_on(admission.review(&body)).body,
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
