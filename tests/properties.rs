//! Properties of the core over generated Servers and ServerConfigs (the
//! real 2.9.1 configs with generated overrides): the patch applies cleanly,
//! re-admitting the result gives no patch, out-of-scope objects are never
//! patched, and the result never depends on another namespace's config.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use proptest::prelude::*;
use serde_json::{json, Value};
use serverconfig_webhook::core::model::{Server, ServerConfig};
use serverconfig_webhook::core::mutate::{
    decide, scope, Decision, Gvk, Inputs, OnMissing, Operation, Scope, Settings, WorkloadKind,
};
use support::*;

const APP: &str = "team-a";

fn settings() -> Settings {
    Settings {
        controller_namespace: "seldon-system".into(),
        on_missing: OnMissing::Auto,
    }
}

fn env_entry() -> impl Strategy<Value = Value> {
    ("[A-Z]{1,3}", "[a-z0-9]{0,4}").prop_map(|(n, v)| json!({"name": n, "value": v}))
}

fn quantity() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u32..4000).prop_map(|m| format!("{m}m")),
        (1u32..8).prop_map(|c| c.to_string()),
        (1u32..4096).prop_map(|m| format!("{m}Mi")),
        (1u32..4).prop_map(|g| format!("{g}Gi")),
        (1u32..9).prop_map(|d| format!("0.{d}")),
    ]
}

fn container_override(names: &'static [&'static str]) -> impl Strategy<Value = Value> {
    (
        prop::sample::select(names),
        prop::option::of("[a-z]{1,6}(:[0-9]{1,2})?"),
        prop::collection::vec(env_entry(), 0..3),
        prop::option::of(quantity()),
        prop::option::of(quantity()),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(name, image, env, cpu, mem, ro)| {
            let mut c = json!({"name": name});
            if let Some(i) = image {
                c["image"] = json!(i);
            }
            if !env.is_empty() {
                c["env"] = json!(env);
            }
            if let Some(cpu) = cpu {
                c["resources"] = json!({"requests": {"cpu": cpu}});
            }
            if let Some(mem) = mem {
                c["resources"]["limits"] = json!({"memory": mem});
            }
            if let Some(ro) = ro {
                c["securityContext"] = json!({"readOnlyRootFilesystem": ro});
            }
            c
        })
}

const NAMES: &[&str] = &["rclone", "agent", "mlserver", "sidecar"];

fn server_spec() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(container_override(NAMES), 0..3),
        prop::collection::vec("[a-z]{1,5}", 0..3),
        prop::collection::vec("[a-z]{1,5}", 0..2),
        prop::option::of(0i64..300),
        prop::collection::btree_map("[a-z]{1,4}", "[a-z]{0,4}", 0..3),
    )
        .prop_map(|(containers, caps, extra, grace, labels)| {
            let mut pod = json!({});
            if !containers.is_empty() {
                pod["containers"] = json!(containers);
            }
            if let Some(g) = grace {
                pod["terminationGracePeriodSeconds"] = json!(g);
            }
            json!({"spec": {"capabilities": caps, "extraCapabilities": extra, "podSpec": pod}, "labels": labels})
        })
}

fn build(spec: &Value) -> (Value, Value, Value) {
    let mut srv = server(APP, "mlserver", "cfg", spec["spec"].clone());
    srv["metadata"]["labels"] = spec["labels"].clone();
    let team = real_server_config("mlserver", APP, "cfg", |i| {
        format!("team/{}", i.rsplit('/').next().unwrap_or(i))
    });
    let ctl = placeholder("seldon-system", "cfg", &["rclone", "agent", "mlserver"]);
    (srv, team, ctl)
}

fn run(
    op: Operation,
    obj: &Value,
    srv: &Value,
    team: &Value,
    ctl: &Value,
    old: Option<&Value>,
) -> Decision {
    let s = Server::from_value(srv).expect("server");
    let t = ServerConfig::from_value(team).expect("team");
    let c = ServerConfig::from_value(ctl).expect("ctl");
    let inputs = Inputs {
        server: Some(&s),
        config: Some(&t),
        config_error: None,
        controller_config: Some(&c),
        old_object: old,
        desired: None,
    };
    decide(op, WorkloadKind::StatefulSet, APP, obj, inputs, &settings())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn patch_applies_and_is_a_fixed_point(spec in server_spec()) {
        let (srv, team, ctl) = build(&spec);
        let incoming = controller_statefulset(&srv, &ctl);
        let mut fixed = incoming.clone();
        if let Decision::Patched { patch, .. } = run(Operation::Create, &incoming, &srv, &team, &ctl, None) {
            prop_assert!(json_patch::patch(&mut fixed, &patch).is_ok(), "patch applies cleanly");
        }
        let again = run(Operation::Update, &fixed, &srv, &team, &ctl, Some(&fixed));
        prop_assert_eq!(again.outcome(), "unchanged", "{:?}", again);
    }

    #[test]
    fn never_depends_on_another_namespace(spec in server_spec(), other_image in "[a-z]{1,8}") {
        let (srv, team, ctl) = build(&spec);
        let incoming = controller_statefulset(&srv, &ctl);
        // The controller-namespace config differs only in content; the
        // result must not change (only its copied keys are handled).
        let mut ctl2 = ctl.clone();
        for c in ctl2["spec"]["podSpec"]["containers"].as_array_mut().into_iter().flatten() {
            c["image"] = json!(other_image.clone());
        }
        let apply = |d: Decision| {
            let mut o = incoming.clone();
            if let Decision::Patched { patch, .. } = d {
                json_patch::patch(&mut o, &patch).expect("applies");
            }
            o
        };
        let a = apply(run(Operation::Create, &incoming, &srv, &team, &ctl, None));
        let b = apply(run(Operation::Create, &incoming, &srv, &team, &ctl2, None));
        prop_assert_eq!(&a["spec"]["template"]["spec"], &b["spec"]["template"]["spec"]);
    }

    #[test]
    fn out_of_scope_is_never_in_scope(ns in "[a-z]{1,8}", kind in "[A-Za-z]{1,12}", owner_kind in "[A-Za-z]{1,8}") {
        let (srv, _, ctl) = build(&json!({"spec": {}, "labels": {}}));
        let mut obj = controller_statefulset(&srv, &ctl);
        obj["metadata"]["ownerReferences"][0]["kind"] = json!(owner_kind.clone());
        let s = settings();
        let sts = Gvk { group: "apps", version: "v1", kind: "StatefulSet" };
        if owner_kind != "Server" {
            prop_assert!(matches!(scope(sts, Operation::Create, &ns, Some(&obj), &s), Scope::Out(_)));
        }
        if kind != "StatefulSet" && kind != "Deployment" {
            let gvk = Gvk { group: "apps", version: "v1", kind: &kind };
            prop_assert!(matches!(scope(gvk, Operation::Create, APP, Some(&obj), &s), Scope::Out(_)));
        }
        prop_assert!(matches!(scope(sts, Operation::Create, "seldon-system", Some(&obj), &s), Scope::Out(_)));
    }
}
