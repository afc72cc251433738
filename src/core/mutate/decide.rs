//! The decision for an in-scope review: refusals for an unusable Server or
//! ServerConfig, the `--on-missing` policy, and otherwise the patch.

use serde_json::Value;

use super::super::desired::desired;
use super::super::model::ServerConfig;
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
            warnings: vec![],
        };
    }
    if let Some(part) = not_an_object(object) {
        return Decision::Denied {
            message: format!("serverconfig-webhook: the object's {part} is not a JSON object"),
        };
    }
    let owner = controller_owner(object).unwrap_or(Owner { name: "", uid: "" });
    let refuse = |message: String| match operation {
        Operation::Create => Decision::Denied { message },
        _ => Decision::Unchanged {
            reason: "server-unusable",
            warnings: vec![message],
        },
    };
    if !is_valid_name(owner.name) {
        return refuse(format!(
            "serverconfig-webhook: the controller owner reference names Server {:?}, which is not a valid Kubernetes name",
            owner.name
        ));
    }
    let Some(server) = inputs.server.filter(|s| owns(owner, s)) else {
        return refuse(format!(
            "serverconfig-webhook: Server {namespace}/{} (uid {:?}) named by the controller owner reference does not exist",
            owner.name, owner.uid
        ));
    };
    if server.server_config.is_empty() {
        return refuse(format!(
            "serverconfig-webhook: Server {namespace}/{} has an empty spec.serverConfig",
            server.meta.name
        ));
    }
    if !is_valid_name(&server.server_config) {
        return refuse(format!(
            "serverconfig-webhook: Server {namespace}/{} names ServerConfig {:?}, which is not a valid Kubernetes name",
            server.meta.name, server.server_config
        ));
    }
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
