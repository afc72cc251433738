//! The patch that turns the controller's object into the desired workload,
//! built in named steps.

use serde_json::{json, Value};

use super::super::defaults::normalize;
use super::super::desired::{vct_identity, Desired};
use super::super::patch::{at, PatchBuilder, MAX_PATCH_BYTES};
use super::labels::{
    annotations_of, borrowed, labels_of, reconcile_map, set_map, str_map, CopiedKeys,
};
use super::warnings::{deployment_warnings, desired_warnings};
use super::{
    Applied, Decision, Inputs, Operation, WorkloadKind, HASH_ANNOTATION, SOURCE_ANNOTATION,
};

const TEMPLATE_LABELS: &str = "/spec/template/metadata/labels";
const TEMPLATE_ANNOTATIONS: &str = "/spec/template/metadata/annotations";

/// The patch that turns `object` into the desired workload, in steps: the
/// object's labels and annotations, the pod template's, the pod spec, the
/// fields that cannot change on UPDATE; then the warnings and the size
/// bound.
pub(super) fn build_patch(
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

/// The decision for the collected patch: none, a patch within
/// [`MAX_PATCH_BYTES`], or a refusal naming the size.
fn finish(b: PatchBuilder<'_>, want: &Desired, source: String, warnings: Vec<String>) -> Decision {
    let applied = Applied {
        source,
        hash: want.hash.clone(),
    };
    let Some(patch) = b.finish() else {
        return Decision::Unchanged {
            reason: "already-applied",
            applied: Some(applied),
            warnings,
        };
    };
    let bytes = serde_json::to_vec(&patch).map_or(usize::MAX, |v| v.len());
    if bytes > MAX_PATCH_BYTES {
        return Decision::Denied {
            message: format!(
                "serverconfig-webhook: applying ServerConfig {} takes a patch of {bytes} bytes, more than the {MAX_PATCH_BYTES} the webhook sends; make the ServerConfig or the Server's podSpec smaller",
                applied.source
            ),
        };
    }
    Decision::Patched {
        patch,
        applied,
        warnings,
    }
}
