//! The sync loop's per-workload decision, on the real 2.9.1 fixtures.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use serde_json::{json, Value};
use serverconfig_webhook::core::model::{Server, ServerConfig};
use serverconfig_webhook::core::mutate::{
    decide, Decision, Inputs, OnMissing, Operation, Settings, WorkloadKind,
};
use serverconfig_webhook::core::plan::{claim_templates_differ, workload_action, WorkloadAction};
use support::*;

const APP: &str = "team-a";

fn settings() -> Settings {
    Settings {
        controller_namespace: "seldon-system".into(),
        on_missing: OnMissing::Auto,
    }
}

fn team(tag: &str) -> ServerConfig {
    let v = real_server_config("mlserver", APP, "mlserver", |old| {
        format!(
            "harbor.test/{}-{tag}",
            old.rsplit('/').next().unwrap_or(old)
        )
    });
    ServerConfig::from_value(&v).expect("config")
}

/// The workload as stored after the webhook admitted it with `config`.
fn admitted(server: &Value, config: &ServerConfig, placeholder: &Value) -> Value {
    let mut obj = controller_statefulset(server, placeholder);
    let s = Server::from_value(server).expect("server");
    let ph = ServerConfig::from_value(placeholder).expect("placeholder");
    let inputs = Inputs {
        server: Some(&s),
        config: Some(config),
        config_error: None,
        controller_config: Some(&ph),
        old_object: None,
        desired: None,
    };
    if let Decision::Patched { patch, .. } = decide(
        Operation::Create,
        WorkloadKind::StatefulSet,
        APP,
        &obj,
        inputs,
        &settings(),
    ) {
        json_patch::patch(&mut obj, &patch).expect("applies");
    }
    obj
}

#[test]
fn workload_actions() {
    let ph = placeholder(
        "seldon-system",
        "mlserver",
        &["rclone", "agent", "mlserver"],
    );
    let ph_cfg = ServerConfig::from_value(&ph).expect("placeholder");
    let auto = server(APP, "mlserver", "mlserver", json!({}));
    let held = server(
        APP,
        "mlserver",
        "mlserver",
        json!({"disableAutoUpdate": true}),
    );
    let v1 = team("v1");
    let v2 = team("v2");
    let stored_v1 = admitted(&auto, &v1, &ph);
    let never_admitted = controller_statefulset(&auto, &ph);
    // (name, server, stored workload, config now, expected)
    #[allow(clippy::type_complexity)]
    let cases: Vec<(
        &str,
        &Value,
        &Value,
        &ServerConfig,
        fn(&WorkloadAction) -> bool,
    )> = vec![
        ("up to date", &auto, &stored_v1, &v1, |a| {
            *a == WorkloadAction::Nothing
        }),
        ("config changed: roll out", &auto, &stored_v1, &v2, |a| {
            matches!(a, WorkloadAction::Rollout { .. })
        }),
        (
            "config changed, disableAutoUpdate: held",
            &held,
            &stored_v1,
            &v2,
            |a| *a == WorkloadAction::Held,
        ),
        ("never admitted: heal", &auto, &never_admitted, &v1, |a| {
            matches!(a, WorkloadAction::Heal { .. })
        }),
        (
            "never admitted, disableAutoUpdate: still healed",
            &held,
            &never_admitted,
            &v1,
            |a| matches!(a, WorkloadAction::Heal { .. }),
        ),
    ];
    for (name, srv, stored, cfg, ok) in cases {
        let s = Server::from_value(srv).expect("server");
        let action = workload_action(
            WorkloadKind::StatefulSet,
            stored,
            &s,
            Some(cfg),
            Some(&ph_cfg),
            &settings(),
        );
        assert!(ok(&action), "case {name}: {action:?}");
    }
}

/// A StatefulSet admitted without the webhook from a placeholder (no claim
/// templates) must be recreated by heal; one the webhook admitted must not.
#[test]
fn claim_templates_decide_recreate() {
    let ph = placeholder(
        "seldon-system",
        "mlserver",
        &["rclone", "agent", "mlserver"],
    );
    let auto = server(APP, "mlserver", "mlserver", json!({}));
    let s = Server::from_value(&auto).expect("server");
    let v1 = team("v1");
    let mut no_claims = v1.clone();
    no_claims.volume_claim_templates.clear();
    let stored_v1 = admitted(&auto, &v1, &ph);
    let never_admitted = controller_statefulset(&auto, &ph);
    // (name, kind, stored workload, config now, expected)
    let cases: Vec<(&str, WorkloadKind, &Value, &ServerConfig, bool)> = vec![
        (
            "admitted by the webhook",
            WorkloadKind::StatefulSet,
            &stored_v1,
            &v1,
            false,
        ),
        (
            "bypassed, config has claims",
            WorkloadKind::StatefulSet,
            &never_admitted,
            &v1,
            true,
        ),
        (
            "bypassed, config has none",
            WorkloadKind::StatefulSet,
            &never_admitted,
            &no_claims,
            false,
        ),
        (
            "admitted, config dropped its claims",
            WorkloadKind::StatefulSet,
            &stored_v1,
            &no_claims,
            true,
        ),
        (
            "a Deployment has no claim templates",
            WorkloadKind::Deployment,
            &never_admitted,
            &v1,
            false,
        ),
    ];
    for (name, kind, stored, cfg, want) in cases {
        assert_eq!(
            claim_templates_differ(kind, stored, &s, cfg),
            want,
            "case {name}"
        );
    }
}
