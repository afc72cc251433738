//! Pure decisions of the sync loop: which placeholders the controller
//! namespace needs, and whether a stored workload must be re-admitted
//! (rolled out after a ServerConfig change, or healed after being admitted
//! without the webhook).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::desired::{desired, vct_identity};
use super::model::{Server, ServerConfig};
use super::mutate::{
    decide, Applied, Decision, Inputs, Operation, Settings, WorkloadKind, SOURCE_ANNOTATION,
};
use super::placeholder::{placeholder_state, PlaceholderState};

/// What the placeholder pass should do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlaceholderPlan {
    /// Names to create a placeholder for.
    pub create: Vec<String>,
    /// Placeholders of an earlier release's shape, to rewrite as the
    /// current one (once: the shape no longer depends on the users).
    pub rewrite: Vec<String>,
    /// Names of placeholders no namespace uses any more.
    pub delete: Vec<String>,
    /// Labelled ServerConfigs somebody else changed: never touched again.
    pub adopted: Vec<String>,
    /// Namespaces over the cap, with the names not honoured for them.
    pub capped: BTreeMap<String, Vec<String>>,
    /// For each name that has (or gets) a placeholder, the namespaces it
    /// serves, sorted.
    pub used_by: BTreeMap<String, Vec<String>>,
}

/// Plans placeholders from the ServerConfig names of the watched
/// application namespaces, `(namespace, name)`, and the ServerConfigs of
/// the controller namespace. Only names count, never content: the
/// placeholder is the same whoever uses it. A real (unlabelled) or adopted
/// ServerConfig in the controller namespace is never planned for; each
/// application namespace causes at most `cap` placeholders (by name order).
pub fn plan_placeholders(
    app_names: &[(String, String)],
    controller_configs: &[&ServerConfig],
    controller_ns: &str,
    cap: usize,
) -> PlaceholderPlan {
    let existing: BTreeMap<&str, Option<PlaceholderState>> = controller_configs
        .iter()
        .map(|c| (c.meta.name.as_str(), placeholder_state(c)))
        .collect();
    let mut by_namespace: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (ns, name) in app_names.iter().filter(|(ns, _)| ns != controller_ns) {
        by_namespace.entry(ns).or_default().insert(name);
    }
    let mut plan = PlaceholderPlan::default();
    for (ns, names) in by_namespace {
        let mut caused = 0usize;
        for name in names {
            let theirs = matches!(
                existing.get(name),
                Some(None | Some(PlaceholderState::Adopted))
            );
            if theirs {
                continue; // the platform's shared config, or adopted: never touched
            }
            if caused >= cap {
                plan.capped
                    .entry(ns.to_string())
                    .or_default()
                    .push(name.to_string());
                continue;
            }
            caused += 1;
            plan.used_by
                .entry(name.to_string())
                .or_default()
                .push(ns.to_string());
        }
    }
    for name in plan.used_by.keys() {
        match existing.get(name.as_str()) {
            None => plan.create.push(name.clone()),
            Some(Some(PlaceholderState::Legacy)) => plan.rewrite.push(name.clone()),
            Some(_) => {}
        }
    }
    for (name, state) in existing {
        match state {
            Some(PlaceholderState::Ours | PlaceholderState::Legacy)
                if !plan.used_by.contains_key(name) =>
            {
                plan.delete.push(name.to_string())
            }
            Some(PlaceholderState::Adopted) => plan.adopted.push(name.to_string()),
            _ => {}
        }
    }
    plan
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
        Decision::Patched {
            applied: Applied { hash, .. },
            ..
        } => {
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
    use crate::core::placeholder::{placeholder_object, LEGACY_USED_BY_ANNOTATION};
    use serde_json::json;

    const CTL: &str = "seldon-system";

    fn real(name: &str) -> ServerConfig {
        ServerConfig::from_value(
            &json!({"apiVersion":"mlops.seldon.io/v1alpha1","kind":"ServerConfig",
            "metadata":{"name":name,"namespace":CTL},
            "spec":{"podSpec":{"containers":[{"name":"agent","image":"platform/agent:1"}]}}}),
        )
        .expect("valid")
    }

    fn ours(name: &str) -> ServerConfig {
        ServerConfig::from_value(&placeholder_object(name, CTL)).expect("valid")
    }

    fn legacy(name: &str) -> ServerConfig {
        let mut o = placeholder_object(name, CTL);
        o["metadata"]["annotations"][LEGACY_USED_BY_ANNOTATION] = json!("a,b");
        o["spec"]["podSpec"]["containers"] = json!([{"name": "rclone"}, {"name": "agent"}]);
        ServerConfig::from_value(&o).expect("valid")
    }

    fn adopted(name: &str) -> ServerConfig {
        let mut o = placeholder_object(name, CTL);
        o["spec"]["podSpec"]["containers"] =
            json!([{"name": "agent", "image": "platform/agent:2"}]);
        ServerConfig::from_value(&o).expect("valid")
    }

    fn names(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(ns, n)| (ns.to_string(), n.to_string()))
            .collect()
    }

    #[test]
    fn placeholder_plan_table() {
        struct Case {
            name: &'static str,
            app: Vec<(String, String)>,
            controller: Vec<ServerConfig>,
            cap: usize,
            want: PlaceholderPlan,
        }
        let used = |pairs: &[(&str, &[&str])]| -> BTreeMap<String, Vec<String>> {
            pairs
                .iter()
                .map(|(n, nss)| (n.to_string(), nss.iter().map(|s| s.to_string()).collect()))
                .collect()
        };
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases = vec![
            Case {
                name: "nothing in the controller namespace: one per name, users listed",
                app: names(&[("b", "mlserver"), ("a", "mlserver"), ("a", "triton")]),
                controller: vec![],
                cap: 10,
                want: PlaceholderPlan {
                    create: strings(&["mlserver", "triton"]),
                    used_by: used(&[("mlserver", &["a", "b"]), ("triton", &["a"])]),
                    ..Default::default()
                },
            },
            Case {
                name: "a real shared config of that name is never planned for",
                app: names(&[("a", "triton")]),
                controller: vec![real("triton")],
                cap: 10,
                want: PlaceholderPlan::default(),
            },
            Case {
                name: "an adopted placeholder is left alone and reported, even unused",
                app: names(&[("a", "squat")]),
                controller: vec![adopted("squat"), adopted("gone")],
                cap: 10,
                want: PlaceholderPlan {
                    adopted: strings(&["gone", "squat"]),
                    ..Default::default()
                },
            },
            Case {
                name: "a current placeholder stays; an unused one goes",
                app: names(&[("a", "mlserver"), ("b", "mlserver")]),
                controller: vec![ours("mlserver"), ours("old")],
                cap: 10,
                want: PlaceholderPlan {
                    delete: strings(&["old"]),
                    used_by: used(&[("mlserver", &["a", "b"])]),
                    ..Default::default()
                },
            },
            Case {
                name: "an earlier release's placeholder is rewritten; an unused one goes",
                app: names(&[("a", "mlserver")]),
                controller: vec![legacy("mlserver"), legacy("old")],
                cap: 10,
                want: PlaceholderPlan {
                    rewrite: strings(&["mlserver"]),
                    delete: strings(&["old"]),
                    used_by: used(&[("mlserver", &["a"])]),
                    ..Default::default()
                },
            },
            Case {
                name:
                    "the cap per namespace, by name order; names under a real config do not count",
                app: names(&[
                    ("a", "triton"),
                    ("a", "mlserver"),
                    ("a", "shared"),
                    ("b", "triton"),
                ]),
                controller: vec![real("shared")],
                cap: 1,
                want: PlaceholderPlan {
                    create: strings(&["mlserver", "triton"]),
                    capped: [("a".to_string(), strings(&["triton"]))].into(),
                    used_by: used(&[("mlserver", &["a"]), ("triton", &["b"])]),
                    ..Default::default()
                },
            },
            Case {
                name: "ServerConfigs in the controller namespace itself cause nothing",
                app: names(&[(CTL, "triton")]),
                controller: vec![],
                cap: 10,
                want: PlaceholderPlan::default(),
            },
        ];
        for c in cases {
            let controller: Vec<&ServerConfig> = c.controller.iter().collect();
            assert_eq!(
                plan_placeholders(&c.app, &controller, CTL, c.cap),
                c.want,
                "{}",
                c.name
            );
        }
    }
}
