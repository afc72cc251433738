//! What a namespace-aware Seldon controller would build for a Server: a port
//! of `NewServerReconciler` + `toStatefulSet` (2.9.1) with the ServerConfig
//! taken from the Server's own namespace.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::defaults::{default_pod_spec, default_pvc_spec, normalize};
use super::merge::{merge_pod_specs, update_capabilities};
use super::model::{Server, ServerConfig};

/// `app.kubernetes.io/name`, forced to `seldon-server` by the controller.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Value of [`NAME_LABEL`] on Server workloads.
pub const SERVER_LABEL_VALUE: &str = "seldon-server";
/// Selector label carrying the Server's name.
pub const SERVER_NAME_LABEL: &str = "seldon-server-name";

/// Keys `utils.MergeMaps` drops from merged labels and annotations.
const DROPPED_KEYS: &[&str] = &[
    "meta.helm.sh/release-name",
    "meta.helm.sh/release-namespace",
    "kubectl.kubernetes.io/last-applied-configuration",
];

/// The parts of the workload that depend on the Server and its ServerConfig.
/// Serialisable so that a cache can keep it packed (as JSON) between uses.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Desired {
    /// Object labels: the Server's, then the ServerConfig's, plus the name label.
    pub labels: BTreeMap<String, String>,
    /// Object annotations (the same merge; `seldon.io/last-applied` is the
    /// controller's and never part of this).
    pub annotations: BTreeMap<String, String>,
    /// Pod template labels (adds `seldon-server-name`).
    pub template_labels: BTreeMap<String, String>,
    /// Pod template annotations: a copy of `annotations`.
    pub template_annotations: BTreeMap<String, String>,
    /// The merged pod spec with the API server's defaults applied.
    pub pod_spec: Value,
    /// `spec.volumeClaimTemplates` entries (name + defaulted spec).
    pub volume_claim_templates: Vec<Value>,
    /// `spec.serviceName` of a StatefulSet.
    pub service_name: String,
    /// `spec.selector`.
    pub selector: Value,
    /// Content hash of everything above that lands in the pod template.
    pub hash: String,
    /// `normalize(pod_spec)`, computed once: every admission compares
    /// the stored template against it.
    pub pod_spec_normalized: Value,
    /// [`vct_identity`] of each of `volume_claim_templates`, computed once
    /// for the same reason.
    pub volume_claim_template_identities: Vec<Value>,
}

/// `utils.MergeMaps(child, parent)`: child wins, three keys dropped.
pub fn merge_maps(
    child: &BTreeMap<String, String>,
    parent: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut merged = parent.clone();
    merged.extend(child.iter().map(|(k, v)| (k.clone(), v.clone())));
    for k in DROPPED_KEYS {
        merged.remove(*k);
    }
    merged
}

/// Builds the desired workload parts from a Server and the ServerConfig of
/// its own namespace.
pub fn desired(server: &Server, config: &ServerConfig) -> Desired {
    let mut pod_spec = merge_pod_specs(&config.pod_spec, server.pod_spec.as_ref());
    update_capabilities(
        &server.capabilities,
        &server.extra_capabilities,
        &mut pod_spec,
    );
    default_pod_spec(&mut pod_spec);

    let mut labels = merge_maps(&server.meta.labels, &config.meta.labels);
    labels.insert(NAME_LABEL.into(), SERVER_LABEL_VALUE.into());
    let annotations = merge_maps(&server.meta.annotations, &config.meta.annotations);
    let mut template_labels = labels.clone();
    template_labels.insert(SERVER_NAME_LABEL.into(), server.meta.name.clone());

    let volume_claim_templates: Vec<Value> = config
        .volume_claim_templates
        .iter()
        .map(|vct| {
            let mut spec = vct.spec.clone();
            default_pvc_spec(&mut spec);
            json!({"metadata": {"name": vct.name}, "spec": spec})
        })
        .collect();

    let pod_spec = Value::Object(pod_spec);
    let hash = content_hash(&[
        &pod_spec,
        &json!(template_labels),
        &json!(annotations),
        &Value::Array(volume_claim_templates.clone()),
    ]);
    let pod_spec_normalized = normalize(&pod_spec);
    let volume_claim_template_identities =
        volume_claim_templates.iter().map(vct_identity).collect();
    Desired {
        template_annotations: annotations.clone(),
        labels,
        annotations,
        template_labels,
        pod_spec,
        volume_claim_templates,
        service_name: server.meta.name.clone(),
        selector: json!({"matchLabels": {SERVER_NAME_LABEL: server.meta.name}}),
        hash,
        pod_spec_normalized,
        volume_claim_template_identities,
    }
}

/// Short, stable hash of the normalised values (order of map keys does not
/// matter: serde_json maps are sorted).
fn content_hash(parts: &[&Value]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(normalize(p).to_string().as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Normalised view of a VolumeClaimTemplate as stored: only name and spec
/// count (the API server adds apiVersion, kind and status.phase).
pub fn vct_identity(vct: &Value) -> Value {
    let mut spec = vct
        .get("spec")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_else(Map::new);
    default_pvc_spec(&mut spec);
    normalize(&json!({
        "name": vct.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
        "spec": spec,
    }))
}

/// How a stored workload's pod template differs from the desired one, for
/// messages: per container, a missing container or another image; else
/// that other fields differ.
pub fn differences(workload: &Value, want: &Desired) -> Vec<String> {
    let containers = |v: &Value| -> BTreeMap<String, String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let field = |f: &str| c.get(f).and_then(Value::as_str).unwrap_or("").to_string();
                (field("name"), field("image"))
            })
            .collect()
    };
    let stored = containers(
        workload
            .pointer("/spec/template/spec/containers")
            .unwrap_or(&Value::Null),
    );
    let wanted = containers(want.pod_spec.get("containers").unwrap_or(&Value::Null));
    let mut out: Vec<String> = wanted
        .iter()
        .filter_map(|(name, image)| match stored.get(name) {
            None => Some(format!("container {name} missing")),
            Some(img) if img != image => Some(format!(
                "container {name} has image {img:?}, want {image:?}"
            )),
            _ => None,
        })
        .collect();
    out.extend(
        stored
            .keys()
            .filter(|n| !wanted.contains_key(*n))
            .map(|n| format!("container {n} not wanted")),
    );
    if out.is_empty() {
        out.push("images match; other fields differ".into());
    }
    out
}

/// `(container, volume)` for every volume mount of the pod spec whose volume
/// the pod spec does not define. A StatefulSet gets such volumes from its
/// claim templates; a Deployment (Seldon 2.10's
/// `--use-deployments-for-servers`) has none, and the API server refuses
/// its pod template (`volumeMounts[0].name: Not found`).
pub fn mounts_without_volume(pod_spec: &Value) -> Vec<(String, String)> {
    let name = |v: &Value| {
        v.get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let volumes: std::collections::BTreeSet<String> = pod_spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(name)
        .collect();
    ["initContainers", "containers"]
        .iter()
        .flat_map(|k| {
            pod_spec
                .get(*k)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .flat_map(|c| {
            c.get("volumeMounts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(name)
                .filter(|m| !volumes.contains(m))
                .map(|m| (name(c), m))
                .collect::<Vec<_>>()
        })
        .collect()
}
