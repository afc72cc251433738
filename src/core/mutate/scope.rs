//! The scope check: which reviews are the webhook's at all, and the
//! controller owner reference that names their Server.

use serde_json::Value;

use super::super::model::{Server, SELDON_GROUP};
use super::super::patch::at;
use super::{Operation, Settings, WorkloadKind};

/// The (group, version, kind) of the request, as the review states it.
#[derive(Clone, Copy, Debug)]
pub struct Gvk<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
}

/// Result of the scope check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Not ours: allow with no patch. The reason is for logs and metrics.
    Out(&'static str),
    /// Ours: the owning Server's name.
    In { kind: WorkloadKind, server: String },
}

/// Cheap scope check on the request's kind, operation, namespace and the
/// object's owner references; touches nothing else of the object.
pub fn scope(
    gvk: Gvk<'_>,
    operation: Operation,
    namespace: &str,
    object: Option<&Value>,
    settings: &Settings,
) -> Scope {
    let kind = match (gvk.group, gvk.version, gvk.kind) {
        ("apps", "v1", "StatefulSet") => WorkloadKind::StatefulSet,
        ("apps", "v1", "Deployment") => WorkloadKind::Deployment,
        _ => return Scope::Out("kind"),
    };
    if operation == Operation::Other {
        return Scope::Out("operation");
    }
    if namespace == settings.controller_namespace {
        return Scope::Out("controller-namespace");
    }
    let Some(object) = object else {
        return Scope::Out("no-object");
    };
    match controller_server_owner(object) {
        Some(server) => Scope::In { kind, server },
        None => Scope::Out("not-owned-by-server"),
    }
}

/// Name of the `mlops.seldon.io` Server in the object's controller owner
/// reference, if any.
pub fn controller_server_owner(object: &Value) -> Option<String> {
    controller_owner(object).map(|o| o.name.to_string())
}

/// The controller owner reference to a Server: its name and uid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner<'a> {
    pub name: &'a str,
    /// Empty when the reference carries none (files given to `render`; the
    /// API server requires one).
    pub uid: &'a str,
}

/// The object's controller owner reference to a `mlops.seldon.io` Server.
pub fn controller_owner(object: &Value) -> Option<Owner<'_>> {
    let refs = at(object, "/metadata/ownerReferences")?.as_array()?;
    refs.iter().find_map(|r| {
        let is_controller = r.get("controller").and_then(Value::as_bool) == Some(true);
        let api_version = r.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let group = api_version.split('/').next().unwrap_or("");
        let kind = r.get("kind").and_then(Value::as_str).unwrap_or("");
        let name = r.get("name").and_then(Value::as_str)?;
        let uid = r.get("uid").and_then(Value::as_str).unwrap_or("");
        (is_controller && group == SELDON_GROUP && kind == "Server").then_some(Owner { name, uid })
    })
}

/// Whether the owner reference names this Server: by name, and by uid when
/// both carry one. The uid is what makes a review a capability: whoever
/// cannot read a namespace's Servers cannot know it, so a review made up
/// for another namespace learns nothing of its ServerConfig, not even
/// whether the Server exists (the message is the same).
pub(super) fn owns(owner: Owner<'_>, server: &Server) -> bool {
    owner.name == server.meta.name
        && (owner.uid.is_empty() || server.meta.uid.is_empty() || owner.uid == server.meta.uid)
}
