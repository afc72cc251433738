//! Table-driven tests of the pure core on the real Seldon 2.9.1 fixtures.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use serde_json::{json, Value};
use serverconfig_webhook::core::desired::desired;
use serverconfig_webhook::core::model::{Server, ServerConfig};
use serverconfig_webhook::core::mutate::{
    decide, scope, Decision, Gvk, Inputs, OnMissing, Operation, Scope, Settings, WorkloadKind,
    HASH_ANNOTATION, LAST_APPLIED_ANNOTATION, SOURCE_ANNOTATION,
};
use serverconfig_webhook::core::placeholder::{
    LEGACY_USED_BY_ANNOTATION, PLACEHOLDER_ANNOTATION, PLACEHOLDER_TEXT,
};
use support::*;

const APP: &str = "financial-mlops-pytorch";
const CTL: &str = "seldon-system";

fn settings(on_missing: OnMissing) -> Settings {
    Settings {
        controller_namespace: CTL.into(),
        on_missing,
    }
}

fn team_image(old: &str) -> String {
    format!("harbor.test/team/{}", old.rsplit('/').next().unwrap_or(old))
}

fn platform_image(old: &str) -> String {
    format!(
        "registry.platform/{}",
        old.rsplit('/').next().unwrap_or(old)
    )
}

struct Run {
    decision: Decision,
    object: Value,
}

/// Admits `object` with the given lookups; applies the patch if any.
fn admit(
    op: Operation,
    object: &Value,
    server: Option<&Value>,
    team: Option<&Value>,
    ctl: Option<&Value>,
    s: &Settings,
) -> Run {
    admit_with_old(op, object, None, server, team, ctl, s)
}

/// [`admit`] with the stored object (`oldObject`) of an UPDATE.
fn admit_with_old(
    op: Operation,
    object: &Value,
    old: Option<&Value>,
    server: Option<&Value>,
    team: Option<&Value>,
    ctl: Option<&Value>,
    s: &Settings,
) -> Run {
    let server = server.map(|v| Server::from_value(v).expect("server"));
    let team = team.map(|v| ServerConfig::from_value(v).expect("team config"));
    let ctl = ctl.map(|v| ServerConfig::from_value(v).expect("controller config"));
    let ns = object["metadata"]["namespace"].as_str().unwrap_or("");
    let inputs = Inputs {
        server: server.as_ref(),
        config: team.as_ref(),
        config_error: None,
        controller_config: ctl.as_ref(),
        old_object: old,
        desired: None,
    };
    let decision = decide(op, WorkloadKind::StatefulSet, ns, object, inputs, s);
    // A caller that kept what was built from this Server and ServerConfig
    // hands that in instead of the ServerConfig: same decision.
    if let (Some(server), Some(team)) = (&server, &team) {
        let built = desired(server, team);
        let from_cache = Inputs {
            config: None,
            desired: Some(&built),
            ..inputs
        };
        assert_eq!(
            decide(op, WorkloadKind::StatefulSet, ns, object, from_cache, s),
            decision,
            "desired handed in without the ServerConfig"
        );
    }
    let mut patched = object.clone();
    if let Decision::Patched { patch, .. } = &decision {
        json_patch::patch(&mut patched, patch).expect("patch applies");
    }
    Run {
        decision,
        object: patched,
    }
}

struct Pattern1Case {
    name: &'static str,
    real: &'static str,
    /// What the controller namespace holds under that name.
    controller_config: fn(&str) -> Value,
    server_extra: Value,
}

fn ctl_placeholder(real: &str) -> Value {
    let containers: &[&str] = if real == "mlserver" {
        &["rclone", "agent", "mlserver"]
    } else {
        &["rclone", "agent", "triton"]
    };
    placeholder(CTL, "mlserver-config", containers)
}

fn ctl_platform(real: &str) -> Value {
    real_server_config(real, CTL, "mlserver-config", platform_image)
}

#[test]
fn pattern1_gets_the_team_images_and_is_a_fixed_point() {
    let cases = vec![
        Pattern1Case {
            name: "mlserver over placeholder",
            real: "mlserver",
            controller_config: ctl_placeholder,
            server_extra: json!({}),
        },
        Pattern1Case {
            name: "mlserver over platform config",
            real: "mlserver",
            controller_config: ctl_platform,
            server_extra: json!({}),
        },
        Pattern1Case {
            name: "triton over placeholder",
            real: "triton",
            controller_config: ctl_placeholder,
            server_extra: json!({}),
        },
        Pattern1Case {
            name: "triton over platform config",
            real: "triton",
            controller_config: ctl_platform,
            server_extra: json!({}),
        },
        Pattern1Case {
            name: "mlserver with Server overrides and capabilities",
            real: "mlserver",
            controller_config: ctl_platform,
            server_extra: json!({
                "capabilities": ["sklearn", "team-x"],
                "podSpec": {"containers": [
                    {"name": "mlserver", "resources": {"limits": {"memory": "2Gi", "cpu": "1000m"}},
                     "env": [{"name": "TEAM", "value": "x"}]},
                    {"name": "sidecar", "image": "harbor.test/team/sidecar:1"}],
                  "tolerations": [{"key": "gpu", "operator": "Exists"}]}
            }),
        },
    ];
    for c in cases {
        let team = real_server_config(c.real, APP, "mlserver-config", team_image);
        let ctl = (c.controller_config)(c.real);
        let srv = server(APP, "mlserver", "mlserver-config", c.server_extra.clone());
        let incoming = controller_statefulset(&srv, &ctl);
        let s = settings(OnMissing::Auto);
        let first = admit(
            Operation::Create,
            &incoming,
            Some(&srv),
            Some(&team),
            Some(&ctl),
            &s,
        );
        assert_eq!(first.decision.outcome(), "patched", "case {}", c.name);
        // The stored object is exactly what the controller builds from the
        // team's own ServerConfig (plus, in the template, a placeholder's
        // own labels: see placeholder_keys_stay_in_the_template_frozen_at_create).
        let mut want = controller_statefulset(&srv, &team);
        if let Some(ph_labels) = ctl["metadata"]["labels"].as_object() {
            for (k, v) in ph_labels {
                want["spec"]["template"]["metadata"]["labels"][k] = v.clone();
            }
        }
        assert_eq!(
            first.object["spec"]["template"]["spec"], want["spec"]["template"]["spec"],
            "case {}",
            c.name
        );
        assert_eq!(
            first.object["spec"]["template"]["metadata"]["labels"],
            want["spec"]["template"]["metadata"]["labels"],
            "case {}",
            c.name
        );
        for img in images(&first.object) {
            assert!(
                img.starts_with("harbor.test/"),
                "case {}: image {img}",
                c.name
            );
        }
        let ann = &first.object["metadata"]["annotations"];
        assert_eq!(
            ann[SOURCE_ANNOTATION],
            json!(format!("{APP}/mlserver-config")),
            "case {}",
            c.name
        );
        assert!(
            ann[HASH_ANNOTATION].as_str().is_some_and(|h| h.len() == 16),
            "case {}",
            c.name
        );
        assert_eq!(
            ann[LAST_APPLIED_ANNOTATION],
            incoming["metadata"]["annotations"][LAST_APPLIED_ANNOTATION],
            "case {}: last-applied untouched",
            c.name
        );
        // Fixed point: re-admitting the fixed object gives no patch.
        let second = admit(
            Operation::Update,
            &first.object,
            Some(&srv),
            Some(&team),
            Some(&ctl),
            &s,
        );
        assert_eq!(
            second.decision.outcome(),
            "unchanged",
            "case {}: {:?}",
            c.name,
            second.decision
        );
        // The controller's next full Update (built from the wrong config) is fixed again.
        let third = admit(
            Operation::Update,
            &incoming,
            Some(&srv),
            Some(&team),
            Some(&ctl),
            &s,
        );
        assert_eq!(
            third.object["spec"]["template"], first.object["spec"]["template"],
            "case {}",
            c.name
        );
    }
}

#[test]
fn capabilities_and_overrides_land_in_the_template() {
    let team = real_server_config("mlserver", APP, "mlserver-config", team_image);
    let ctl = ctl_placeholder("mlserver");
    let srv = server(
        APP,
        "mlserver",
        "mlserver-config",
        json!({"extraCapabilities": ["team-x"],
        "podSpec": {"containers": [{"name": "agent", "env": [{"name": "EXTRA", "value": "1"}]}]}}),
    );
    let run = admit(
        Operation::Create,
        &controller_statefulset(&srv, &ctl),
        Some(&srv),
        Some(&team),
        Some(&ctl),
        &settings(OnMissing::Auto),
    );
    let cs = run.object["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(cs[0]["name"], "agent", "override containers come first");
    let env = cs[0]["env"].as_array().cloned().unwrap_or_default();
    let caps = env
        .iter()
        .find(|e| e["name"] == "SELDON_SERVER_CAPABILITIES")
        .cloned()
        .unwrap_or_default();
    assert!(
        caps["value"]
            .as_str()
            .is_some_and(|v| v.ends_with(",team-x") && v.starts_with("mlserver,")),
        "{caps}"
    );
    assert_eq!(
        env.last().cloned().unwrap_or_default(),
        json!({"name": "EXTRA", "value": "1"})
    );
}

#[test]
fn out_of_scope_objects_get_no_patch() {
    let srv = server(APP, "mlserver", "mlserver-config", json!({}));
    let owned = controller_statefulset(
        &srv,
        &real_server_config("mlserver", APP, "mlserver-config", team_image),
    );
    let mut unowned = owned.clone();
    unowned["metadata"]["ownerReferences"] = json!([{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"x","uid":"1","controller":true}]);
    let mut not_controller = owned.clone();
    not_controller["metadata"]["ownerReferences"][0]["controller"] = json!(false);
    let s = settings(OnMissing::Auto);
    let sts = Gvk {
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
    };
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, Gvk, Operation, &str, Option<&Value>, &str)> = vec![
        (
            "controller namespace (Pattern 2)",
            sts,
            Operation::Create,
            CTL,
            Some(&owned),
            "controller-namespace",
        ),
        (
            "owned by something else",
            sts,
            Operation::Create,
            APP,
            Some(&unowned),
            "not-owned-by-server",
        ),
        (
            "owner reference is not the controller",
            sts,
            Operation::Create,
            APP,
            Some(&not_controller),
            "not-owned-by-server",
        ),
        (
            "another kind",
            Gvk {
                group: "",
                version: "v1",
                kind: "Pod",
            },
            Operation::Create,
            APP,
            Some(&owned),
            "kind",
        ),
        (
            "apps/v1beta2",
            Gvk {
                group: "apps",
                version: "v1beta2",
                kind: "StatefulSet",
            },
            Operation::Create,
            APP,
            Some(&owned),
            "kind",
        ),
        (
            "delete",
            sts,
            Operation::Other,
            APP,
            Some(&owned),
            "operation",
        ),
        ("no object", sts, Operation::Create, APP, None, "no-object"),
    ];
    for (name, gvk, op, ns, obj, want) in cases {
        assert_eq!(scope(gvk, op, ns, obj, &s), Scope::Out(want), "case {name}");
    }
    assert_eq!(
        scope(sts, Operation::Update, APP, Some(&owned), &s),
        Scope::In {
            kind: WorkloadKind::StatefulSet,
            server: "mlserver".into()
        }
    );
    let dep = Gvk {
        group: "apps",
        version: "v1",
        kind: "Deployment",
    };
    assert!(matches!(
        scope(dep, Operation::Create, APP, Some(&owned), &s),
        Scope::In {
            kind: WorkloadKind::Deployment,
            ..
        }
    ));
}

#[test]
fn missing_server_config_follows_on_missing() {
    let srv = server(APP, "mlserver", "mlserver-config", json!({}));
    let shared = real_server_config("mlserver", CTL, "mlserver-config", platform_image);
    let ph = ctl_placeholder("mlserver");
    let incoming = controller_statefulset(&srv, &shared);
    // (name, policy, controller-namespace config, expected outcome, text in message or warning)
    let cases: Vec<(&str, OnMissing, Option<&Value>, &str, &str)> = vec![
        (
            "allow keeps the controller's object",
            OnMissing::Allow,
            Some(&shared),
            "unchanged",
            "no ServerConfig \"mlserver-config\" in namespace \"financial-mlops-pytorch\"",
        ),
        (
            "allow with nothing anywhere",
            OnMissing::Allow,
            None,
            "unchanged",
            "kept the controller's object",
        ),
        (
            "deny names namespace and config",
            OnMissing::Deny,
            Some(&shared),
            "denied",
            "ServerConfig \"mlserver-config\" not found in namespace \"financial-mlops-pytorch\"",
        ),
        (
            "auto allows a real shared config",
            OnMissing::Auto,
            Some(&shared),
            "unchanged",
            "seldon-system/mlserver-config",
        ),
        (
            "auto denies over a placeholder",
            OnMissing::Auto,
            Some(&ph),
            "denied",
            "only a placeholder",
        ),
        (
            "auto denies with nothing",
            OnMissing::Auto,
            None,
            "denied",
            "not found in namespace",
        ),
    ];
    for (name, policy, ctl, want, text) in cases {
        let run = admit(
            Operation::Create,
            &incoming,
            Some(&srv),
            None,
            ctl,
            &settings(policy),
        );
        assert_eq!(run.decision.outcome(), want, "case {name}");
        let said = match &run.decision {
            Decision::Denied { message } => message.clone(),
            Decision::Unchanged { warnings, .. } => warnings.join(" "),
            Decision::Patched { .. } => String::new(),
        };
        assert!(said.contains(text), "case {name}: {said}");
    }
}

#[test]
fn immutable_fields_on_update_are_warned_not_patched() {
    let mut team = real_server_config("mlserver", APP, "mlserver-config", team_image);
    team["spec"]["volumeClaimTemplates"] = json!([{"name": "models", "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]);
    let ctl = ctl_placeholder("mlserver");
    let srv = server(APP, "mlserver", "mlserver-config", json!({}));
    let incoming = controller_statefulset(&srv, &ctl);
    let s = settings(OnMissing::Auto);
    let update = admit(
        Operation::Update,
        &incoming,
        Some(&srv),
        Some(&team),
        Some(&ctl),
        &s,
    );
    let Decision::Patched {
        patch, warnings, ..
    } = &update.decision
    else {
        panic!("expected a patch: {:?}", update.decision)
    };
    assert!(patch.0.iter().all(|op| !serde_json::to_string(op)
        .unwrap_or_default()
        .contains("volumeClaimTemplates")));
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("spec.volumeClaimTemplates")
                && w.contains("cannot change on update")),
        "{warnings:?}"
    );
    assert!(
        images(&update.object)
            .iter()
            .all(|i| i.starts_with("harbor.test/")),
        "template still fixed"
    );
    let create = admit(
        Operation::Create,
        &incoming,
        Some(&srv),
        Some(&team),
        Some(&ctl),
        &s,
    );
    assert_eq!(
        create.object["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        "models"
    );
    let again = admit(
        Operation::Update,
        &create.object,
        Some(&srv),
        Some(&team),
        Some(&ctl),
        &s,
    );
    assert_eq!(
        again.decision.outcome(),
        "unchanged",
        "{:?}",
        again.decision
    );
}

#[test]
fn server_problems_deny_create_and_warn_on_update() {
    let team = real_server_config("mlserver", APP, "mlserver-config", team_image);
    let srv = server(APP, "mlserver", "mlserver-config", json!({}));
    let incoming = controller_statefulset(&srv, &team);
    let s = settings(OnMissing::Auto);
    let run = admit(Operation::Create, &incoming, None, Some(&team), None, &s);
    assert!(
        matches!(&run.decision, Decision::Denied { message } if message.contains("Server financial-mlops-pytorch/mlserver (uid \"1111-2222\") named by the controller owner reference does not exist"))
    );
    let run = admit(Operation::Update, &incoming, None, Some(&team), None, &s);
    assert!(
        matches!(&run.decision, Decision::Unchanged { warnings, .. } if warnings[0].contains("does not exist"))
    );
    let empty = server(APP, "mlserver", "", json!({}));
    let run = admit(Operation::Create, &incoming, Some(&empty), None, None, &s);
    assert!(
        matches!(&run.decision, Decision::Denied { message } if message.contains("empty spec.serverConfig"))
    );
}

#[test]
fn foreign_keys_survive_and_shared_config_keys_go() {
    let team = real_server_config("mlserver", APP, "mlserver-config", team_image);
    let mut shared = ctl_platform("mlserver");
    shared["metadata"]["labels"] = json!({"platform/tier": "shared"});
    let srv = server(APP, "mlserver", "mlserver-config", json!({}));
    let mut incoming = controller_statefulset(&srv, &shared);
    assert_eq!(
        incoming["spec"]["template"]["metadata"]["labels"]["platform/tier"],
        "shared"
    );
    incoming["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] =
        json!("2026-11-25T00:00:00Z");
    let run = admit(
        Operation::Update,
        &incoming,
        Some(&srv),
        Some(&team),
        Some(&shared),
        &settings(OnMissing::Auto),
    );
    let tmpl = &run.object["spec"]["template"]["metadata"];
    assert_eq!(
        tmpl["annotations"]["kubectl.kubernetes.io/restartedAt"],
        "2026-11-25T00:00:00Z"
    );
    assert!(tmpl["labels"].get("platform/tier").is_none(), "{tmpl}");
    assert!(run.object["metadata"]["labels"]
        .get("platform/tier")
        .is_none());
}

#[test]
fn placeholder_keys_stay_in_the_template_frozen_at_create() {
    let team = real_server_config("mlserver", APP, "mlserver-config", team_image);
    // an earlier release's placeholder: container names and a used-by list
    let mut ph = ctl_placeholder("mlserver");
    ph["metadata"]["annotations"][LEGACY_USED_BY_ANNOTATION] = json!("financial-mlops-pytorch");
    let srv = server(APP, "mlserver", "mlserver-config", json!({}));
    let s = settings(OnMissing::Auto);
    let created = admit(
        Operation::Create,
        &controller_statefulset(&srv, &ph),
        Some(&srv),
        Some(&team),
        Some(&ph),
        &s,
    );
    let tmpl = &created.object["spec"]["template"]["metadata"];
    // Kept in the template: the stock controller compares it on every reconcile.
    assert_eq!(
        tmpl["labels"]["app.kubernetes.io/managed-by"],
        "serverconfig-webhook"
    );
    assert_eq!(
        tmpl["annotations"][LEGACY_USED_BY_ANNOTATION],
        "financial-mlops-pytorch"
    );
    assert_eq!(
        tmpl["annotations"][PLACEHOLDER_ANNOTATION],
        PLACEHOLDER_TEXT
    );
    // Not on the workload itself: the controller ignores object metadata.
    assert!(created.object["metadata"]["labels"]
        .get("app.kubernetes.io/managed-by")
        .is_none());
    // The placeholder's users change; the controller sends a full Update
    // with the new value; the template keeps the stored one (no rollout).
    ph["metadata"]["annotations"][LEGACY_USED_BY_ANNOTATION] =
        json!("financial-mlops-pytorch,financial-inference");
    let update = controller_statefulset(&srv, &ph);
    let run = admit_with_old(
        Operation::Update,
        &update,
        Some(&created.object),
        Some(&srv),
        Some(&team),
        Some(&ph),
        &s,
    );
    assert_eq!(
        run.object["spec"]["template"],
        created.object["spec"]["template"]
    );
    // The upgrade: the sync loop rewrites the placeholder in the current
    // shape (no containers, no used-by); the controller's next Update
    // lacks both, and the template is still the stored one (no rollout).
    let current = placeholder(CTL, "mlserver-config", &[]);
    let update = controller_statefulset(&srv, &current);
    assert!(update["spec"]["template"]["metadata"]["annotations"]
        .get(LEGACY_USED_BY_ANNOTATION)
        .is_none());
    let upgraded = admit_with_old(
        Operation::Update,
        &update,
        Some(&created.object),
        Some(&srv),
        Some(&team),
        Some(&current),
        &s,
    );
    assert_eq!(
        upgraded.object["spec"]["template"], created.object["spec"]["template"],
        "upgrading the placeholder rolls no pod"
    );
    // A workload created from the current shape carries only its constant keys.
    let fresh = admit(
        Operation::Create,
        &controller_statefulset(&srv, &current),
        Some(&srv),
        Some(&team),
        Some(&current),
        &s,
    );
    let tmpl = &fresh.object["spec"]["template"]["metadata"];
    assert_eq!(
        tmpl["annotations"][PLACEHOLDER_ANNOTATION],
        PLACEHOLDER_TEXT
    );
    assert!(tmpl["annotations"].get(LEGACY_USED_BY_ANNOTATION).is_none());
    assert_eq!(
        fresh.object["spec"]["template"]["spec"], created.object["spec"]["template"]["spec"],
        "the same pod spec whatever the placeholder's shape"
    );
}

#[test]
fn semantic_comparison_ignores_quantity_spelling_and_defaults() {
    let mut team = real_server_config("mlserver", APP, "mlserver-config", team_image);
    team["spec"]["podSpec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("0.05");
    let srv = server(APP, "mlserver", "mlserver-config", json!({}));
    let s = settings(OnMissing::Auto);
    let first = admit(
        Operation::Create,
        &controller_statefulset(&srv, &ctl_placeholder("mlserver")),
        Some(&srv),
        Some(&team),
        None,
        &s,
    );
    // What the API server stores: canonical quantities, explicit defaults.
    let mut stored = first.object.clone();
    stored["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] =
        json!("50m");
    stored["spec"]["template"]["spec"]["containers"][0]["resources"]["claims"] = json!(null);
    stored["spec"]["template"]["spec"]["hostNetwork"] = json!(false);
    let again = admit(
        Operation::Update,
        &stored,
        Some(&srv),
        Some(&team),
        None,
        &s,
    );
    assert_eq!(
        again.decision.outcome(),
        "unchanged",
        "{:?}",
        again.decision
    );
}

#[test]
fn never_reads_another_namespaces_config() {
    // Two tenants, same ServerConfig name, different images: each object gets
    // its own namespace's images whatever else is handed in.
    let a = real_server_config("mlserver", "team-a", "cfg", |_| "a.registry/img:1".into());
    let b = real_server_config("mlserver", "team-b", "cfg", |_| "b.registry/img:1".into());
    let sa = server("team-a", "m", "cfg", json!({}));
    let sb = server("team-b", "m", "cfg", json!({}));
    let s = settings(OnMissing::Auto);
    let ra = admit(
        Operation::Create,
        &controller_statefulset(&sa, &b),
        Some(&sa),
        Some(&a),
        Some(&b),
        &s,
    );
    let rb = admit(
        Operation::Create,
        &controller_statefulset(&sb, &a),
        Some(&sb),
        Some(&b),
        Some(&a),
        &s,
    );
    assert!(images(&ra.object)
        .iter()
        .all(|i| i.starts_with("a.registry")));
    assert!(images(&rb.object)
        .iter()
        .all(|i| i.starts_with("b.registry")));
}

#[test]
fn objects_being_deleted_pass_untouched() {
    let team = real_server_config("mlserver", APP, "mlserver-config", team_image);
    let srv = server(APP, "mlserver", "mlserver-config", json!({}));
    let mut incoming = controller_statefulset(&srv, &ctl_placeholder("mlserver"));
    incoming["metadata"]["deletionTimestamp"] = json!("2026-11-25T00:00:00Z");
    let run = admit(
        Operation::Update,
        &incoming,
        Some(&srv),
        Some(&team),
        None,
        &settings(OnMissing::Auto),
    );
    assert_eq!(run.decision.outcome(), "unchanged");
}

/// The controller's UPDATE of a StatefulSet the webhook created from a
/// placeholder carries the placeholder's empty claim templates; the API
/// server refuses any change to them, so the stored ones are kept (a
/// warning only when they are not what the ServerConfig gives now).
#[test]
fn update_keeps_the_stored_claim_templates() {
    let claims = |name: &str| json!([{"name": name, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]);
    let mut team = real_server_config("mlserver", APP, "mlserver-config", team_image);
    team["spec"]["volumeClaimTemplates"] = claims("models");
    let mut changed = team.clone();
    changed["spec"]["volumeClaimTemplates"] = claims("other");
    let ctl = ctl_placeholder("mlserver");
    let srv = server(APP, "mlserver", "mlserver-config", json!({}));
    let incoming = controller_statefulset(&srv, &ctl);
    let s = settings(OnMissing::Auto);
    let stored = admit(
        Operation::Create,
        &incoming,
        Some(&srv),
        Some(&team),
        Some(&ctl),
        &s,
    )
    .object;
    let mut scaled = incoming.clone();
    scaled["spec"]["replicas"] = json!(2);
    // (name, ServerConfig now, expect a claim-template warning)
    let cases: [(&str, &Value, bool); 2] = [
        ("claims unchanged", &team, false),
        ("claims changed in the ServerConfig", &changed, true),
    ];
    for (name, config, warned) in cases {
        let run = admit_with_old(
            Operation::Update,
            &scaled,
            Some(&stored),
            Some(&srv),
            Some(config),
            Some(&ctl),
            &s,
        );
        assert_eq!(
            run.object["spec"]["volumeClaimTemplates"], stored["spec"]["volumeClaimTemplates"],
            "case {name}: stored claim templates kept"
        );
        assert_eq!(
            run.object["spec"]["replicas"],
            json!(2),
            "case {name}: the scale goes through"
        );
        let warnings = match &run.decision {
            Decision::Patched { warnings, .. } | Decision::Unchanged { warnings, .. } => {
                warnings.clone()
            }
            other => panic!("case {name}: {other:?}"),
        };
        assert_eq!(
            warnings
                .iter()
                .any(|w| w.contains("spec.volumeClaimTemplates")),
            warned,
            "case {name}: {warnings:?}"
        );
    }
}

#[test]
fn the_patch_writes_only_the_fields_that_differ() {
    // The controller namespace holds the platform images, the team's
    // config its own: only images may be written under the pod spec.
    let pod_spec_leaves = ["image"];
    for name in ["mlserver", "triton"] {
        let ctl = ctl_platform(name);
        let team = real_server_config(name, APP, "mlserver-config", team_image);
        let srv = server(APP, "mlserver", "mlserver-config", json!({}));
        let incoming = controller_statefulset(&srv, &ctl);
        let run = admit(
            Operation::Create,
            &incoming,
            Some(&srv),
            Some(&team),
            Some(&ctl),
            &settings(OnMissing::Auto),
        );
        let Decision::Patched { patch, .. } = &run.decision else {
            panic!("case {name}: not patched: {:?}", run.decision);
        };
        let paths: Vec<String> = patch.0.iter().map(|op| op.path().to_string()).collect();
        for p in &paths {
            if let Some(rest) = p.strip_prefix("/spec/template/spec") {
                let leaf = rest.rsplit('/').next().unwrap_or("");
                assert!(
                    pod_spec_leaves.contains(&leaf),
                    "case {name}: op {p} writes more than {pod_spec_leaves:?}"
                );
            }
        }
        assert!(
            paths.iter().any(|p| p.ends_with("/image")),
            "case {name}: no image op in {paths:?}"
        );
        let encoded = serde_json::to_string(patch).unwrap_or_default();
        assert!(
            !encoded.contains("seldon.io/last-applied")
                && !encoded.contains("seldon.io~1last-applied"),
            "case {name}: the patch carries the controller's last-applied copy: {encoded}"
        );
        assert!(
            encoded.len() * 4 < serde_json::to_string(&incoming).unwrap_or_default().len(),
            "case {name}: patch of {} bytes is not small: {encoded}",
            encoded.len()
        );
        // Applied, it is what the controller builds from the team's config.
        let want = controller_statefulset(&srv, &team);
        assert_eq!(
            run.object["spec"]["template"]["spec"], want["spec"]["template"]["spec"],
            "case {name}"
        );
    }
}

#[test]
fn a_deployment_mounting_what_only_claim_templates_provide_is_warned_about() {
    let srv = server(APP, "mlserver", "mlserver-config", json!({}));
    let s = settings(OnMissing::Auto);
    let ph = placeholder(CTL, "mlserver-config", &[]);
    let mut dep = controller_statefulset(&srv, &ph);
    dep["kind"] = json!("Deployment");
    for field in ["serviceName", "volumeClaimTemplates", "podManagementPolicy"] {
        dep["spec"].as_object_mut().expect("spec").remove(field);
    }
    let warnings = |team: &Value| -> Vec<String> {
        let server = Server::from_value(&srv).expect("server");
        let team = ServerConfig::from_value(team).expect("team");
        let inputs = Inputs {
            server: Some(&server),
            config: Some(&team),
            ..Inputs::default()
        };
        match decide(
            Operation::Create,
            WorkloadKind::Deployment,
            APP,
            &dep,
            inputs,
            &s,
        ) {
            Decision::Patched { warnings, .. } | Decision::Unchanged { warnings, .. } => warnings,
            Decision::Denied { message } => panic!("denied: {message}"),
        }
    };
    // the released mlserver config: its containers mount mlserver-models,
    // which only its claim template provides
    let released = real_server_config("mlserver", APP, "mlserver-config", team_image);
    let got = warnings(&released);
    assert!(
        got.iter()
            .any(|w| w.contains("mounts volume \"mlserver-models\"")
                && w.contains("defines only as a volumeClaimTemplate")),
        "{got:?}"
    );
    // a mount of a volume defined nowhere
    let mut undefined = released.clone();
    undefined["spec"]["volumeClaimTemplates"] = json!([]);
    let got = warnings(&undefined);
    assert!(got.iter().any(|w| w.contains("does not define")), "{got:?}");
    // with the volume defined: no such warning
    let mut fixed = undefined;
    if let Some(v) = fixed["spec"]["podSpec"]["volumes"].as_array_mut() {
        v.push(json!({"name": "mlserver-models", "emptyDir": {}}));
    }
    let got = warnings(&fixed);
    assert!(!got.iter().any(|w| w.contains("mounts volume")), "{got:?}");
}
