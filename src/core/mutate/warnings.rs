//! Warnings the admission response carries about the desired workload.

use std::collections::BTreeSet;

use serde_json::Value;

use super::super::desired::{mounts_without_volume, Desired};

/// Warnings about the desired workload itself: containers without an
/// image, duplicate container names.
pub(super) fn desired_warnings(want: &Desired, source: &str) -> Vec<String> {
    let containers: Vec<&Value> = want
        .pod_spec
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let name_of = |c: &Value| {
        c.get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut warnings: Vec<String> = containers
        .iter()
        .filter(|c| {
            c.get("image")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
        })
        .map(|c| {
            format!(
                "serverconfig-webhook: container {:?} has no image in ServerConfig {source}",
                name_of(c)
            )
        })
        .collect();
    let names: BTreeSet<String> = containers.iter().map(|c| name_of(c)).collect();
    if names.len() != containers.len() {
        warnings.push(format!(
            "serverconfig-webhook: merging Server and ServerConfig {source} gives duplicate container names"
        ));
    }
    warnings
}

/// Warnings about a Deployment built from the ServerConfig: volume mounts
/// without a volume, which the API server refuses for a Deployment (it has
/// no claim templates to provide them).
pub(super) fn deployment_warnings(want: &Desired, source: &str) -> Vec<String> {
    let claims: BTreeSet<&str> = want
        .volume_claim_templates
        .iter()
        .filter_map(|v| v.pointer("/metadata/name").and_then(Value::as_str))
        .collect();
    mounts_without_volume(&want.pod_spec)
        .into_iter()
        .map(|(container, volume)| {
            let defined = if claims.contains(volume.as_str()) {
                "defines only as a volumeClaimTemplate; a Deployment has none"
            } else {
                "does not define"
            };
            format!(
                "serverconfig-webhook: container {container:?} mounts volume {volume:?}, which ServerConfig {source} {defined}, so the API server refuses it: add {volume:?} to spec.podSpec.volumes (an emptyDir, or a persistentVolumeClaim)"
            )
        })
        .collect()
}
