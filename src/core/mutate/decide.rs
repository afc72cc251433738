//! The decision for an in-scope review: refusals for an unusable Server or
//! ServerConfig, the `--on-missing` policy, and otherwise the patch.

use serde_json::Value;

use super::super::desired::desired;
use super::super::model::{Server, ServerConfig};
use super::super::names::is_valid_name;
use super::super::patch::at;
use super::super::placeholder::is_ours;
use super::build::build_patch;
use super::scope::{controller_owner, owns, Owner};
use super::{Decision, Inputs, OnMissing, Operation, Settings, WorkloadKind};

/// Decides an in-scope admission: computes the desired workload from the
/// Server and its namespace's ServerConfig and the patch that gets there.
pub fn decide(
    operation: Operation,
    kind: WorkloadKind,
    namespace: &str,
    object: &Value,
    inputs: Inputs<'_>,
    settings: &Settings,
) -> Decision {
    if at(object, "/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
        return Decision::Unchanged {
            reason: "being-deleted",
            applied: None,
            warnings: vec![],
        };
    }
    if let Some(part) = not_an_object(object) {
        return Decision::Denied {
            message: format!("serverconfig-webhook: the object's {part} is not a JSON object"),
        };
    }
    let server = match usable_server(object, namespace, inputs.server) {
        Ok(server) => server,
        Err(why) => return refuse(operation, why.to_string()),
    };
    let sc_name = &server.server_config;
    if let Some(err) = inputs.config_error {
        return Decision::Denied {
            message: format!(
                "serverconfig-webhook: cannot apply ServerConfig {namespace}/{sc_name}: {err}"
            ),
        };
    }
    let computed;
    let want = match (inputs.desired, inputs.config) {
        (Some(d), _) => d,
        (None, Some(config)) => {
            computed = desired(server, config);
            &computed
        }
        (None, None) => return on_missing(namespace, sc_name, inputs.controller_config, settings),
    };
    build_patch(operation, kind, namespace, object, want, sc_name, &inputs)
}

/// A Server that cannot be used is refused on CREATE (the object would be
/// built from the wrong ServerConfig) and passed with a warning otherwise
/// (an UPDATE or a deletion must not be blocked by it).
fn refuse(operation: Operation, message: String) -> Decision {
    match operation {
        Operation::Create => Decision::Denied { message },
        _ => Decision::Unchanged {
            reason: "server-unusable",
            applied: None,
            warnings: vec![message],
        },
    }
}

/// Why the Server named by the object's controller owner reference cannot
/// be used; the message is what the client sees.
#[derive(Debug, thiserror::Error)]
enum Unusable {
    #[error("serverconfig-webhook: the controller owner reference names Server {0:?}, which is not a valid Kubernetes name")]
    InvalidOwnerName(String),
    #[error("serverconfig-webhook: Server {namespace}/{name} (uid {uid:?}) named by the controller owner reference does not exist")]
    NoSuchServer {
        namespace: String,
        name: String,
        uid: String,
    },
    #[error("serverconfig-webhook: Server {namespace}/{name} has an empty spec.serverConfig")]
    EmptyServerConfig { namespace: String, name: String },
    #[error("serverconfig-webhook: Server {namespace}/{name} names ServerConfig {config:?}, which is not a valid Kubernetes name")]
    InvalidServerConfigName {
        namespace: String,
        name: String,
        config: String,
    },
}

/// The Server the object's controller owner reference names, when it
/// exists with that uid and names a valid ServerConfig.
fn usable_server<'a>(
    object: &Value,
    namespace: &str,
    server: Option<&'a Server>,
) -> Result<&'a Server, Unusable> {
    let owner = controller_owner(object).unwrap_or(Owner { name: "", uid: "" });
    if !is_valid_name(owner.name) {
        return Err(Unusable::InvalidOwnerName(owner.name.to_string()));
    }
    let Some(server) = server.filter(|s| owns(owner, s)) else {
        return Err(Unusable::NoSuchServer {
            namespace: namespace.to_string(),
            name: owner.name.to_string(),
            uid: owner.uid.to_string(),
        });
    };
    let (namespace, name) = (namespace.to_string(), server.meta.name.clone());
    if server.server_config.is_empty() {
        return Err(Unusable::EmptyServerConfig { namespace, name });
    }
    if !is_valid_name(&server.server_config) {
        return Err(Unusable::InvalidServerConfigName {
            namespace,
            name,
            config: server.server_config.clone(),
        });
    }
    Ok(server)
}

/// The first part the patch writes into that is not an object (`spec`
/// missing, or `spec.template` a number...): the API server never sends
/// such an object, and a patch into it could not apply (found by fuzzing).
fn not_an_object(object: &Value) -> Option<&'static str> {
    if !matches!(object.get("spec"), Some(Value::Object(_))) {
        return Some("spec");
    }
    [
        ("/spec/template", "spec.template"),
        ("/spec/template/metadata", "spec.template.metadata"),
        ("/spec/template/spec", "spec.template.spec"),
    ]
    .into_iter()
    .find(|(path, _)| at(object, path).is_some_and(|v| !v.is_object()))
    .map(|(_, part)| part)
}

fn on_missing(
    namespace: &str,
    sc_name: &str,
    controller_config: Option<&ServerConfig>,
    settings: &Settings,
) -> Decision {
    let ctl = &settings.controller_namespace;
    let shared = controller_config.is_some_and(|c| !is_ours(c));
    let allow = match settings.on_missing {
        OnMissing::Allow => true,
        OnMissing::Deny => false,
        OnMissing::Auto => shared,
    };
    if allow {
        let used = if controller_config.is_some() {
            format!("kept the controller's object built from ServerConfig {ctl}/{sc_name}")
        } else {
            "kept the controller's object".to_string()
        };
        Decision::Unchanged {
            reason: "serverconfig-missing",
            applied: None,
            warnings: vec![format!(
                "serverconfig-webhook: no ServerConfig {sc_name:?} in namespace {namespace:?}; {used}"
            )],
        }
    } else {
        let why = if controller_config.is_some_and(is_ours) {
            format!(" ({ctl}/{sc_name} is only a placeholder with no images)")
        } else if controller_config.is_none() {
            String::new()
        } else {
            " (--on-missing=deny)".to_string()
        };
        Decision::Denied {
            message: format!(
                "serverconfig-webhook: ServerConfig {sc_name:?} not found in namespace {namespace:?}{why}; create it in {namespace:?} so the Server can use it"
            ),
        }
    }
}
