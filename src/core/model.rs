//! Read-only views of the Seldon objects the core needs: a `Server` and a
//! `ServerConfig` (group `mlops.seldon.io`), parsed from their JSON with
//! specific errors for bad input.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::bounds::{check_value, Limits};

/// Label that marks objects this tool owns (placeholders).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`] on objects this tool owns.
pub const MANAGED_BY_VALUE: &str = "serverconfig-webhook";
/// API group of Seldon's resources.
pub const SELDON_GROUP: &str = "mlops.seldon.io";

/// Why a Seldon object could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    /// The object is not of the expected kind.
    #[error("expected a {expected} but got kind {got:?}")]
    WrongKind { expected: &'static str, got: String },
    /// A field has the wrong shape.
    #[error("{what} {namespace}/{name}: {detail}")]
    Invalid {
        what: &'static str,
        namespace: String,
        name: String,
        detail: String,
    },
}

/// Name, namespace, labels and annotations of an object.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub resource_version: String,
    #[serde(default)]
    pub uid: String,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawServerSpec {
    #[serde(default, deserialize_with = "null_as_default")]
    server_config: String,
    #[serde(default, deserialize_with = "null_as_default")]
    capabilities: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    extra_capabilities: Vec<String>,
    #[serde(default)]
    pod_spec: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "null_as_default")]
    disable_auto_update: bool,
}

/// A Seldon `Server`: what the core reads of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Server {
    pub meta: Meta,
    /// `spec.serverConfig`: the ServerConfig name.
    pub server_config: String,
    pub capabilities: Vec<String>,
    pub extra_capabilities: Vec<String>,
    /// `spec.podSpec`: Seldon's override of the ServerConfig pod spec.
    pub pod_spec: Option<Map<String, Value>>,
    pub disable_auto_update: bool,
}

/// One `spec.volumeClaimTemplates` entry of a ServerConfig.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct VolumeClaimTemplate {
    pub name: String,
    #[serde(default)]
    pub spec: Map<String, Value>,
}

/// A Seldon `ServerConfig`: what the core reads of it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    pub meta: Meta,
    pub pod_spec: Map<String, Value>,
    pub volume_claim_templates: Vec<VolumeClaimTemplate>,
}

fn check_kind(obj: &Value, expected: &'static str) -> Result<(), ModelError> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let group_ok = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .is_none_or(|v| v.starts_with(&format!("{SELDON_GROUP}/")));
    if kind != expected || !group_ok {
        return Err(ModelError::WrongKind {
            expected,
            got: format!(
                "{} {}",
                obj.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
                kind
            )
            .trim()
            .to_string(),
        });
    }
    Ok(())
}

fn meta_of(obj: &Value, what: &'static str) -> Result<Meta, ModelError> {
    let raw = obj.get("metadata").cloned().unwrap_or(Value::Null);
    Meta::deserialize(&raw).map_err(|e| ModelError::Invalid {
        what,
        namespace: String::new(),
        name: String::new(),
        detail: format!("metadata: {e}"),
    })
}

impl Server {
    /// Reads a Server from its JSON (API object or manifest).
    pub fn from_value(obj: &Value) -> Result<Server, ModelError> {
        check_kind(obj, "Server")?;
        let meta = meta_of(obj, "Server")?;
        let spec_raw = obj.get("spec").cloned().unwrap_or(Value::Null);
        check_value(&spec_raw, Limits::default()).map_err(|e| ModelError::Invalid {
            what: "Server",
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            detail: e.under("spec").to_string(),
        })?;
        let spec = Option::<RawServerSpec>::deserialize(&spec_raw)
            .map_err(|e| ModelError::Invalid {
                what: "Server",
                namespace: meta.namespace.clone(),
                name: meta.name.clone(),
                detail: format!("spec: {e}"),
            })?
            .unwrap_or_default();
        Ok(Server {
            meta,
            server_config: spec.server_config,
            capabilities: spec.capabilities,
            extra_capabilities: spec.extra_capabilities,
            pod_spec: spec.pod_spec,
            disable_auto_update: spec.disable_auto_update,
        })
    }
}

impl ServerConfig {
    /// Reads a ServerConfig from its JSON, checking that `spec.podSpec` is a
    /// valid Kubernetes pod spec.
    pub fn from_value(obj: &Value) -> Result<ServerConfig, ModelError> {
        check_kind(obj, "ServerConfig")?;
        let meta = meta_of(obj, "ServerConfig")?;
        let invalid = |detail: String| ModelError::Invalid {
            what: "ServerConfig",
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            detail,
        };
        if let Some(spec) = obj.get("spec") {
            check_value(spec, Limits::default())
                .map_err(|e| invalid(e.under("spec").to_string()))?;
        }
        let pod_spec = match obj.pointer("/spec/podSpec") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                return Err(invalid(format!(
                    "spec.podSpec must be an object, got {}",
                    json_type(other)
                )))
            }
        };
        serde_json::from_value::<k8s_openapi::api::core::v1::PodSpec>(Value::Object(
            with_default_containers(&pod_spec),
        ))
        .map_err(|e| invalid(format!("spec.podSpec is not a valid pod spec: {e}")))?;
        let volume_claim_templates = match obj.pointer("/spec/volumeClaimTemplates") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => Vec::<VolumeClaimTemplate>::deserialize(v)
                .map_err(|e| invalid(format!("spec.volumeClaimTemplates: {e}")))?,
        };
        Ok(ServerConfig {
            meta,
            pod_spec,
            volume_claim_templates,
        })
    }
}

/// k8s-openapi requires `containers`; a ServerConfig may omit it.
fn with_default_containers(spec: &Map<String, Value>) -> Map<String, Value> {
    let mut m = spec.clone();
    m.entry("containers")
        .or_insert_with(|| Value::Array(vec![]));
    m
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_config_rejects_invalid_pod_spec() {
        let sc = json!({"apiVersion":"mlops.seldon.io/v1alpha1","kind":"ServerConfig",
            "metadata":{"name":"x","namespace":"a"},
            "spec":{"podSpec":{"containers":"not-a-list"}}});
        let err = ServerConfig::from_value(&sc).unwrap_err().to_string();
        assert!(err.contains("ServerConfig a/x"), "{err}");
        assert!(err.contains("not a valid pod spec"), "{err}");
    }

    #[test]
    fn wrong_kind_is_named() {
        let err = Server::from_value(&json!({"apiVersion":"v1","kind":"Pod"})).unwrap_err();
        assert_eq!(err.to_string(), "expected a Server but got kind \"v1 Pod\"");
    }

    #[test]
    fn server_with_null_fields_parses() {
        let s = json!({"apiVersion":"mlops.seldon.io/v1alpha1","kind":"Server",
            "metadata":{"name":"m","namespace":"a","labels":null,"annotations":null},
            "spec":{"serverConfig":"mlserver","podSpec":null}});
        let s = Server::from_value(&s).unwrap();
        assert_eq!(s.server_config, "mlserver");
        assert!(s.pod_spec.is_none());
    }
}
