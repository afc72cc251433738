//! The admission decision: is an object in scope, and if so which JSON Patch
//! turns it into what a namespace-aware controller would have built. Pure:
//! every lookup result is handed in.
//!
//! [`scope`] is the cheap check every review passes; [`decide`] takes an
//! in-scope review and its lookups to a [`Decision`], building the patch in
//! `build` (labels and annotations in `labels`, warnings in `warnings`).

mod audit;
mod build;
mod decide;
mod labels;
mod scope;
mod warnings;

use json_patch::Patch;
use serde_json::Value;

use super::desired::Desired;
use super::model::{Server, ServerConfig};

pub use audit::{audit_annotations, out_of_scope_audit_annotations, AUDIT_VALUE_MAX_RUNES};
pub use decide::decide;
pub use scope::{controller_owner, controller_server_owner, scope, Gvk, Owner, Scope};
pub use warnings::{within_api_server_limits, WARNINGS_MAX_RUNES, WARNING_MAX_RUNES};

/// Annotation naming the ServerConfig the webhook applied (`<ns>/<name>`).
pub const SOURCE_ANNOTATION: &str = "serverconfig-webhook/source";

/// Annotation with the content hash of what the webhook applied.
pub const HASH_ANNOTATION: &str = "serverconfig-webhook/hash";

/// The controller's own comparison base; the webhook never touches it.
pub const LAST_APPLIED_ANNOTATION: &str = "seldon.io/last-applied";

/// What to do when the object's namespace has no ServerConfig of that name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMissing {
    /// Keep the controller's object and add a warning.
    Allow,
    /// Reject the request with a message naming namespace and ServerConfig.
    Deny,
    /// Allow when the controller namespace holds a real (non-placeholder)
    /// ServerConfig of that name, deny otherwise.
    Auto,
}

/// Settings the decision depends on.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The Seldon controller's namespace; objects there are out of scope.
    pub controller_namespace: String,
    /// Policy for a missing namespace-local ServerConfig.
    pub on_missing: OnMissing,
}

/// Admission operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Other,
}

/// Workload kinds the controller builds for a Server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadKind {
    StatefulSet,
    Deployment,
}

/// What the lookups found, handed to [`decide`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Inputs<'a> {
    /// The owning Server, from the object's namespace.
    pub server: Option<&'a Server>,
    /// The ServerConfig named by the Server, from the object's namespace.
    pub config: Option<&'a ServerConfig>,
    /// A ServerConfig found there that could not be read, with the reason.
    pub config_error: Option<&'a str>,
    /// The same-named ServerConfig in the controller namespace (what the
    /// stock controller used), for `--on-missing auto` and copied keys.
    pub controller_config: Option<&'a ServerConfig>,
    /// The stored object, on UPDATE (the review's `oldObject`).
    pub old_object: Option<&'a Value>,
    /// [`desired`] for this Server and ServerConfig, when the caller keeps
    /// it cached per resourceVersion; computed here when absent. When given,
    /// the ServerConfig exists and `config` may be left out.
    pub desired: Option<&'a Desired>,
}

/// The namespace's ServerConfig a decision applied, or found applied: what
/// the object's [`SOURCE_ANNOTATION`] and [`HASH_ANNOTATION`] say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// `<namespace>/<name>` of the ServerConfig.
    pub source: String,
    /// The content hash of the Server and ServerConfig applied.
    pub hash: String,
}

/// The outcome of one admission.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Allowed with no patch.
    Unchanged {
        reason: &'static str,
        /// The namespace's ServerConfig, when the object already holds it.
        applied: Option<Applied>,
        warnings: Vec<String>,
    },
    /// Allowed with a patch that applies the namespace's ServerConfig.
    Patched {
        patch: Patch,
        applied: Applied,
        warnings: Vec<String>,
    },
    /// Rejected, with the message the client sees.
    Denied { message: String },
}

impl Decision {
    /// Short outcome name for metrics and logs.
    pub fn outcome(&self) -> &'static str {
        match self {
            Decision::Unchanged { .. } => "unchanged",
            Decision::Patched { .. } => "patched",
            Decision::Denied { .. } => "denied",
        }
    }
}
