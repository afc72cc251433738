//! The placeholder ServerConfig the sync loop keeps in the controller
//! namespace, so that the stock controller builds a Server's workload at
//! all: one fixed object per name, the same whoever uses the name and
//! whatever their ServerConfigs hold. Nothing in it comes from a tenant, so
//! no tenant can change what the controller sends for another tenant's
//! Servers, and its labels and annotations (which the controller copies
//! into every pod template) never change, so they never make the
//! controller send an Update.

use serde_json::{json, Value};

use super::model::{ServerConfig, MANAGED_BY_LABEL, MANAGED_BY_VALUE};

/// Annotation on a placeholder explaining what it is.
pub const PLACEHOLDER_ANNOTATION: &str = "serverconfig-webhook/placeholder";
/// Annotation that placeholders of releases before 0.2 carried: the
/// namespaces using the name. Workloads built from such a placeholder keep
/// its copy in their pod template (see [`PlaceholderState::Legacy`]).
pub const LEGACY_USED_BY_ANNOTATION: &str = "serverconfig-webhook/used-by";

/// The placeholder's explanation. Its text is part of every pod template
/// built from a placeholder: changing it would roll every such pod.
pub const PLACEHOLDER_TEXT: &str =
    "Placeholder kept by serverconfig-webhook. The stock Seldon controller \
only reads ServerConfigs in its own namespace; the webhook applies the ServerConfig of each \
Server's own namespace instead. No images on purpose: if the webhook is ever bypassed, nothing \
runs a wrong image. Do not edit; it is deleted when no namespace uses this name.";

/// What a labelled ServerConfig of the controller namespace is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaceholderState {
    /// Exactly the object [`placeholder_object`] gives: the sync loop's.
    Ours,
    /// The shape earlier releases wrote (container names of the users'
    /// ServerConfigs, the `used-by` annotation), untouched since: still the
    /// sync loop's, to be rewritten as [`PlaceholderState::Ours`].
    Legacy,
    /// Labelled, but changed by someone else (images added, other keys):
    /// theirs now. Never modified or deleted, and treated as a real
    /// ServerConfig by the webhook.
    Adopted,
}

/// The placeholder object for `name` in the controller namespace.
pub fn placeholder_object(name: &str, controller_namespace: &str) -> Value {
    json!({
        "apiVersion": "mlops.seldon.io/v1alpha1",
        "kind": "ServerConfig",
        "metadata": {
            "name": name,
            "namespace": controller_namespace,
            "labels": { MANAGED_BY_LABEL: MANAGED_BY_VALUE },
            "annotations": { PLACEHOLDER_ANNOTATION: PLACEHOLDER_TEXT },
        },
        "spec": { "podSpec": { "containers": [] }, "volumeClaimTemplates": [] },
    })
}

/// `None` for a ServerConfig without this tool's label; else whose it is.
pub fn placeholder_state(config: &ServerConfig) -> Option<PlaceholderState> {
    if config.meta.labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY_VALUE) {
        return None;
    }
    let labels_ours = config.meta.labels.len() == 1;
    let text_ours = config
        .meta
        .annotations
        .get(PLACEHOLDER_ANNOTATION)
        .is_some_and(|t| t == PLACEHOLDER_TEXT);
    let only_keys = |keys: &[&str]| config.meta.annotations.keys().all(|k| keys.contains(&&**k));
    let containers = config.pod_spec.get("containers").and_then(Value::as_array);
    let spec_keys_ours = config.pod_spec.keys().all(|k| k == "containers")
        && config.volume_claim_templates.is_empty();
    let base = labels_ours && text_ours && spec_keys_ours;
    let current =
        base && only_keys(&[PLACEHOLDER_ANNOTATION]) && containers.is_some_and(Vec::is_empty);
    let legacy = base
        && only_keys(&[PLACEHOLDER_ANNOTATION, LEGACY_USED_BY_ANNOTATION])
        && containers.is_some_and(|cs| cs.iter().all(names_only));
    Some(if current {
        PlaceholderState::Ours
    } else if legacy {
        PlaceholderState::Legacy
    } else {
        PlaceholderState::Adopted
    })
}

/// `{"name": "..."}` and nothing else: a container of a legacy placeholder.
fn names_only(container: &Value) -> bool {
    container
        .as_object()
        .is_some_and(|c| c.len() == 1 && c.get("name").is_some_and(Value::is_string))
}

/// Whether this ServerConfig is a placeholder the sync loop still owns
/// (as opposed to no placeholder, or one somebody adopted).
pub fn is_ours(config: &ServerConfig) -> bool {
    matches!(
        placeholder_state(config),
        Some(PlaceholderState::Ours | PlaceholderState::Legacy)
    )
}

/// Whether a label or annotation key is this tool's own: in a stored pod
/// template the webhook keeps such keys at their stored value on UPDATE
/// (the `used-by` copy of a legacy placeholder among them), so that no
/// change of a placeholder's metadata ever changes a pod template.
pub fn is_own_key(key: &str) -> bool {
    key.starts_with("serverconfig-webhook/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> ServerConfig {
        ServerConfig::from_value(&v).expect("a ServerConfig")
    }

    fn legacy() -> Value {
        let mut o = placeholder_object("mlserver", "seldon-system");
        o["metadata"]["annotations"][LEGACY_USED_BY_ANNOTATION] = json!("a,b");
        o["spec"]["podSpec"]["containers"] = json!([{"name": "rclone"}, {"name": "agent"}]);
        o
    }

    #[test]
    fn placeholder_state_table() {
        let ours = placeholder_object("mlserver", "seldon-system");
        let mut with_image = legacy();
        with_image["spec"]["podSpec"]["containers"][0]["image"] = json!("platform/rclone:1");
        let mut other_annotation = ours.clone();
        other_annotation["metadata"]["annotations"]["owner"] = json!("platform");
        let mut other_label = ours.clone();
        other_label["metadata"]["labels"]["team"] = json!("platform");
        let mut other_text = ours.clone();
        other_text["metadata"]["annotations"][PLACEHOLDER_ANNOTATION] = json!("mine now");
        let mut unlabelled = ours.clone();
        unlabelled["metadata"]["labels"] = json!({});
        let mut vcts = ours.clone();
        vcts["spec"]["volumeClaimTemplates"] = json!([{"name": "m", "spec": {}}]);
        let mut used_by_on_current = ours.clone();
        used_by_on_current["metadata"]["annotations"][LEGACY_USED_BY_ANNOTATION] = json!("a");
        let cases: &[(&str, Value, Option<PlaceholderState>)] = &[
            (
                "the canonical object",
                ours.clone(),
                Some(PlaceholderState::Ours),
            ),
            (
                "an earlier release's shape",
                legacy(),
                Some(PlaceholderState::Legacy),
            ),
            (
                "an empty legacy list of users",
                used_by_on_current,
                Some(PlaceholderState::Legacy),
            ),
            (
                "images added (kubectl apply of a real config)",
                with_image,
                Some(PlaceholderState::Adopted),
            ),
            (
                "an annotation of someone else",
                other_annotation,
                Some(PlaceholderState::Adopted),
            ),
            (
                "a label of someone else",
                other_label,
                Some(PlaceholderState::Adopted),
            ),
            (
                "another explanation",
                other_text,
                Some(PlaceholderState::Adopted),
            ),
            ("claim templates", vcts, Some(PlaceholderState::Adopted)),
            ("no label: a real ServerConfig", unlabelled, None),
        ];
        for (name, obj, want) in cases {
            assert_eq!(placeholder_state(&parse(obj.clone())), *want, "{name}");
        }
    }

    #[test]
    fn the_placeholder_is_the_same_for_every_user() {
        assert_eq!(
            placeholder_object("x", "seldon-system"),
            placeholder_object("x", "seldon-system")
        );
        let o = placeholder_object("x", "seldon-system");
        assert_eq!(o["spec"]["podSpec"]["containers"], json!([]));
        assert_eq!(
            o["metadata"]["annotations"].as_object().map(|m| m.len()),
            Some(1)
        );
    }
}
