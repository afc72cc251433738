//! The pure part of `migrate`: stripping, planning, diffs, the rollback
//! file and its undo plan, and the verification checks. Table-driven.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use serverconfig_webhook::migrate::plan::{self, moved, plan, strip, Action, Kind, PlanInput};
use serverconfig_webhook::migrate::rollback::{
    contains, key, plan_rollback, resolve_pending, Key, Pending, PendingOutcome, Replaced,
    RollbackFile, Step,
};
use serverconfig_webhook::migrate::verify;
use serverconfig_webhook::migrate::{self as m, MigrateError, MoveConfig};
use support::*;

const APP: &str = "financial-mlops-pytorch";
const CTL: &str = "seldon-system";

/// An object as the API server returns it: every server-managed field set.
fn stored(mut obj: Value, uid: &str) -> Value {
    let meta = obj["metadata"].as_object_mut().expect("metadata");
    meta.insert("uid".into(), json!(uid));
    meta.insert("resourceVersion".into(), json!("4711"));
    meta.insert("generation".into(), json!(3));
    meta.insert("creationTimestamp".into(), json!("2026-01-01T00:00:00Z"));
    meta.insert(
        "managedFields".into(),
        json!([{"manager": "kubectl", "operation": "Apply"}]),
    );
    meta.insert(
        "ownerReferences".into(),
        json!([{"apiVersion": "v1", "kind": "X", "name": "o", "uid": "u"}]),
    );
    meta.insert(
        "finalizers".into(),
        json!(["seldon.server.finalizer", "team/keep"]),
    );
    obj["status"] = json!({"conditions": [{"type": "Ready", "status": "True"}]});
    obj
}

fn team_config(ns: &str) -> Value {
    real_server_config("mlserver", ns, "mlserver-config", |old| {
        format!("harbor.test/team/{}", old.rsplit('/').next().unwrap_or(old))
    })
}

fn model(ns: &str, name: &str, server: &str) -> Value {
    json!({"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Model",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"storageUri": "gs://models/x", "server": server}})
}

fn experiment(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Experiment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"candidates": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}]}})
}

fn pipeline(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Pipeline",
        "metadata": {"name": name, "namespace": ns}, "spec": {"steps": [{"name": "a"}]}})
}

fn seed_objects(ns: &str) -> Vec<Value> {
    vec![
        stored(pipeline(ns, "p"), "u-p"),
        stored(experiment(ns, "financial-ab-test-experiment"), "u-e"),
        stored(model(ns, "baseline-predictor", "mlserver"), "u-m1"),
        stored(model(ns, "enhanced-predictor", "mlserver"), "u-m2"),
        stored(server(ns, "mlserver", "mlserver-config", json!({})), "u-s"),
        stored(team_config(ns), "u-sc"),
    ]
}

fn input(sources: Vec<Value>, targets: Vec<Value>) -> PlanInput {
    PlanInput {
        from: APP.into(),
        to: CTL.into(),
        sources,
        targets,
        controller_namespace: CTL.into(),
        ..PlanInput::default()
    }
}

#[test]
fn strip_removes_exactly_the_server_managed_fields() {
    let obj = stored(server(APP, "mlserver", "mlserver-config", json!({})), "u1");
    let s = strip(&obj);
    // (JSON pointer, still there after strip)
    let cases = [
        ("/metadata/uid", false),
        ("/metadata/resourceVersion", false),
        ("/metadata/generation", false),
        ("/metadata/creationTimestamp", false),
        ("/metadata/managedFields", false),
        ("/metadata/ownerReferences", false),
        ("/status", false),
        ("/metadata/name", true),
        ("/metadata/namespace", true),
        ("/spec/serverConfig", true),
        ("/spec/replicas", true),
    ];
    for (ptr, kept) in cases {
        assert_eq!(s.pointer(ptr).is_some(), kept, "{ptr}");
    }
    assert_eq!(
        s["metadata"]["finalizers"],
        json!(["team/keep"]),
        "the controller's finalizer goes, others stay"
    );
    assert_eq!(s["spec"], obj["spec"]);
}

#[test]
fn moved_changes_only_the_namespace_and_the_last_applied_namespace() {
    let mut src = stored(team_config(APP), "u1");
    let applied = json!({"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "ServerConfig",
        "metadata": {"name": "mlserver-config", "namespace": APP}, "spec": {"podSpec": {}}});
    src["metadata"]["annotations"] = json!({
        plan::LAST_APPLIED: applied.to_string(),
        "team/note": format!("namespace: {APP}"),
    });
    let out = moved(&src, CTL);
    assert_eq!(out["metadata"]["namespace"], CTL);
    assert_eq!(out["spec"], src["spec"]);
    assert_eq!(
        out["metadata"]["annotations"]["team/note"],
        format!("namespace: {APP}"),
        "unlike sed, other occurrences of the name stay"
    );
    let rewritten: Value = serde_json::from_str(
        out["metadata"]["annotations"][plan::LAST_APPLIED]
            .as_str()
            .expect("kept"),
    )
    .expect("json");
    assert_eq!(rewritten["metadata"]["namespace"], CTL);
    assert_eq!(rewritten["spec"], applied["spec"]);

    src["metadata"]["annotations"][plan::LAST_APPLIED] = json!("{not json");
    let out = moved(&src, CTL);
    assert!(out["metadata"]["annotations"]
        .get(plan::LAST_APPLIED)
        .is_none());
}

#[test]
fn kinds_parse_singular_plural_any_case() {
    let cases = [
        ("servers", Some(Kind::Server)),
        ("Server", Some(Kind::Server)),
        ("SERVERCONFIGS", Some(Kind::ServerConfig)),
        ("serverconfig", Some(Kind::ServerConfig)),
        ("models", Some(Kind::Model)),
        ("experiment", Some(Kind::Experiment)),
        ("pipelines", Some(Kind::Pipeline)),
        ("deployments", None),
        ("", None),
    ];
    for (text, want) in cases {
        assert_eq!(text.parse::<Kind>().ok(), want, "{text:?}");
    }
    let err = "pods".parse::<Kind>().expect_err("refused");
    assert!(
        err.to_string().contains("not a kind migrate moves"),
        "{err}"
    );
}

#[test]
fn plan_orders_by_dependency() {
    let p = plan(&input(seed_objects(APP), vec![]));
    let order: Vec<(Kind, &str)> = p.items.iter().map(|i| (i.kind, i.name.as_str())).collect();
    assert_eq!(
        order,
        vec![
            (Kind::ServerConfig, "mlserver-config"),
            (Kind::Server, "mlserver"),
            (Kind::Model, "baseline-predictor"),
            (Kind::Model, "enhanced-predictor"),
            (Kind::Experiment, "financial-ab-test-experiment"),
            (Kind::Pipeline, "p"),
        ]
    );
    assert!(p.items.iter().all(|i| i.action == Action::Create));
    assert!(!p.refused());
    for i in &p.items {
        assert_eq!(i.desired, moved(&i.source, CTL));
        assert!(i.desired.pointer("/metadata/uid").is_none());
    }
}

/// (what, source, target object, --force, expected action, refused)
type ActionCase = (&'static str, Value, Option<Value>, bool, Action, bool);

#[test]
fn plan_action_depends_on_what_the_target_holds() {
    let src = stored(
        server(APP, "mlserver", "mlserver-config", json!({})),
        "u-src",
    );
    let identical = stored(moved(&src, CTL), "u-other");
    let mut different = identical.clone();
    different["spec"]["replicas"] = json!(5);
    let placeholder_sc = stored(placeholder(CTL, "mlserver-config", &[]), "u-ph");
    let legacy_placeholder = stored(placeholder(CTL, "mlserver-config", &["agent"]), "u-lph");
    // labelled, but the platform put its images in: adopted, not a placeholder
    let mut adopted = placeholder_sc.clone();
    adopted["spec"]["podSpec"]["containers"] =
        json!([{"name": "agent", "image": "platform/agent:1"}]);
    let sc = stored(team_config(APP), "u-sc");
    let mut sc_target_different = stored(moved(&sc, CTL), "u-t");
    sc_target_different["spec"]["podSpec"]["containers"][0]["image"] = json!("other:1");
    // (source, target, force, action, refused)
    let cases: Vec<ActionCase> = vec![
        ("absent", src.clone(), None, false, Action::Create, false),
        (
            "identical",
            src.clone(),
            Some(identical.clone()),
            false,
            Action::Skip,
            false,
        ),
        (
            "different",
            src.clone(),
            Some(different.clone()),
            false,
            Action::Refuse,
            true,
        ),
        (
            "different+force",
            src.clone(),
            Some(different.clone()),
            true,
            Action::Overwrite,
            false,
        ),
        (
            "placeholder",
            sc.clone(),
            Some(placeholder_sc.clone()),
            false,
            Action::ReplacePlaceholder,
            false,
        ),
        (
            "placeholder of an earlier release",
            sc.clone(),
            Some(legacy_placeholder),
            false,
            Action::ReplacePlaceholder,
            false,
        ),
        (
            "adopted placeholder",
            sc.clone(),
            Some(adopted),
            false,
            Action::Refuse,
            true,
        ),
        (
            "real config differs",
            sc.clone(),
            Some(sc_target_different),
            false,
            Action::Refuse,
            true,
        ),
    ];
    for (what, source, target, force, action, refused) in cases {
        let mut inp = input(vec![source], target.into_iter().collect());
        inp.force = force;
        let p = plan(&inp);
        assert_eq!(p.items.len(), 1, "{what}");
        assert_eq!(p.items[0].action, action, "{what}");
        assert_eq!(p.refused(), refused, "{what}: {:?}", p.refusals);
        if refused {
            assert!(
                p.refusals[0].starts_with("refusing to overwrite"),
                "{what}: {}",
                p.refusals[0]
            );
        }
        assert_eq!(
            action.writes(),
            matches!(
                action,
                Action::Create | Action::Overwrite | Action::ReplacePlaceholder
            )
        );
    }
}

#[test]
fn delete_source_refuses_to_strand_references() {
    let sc = stored(team_config(APP), "u-sc");
    let srv = stored(server(APP, "mlserver", "mlserver-config", json!({})), "u-s");
    let other = stored(server(APP, "other", "mlserver-config", json!({})), "u-o");
    let mdl = stored(model(APP, "m", "mlserver"), "u-m");
    // (what is moved, what else is in the source, delete_source, refusals)
    let cases = vec![
        (
            "config only, Server stays",
            vec![sc.clone()],
            vec![srv.clone()],
            true,
            1,
        ),
        (
            "config only, no delete",
            vec![sc.clone()],
            vec![srv.clone()],
            false,
            0,
        ),
        (
            "config + its Server",
            vec![sc.clone(), srv.clone()],
            vec![srv.clone()],
            true,
            0,
        ),
        (
            "config + one of two Servers",
            vec![sc.clone(), srv.clone()],
            vec![srv.clone(), other.clone()],
            true,
            1,
        ),
        (
            "Server, Model stays",
            vec![srv.clone()],
            vec![srv.clone(), mdl.clone()],
            true,
            1,
        ),
        (
            "Server + Model",
            vec![srv.clone(), mdl.clone()],
            vec![srv.clone(), mdl.clone()],
            true,
            0,
        ),
    ];
    for (what, sources, all, delete, refusals) in cases {
        let mut inp = input(sources, vec![]);
        inp.source_all = all;
        inp.delete_source = delete;
        let p = plan(&inp);
        assert_eq!(p.refusals.len(), refusals, "{what}: {:?}", p.refusals);
        for r in &p.refusals {
            assert!(r.starts_with("refusing to delete"), "{r}");
        }
    }
}

#[test]
fn plan_warns_about_references_missing_in_the_target() {
    let srv = stored(server(APP, "mlserver", "mlserver-config", json!({})), "u-s");
    let p = plan(&input(vec![srv.clone()], vec![]));
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(p.warnings[0].contains("mlserver-config"));
    let in_target = stored(moved(&stored(team_config(APP), "x"), CTL), "y");
    let p = plan(&input(vec![srv], vec![in_target]));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    // leaving the controller namespace with --delete-source: the stock
    // controller's ServerConfig lookup is worth a warning
    let mut inp = input(
        vec![
            stored(team_config(CTL), "a"),
            stored(server(CTL, "s", "mlserver-config", json!({})), "b"),
        ],
        vec![],
    );
    inp.from = CTL.into();
    inp.to = APP.into();
    inp.delete_source = true;
    let p = plan(&inp);
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("controller namespace")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn dry_run_output_is_a_table_and_unified_diffs() {
    let target = stored(
        moved(
            &stored(model(APP, "enhanced-predictor", "mlserver"), "u"),
            CTL,
        ),
        "v",
    );
    let p = plan(&input(seed_objects(APP), vec![target]));
    let table = p.table();
    assert!(table.contains("KIND"), "{table}");
    assert!(
        table.contains("enhanced-predictor") && table.contains("skip"),
        "{table}"
    );
    assert!(
        table.contains("mlserver-config") && table.contains("create"),
        "{table}"
    );
    let diffs = p.diffs();
    assert!(diffs.contains(&format!("-  namespace: {APP}")), "{diffs}");
    assert!(diffs.contains(&format!("+  namespace: {CTL}")), "{diffs}");
    assert!(diffs.contains("-  uid: u-s"), "{diffs}");
    assert!(
        diffs.contains("--- financial-mlops-pytorch/Server/mlserver (source, as stored)"),
        "{diffs}"
    );
    assert!(
        !diffs.contains("enhanced-predictor"),
        "identical objects have no diff: {diffs}"
    );
    assert!(!diffs.contains("+  uid"), "{diffs}");
}

fn file_after_move() -> (RollbackFile, BTreeMap<Key, Value>) {
    let mut f = RollbackFile::new(APP, CTL);
    let mut now = BTreeMap::new();
    for o in seed_objects(APP) {
        let created = stored(
            moved(&o, CTL),
            &format!("new-{}", o["metadata"]["uid"].as_str().unwrap_or("")),
        );
        now.insert(key(&created).expect("key"), created.clone());
        f.created.push(created);
        f.deleted.push(o);
    }
    (f, now)
}

#[test]
fn rollback_file_round_trips_and_rejects_bad_files() {
    let (f, _) = file_after_move();
    let text = f.to_yaml().expect("yaml");
    assert_eq!(RollbackFile::parse(&text).expect("parse"), f);
    let json_text = serde_json::to_string(&f).expect("json");
    assert_eq!(RollbackFile::parse(&json_text).expect("json is yaml"), f);
    let mut wrong_ns = f.clone();
    wrong_ns.created[0]["metadata"]["namespace"] = json!("elsewhere");
    let mut wrong_kind = f.clone();
    wrong_kind.deleted[0]["kind"] = json!("Deployment");
    // (text, expected fragment of the error)
    let cases = vec![
        ("garbage: [".to_string(), "not a rollback file"),
        ("{}".to_string(), "not a rollback file"),
        (
            text.replace("MigrationRollback", "Other"),
            "want serverconfig-webhook/v1/MigrationRollback",
        ),
        (format!("{text}extra: 1\n"), "unknown field"),
        (
            wrong_ns.to_yaml().expect("yaml"),
            "needs a name and namespace seldon-system",
        ),
        (wrong_kind.to_yaml().expect("yaml"), "not a Seldon kind"),
    ];
    for (t, want) in cases {
        let err = RollbackFile::parse(&t).expect_err(want).to_string();
        assert!(err.contains(want), "{want:?} not in {err:?}");
    }
}

#[test]
fn rollback_plan_undoes_only_what_is_unchanged() {
    let (f, now) = file_after_move();
    // unchanged: sources re-created (stripped), created deleted, reverse order
    let p = plan_rollback(&f, &now, false);
    assert!(!p.refused(), "{:?}", p.refusals);
    let creates: Vec<&Value> = p
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Create(o) => Some(o),
            _ => None,
        })
        .collect();
    assert_eq!(creates.len(), 6);
    assert!(creates
        .iter()
        .all(|o| o.pointer("/metadata/uid").is_none() && o["metadata"]["namespace"] == APP));
    assert_eq!(
        Kind::of(creates[0]),
        Some(Kind::ServerConfig),
        "ServerConfig first"
    );
    let deletes: Vec<Kind> = p
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Delete { current } => Kind::of(current),
            _ => None,
        })
        .collect();
    assert_eq!(deletes.first(), Some(&Kind::Pipeline));
    assert_eq!(
        deletes.last(),
        Some(&Kind::ServerConfig),
        "ServerConfig deleted last"
    );
    let first_delete = p
        .steps
        .iter()
        .position(|s| matches!(s, Step::Delete { .. }))
        .expect("deletes");
    assert!(
        p.steps[..first_delete]
            .iter()
            .all(|s| matches!(s, Step::Create(_))),
        "sources back before deletes"
    );

    let srv_key: Key = (Kind::Server, CTL.into(), "mlserver".into());
    let mut changed = now.clone();
    changed.get_mut(&srv_key).expect("server")["spec"]["replicas"] = json!(3);
    let mut other_uid = now.clone();
    other_uid.get_mut(&srv_key).expect("server")["metadata"]["uid"] = json!("someone-else");
    let mut status_only = now.clone();
    status_only.get_mut(&srv_key).expect("server")["status"] = json!({"replicas": 1});
    status_only.get_mut(&srv_key).expect("server")["metadata"]["resourceVersion"] = json!("9999");
    let mut gone = now.clone();
    gone.remove(&srv_key);
    // (what, current objects, force, refusals, Server deleted?)
    let cases = vec![
        ("spec changed", changed.clone(), false, 1, false),
        ("spec changed, --force", changed, true, 0, true),
        ("another uid", other_uid.clone(), false, 0, false),
        ("another uid, --force", other_uid, true, 0, false),
        (
            "status and resourceVersion only",
            status_only,
            false,
            0,
            true,
        ),
        ("gone", gone, false, 0, false),
    ];
    for (what, current, force, refusals, deleted) in cases {
        let p = plan_rollback(&f, &current, force);
        assert_eq!(p.refusals.len(), refusals, "{what}: {:?}", p.refusals);
        let server_deleted = p.steps.iter().any(
            |s| matches!(s, Step::Delete { current } if key(current) == Some(srv_key.clone())),
        );
        assert_eq!(server_deleted, deleted, "{what}");
    }
}

#[test]
fn rollback_plan_restores_sources_and_replaced_objects() {
    let src_sc = stored(team_config(CTL), "u-sc");
    let mut f = RollbackFile::new(CTL, APP);
    f.deleted.push(src_sc.clone());
    let back = stored(moved(&src_sc, CTL), "u-new");
    let ph = stored(placeholder(CTL, "mlserver-config", &["agent"]), "u-ph");
    let mut different = back.clone();
    different["spec"]["podSpec"] = json!({"containers": []});
    let k = key(&src_sc).expect("key");
    // (what, current object of the source's name, force, step kind, refused)
    let cases = vec![
        ("absent", None, false, Some("create"), false),
        ("back already", Some(back), false, None, false),
        (
            "a placeholder took the name",
            Some(ph),
            false,
            Some("replace"),
            false,
        ),
        ("something else", Some(different.clone()), false, None, true),
        (
            "something else, --force",
            Some(different),
            true,
            Some("replace"),
            false,
        ),
    ];
    for (what, cur, force, step, refused) in cases {
        let current: BTreeMap<Key, Value> = cur.into_iter().map(|c| (k.clone(), c)).collect();
        let p = plan_rollback(&f, &current, force);
        assert_eq!(p.refused(), refused, "{what}: {:?}", p.refusals);
        let got = p.steps.first().map(|s| match s {
            Step::Create(_) => "create",
            Step::Replace { .. } => "replace",
            Step::Delete { .. } => "delete",
        });
        assert_eq!(got, step, "{what}");
    }
    // a replaced object goes back to what it was, if unchanged since
    let before = stored(placeholder(APP, "mlserver-config", &["agent"]), "u-b");
    let after = stored(moved(&stored(team_config(CTL), "x"), APP), "u-b");
    let mut f = RollbackFile::new(CTL, APP);
    f.replaced.push(Replaced {
        before: before.clone(),
        after: after.clone(),
    });
    let current = BTreeMap::from([(key(&after).expect("key"), after.clone())]);
    let p = plan_rollback(&f, &current, false);
    assert!(
        matches!(&p.steps[..], [Step::Replace { with, .. }] if *with == strip(&before)),
        "{:?}",
        p.steps
    );
    let mut edited = after.clone();
    edited["metadata"]["labels"] = json!({"edited": "yes"});
    let current = BTreeMap::from([(key(&after).expect("key"), edited)]);
    assert!(plan_rollback(&f, &current, false).refused());
}

#[test]
fn verification_checks_images_and_pods() {
    let ns = CTL;
    let sc = stored(team_config(ns), "u1");
    let srv = stored(
        server(ns, "mlserver", "mlserver-config", json!({"replicas": 2})),
        "u2",
    );
    let want = verify::expected_images(&srv, Some(&sc)).expect("images");
    assert!(!want.is_empty());
    assert!(
        want.values().all(|i| i.starts_with("harbor.test/team/")),
        "{want:?}"
    );
    let missing = verify::expected_images(&srv, None)
        .expect_err("no config")
        .to_string();
    assert!(missing.contains("does not exist"), "{missing}");
    let ph = placeholder(ns, "mlserver-config", &["rclone", "agent", "mlserver"]);
    let empty = verify::expected_images(&srv, Some(&ph))
        .expect_err("no images")
        .to_string();
    assert!(empty.contains("no image"), "{empty}");

    let good_sts = controller_statefulset(&srv, &sc);
    let wrong_sts = controller_statefulset(
        &srv,
        &real_server_config("mlserver", ns, "mlserver-config", |o| o.to_string()),
    );
    let exp = Ok(want.clone());
    // (what, StatefulSet, uid of the Server, ok); the support StatefulSet's
    // controller ownerReference names the Server's uid, u2
    let cases = vec![
        ("team images", Some(&good_sts), "u2", true),
        ("Server uid not known", Some(&good_sts), "", true),
        ("a deleted Server's leftover", Some(&good_sts), "u3", false),
        ("released images", Some(&wrong_sts), "u2", false),
        ("none", None, "u2", false),
    ];
    for (what, sts, uid, ok) in cases {
        let c = verify::statefulset("s", &exp, sts, uid);
        assert_eq!(c.ok, ok, "{what}: {}", c.detail);
    }
    let pod_of = |name: &str, sts: &Value, owner: &str| {
        json!({"metadata": {"name": name, "ownerReferences": [{"apiVersion": "apps/v1",
            "kind": "StatefulSet", "name": "mlserver", "uid": owner, "controller": true}]},
            "spec": sts["spec"]["template"]["spec"].clone(), "status": {"phase": "Pending"}})
    };
    let pod = |name: &str, sts: &Value| pod_of(name, sts, "sts-1");
    let mut replicas2 = good_sts.clone();
    replicas2["spec"]["replicas"] = json!(2);
    replicas2["metadata"]["uid"] = json!("sts-1");
    // (what, pods, ok)
    let cases = vec![
        (
            "two right pods",
            vec![pod("a-0", &good_sts), pod("a-1", &good_sts)],
            true,
        ),
        ("one of two", vec![pod("a-0", &good_sts)], false),
        (
            "wrong image",
            vec![pod("a-0", &good_sts), pod("a-1", &wrong_sts)],
            false,
        ),
        ("none", vec![], false),
        (
            "one from an older StatefulSet",
            vec![pod("a-0", &good_sts), pod_of("a-1", &good_sts, "old")],
            false,
        ),
    ];
    for (what, pods, ok) in cases {
        let c = verify::pods("p", &exp, Some(&replicas2), &pods);
        assert_eq!(c.ok, ok, "{what}: {}", c.detail);
    }
}

#[test]
fn move_flags_are_checked_before_the_cluster() {
    let base = MoveConfig {
        from: APP.into(),
        to: CTL.into(),
        kinds: vec![],
        selector: None,
        dry_run: false,
        delete_source: false,
        force: false,
        rollback_file: "r.yaml".into(),
        timeout: std::time::Duration::from_secs(1),
        controller_namespace: CTL.into(),
        controller_deployment: "seldon-v2-controller-manager".into(),
    };
    assert!(m::validate(&base).is_ok());
    // (from, to, fragment)
    let cases = [
        (APP, APP, "nothing would move"),
        ("Team_A", CTL, "not a namespace name"),
        (APP, "-x", "not a namespace name"),
        ("", CTL, "must name namespaces"),
    ];
    for (from, to, want) in cases {
        let cfg = MoveConfig {
            from: from.into(),
            to: to.into(),
            ..base.clone()
        };
        let err = m::validate(&cfg).expect_err(want);
        assert!(matches!(err, MigrateError::Usage(_)), "{err:?}");
        assert_eq!(err.exit_code(), m::EXIT_USAGE);
        assert!(err.to_string().contains(want), "{err}");
    }
    assert_eq!(MigrateError::Refused("x".into()).exit_code(), 3);
    assert_eq!(MigrateError::Internal("x").exit_code(), 1);
}

/// A failure after the first write names the rollback file, keeps its
/// cause's exit code and text, and hands the cause out as `source()`.
#[test]
fn errors_after_writes_point_at_the_rollback_file() {
    use std::error::Error as _;
    let failing = verify::Failing(vec![verify::Check {
        subject: "Server t/s: Pods".into(),
        ok: false,
        detail: "0 of 1 Pod(s)".into(),
    }]);
    let err = MigrateError::AfterWrites {
        source: Box::new(MigrateError::MoveNotVerified {
            timeout: std::time::Duration::from_secs(2),
            source: failing,
        }),
        rollback_file: "r.yaml".into(),
    };
    assert_eq!(
        err.to_string(),
        "verification failed within 2s (Server t/s: Pods: 0 of 1 Pod(s)); the sources are kept; \
         the rollback file r.yaml records what was written (migrate --rollback r.yaml)"
    );
    assert_eq!(err.exit_code(), m::EXIT_FAILED);
    let cause = err.source().expect("cause");
    assert!(
        cause.to_string().starts_with("verification failed"),
        "{cause}"
    );
    assert!(cause.source().is_some(), "the failing checks");
    // (cause, exit code): the wrapper keeps the cause's
    let cases = [
        (MigrateError::Refused("r".into()), m::EXIT_REFUSED),
        (MigrateError::Usage("u".into()), m::EXIT_USAGE),
        (MigrateError::Internal("i"), m::EXIT_FAILED),
    ];
    for (cause, code) in cases {
        let wrapped = MigrateError::AfterWrites {
            source: Box::new(cause),
            rollback_file: "r.yaml".into(),
        };
        assert_eq!(wrapped.exit_code(), code, "{wrapped}");
    }
    let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
    let err = MigrateError::ReadRollbackFile {
        path: "f.yaml".into(),
        source: io,
    };
    assert_eq!(
        err.to_string(),
        "cannot read the rollback file f.yaml: gone"
    );
    assert_eq!(err.exit_code(), m::EXIT_USAGE);
}

/// A rollback file as a move killed mid-write leaves it: the writes read
/// back (`file_after_move`) and one more recorded as pending.
fn file_with_pending(desired: &Value, before: Option<&Value>) -> RollbackFile {
    let (mut f, _) = file_after_move();
    f.pending.push(Pending {
        desired: desired.clone(),
        before: before.cloned(),
    });
    f
}

#[test]
fn pending_write_is_undone_only_if_it_happened() {
    let desired = moved(&stored(model(APP, "late", "mlserver"), "u-late-src"), CTL);
    // what the API server stored: server-managed fields and a default added
    let mut created = stored(desired.clone(), "u-late");
    created["spec"]["replicas"] = json!(1);
    let mut edited = created.clone();
    edited["metadata"]["labels"] = json!({"edited": "yes"});
    let ph = stored(placeholder(CTL, "late", &["agent"]), "u-ph");
    let ph_desired = moved(&stored(team_config(APP), "u-x"), CTL);
    let mut ph_desired = ph_desired;
    ph_desired["metadata"]["name"] = json!("late");
    ph_desired = strip(&ph_desired);
    let mut replaced = stored(ph_desired.clone(), "u-ph");
    replaced["metadata"]["resourceVersion"] = json!("5000");
    let ph_rewritten = stored(placeholder(CTL, "late", &[]), "u-ph");
    // (what, desired, before, object now, force, outcome, undo step of it, refused)
    type Case<'a> = (
        &'a str,
        &'a Value,
        Option<&'a Value>,
        Option<&'a Value>,
        bool,
        &'a str,
        Option<&'a str>,
        bool,
    );
    let cases: Vec<Case> = vec![
        (
            "created right before the kill",
            &desired,
            None,
            Some(&created),
            false,
            "written",
            Some("delete"),
            false,
        ),
        (
            "killed before the create reached the API server",
            &desired,
            None,
            None,
            false,
            "not written",
            None,
            false,
        ),
        (
            "created, then edited",
            &desired,
            None,
            Some(&edited),
            false,
            "changed",
            None,
            true,
        ),
        (
            "created, then edited, --force",
            &desired,
            None,
            Some(&edited),
            true,
            "changed",
            Some("delete"),
            false,
        ),
        (
            "placeholder replaced right before the kill",
            &ph_desired,
            Some(&ph),
            Some(&replaced),
            false,
            "written",
            Some("replace"),
            false,
        ),
        (
            "placeholder not replaced yet",
            &ph_desired,
            Some(&ph),
            Some(&ph),
            false,
            "not written",
            None,
            false,
        ),
        (
            "placeholder rewritten by the sync loop, not by migrate",
            &ph_desired,
            Some(&ph),
            Some(&ph_rewritten),
            false,
            "not written",
            None,
            false,
        ),
        (
            "placeholder gone (the sync loop removed it)",
            &ph_desired,
            Some(&ph),
            None,
            false,
            "gone",
            Some("create"),
            false,
        ),
    ];
    for (what, desired, before, now, force, outcome, step, refused) in cases {
        let k = key(desired).expect("key");
        let p = Pending {
            desired: desired.clone(),
            before: before.cloned(),
        };
        let got = match resolve_pending(&p, now) {
            PendingOutcome::NotWritten => "not written",
            PendingOutcome::Written { .. } => "written",
            PendingOutcome::Gone => "gone",
            PendingOutcome::Changed { .. } => "changed",
        };
        assert_eq!(got, outcome, "{what}");

        let f = file_with_pending(desired, before);
        let (_, mut current) = file_after_move();
        if let Some(n) = now {
            current.insert(k.clone(), n.clone());
        }
        let plan = plan_rollback(&f, &current, force);
        assert_eq!(plan.refused(), refused, "{what}: {:?}", plan.refusals);
        let steps: Vec<&str> = plan
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Create(o) if key(o) == Some(k.clone()) => Some("create"),
                Step::Replace { with, .. } if key(with) == Some(k.clone()) => Some("replace"),
                Step::Delete { current } if key(current) == Some(k.clone()) => Some("delete"),
                _ => None,
            })
            .collect();
        assert_eq!(steps, step.into_iter().collect::<Vec<_>>(), "{what}");
        if let Some(Step::Replace { with, .. }) = plan
            .steps
            .iter()
            .find(|s| matches!(s, Step::Replace { with, .. } if key(with) == Some(k.clone())))
        {
            assert_eq!(
                Some(with),
                before.map(strip).as_ref(),
                "{what}: back to before"
            );
        }
        if let Some(Step::Delete { current }) = plan
            .steps
            .iter()
            .find(|s| matches!(s, Step::Delete { current } if key(current) == Some(k.clone())))
        {
            assert_eq!(Some(current), now, "{what}: deletes the object as read");
        }
        // the writes read back are undone as without the pending entry
        let deletes = plan
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Delete { current } if key(current) != Some(k.clone())))
            .count();
        assert_eq!(deletes, 6, "{what}");
    }
}

#[test]
fn rollback_file_with_pending_round_trips_and_old_files_parse() {
    let desired = moved(&model(APP, "late", "mlserver"), CTL);
    let ph = stored(placeholder(CTL, "late", &["agent"]), "u-ph");
    for f in [
        file_with_pending(&desired, None),
        file_with_pending(&desired, Some(&stored(model(CTL, "late", "x"), "u-old"))),
    ] {
        let text = f.to_yaml().expect("yaml");
        assert!(text.contains("pending:"), "{text}");
        assert_eq!(RollbackFile::parse(&text).expect("parse"), f);
    }
    // a file of an earlier release (no pending section) still parses, and
    // one without pending writes none
    let (old, _) = file_after_move();
    let text = old.to_yaml().expect("yaml");
    assert!(!text.contains("pending"), "{text}");
    assert!(RollbackFile::parse(&text)
        .expect("parse")
        .pending
        .is_empty());
    // (file, expected fragment of the error)
    let mut other_ns = desired.clone();
    other_ns["metadata"]["namespace"] = json!(APP);
    let cases = vec![
        (
            file_with_pending(&desired, Some(&ph)),
            "pending: before is ServerConfig seldon-system/late, but the write is to Model seldon-system/late",
        ),
        (
            file_with_pending(&other_ns, None),
            "pending.desired: Model financial-mlops-pytorch/late needs a name and namespace seldon-system",
        ),
    ];
    for (f, want) in cases {
        let err = RollbackFile::parse(&f.to_yaml().expect("yaml"))
            .expect_err(want)
            .to_string();
        assert!(err.contains(want), "{want:?} not in {err:?}");
    }
}

#[test]
fn contains_allows_added_fields_only() {
    // (what, have, want, contained)
    let cases = vec![
        ("equal", json!({"a": 1}), json!({"a": 1}), true),
        (
            "a default added",
            json!({"a": 1, "b": 2}),
            json!({"a": 1}),
            true,
        ),
        (
            "nested default",
            json!({"s": {"a": 1, "d": true}}),
            json!({"s": {"a": 1}}),
            true,
        ),
        ("value differs", json!({"a": 2}), json!({"a": 1}), false),
        ("field missing", json!({}), json!({"a": 1}), false),
        (
            "array longer",
            json!({"l": [1, 2]}),
            json!({"l": [1]}),
            false,
        ),
        (
            "array items with defaults",
            json!({"l": [{"n": 1, "d": 0}]}),
            json!({"l": [{"n": 1}]}),
            true,
        ),
    ];
    for (what, have, want, ok) in cases {
        assert_eq!(contains(&have, &want), ok, "{what}");
    }
}
