//! The admission decision: is an object in scope, and if so which JSON Patch
//! turns it into what a namespace-aware controller would have built. Pure:
//! every lookup result is handed in.

use std::collections::{BTreeMap, BTreeSet};

use json_patch::jsonptr::{Pointer, PointerBuf};
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use serde_json::{json, Value};

use super::defaults::{eq_normalized, normalize};
use super::desired::{desired, vct_identity, Desired};
use super::model::{Server, ServerConfig, SELDON_GROUP};

/// Annotation naming the ServerConfig the webhook applied (`<ns>/<name>`).
pub const SOURCE_ANNOTATION: &str = "serverconfig-webhook/source";
/// Annotation with the content hash of what the webhook applied.
pub const HASH_ANNOTATION: &str = "serverconfig-webhook/hash";
/// The controller's own comparison base; the webhook never touches it.
pub const LAST_APPLIED_ANNOTATION: &str = "seldon.io/last-applied";

/// What to do when the object's namespace has no ServerConfig of that name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
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

/// `value.pointer(path)` for this module's constant paths (no `~`
/// escapes, no array indexes), without allocating per segment: the hot
/// path looks up a dozen paths per admission.
fn at<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('/')
        .skip(1)
        .try_fold(value, |v, key| v.as_object()?.get(key))
}

/// Name of the `mlops.seldon.io` Server in the object's controller owner
/// reference, if any.
pub fn controller_server_owner(object: &Value) -> Option<String> {
    let refs = at(object, "/metadata/ownerReferences")?.as_array()?;
    refs.iter().find_map(|r| {
        let is_controller = r.get("controller").and_then(Value::as_bool) == Some(true);
        let api_version = r.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let group = api_version.split('/').next().unwrap_or("");
        let kind = r.get("kind").and_then(Value::as_str).unwrap_or("");
        (is_controller && group == SELDON_GROUP && kind == "Server")
            .then(|| r.get("name").and_then(Value::as_str).map(str::to_string))
            .flatten()
    })
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

/// The outcome of one admission.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Allowed with no patch.
    Unchanged {
        reason: &'static str,
        warnings: Vec<String>,
    },
    /// Allowed with a patch that applies the namespace's ServerConfig.
    Patched {
        patch: Patch,
        source: String,
        hash: String,
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
    let owner = controller_server_owner(object).unwrap_or_default();
    let refuse = |message: String| match operation {
        Operation::Create => Decision::Denied { message },
        _ => Decision::Unchanged {
            reason: "server-unusable",
            warnings: vec![message],
        },
    };
    let Some(server) = inputs.server else {
        return refuse(format!(
            "serverconfig-webhook: Server {namespace}/{owner} named by the controller owner reference does not exist"
        ));
    };
    if server.server_config.is_empty() {
        return refuse(format!(
            "serverconfig-webhook: Server {namespace}/{} has an empty spec.serverConfig",
            server.meta.name
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
    let shared = controller_config.is_some_and(|c| !c.is_placeholder());
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
        let why = if controller_config.is_some_and(|c| c.is_placeholder()) {
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

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// What to do with the keys the controller copied from the
/// controller-namespace ServerConfig.
#[derive(Clone)]
enum Copied<'a> {
    /// Nothing known about the controller's ServerConfig.
    Unknown,
    /// A real shared ServerConfig: its keys are not desired, drop them.
    Drop(&'a BTreeMap<String, String>),
    /// A placeholder: keep its keys in the pod template with the value
    /// they had when the workload was created. The stock controller copies
    /// ServerConfig labels and annotations into the template and compares
    /// the template on every reconcile; without them it would send an
    /// Update each time, and with live values a change of the placeholder's
    /// annotations would roll every pod that uses it.
    Freeze {
        keys: &'a BTreeMap<String, String>,
        stored: Option<BTreeMap<String, String>>,
    },
}

/// Keeps keys other parties set on the object (for example
/// `kubectl.kubernetes.io/restartedAt`), treats keys copied from the
/// controller-namespace ServerConfig as [`Copied`] says, and sets every
/// desired key.
fn reconcile_map(
    current: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
    copied: &Copied<'_>,
) -> BTreeMap<String, String> {
    let mut out = current.clone();
    match copied {
        Copied::Unknown => {}
        Copied::Drop(keys) => {
            for k in keys.keys() {
                if !wanted.contains_key(k) && k != LAST_APPLIED_ANNOTATION {
                    out.remove(k);
                }
            }
        }
        Copied::Freeze { keys, stored } => {
            for k in keys.keys() {
                if let Some(v) = stored.as_ref().and_then(|s| s.get(k)) {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
    }
    out.extend(wanted.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

struct PatchBuilder<'a> {
    object: &'a Value,
    ops: Vec<PatchOperation>,
}

impl PatchBuilder<'_> {
    /// Adds an op setting `path` to `value` unless it is already equal
    /// semantically. The parent must exist (callers ensure it).
    fn set(&mut self, path: &str, value: Value) {
        let normalized = normalize(&value);
        if !self.equals(path, &normalized) {
            self.put(path, &value);
        }
    }

    /// [`Self::set`] for a borrowed value whose normal form is known (the
    /// pod spec, which an already-fixed object matches): nothing is copied
    /// when it is equal, and otherwise only what the patch writes.
    fn set_normalized(&mut self, path: &str, value: &Value, normalized: &Value) {
        if !self.equals(path, normalized) {
            self.put(path, value);
        }
    }

    /// Whether the object holds a value at `path` whose normal form is `normalized`.
    fn equals(&self, path: &str, normalized: &Value) -> bool {
        at(self.object, path).is_some_and(|c| eq_normalized(normalized, c))
    }

    /// Adds ops setting `path` to `value`. Where an object or array is
    /// already there, only the fields that differ are written (a diff, not
    /// a replacement of the whole value): the controller's objects differ
    /// from what is wanted in a few images and annotations, and a small
    /// patch is cheaper for the API server to read and apply than a copy
    /// of the pod spec and of `seldon.io/last-applied`. Applied, both give
    /// the same object. `value` is copied only where it is written whole.
    fn put(&mut self, path: &str, value: &Value) {
        let Ok(pointer) = path.parse::<PointerBuf>() else {
            return; // paths are constants of this module
        };
        match at(self.object, path) {
            Some(current) if same_container(current, value) => {
                self.ops.extend(
                    json_patch::diff(current, value)
                        .0
                        .into_iter()
                        .map(|op| under(&pointer, op)),
                );
            }
            Some(_) => self.ops.push(PatchOperation::Replace(ReplaceOperation {
                path: pointer,
                value: value.clone(),
            })),
            None => self.ops.push(PatchOperation::Add(AddOperation {
                path: pointer,
                value: value.clone(),
            })),
        }
    }
}

/// Both objects or both arrays: a diff between them is a valid patch.
fn same_container(a: &Value, b: &Value) -> bool {
    matches!(
        (a, b),
        (Value::Object(_), Value::Object(_)) | (Value::Array(_), Value::Array(_))
    )
}

/// `op` (from a diff of the value at `prefix`) with its paths made absolute.
fn under(prefix: &Pointer, mut op: PatchOperation) -> PatchOperation {
    let absolute = |p: &mut PointerBuf| *p = prefix.concat(p);
    match &mut op {
        PatchOperation::Add(o) => absolute(&mut o.path),
        PatchOperation::Remove(o) => absolute(&mut o.path),
        PatchOperation::Replace(o) => absolute(&mut o.path),
        PatchOperation::Test(o) => absolute(&mut o.path),
        PatchOperation::Move(o) => {
            absolute(&mut o.from);
            absolute(&mut o.path);
        }
        PatchOperation::Copy(o) => {
            absolute(&mut o.from);
            absolute(&mut o.path);
        }
    }
    op
}

fn build_patch(
    operation: Operation,
    kind: WorkloadKind,
    namespace: &str,
    object: &Value,
    want: &Desired,
    sc_name: &str,
    inputs: &Inputs<'_>,
) -> Decision {
    let (controller_config, old_object) = (inputs.controller_config, inputs.old_object);
    let mut warnings = Vec::new();
    let source = format!("{namespace}/{sc_name}");
    // How keys copied from the controller-namespace config are treated, on
    // the object and in the pod template (labels, then annotations).
    let copied =
        |field: fn(&ServerConfig) -> &BTreeMap<String, String>, path: &str, template: bool| {
            match controller_config {
                None => Copied::Unknown,
                Some(c) if template && c.is_placeholder() => Copied::Freeze {
                    keys: field(c),
                    stored: old_object.map(|o| string_map(at(o, path))),
                },
                Some(c) => Copied::Drop(field(c)),
            }
        };
    let labels_of: fn(&ServerConfig) -> &BTreeMap<String, String> = |c| &c.meta.labels;
    let annotations_of: fn(&ServerConfig) -> &BTreeMap<String, String> = |c| &c.meta.annotations;
    let reconciled = |path: &str, wanted: &BTreeMap<String, String>, how: &Copied<'_>| {
        reconcile_map(&string_map(at(object, path)), wanted, how)
    };
    let mut b = PatchBuilder {
        object,
        ops: Vec::new(),
    };

    if object.get("metadata").is_none() {
        return Decision::Denied {
            message: "serverconfig-webhook: the object has no metadata".into(),
        };
    }
    let labels = reconciled(
        "/metadata/labels",
        &want.labels,
        &copied(labels_of, "", false),
    );
    b.set("/metadata/labels", json!(labels));
    let mut wanted_annotations = want.annotations.clone();
    wanted_annotations.insert(SOURCE_ANNOTATION.into(), source.clone());
    wanted_annotations.insert(HASH_ANNOTATION.into(), want.hash.clone());
    let annotations = reconciled(
        "/metadata/annotations",
        &wanted_annotations,
        &copied(annotations_of, "", false),
    );
    b.set("/metadata/annotations", json!(annotations));

    if at(object, "/spec").is_none_or(|s| !s.is_object()) {
        return Decision::Denied {
            message: "serverconfig-webhook: the object has no spec".into(),
        };
    }
    const TEMPLATE_LABELS: &str = "/spec/template/metadata/labels";
    const TEMPLATE_ANNOTATIONS: &str = "/spec/template/metadata/annotations";
    let template_labels = reconciled(
        TEMPLATE_LABELS,
        &want.template_labels,
        &copied(labels_of, TEMPLATE_LABELS, true),
    );
    let template_annotations = reconciled(
        TEMPLATE_ANNOTATIONS,
        &want.template_annotations,
        &copied(annotations_of, TEMPLATE_ANNOTATIONS, true),
    );
    match at(object, "/spec/template/metadata") {
        Some(Value::Object(_)) => {
            b.set("/spec/template/metadata/labels", json!(template_labels));
            if !(template_annotations.is_empty()
                && at(object, "/spec/template/metadata/annotations").is_none())
            {
                b.set(
                    "/spec/template/metadata/annotations",
                    json!(template_annotations),
                );
            }
        }
        _ => {
            if at(object, "/spec/template").is_none() {
                b.set("/spec/template", json!({}));
            }
            b.set(
                "/spec/template/metadata",
                json!({"labels": template_labels, "annotations": template_annotations}),
            );
        }
    }
    b.set_normalized(
        "/spec/template/spec",
        &want.pod_spec,
        &want.pod_spec_normalized,
    );

    // Fields derived from the Server alone, plus the ServerConfig's claim
    // templates: immutable on UPDATE. There the stored value is kept (the
    // controller's may differ, e.g. a placeholder's empty claim templates,
    // and the API server would refuse the change), with a warning when it
    // is not what the ServerConfig gives.
    let vct_ids = |v: Option<&Value>| -> Vec<Value> {
        v.and_then(Value::as_array)
            .map(|a| a.iter().map(vct_identity).collect())
            .unwrap_or_default()
    };
    let mut immutable: Vec<(&str, Value)> = vec![("/spec/selector", want.selector.clone())];
    if kind == WorkloadKind::StatefulSet {
        immutable.push(("/spec/serviceName", json!(want.service_name)));
        immutable.push((
            "/spec/volumeClaimTemplates",
            json!(want.volume_claim_templates),
        ));
    }
    for (path, value) in immutable {
        let is_vct = path.ends_with("volumeClaimTemplates");
        // semantic equality: claim templates by identity, the rest normalised
        let same = |a: Option<&Value>, b: &Value| {
            if is_vct {
                vct_ids(a) == vct_ids(Some(b))
            } else {
                a.map(normalize) == Some(normalize(b))
            }
        };
        let is_wanted = |a: Option<&Value>| {
            if is_vct {
                vct_ids(a) == want.volume_claim_template_identities
            } else {
                same(a, &value)
            }
        };
        if operation == Operation::Create {
            if !is_wanted(at(object, path)) {
                b.put(path, &value);
            }
            continue;
        }
        let kept = match old_object {
            Some(old) => {
                let stored = match at(old, path) {
                    None if is_vct => json!([]),
                    v => v.cloned().unwrap_or(Value::Null),
                };
                if !same(at(object, path), &stored) {
                    b.put(path, &stored);
                }
                Some(stored)
            }
            None => at(object, path).cloned(),
        };
        if !is_wanted(kept.as_ref()) {
            let field = path.trim_start_matches('/').replace('/', ".");
            warnings.push(format!(
                "serverconfig-webhook: {field} differs from what ServerConfig {source} gives but cannot change on update; recreate the workload to apply it"
            ));
        }
    }

    for c in want
        .pod_spec
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if c.get("image")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            warnings.push(format!(
                "serverconfig-webhook: container {name:?} has no image in ServerConfig {source}"
            ));
        }
    }
    let names: Vec<&str> = want
        .pod_spec
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    if unique.len() != names.len() {
        warnings.push(format!(
            "serverconfig-webhook: merging Server and ServerConfig {source} gives duplicate container names"
        ));
    }

    if b.ops.is_empty() {
        Decision::Unchanged {
            reason: "already-applied",
            warnings,
        }
    } else {
        Decision::Patched {
            patch: Patch(b.ops),
            source,
            hash: want.hash.clone(),
            warnings,
        }
    }
}
