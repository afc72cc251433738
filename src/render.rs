//! `render`: the webhook's answer for files on disk, offline, through the
//! same core as `serve`. For GitOps pipelines and support engineers.

use std::io::Read;
use std::path::Path;

use serde_json::Value;

use crate::core::model::{Server, ServerConfig};
use crate::core::mutate::{
    decide, scope, Decision, Gvk, Inputs, OnMissing, Operation, Scope, Settings,
};

/// A bad input: exit code 2 with this one sentence.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// What `render` prints.
#[derive(Debug)]
pub struct Rendered {
    /// The fixed object (or the input, unchanged, when out of scope).
    pub object: Value,
    /// The JSON Patch (empty when nothing changes).
    pub patch: Value,
    /// Admission warnings the webhook would return.
    pub warnings: Vec<String>,
}

/// Largest input file `render` reads: a Kubernetes object is at most
/// 1.5 MiB in etcd, and a manifest of one with comments far less.
pub const MAX_INPUT_BYTES: u64 = 4 << 20;

/// Reads one YAML or JSON document from a file (at most
/// [`MAX_INPUT_BYTES`]; a device or pipe that never ends is cut there).
pub fn read_document(path: &Path) -> Result<Value, InputError> {
    let cannot = |e: std::io::Error| InputError(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(InputError(format!(
            "{} is larger than {} MiB; give one Kubernetes object",
            path.display(),
            MAX_INPUT_BYTES >> 20
        )));
    }
    let text = String::from_utf8(bytes)
        .map_err(|e| InputError(format!("{}: not UTF-8 text: {e}", path.display())))?;
    parse_document(&text).map_err(|e| InputError(format!("{}: {e}", path.display())))
}

/// Parses one YAML (or JSON, which is YAML) document; stops at the second.
pub fn parse_document(text: &str) -> Result<Value, String> {
    let mut found: Option<Value> = None;
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v: Value = serde::Deserialize::deserialize(doc)
            .map_err(|e| format!("not valid YAML or JSON: {e}"))?;
        if v.is_null() {
            continue;
        }
        if found.is_some() {
            return Err("the file holds more than one document; give exactly one".into());
        }
        found = Some(v);
    }
    found.ok_or_else(|| "the file holds no document".into())
}

/// Applies the core to a workload, its Server and a ServerConfig.
pub fn render(
    workload: &Value,
    server: &Value,
    server_config: &Value,
    controller_namespace: &str,
) -> Result<Rendered, InputError> {
    let api_version = workload
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = workload.get("kind").and_then(Value::as_str).unwrap_or("");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    if !(group == "apps" && version == "v1" && matches!(kind, "StatefulSet" | "Deployment")) {
        return Err(InputError(format!(
            "--statefulset must be an apps/v1 StatefulSet or Deployment, got {api_version:?} {kind:?}"
        )));
    }
    let server = Server::from_value(server).map_err(|e| InputError(format!("--server: {e}")))?;
    let config = ServerConfig::from_value(server_config)
        .map_err(|e| InputError(format!("--serverconfig: {e}")))?;
    let name = workload
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let namespace = workload
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or(&server.meta.namespace)
        .to_string();
    for (what, ns) in [
        ("Server", &server.meta.namespace),
        ("ServerConfig", &config.meta.namespace),
    ] {
        if !ns.is_empty() && *ns != namespace {
            return Err(InputError(format!(
                "the {what} is in namespace {ns:?} but the {kind} {name:?} is in {namespace:?}; the webhook only uses objects of the workload's own namespace"
            )));
        }
    }
    let settings = Settings {
        controller_namespace: controller_namespace.to_string(),
        on_missing: OnMissing::Deny,
    };
    let gvk = Gvk {
        group,
        version,
        kind,
    };
    let unchanged = |warnings| Rendered {
        object: workload.clone(),
        patch: Value::Array(vec![]),
        warnings,
    };
    let wk = match scope(
        gvk,
        Operation::Create,
        &namespace,
        Some(workload),
        &settings,
    ) {
        Scope::Out(_) => return Ok(unchanged(vec![])),
        Scope::In {
            kind,
            server: owner,
        } => {
            if owner != server.meta.name {
                return Err(InputError(format!(
                    "the {kind:?} {name:?} is owned by Server {owner:?}, not by the given Server {:?}",
                    server.meta.name
                )));
            }
            kind
        }
    };
    if server.server_config != config.meta.name {
        return Err(InputError(format!(
            "Server {:?} uses ServerConfig {:?}, but the given ServerConfig is {:?}",
            server.meta.name, server.server_config, config.meta.name
        )));
    }
    let inputs = Inputs {
        server: Some(&server),
        config: Some(&config),
        ..Inputs::default()
    };
    match decide(
        Operation::Create,
        wk,
        &namespace,
        workload,
        inputs,
        &settings,
    ) {
        Decision::Unchanged { warnings, .. } => Ok(unchanged(warnings)),
        Decision::Patched {
            patch, warnings, ..
        } => {
            let mut object = workload.clone();
            json_patch::patch(&mut object, &patch).map_err(|e| {
                InputError(format!(
                    "internal error: the computed patch does not apply: {e}"
                ))
            })?;
            let patch = serde_json::to_value(&patch).map_err(|e| InputError(e.to_string()))?;
            Ok(Rendered {
                object,
                patch,
                warnings,
            })
        }
        Decision::Denied { message } => Err(InputError(message)),
    }
}
