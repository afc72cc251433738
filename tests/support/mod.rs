//! Shared test helpers: the real Seldon 2.9.1 fixtures, and a StatefulSet
//! shaped the way the stock controller builds it (`toStatefulSet`) from a
//! Server and whichever ServerConfig it found in its own namespace.
#![allow(dead_code)]

pub mod serve;
pub mod tls;

use serde_json::{json, Value};
use serverconfig_webhook::core::desired::desired;
use serverconfig_webhook::core::model::{Server, ServerConfig};
use serverconfig_webhook::core::placeholder::{placeholder_object, LEGACY_USED_BY_ANNOTATION};

/// All documents of a YAML fixture file under tests/fixtures.
pub fn fixture_docs(name: &str) -> Vec<Value> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The real 2.9.1 ServerConfig `name` (mlserver or triton), placed in `ns`
/// under `new_name`, with every image rewritten by `image`.
pub fn real_server_config(
    name: &str,
    ns: &str,
    new_name: &str,
    image: impl Fn(&str) -> String,
) -> Value {
    let mut sc = fixture_docs("serverconfigs.yaml")
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no ServerConfig {name}"));
    sc["metadata"]["namespace"] = json!(ns);
    sc["metadata"]["name"] = json!(new_name);
    if let Some(cs) = sc
        .pointer_mut("/spec/podSpec/containers")
        .and_then(Value::as_array_mut)
    {
        for c in cs {
            let old = c["image"].as_str().unwrap_or("").to_string();
            c["image"] = json!(image(&old));
        }
    }
    sc
}

/// A placeholder ServerConfig as the sync loop writes it: with no
/// containers the current shape (`core::placeholder`); with container
/// names the shape of releases before 0.2 (names only, no images, and the
/// `used-by` list of the namespaces using it).
pub fn placeholder(ns: &str, name: &str, containers: &[&str]) -> Value {
    let mut p = placeholder_object(name, ns);
    if !containers.is_empty() {
        let cs: Vec<Value> = containers.iter().map(|c| json!({"name": c})).collect();
        p["spec"]["podSpec"]["containers"] = json!(cs);
        p["metadata"]["annotations"][LEGACY_USED_BY_ANNOTATION] = json!("team-a,team-b");
    }
    p
}

/// A Server in `ns` using ServerConfig `sc`, with extra spec fields.
pub fn server(ns: &str, name: &str, sc: &str, extra_spec: Value) -> Value {
    let mut spec = json!({"serverConfig": sc, "replicas": 1});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra_spec.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion":"mlops.seldon.io/v1alpha1","kind":"Server",
        "metadata":{"name":name,"namespace":ns,"uid":"1111-2222"},
        "spec": spec})
}

/// The StatefulSet the stock controller writes for `server` when it found
/// `config` (from its own namespace), with API server defaults applied to
/// the pod template, as the admission webhook receives it.
pub fn controller_statefulset(server_v: &Value, config_v: &Value) -> Value {
    let server = Server::from_value(server_v).expect("server");
    let config = ServerConfig::from_value(config_v).expect("config");
    let d = desired(&server, &config);
    let ns = &server.meta.namespace;
    let name = &server.meta.name;
    // the controller owner reference names this Server by uid too
    let uid = server_v["metadata"]["uid"].as_str().unwrap_or("1111-2222");
    let mut annotations = json!(d.annotations);
    annotations["seldon.io/last-applied"] = json!("UEsDBBQACAAIAAAAAAAAAAAAAAAAAAAAAAA=");
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": ns, "labels": d.labels, "annotations": annotations,
            "ownerReferences": [{"apiVersion":"mlops.seldon.io/v1alpha1","kind":"Server","name":name,
                "uid":uid,"controller":true,"blockOwnerDeletion":true}]},
        "spec": {"serviceName": name, "replicas": 1, "podManagementPolicy": "Parallel",
            "selector": d.selector,
            "template": {"metadata": {"name": name, "namespace": ns, "creationTimestamp": null,
                "labels": d.template_labels, "annotations": d.template_annotations},
                "spec": d.pod_spec},
            "volumeClaimTemplates": d.volume_claim_templates,
            "updateStrategy": {"type":"RollingUpdate","rollingUpdate":{"partition":0}},
            "revisionHistoryLimit": 10}
    })
}

/// Images of the pod template's containers, in order.
pub fn images(sts: &Value) -> Vec<String> {
    sts.pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| c["image"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}
