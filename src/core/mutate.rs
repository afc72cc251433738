//! The admission decision: is an object in scope, and if so which JSON Patch
//! turns it into what a namespace-aware controller would have built. Pure:
//! every lookup result is handed in.

use std::collections::{BTreeMap, BTreeSet};

use json_patch::Patch;
use serde_json::{json, Value};

use super::defaults::normalize;
use super::desired::{desired, mounts_without_volume, vct_identity, Desired};
use super::model::{Server, ServerConfig, SELDON_GROUP};
use super::names::is_valid_name;
use super::patch::{at, PatchBuilder, MAX_PATCH_BYTES};
use super::placeholder::{is_ours, is_own_key};

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
fn owns(owner: Owner<'_>, server: &Server) -> bool {
    owner.name == server.meta.name
        && (owner.uid.is_empty() || server.meta.uid.is_empty() || owner.uid == server.meta.uid)
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

/// A label or annotation map, borrowed: the object's maps can be large
/// (annotations up to the API server's 256 KiB, more from a client that is
/// not the API server), and are never copied to be compared.
type StrMap<'a> = BTreeMap<&'a str, &'a str>;

fn str_map(v: Option<&Value>) -> StrMap<'_> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.as_str(), s)))
                .collect()
        })
        .unwrap_or_default()
}

fn borrowed(m: &BTreeMap<String, String>) -> StrMap<'_> {
    m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// What to do with the keys the controller copied from the
/// controller-namespace ServerConfig.
#[derive(Clone, Copy)]
enum Copied<'a> {
    /// Nothing known about the controller's ServerConfig.
    Unknown,
    /// A real shared ServerConfig: its keys are not desired, drop them.
    Drop(&'a BTreeMap<String, String>),
    /// A placeholder: keep its keys in the pod template with their stored
    /// value (on CREATE, the value the controller sends). The stock
    /// controller copies ServerConfig labels and annotations into the
    /// template and compares the template on every reconcile; without them
    /// it would send an Update each time. A placeholder's keys never change
    /// (`core::placeholder`), and keeping the stored value means that the
    /// ones earlier releases changed never roll a pod either.
    Freeze(&'a BTreeMap<String, String>),
}

/// Keeps keys other parties set on the object (for example
/// `kubectl.kubernetes.io/restartedAt`), treats keys copied from the
/// controller-namespace ServerConfig as [`Copied`] says, and sets every
/// desired key. `stored` is the stored map on UPDATE of a pod template:
/// there this tool's own keys are kept at their stored value too.
fn reconcile_map<'a>(
    current: &StrMap<'a>,
    wanted: &StrMap<'a>,
    copied: Copied<'a>,
    stored: Option<&StrMap<'a>>,
) -> StrMap<'a> {
    let mut out = current.clone();
    match copied {
        Copied::Unknown => {}
        Copied::Drop(keys) => {
            for k in keys.keys() {
                if !wanted.contains_key(k.as_str()) && k != LAST_APPLIED_ANNOTATION {
                    out.remove(k.as_str());
                }
            }
        }
        Copied::Freeze(keys) => {
            for k in keys.keys() {
                if let Some((k, v)) = stored.and_then(|s| s.get_key_value(k.as_str())) {
                    out.insert(k, v);
                }
            }
        }
    }
    for (k, v) in stored.into_iter().flatten() {
        if is_own_key(k) && !wanted.contains_key(k) {
            out.insert(k, v);
        }
    }
    out.extend(wanted.iter().map(|(k, v)| (*k, *v)));
    out
}

/// Sets the string map at `path` to `out` unless it already is exactly
/// that (a missing map counts as empty).
fn set_map(b: &mut PatchBuilder<'_>, path: &str, out: &StrMap<'_>) {
    if str_map(at(b.object(), path)) != *out {
        b.put(path, &json!(out));
    }
}

/// How the keys the controller copied from its own namespace's
/// ServerConfig are treated: labels and annotations, on the object and in
/// the pod template.
#[derive(Clone, Copy)]
struct CopiedKeys<'a> {
    config: Option<&'a ServerConfig>,
}

impl<'a> CopiedKeys<'a> {
    fn of(
        &self,
        field: fn(&ServerConfig) -> &BTreeMap<String, String>,
        template: bool,
    ) -> Copied<'a> {
        match self.config {
            None => Copied::Unknown,
            Some(c) if template && is_ours(c) => Copied::Freeze(field(c)),
            Some(c) => Copied::Drop(field(c)),
        }
    }
}

fn labels_of(c: &ServerConfig) -> &BTreeMap<String, String> {
    &c.meta.labels
}

fn annotations_of(c: &ServerConfig) -> &BTreeMap<String, String> {
    &c.meta.annotations
}

const TEMPLATE_LABELS: &str = "/spec/template/metadata/labels";
const TEMPLATE_ANNOTATIONS: &str = "/spec/template/metadata/annotations";

/// The patch that turns `object` into the desired workload, in steps: the
/// object's labels and annotations, the pod template's, the pod spec, the
/// fields that cannot change on UPDATE; then the warnings and the size
/// bound.
fn build_patch(
    operation: Operation,
    kind: WorkloadKind,
    namespace: &str,
    object: &Value,
    want: &Desired,
    sc_name: &str,
    inputs: &Inputs<'_>,
) -> Decision {
    if object.get("metadata").is_none() {
        return Decision::Denied {
            message: "serverconfig-webhook: the object has no metadata".into(),
        };
    }
    let source = format!("{namespace}/{sc_name}");
    let copied = CopiedKeys {
        config: inputs.controller_config,
    };
    let mut b = PatchBuilder::new(object);
    set_object_metadata(&mut b, want, &source, copied);
    set_template_metadata(&mut b, want, copied, inputs.old_object);
    b.set_normalized(
        "/spec/template/spec",
        &want.pod_spec,
        &want.pod_spec_normalized,
    );
    let mut warnings =
        keep_immutable_fields(&mut b, operation, kind, want, inputs.old_object, &source);
    warnings.extend(desired_warnings(want, &source));
    if kind == WorkloadKind::Deployment {
        warnings.extend(deployment_warnings(want, &source));
    }
    finish(b, want, source, warnings)
}

/// The object's labels and annotations, with the webhook's own
/// `source` and `hash` annotations.
fn set_object_metadata(
    b: &mut PatchBuilder<'_>,
    want: &Desired,
    source: &str,
    copied: CopiedKeys<'_>,
) {
    let object = b.object();
    let labels = reconcile_map(
        &str_map(at(object, "/metadata/labels")),
        &borrowed(&want.labels),
        copied.of(labels_of, false),
        None,
    );
    set_map(b, "/metadata/labels", &labels);
    let mut wanted = borrowed(&want.annotations);
    wanted.insert(SOURCE_ANNOTATION, source);
    wanted.insert(HASH_ANNOTATION, &want.hash);
    let annotations = reconcile_map(
        &str_map(at(object, "/metadata/annotations")),
        &wanted,
        copied.of(annotations_of, false),
        None,
    );
    set_map(b, "/metadata/annotations", &annotations);
}

/// The pod template's labels and annotations (creating the template's
/// metadata where the object has none).
fn set_template_metadata(
    b: &mut PatchBuilder<'_>,
    want: &Desired,
    copied: CopiedKeys<'_>,
    old_object: Option<&Value>,
) {
    let object = b.object();
    let stored = |path: &str| old_object.map(|o| str_map(at(o, path)));
    let (stored_labels, stored_annotations) =
        (stored(TEMPLATE_LABELS), stored(TEMPLATE_ANNOTATIONS));
    let labels = reconcile_map(
        &str_map(at(object, TEMPLATE_LABELS)),
        &borrowed(&want.template_labels),
        copied.of(labels_of, true),
        stored_labels.as_ref(),
    );
    let annotations = reconcile_map(
        &str_map(at(object, TEMPLATE_ANNOTATIONS)),
        &borrowed(&want.template_annotations),
        copied.of(annotations_of, true),
        stored_annotations.as_ref(),
    );
    match at(object, "/spec/template/metadata") {
        Some(Value::Object(_)) => {
            set_map(b, TEMPLATE_LABELS, &labels);
            if !(annotations.is_empty() && at(object, TEMPLATE_ANNOTATIONS).is_none()) {
                set_map(b, TEMPLATE_ANNOTATIONS, &annotations);
            }
        }
        _ => {
            if at(object, "/spec/template").is_none() {
                b.set("/spec/template", json!({}));
            }
            b.set(
                "/spec/template/metadata",
                json!({"labels": labels, "annotations": annotations}),
            );
        }
    }
}

/// Fields derived from the Server alone, plus the ServerConfig's claim
/// templates: immutable on UPDATE. There the stored value is kept (the
/// controller's may differ, e.g. a placeholder's empty claim templates,
/// and the API server would refuse the change), with a warning when it is
/// not what the ServerConfig gives. On CREATE they are set.
fn keep_immutable_fields(
    b: &mut PatchBuilder<'_>,
    operation: Operation,
    kind: WorkloadKind,
    want: &Desired,
    old_object: Option<&Value>,
    source: &str,
) -> Vec<String> {
    let object = b.object();
    let mut warnings = Vec::new();
    let mut immutable: Vec<(&str, Value)> = vec![("/spec/selector", want.selector.clone())];
    if kind == WorkloadKind::StatefulSet {
        immutable.push(("/spec/serviceName", json!(want.service_name)));
        immutable.push((
            "/spec/volumeClaimTemplates",
            json!(want.volume_claim_templates),
        ));
    }
    for (path, value) in immutable {
        let field = ImmutableField {
            is_vct: path.ends_with("volumeClaimTemplates"),
            want,
            value: &value,
        };
        if operation == Operation::Create {
            if !field.is_wanted(at(object, path)) {
                b.put(path, &value);
            }
            continue;
        }
        let kept = match old_object {
            Some(old) => {
                let stored = match at(old, path) {
                    None if field.is_vct => json!([]),
                    v => v.cloned().unwrap_or(Value::Null),
                };
                if !field.same(at(object, path), &stored) {
                    b.put(path, &stored);
                }
                Some(stored)
            }
            None => at(object, path).cloned(),
        };
        if !field.is_wanted(kept.as_ref()) {
            let name = path.trim_start_matches('/').replace('/', ".");
            warnings.push(format!(
                "serverconfig-webhook: {name} differs from what ServerConfig {source} gives but cannot change on update; recreate the workload to apply it"
            ));
        }
    }
    warnings
}

/// One immutable field and its semantic equality: claim templates by
/// identity, the rest normalised.
struct ImmutableField<'a> {
    is_vct: bool,
    want: &'a Desired,
    value: &'a Value,
}

impl ImmutableField<'_> {
    fn vct_ids(v: Option<&Value>) -> Vec<Value> {
        v.and_then(Value::as_array)
            .map(|a| a.iter().map(vct_identity).collect())
            .unwrap_or_default()
    }

    fn same(&self, a: Option<&Value>, b: &Value) -> bool {
        if self.is_vct {
            Self::vct_ids(a) == Self::vct_ids(Some(b))
        } else {
            a.map(normalize) == Some(normalize(b))
        }
    }

    fn is_wanted(&self, a: Option<&Value>) -> bool {
        if self.is_vct {
            Self::vct_ids(a) == self.want.volume_claim_template_identities
        } else {
            self.same(a, self.value)
        }
    }
}

/// Warnings about the desired workload itself: containers without an
/// image, duplicate container names.
fn desired_warnings(want: &Desired, source: &str) -> Vec<String> {
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
fn deployment_warnings(want: &Desired, source: &str) -> Vec<String> {
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

/// The decision for the collected patch: none, a patch within
/// [`MAX_PATCH_BYTES`], or a refusal naming the size.
fn finish(b: PatchBuilder<'_>, want: &Desired, source: String, warnings: Vec<String>) -> Decision {
    let Some(patch) = b.finish() else {
        return Decision::Unchanged {
            reason: "already-applied",
            warnings,
        };
    };
    let bytes = serde_json::to_vec(&patch).map_or(usize::MAX, |v| v.len());
    if bytes > MAX_PATCH_BYTES {
        return Decision::Denied {
            message: format!(
                "serverconfig-webhook: applying ServerConfig {source} takes a patch of {bytes} bytes, more than the {MAX_PATCH_BYTES} the webhook sends; make the ServerConfig or the Server's podSpec smaller"
            ),
        };
    }
    Decision::Patched {
        patch,
        source,
        hash: want.hash.clone(),
        warnings,
    }
}
