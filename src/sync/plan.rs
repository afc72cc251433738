//! Pure decisions of the sync loop: which placeholders the controller
//! namespace needs, and whether a stored workload must be re-admitted
//! (rolled out after a ServerConfig change, or healed after being admitted
//! without the webhook).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::core::desired::{desired, vct_identity};
use crate::core::model::Server;
use crate::core::model::{ServerConfig, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::core::mutate::{
    decide, Decision, Inputs, Operation, Settings, WorkloadKind, SOURCE_ANNOTATION,
};

/// Annotation on a placeholder explaining what it is.
pub const PLACEHOLDER_ANNOTATION: &str = "serverconfig-webhook/placeholder";
/// Annotation on a placeholder listing the namespaces that use its name.
pub const USED_BY_ANNOTATION: &str = "serverconfig-webhook/used-by";

const PLACEHOLDER_TEXT: &str =
    "Placeholder kept by serverconfig-webhook. The stock Seldon controller \
only reads ServerConfigs in its own namespace; the webhook applies the ServerConfig of each \
Server's own namespace instead. No images on purpose: if the webhook is ever bypassed, nothing \
runs a wrong image. Do not edit; it is deleted when no namespace uses this name.";

/// What one placeholder should look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaceholderSpec {
    pub name: String,
    /// Container names, in the order the users' ServerConfigs list them
    /// (so the controller's strategic-merge comparison sees no reordering).
    pub containers: Vec<String>,
    /// Namespaces whose ServerConfigs use the name, sorted.
    pub used_by: Vec<String>,
}

impl PlaceholderSpec {
    /// The ServerConfig object for this placeholder in `controller_ns`.
    pub fn to_object(&self, controller_ns: &str) -> Value {
        let containers: Vec<Value> = self
            .containers
            .iter()
            .map(|c| json!({ "name": c }))
            .collect();
        json!({
            "apiVersion": "mlops.seldon.io/v1alpha1",
            "kind": "ServerConfig",
            "metadata": {
                "name": self.name,
                "namespace": controller_ns,
                "labels": { MANAGED_BY_LABEL: MANAGED_BY_VALUE },
                "annotations": {
                    PLACEHOLDER_ANNOTATION: PLACEHOLDER_TEXT,
                    USED_BY_ANNOTATION: self.used_by.join(","),
                },
            },
            "spec": { "podSpec": { "containers": containers }, "volumeClaimTemplates": [] },
        })
    }

    /// Whether an existing placeholder already has this content.
    pub fn matches(&self, existing: &ServerConfig) -> bool {
        let names = container_names(existing);
        let has_image = existing
            .pod_spec
            .get("containers")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.get("image").is_some_and(|i| i.as_str() != Some("")))
            });
        names == self.containers
            && !has_image
            && existing
                .meta
                .annotations
                .get(USED_BY_ANNOTATION)
                .map(String::as_str)
                == Some(self.used_by.join(",").as_str())
            && existing
                .meta
                .annotations
                .get(PLACEHOLDER_ANNOTATION)
                .map(String::as_str)
                == Some(PLACEHOLDER_TEXT)
    }
}

/// What the placeholder pass should do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlaceholderPlan {
    pub create: Vec<PlaceholderSpec>,
    pub update: Vec<PlaceholderSpec>,
    /// Names of placeholders no namespace uses any more.
    pub delete: Vec<String>,
    /// Namespaces over the cap, with the names not honoured for them.
    pub capped: BTreeMap<String, Vec<String>>,
}

/// Plans placeholders from the ServerConfigs of the watched application
/// namespaces and those of the controller namespace. A real (unlabelled)
/// ServerConfig in the controller namespace is never planned for; each
/// application namespace causes at most `cap` placeholders (by name order).
pub fn plan_placeholders(
    app_configs: &[&ServerConfig],
    controller_configs: &[&ServerConfig],
    controller_ns: &str,
    cap: usize,
) -> PlaceholderPlan {
    let existing: BTreeMap<&str, &ServerConfig> = controller_configs
        .iter()
        .map(|c| (c.meta.name.as_str(), *c))
        .collect();
    let mut by_namespace: BTreeMap<&str, Vec<&ServerConfig>> = BTreeMap::new();
    for c in app_configs
        .iter()
        .filter(|c| c.meta.namespace != controller_ns)
    {
        by_namespace
            .entry(c.meta.namespace.as_str())
            .or_default()
            .push(c);
    }
    let mut wanted: BTreeMap<String, PlaceholderSpec> = BTreeMap::new();
    let mut plan = PlaceholderPlan::default();
    for (ns, mut configs) in by_namespace {
        configs.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        let mut caused = 0usize;
        for c in configs {
            let real = existing
                .get(c.meta.name.as_str())
                .is_some_and(|e| !e.is_placeholder());
            if real {
                continue; // the platform's shared config: never touched
            }
            if caused >= cap {
                plan.capped
                    .entry(ns.to_string())
                    .or_default()
                    .push(c.meta.name.clone());
                continue;
            }
            caused += 1;
            let spec = wanted
                .entry(c.meta.name.clone())
                .or_insert_with(|| PlaceholderSpec {
                    name: c.meta.name.clone(),
                    containers: Vec::new(),
                    used_by: Vec::new(),
                });
            spec.used_by.push(ns.to_string());
            for name in container_names(c) {
                if !spec.containers.contains(&name) {
                    spec.containers.push(name);
                }
            }
        }
    }
    for (name, spec) in &wanted {
        match existing.get(name.as_str()) {
            None => plan.create.push(spec.clone()),
            Some(e) if e.is_placeholder() && !spec.matches(e) => plan.update.push(spec.clone()),
            Some(_) => {}
        }
    }
    let wanted_names: BTreeSet<&str> = wanted.keys().map(String::as_str).collect();
    for (name, e) in existing {
        if e.is_placeholder() && !wanted_names.contains(name) {
            plan.delete.push(name.to_string());
        }
    }
    plan
}

fn container_names(c: &ServerConfig) -> Vec<String> {
    c.pod_spec
        .get("containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// What the sync loop does with one stored workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkloadAction {
    /// The stored workload is what the webhook would produce.
    Nothing,
    /// Admitted by the webhook before, but its ServerConfig (or Server)
    /// changed since: re-admit so the new template rolls out.
    Rollout { hash: String },
    /// Never admitted by the webhook (created before installation, or while
    /// it was unreachable): re-admit to heal it.
    Heal { hash: String },
    /// Out of date, but the Server says `disableAutoUpdate: true`.
    Held,
}

/// Compares a stored workload with what the webhook would produce now.
pub fn workload_action(
    kind: WorkloadKind,
    workload: &Value,
    server: &Server,
    config: Option<&ServerConfig>,
    controller_config: Option<&ServerConfig>,
    settings: &Settings,
) -> WorkloadAction {
    let namespace = workload
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let inputs = Inputs {
        server: Some(server),
        config,
        config_error: None,
        controller_config,
        old_object: Some(workload),
        desired: None,
    };
    match decide(
        Operation::Update,
        kind,
        namespace,
        workload,
        inputs,
        settings,
    ) {
        Decision::Patched { hash, .. } => {
            let admitted_before = workload
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(SOURCE_ANNOTATION))
                .is_some();
            if !admitted_before {
                WorkloadAction::Heal { hash }
            } else if server.disable_auto_update {
                WorkloadAction::Held
            } else {
                WorkloadAction::Rollout { hash }
            }
        }
        _ => WorkloadAction::Nothing,
    }
}

/// Whether a stored StatefulSet lacks the volume claim templates that the
/// ServerConfig of its namespace gives. Claim templates cannot change on
/// UPDATE, so a StatefulSet admitted without the webhook (failurePolicy
/// Ignore, or created before installation) whose template mounts such a
/// claim never gets a Pod: healing it means recreating it.
pub fn claim_templates_differ(
    kind: WorkloadKind,
    workload: &Value,
    server: &Server,
    config: &ServerConfig,
) -> bool {
    if kind != WorkloadKind::StatefulSet {
        return false;
    }
    let stored: Vec<Value> = workload
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(vct_identity).collect())
        .unwrap_or_default();
    let wanted: Vec<Value> = desired(server, config)
        .volume_claim_templates
        .iter()
        .map(vct_identity)
        .collect();
    stored != wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc(ns: &str, name: &str, containers: &[&str], placeholder: bool) -> ServerConfig {
        let cs: Vec<Value> = containers
            .iter()
            .map(|c| json!({"name": c, "image": "x:1"}))
            .collect();
        let labels = if placeholder {
            json!({MANAGED_BY_LABEL: MANAGED_BY_VALUE})
        } else {
            json!({})
        };
        ServerConfig::from_value(&json!({"apiVersion":"mlops.seldon.io/v1alpha1","kind":"ServerConfig",
            "metadata":{"name":name,"namespace":ns,"labels":labels},"spec":{"podSpec":{"containers":cs}}}))
        .expect("valid")
    }

    fn names(specs: &[PlaceholderSpec]) -> Vec<&str> {
        specs.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn placeholder_plan_table() {
        let a_ml = sc("a", "mlserver", &["rclone", "agent", "mlserver"], false);
        let b_ml = sc(
            "b",
            "mlserver",
            &["rclone", "agent", "mlserver", "extra"],
            false,
        );
        let a_tr = sc("a", "triton", &["agent", "triton"], false);
        let shared_tr = sc("seldon-system", "triton", &["agent", "triton"], false);
        let ph_old = sc("seldon-system", "old", &["x"], true);
        let ph_ml = ServerConfig::from_value(
            &PlaceholderSpec {
                name: "mlserver".into(),
                containers: vec![
                    "rclone".into(),
                    "agent".into(),
                    "mlserver".into(),
                    "extra".into(),
                ],
                used_by: vec!["a".into(), "b".into()],
            }
            .to_object("seldon-system"),
        )
        .expect("placeholder parses");

        // 1. nothing in the controller namespace: one placeholder per name,
        //    containers in first-seen order, users listed.
        let p = plan_placeholders(&[&a_ml, &b_ml, &a_tr], &[], "seldon-system", 10);
        assert_eq!(names(&p.create), ["mlserver", "triton"]);
        assert_eq!(
            p.create[0].containers,
            ["rclone", "agent", "mlserver", "extra"]
        );
        assert_eq!(p.create[0].used_by, ["a", "b"]);
        assert!(p.update.is_empty() && p.delete.is_empty());

        // 2. a real shared config of that name is never planned for or touched.
        let p = plan_placeholders(&[&a_tr], &[&shared_tr], "seldon-system", 10);
        assert_eq!(p, PlaceholderPlan::default());

        // 3. an up-to-date placeholder stays; an unused one goes.
        let p = plan_placeholders(&[&a_ml, &b_ml], &[&ph_ml, &ph_old], "seldon-system", 10);
        assert!(p.create.is_empty() && p.update.is_empty(), "{p:?}");
        assert_eq!(p.delete, ["old"]);

        // 4. a user leaves: the placeholder is updated, not recreated.
        let p = plan_placeholders(&[&a_ml], &[&ph_ml], "seldon-system", 10);
        assert_eq!(names(&p.update), ["mlserver"]);
        assert_eq!(p.update[0].used_by, ["a"]);

        // 5. the cap per namespace: by name order, the rest reported.
        let p = plan_placeholders(&[&a_ml, &a_tr], &[], "seldon-system", 1);
        assert_eq!(names(&p.create), ["mlserver"]);
        assert_eq!(p.capped.get("a"), Some(&vec!["triton".to_string()]));

        // 6. ServerConfigs in the controller namespace itself cause nothing.
        let p = plan_placeholders(&[&shared_tr], &[], "seldon-system", 10);
        assert_eq!(p, PlaceholderPlan::default());

        // 7. a placeholder that gained an image (edited by hand) is reset.
        let mut tampered = ph_ml.clone();
        tampered.pod_spec = json!({"containers":[{"name":"rclone","image":"evil:1"},{"name":"agent"},{"name":"mlserver"},{"name":"extra"}]})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let p = plan_placeholders(&[&a_ml, &b_ml], &[&tampered], "seldon-system", 10);
        assert_eq!(names(&p.update), ["mlserver"]);
    }
}
