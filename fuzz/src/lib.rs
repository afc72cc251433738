//! Shared set-up of the fuzz targets: the admission handler over caches
//! filled from the real Seldon 2.9.1 fixtures (no API server: a miss is
//! final), and the objects `render` is given besides the fuzzed one.

use std::sync::{Arc, OnceLock};

use serde_json::{json, Value};
use serverconfig_webhook::admission::Admission;
use serverconfig_webhook::cache::Caches;
use serverconfig_webhook::core::desired::desired;
use serverconfig_webhook::core::model::{Server, ServerConfig};
use serverconfig_webhook::core::mutate::{OnMissing, Settings};
use serverconfig_webhook::metrics::Metrics;

/// Namespace of the tenant's objects.
pub const TEAM: &str = "team-a";
/// Namespace of the Seldon controller (out of scope; holds placeholders).
pub const CONTROLLER_NS: &str = "seldon-system";

/// Every target allocates JSON values on each execution, and glibc's
/// allocator was a large share of their time (docs/reliability.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SERVER_CONFIGS: &str = include_str!("../../tests/fixtures/serverconfigs.yaml");

fn docs(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .filter_map(|d| serde::Deserialize::deserialize(d).ok())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The fixture's ServerConfigs, parsed once (YAML parsing per call made
/// the plan target run at 8 executions a second).
fn server_configs() -> &'static [Value] {
    static CELL: OnceLock<Vec<Value>> = OnceLock::new();
    CELL.get_or_init(|| docs(SERVER_CONFIGS))
}

/// The real 2.9.1 ServerConfig `name`, placed in `ns` as `new_name`.
pub fn real_config(name: &str, ns: &str, new_name: &str) -> Value {
    let mut sc = server_configs()
        .iter()
        .find(|d| d["metadata"]["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("fixture has no ServerConfig {name}"));
    sc["metadata"]["namespace"] = json!(ns);
    sc["metadata"]["name"] = json!(new_name);
    sc["metadata"]["uid"] = json!(format!("uid-{ns}-{new_name}"));
    sc["metadata"]["resourceVersion"] = json!("7");
    sc
}

/// A Server in `ns` named `name` using ServerConfig `sc`.
pub fn server(ns: &str, name: &str, sc: &str) -> Value {
    json!({"apiVersion":"mlops.seldon.io/v1alpha1","kind":"Server",
        "metadata":{"name":name,"namespace":ns,"uid":format!("uid-{name}"),"resourceVersion":"3"},
        "spec":{"serverConfig":sc,"replicas":1}})
}

fn placeholder(name: &str, containers: &[&str]) -> Value {
    let cs: Vec<Value> = containers.iter().map(|c| json!({"name": c})).collect();
    json!({"apiVersion":"mlops.seldon.io/v1alpha1","kind":"ServerConfig",
        "metadata":{"name":name,"namespace":CONTROLLER_NS,"uid":format!("uid-ph-{name}"),"resourceVersion":"1",
            "labels":{"app.kubernetes.io/managed-by":"serverconfig-webhook"}},
        "spec":{"podSpec":{"containers":cs},"volumeClaimTemplates":[]}})
}

/// Every object the caches hold: a Server with its namespace-local
/// ServerConfig (and a placeholder of that name in the controller
/// namespace), a Server whose ServerConfig exists only in the controller
/// namespace, one with an empty `serverConfig`, and one whose ServerConfig
/// has a pod spec that is not a valid pod spec.
pub fn objects() -> Vec<Value> {
    let mut bad = real_config("mlserver", TEAM, "broken-config");
    bad["spec"]["podSpec"]["containers"] = json!("not a list");
    vec![
        server(TEAM, "mlserver", "mlserver-config"),
        real_config("mlserver", TEAM, "mlserver-config"),
        placeholder("mlserver-config", &["rclone", "agent", "mlserver"]),
        server(TEAM, "triton", "triton"),
        real_config("triton", CONTROLLER_NS, "triton"),
        server(TEAM, "empty", ""),
        server(TEAM, "broken", "broken-config"),
        bad,
    ]
}

/// The StatefulSet the stock controller writes for Server `name` built
/// from ServerConfig `config` (as the webhook receives it).
pub fn controller_statefulset(server_v: &Value, config_v: &Value) -> Value {
    let (Ok(server), Ok(config)) = (
        Server::from_value(server_v),
        ServerConfig::from_value(config_v),
    ) else {
        panic!("seed objects must parse");
    };
    let d = desired(&server, &config);
    let (ns, name) = (&server.meta.namespace, &server.meta.name);
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": ns, "labels": d.labels, "annotations": d.annotations,
            "ownerReferences": [{"apiVersion":"mlops.seldon.io/v1alpha1","kind":"Server","name":name,
                "uid":server.meta.uid,"controller":true,"blockOwnerDeletion":true}]},
        "spec": {"serviceName": name, "replicas": 1, "podManagementPolicy": "Parallel",
            "selector": d.selector,
            "template": {"metadata": {"labels": d.template_labels, "annotations": d.template_annotations},
                "spec": d.pod_spec},
            "volumeClaimTemplates": d.volume_claim_templates}
    })
}

/// An `admission.k8s.io/v1` review of `object`.
pub fn review(operation: &str, object: &Value, old: Option<&Value>) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "e911857d-c318-11e8-bbad-025000000001",
            "kind": {"group": "apps", "version": "v1", "kind": object["kind"]},
            "resource": {"group": "apps", "version": "v1", "resource": "statefulsets"},
            "name": object["metadata"]["name"], "namespace": object["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:seldon-system:seldon-v2-controller-manager"},
            "object": object, "oldObject": old, "dryRun": false
        }
    })
}

/// The handler and a single-threaded runtime to drive it, built once.
pub fn admission() -> &'static (Admission, tokio::runtime::Runtime) {
    static CELL: OnceLock<(Admission, tokio::runtime::Runtime)> = OnceLock::new();
    CELL.get_or_init(|| {
        let metrics = Arc::new(Metrics::new());
        let objects = objects()
            .into_iter()
            .map(|v| serde_json::from_value(v).expect("fixture objects are DynamicObjects"));
        let caches = Caches::from_objects(objects, metrics.clone());
        let admission = Admission {
            settings: Settings {
                controller_namespace: CONTROLLER_NS.into(),
                on_missing: OnMissing::Auto,
            },
            caches,
            metrics,
            desired: Default::default(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        (admission, rt)
    })
}

/// What `render` is given besides the fuzzed document: a controller-built
/// StatefulSet, its Server and the namespace-local ServerConfig.
pub fn render_inputs() -> &'static (Value, Value, Value) {
    static CELL: OnceLock<(Value, Value, Value)> = OnceLock::new();
    CELL.get_or_init(|| {
        let srv = server(TEAM, "mlserver", "mlserver-config");
        let sc = real_config("mlserver", TEAM, "mlserver-config");
        let seldon = real_config("mlserver", CONTROLLER_NS, "mlserver");
        let sts = controller_statefulset(&server(TEAM, "mlserver", "mlserver"), &seldon);
        (sts, srv, sc)
    })
}

/// Runs one review body through the handler, as `/mutate` does, and checks
/// what any answer must satisfy: status 200 or 400, a JSON AdmissionReview
/// body, and a patch that applies to the request's object.
pub fn check_review(data: &[u8]) {
    let (admission, rt) = admission();
    let answer = rt.block_on(admission.review(data));
    assert!(
        answer.status == 200 || answer.status == 400,
        "status {}",
        answer.status
    );
    let body: Value = serde_json::from_slice(&answer.body).expect("answer is JSON");
    assert_eq!(body["kind"], "AdmissionReview", "{body}");
    let response = &body["response"];
    assert!(response["allowed"].is_boolean(), "{body}");
    if answer.status == 400 {
        assert_eq!(response["allowed"], false, "{body}");
        return;
    }
    if let Some(b64) = response.get("patch").and_then(Value::as_str) {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("patch is base64");
        let patch: json_patch::Patch =
            serde_json::from_slice(&bytes).expect("patch is a JSON Patch");
        let input: Value = serde_json::from_slice(data).expect("a 200 answer had JSON input");
        let mut object = input["request"]["object"].clone();
        if let Err(e) = json_patch::patch(&mut object, &patch) {
            panic!("patch does not apply to the request's object: {e}\npatch: {patch:?}");
        }
    }
}

/// Parses one file as `render` does and feeds the document in each of its
/// three roles; a computed patch that does not apply is the only failure.
pub fn check_render(data: &[u8]) {
    use serverconfig_webhook::render::{parse_document, render};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(doc) = parse_document(text) else {
        return;
    };
    let (sts, srv, sc) = render_inputs();
    for result in [
        render(&doc, srv, sc, CONTROLLER_NS),
        render(sts, &doc, sc, CONTROLLER_NS),
        render(sts, srv, &doc, CONTROLLER_NS),
    ] {
        if let Err(e) = result {
            assert!(
                !matches!(
                    e,
                    serverconfig_webhook::render::InputError::PatchDoesNotApply(_)
                ),
                "{e}"
            );
        }
    }
}

/// Choices read from the fuzz input one byte each (`0` once it is used
/// up), so that a seed is a short list of choices
/// (`fuzz/examples/write_seeds.rs`) and every input means something.
pub struct Choices<'a>(&'a [u8]);

impl<'a> Choices<'a> {
    /// The choices in `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Choices(data)
    }

    /// One of `n` (0 when the input is used up).
    pub fn pick(&mut self, n: usize) -> usize {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                usize::from(*b) % n.max(1)
            }
            None => 0,
        }
    }

    /// A yes or no.
    pub fn flag(&mut self) -> bool {
        self.pick(2) == 1
    }

    /// One of `pool`, or (past its end) a short string of the input's bytes.
    pub fn name(&mut self, pool: &[&str]) -> String {
        let i = self.pick(pool.len() + 1);
        match pool.get(i) {
            Some(s) => s.to_string(),
            None => {
                let n = self.pick(16).min(self.0.len());
                let (s, rest) = self.0.split_at(n);
                self.0 = rest;
                String::from_utf8_lossy(s).into_owned()
            }
        }
    }

    /// An arbitrary JSON value, at most `depth` deep.
    pub fn value(&mut self, depth: usize) -> Value {
        let kinds = if depth == 0 { 5 } else { 7 };
        match self.pick(kinds) {
            0 => Value::Null,
            1 => json!(self.flag()),
            2 => json!(self.pick(256) as i64 - 128),
            3 => json!(self.name(&[
                "",
                "x",
                "2Gi",
                "100m",
                "nvidia.com/gpu",
                "docker.io/seldonio/mlserver:1.6.1"
            ])),
            4 => json!(f64::from(self.pick(256) as u8) / 7.0),
            5 => Value::Array((0..self.pick(4)).map(|_| self.value(depth - 1)).collect()),
            _ => Value::Object(
                (0..self.pick(4))
                    .map(|_| (self.name(KEYS), self.value(depth - 1)))
                    .collect(),
            ),
        }
    }
}

/// Keys the arbitrary JSON values use (pod spec fields among them).
const KEYS: &[&str] = &[
    "name",
    "image",
    "env",
    "value",
    "resources",
    "limits",
    "memory",
    "containers",
    "volumeMounts",
    "mountPath",
    "spec",
    "metadata",
    "labels",
];

/// Sets `ptr` in `v` to `new` (creating objects on the way; a missing list
/// index appends), or removes it when `new` is `None`. Paths through
/// scalars are left alone.
pub fn set_pointer(v: &mut Value, ptr: &str, new: Option<Value>) {
    let keys: Vec<String> = ptr
        .split('/')
        .skip(1)
        .map(|k| k.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, path)) = keys.split_last() else {
        return;
    };
    let mut at = v;
    for k in path {
        at = match at {
            Value::Object(m) => m.entry(k.clone()).or_insert_with(|| json!({})),
            Value::Array(a) => match k.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(x) => x,
                None => return,
            },
            _ => return,
        };
    }
    match (at, new) {
        (Value::Object(m), Some(n)) => {
            m.insert(last.clone(), n);
        }
        (Value::Object(m), None) => {
            m.remove(last);
        }
        (Value::Array(a), Some(n)) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => a[i] = n,
            _ => a.push(n),
        },
        (Value::Array(a), None) => {
            if let Ok(i) = last.parse::<usize>() {
                if i < a.len() {
                    a.remove(i);
                }
            }
        }
        _ => {}
    }
}

/// ServerConfig names the plan target uses (those of the 2.9.1 release
/// first), so that names collide across namespaces.
pub const PLAN_NAMES: &[&str] = &[
    "mlserver",
    "triton",
    "mlserver-config",
    "huggingface",
    "shared",
];
/// Namespaces the plan target uses, the controller's among them.
pub const PLAN_NAMESPACES: &[&str] = &[TEAM, "team-b", "team-c", CONTROLLER_NS, ""];
/// Paths of a ServerConfig the plan target edits.
const CONFIG_PATHS: &[&str] = &[
    "/spec/podSpec/containers/0/image",
    "/spec/podSpec/containers/1/image",
    "/spec/podSpec/containers/2/env",
    "/spec/podSpec/containers/0/resources/limits/memory",
    "/spec/podSpec/nodeSelector",
    "/spec/podSpec/volumes",
    "/spec/volumeClaimTemplates",
    "/spec/volumeClaimTemplates/0/spec/resources/requests/storage",
    "/metadata/labels/team",
    "/metadata/annotations/serverconfig-webhook~1placeholder",
    "/metadata/labels/app.kubernetes.io~1managed-by",
    "/spec/podSpec",
];
/// Paths of a stored workload the plan target edits.
const WORKLOAD_PATHS: &[&str] = &[
    "/metadata/annotations/serverconfig-webhook~1hash",
    "/metadata/annotations/serverconfig-webhook~1source",
    "/metadata/annotations",
    "/metadata/labels/seldon-server-name",
    "/spec/template/spec/containers/0/image",
    "/spec/template/spec/containers/1",
    "/spec/template/metadata/labels/extra",
    "/spec/template/metadata/annotations/serverconfig-webhook~1used-by",
    "/spec/volumeClaimTemplates",
    "/spec/serviceName",
    "/spec/selector",
    "/spec/replicas",
    "/metadata/deletionTimestamp",
    "/metadata/ownerReferences/0/uid",
];

/// Edits `v` at up to 3 of `paths`: a fuzzed value, an image, or removal.
fn edit(c: &mut Choices<'_>, v: &mut Value, paths: &[&str]) {
    for _ in 0..c.pick(4) {
        let path = paths[c.pick(paths.len())];
        let new = match c.pick(3) {
            0 => None,
            1 => Some(json!(format!("registry.test/team/img:{}", c.pick(4)))),
            _ => Some(c.value(2)),
        };
        set_pointer(v, path, new);
    }
}

/// One ServerConfig of the controller namespace named `name`, in one of
/// the shapes `placeholder_state` tells apart.
fn controller_config(c: &mut Choices<'_>, name: &str) -> Value {
    use serverconfig_webhook::core::model::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
    use serverconfig_webhook::core::placeholder::{placeholder_object, LEGACY_USED_BY_ANNOTATION};
    let mut o = placeholder_object(name, CONTROLLER_NS);
    match c.pick(8) {
        0 => o = real_config(["mlserver", "triton"][c.pick(2)], CONTROLLER_NS, name),
        1 => {}
        2 => {
            o["metadata"]["annotations"][LEGACY_USED_BY_ANNOTATION] = json!("team-a,team-b");
            o["spec"]["podSpec"]["containers"] = json!([{"name": "rclone"}, {"name": "agent"}]);
        }
        3 => {
            o["spec"]["podSpec"]["containers"] =
                json!([{"name": "agent", "image": "platform/agent:2"}])
        }
        4 => o["metadata"]["labels"]["team"] = json!("platform"),
        5 => {
            o = real_config(["mlserver", "triton"][c.pick(2)], CONTROLLER_NS, name);
            o["metadata"]["labels"] = json!({ MANAGED_BY_LABEL: MANAGED_BY_VALUE });
        }
        6 => {
            o["metadata"]["annotations"][LEGACY_USED_BY_ANNOTATION] = json!("team-a");
            o["spec"]["podSpec"]["containers"] = json!([{"name": "agent"}]);
            edit(c, &mut o, CONFIG_PATHS);
        }
        _ => edit(c, &mut o, CONFIG_PATHS),
    }
    o
}

/// The plan target: the placeholder plan and the per-workload decision of
/// the sync loop (`core::plan`) on inputs built from the 2.9.1 fixtures
/// and the fuzz input's choices, checked for the properties the sync loop
/// relies on.
pub fn check_plan(data: &[u8]) {
    let mut c = Choices::new(data);
    check_placeholder_plan(&mut c);
    check_workload_action(&mut c);
}

fn check_placeholder_plan(c: &mut Choices<'_>) {
    use serverconfig_webhook::core::placeholder::{
        placeholder_object, placeholder_state, PlaceholderState,
    };
    use serverconfig_webhook::core::plan::plan_placeholders;
    use std::collections::{BTreeMap, BTreeSet};

    let app: Vec<(String, String)> = (0..c.pick(16))
        .map(|_| (c.name(PLAN_NAMESPACES), c.name(PLAN_NAMES)))
        .collect();
    let mut controller: Vec<ServerConfig> = Vec::new();
    for _ in 0..c.pick(8) {
        let name = c.name(PLAN_NAMES);
        let o = controller_config(c, &name);
        // Names are unique in a namespace; a config that does not parse is
        // not in the sync loop's list.
        if let Ok(sc) = ServerConfig::from_value(&o) {
            if controller.iter().all(|x| x.meta.name != sc.meta.name) {
                controller.push(sc);
            }
        }
    }
    let cap = c.pick(5);
    let refs: Vec<&ServerConfig> = controller.iter().collect();
    let plan = plan_placeholders(&app, &refs, CONTROLLER_NS, cap);

    // Deterministic, and independent of the order of both inputs.
    assert_eq!(plan, plan_placeholders(&app, &refs, CONTROLLER_NS, cap));
    let (mut app_rev, mut refs_rev) = (app.clone(), refs.clone());
    app_rev.reverse();
    refs_rev.reverse();
    assert_eq!(
        plan,
        plan_placeholders(&app_rev, &refs_rev, CONTROLLER_NS, cap),
        "order"
    );

    let state: BTreeMap<&str, Option<PlaceholderState>> = controller
        .iter()
        .map(|c| (c.meta.name.as_str(), placeholder_state(c)))
        .collect();
    let theirs = |n: &str| matches!(state.get(n), Some(None | Some(PlaceholderState::Adopted)));
    let sorted_unique = |v: &[String]| v.windows(2).all(|w| w[0] < w[1]);
    for list in [&plan.create, &plan.rewrite, &plan.delete, &plan.adopted] {
        assert!(sorted_unique(list), "{plan:?}");
    }
    // Each application namespace causes at most `cap` placeholders, and
    // every name it uses is either served or reported capped, never both.
    let mut caused: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, nss) in &plan.used_by {
        assert!(sorted_unique(nss), "{plan:?}");
        assert!(
            !theirs(name),
            "planned for a ServerConfig not ours: {name} {plan:?}"
        );
        for ns in nss {
            assert_ne!(ns, CONTROLLER_NS);
            assert!(
                app.contains(&(ns.clone(), name.clone())),
                "{ns}/{name} not asked for"
            );
            *caused.entry(ns.as_str()).or_default() += 1;
        }
    }
    assert!(
        caused.values().all(|n| *n <= cap),
        "over the cap {cap}: {plan:?}"
    );
    let wanted: BTreeSet<&(String, String)> = app
        .iter()
        .filter(|(ns, name)| ns != CONTROLLER_NS && !theirs(name))
        .collect();
    for (ns, name) in &wanted {
        let served = plan.used_by.get(name).is_some_and(|v| v.contains(ns));
        let capped = plan.capped.get(ns).is_some_and(|v| v.contains(name));
        assert!(
            served != capped,
            "{ns}/{name}: served {served}, capped {capped}: {plan:?}"
        );
    }
    for name in &plan.create {
        assert!(!state.contains_key(name.as_str()) && plan.used_by.contains_key(name));
    }
    for name in &plan.rewrite {
        assert_eq!(
            state.get(name.as_str()),
            Some(&Some(PlaceholderState::Legacy))
        );
    }
    for name in &plan.delete {
        assert!(!plan.used_by.contains_key(name));
        assert!(matches!(
            state.get(name.as_str()),
            Some(Some(PlaceholderState::Ours | PlaceholderState::Legacy))
        ));
    }
    let adopted: Vec<String> = state
        .iter()
        .filter(|(_, s)| **s == Some(PlaceholderState::Adopted))
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(plan.adopted, adopted);

    // Carried out, the plan is done: planning again finds nothing to
    // create, rewrite or delete, and the same users, caps and adoptions.
    let ours = |name: &str| {
        ServerConfig::from_value(&placeholder_object(name, CONTROLLER_NS))
            .unwrap_or_else(|e| panic!("placeholder {name:?} does not parse: {e}"))
    };
    let mut after: Vec<ServerConfig> = controller
        .iter()
        .filter(|c| !plan.delete.contains(&c.meta.name))
        .map(|c| {
            if plan.rewrite.contains(&c.meta.name) {
                ours(&c.meta.name)
            } else {
                c.clone()
            }
        })
        .collect();
    after.extend(plan.create.iter().map(|n| ours(n)));
    let after_refs: Vec<&ServerConfig> = after.iter().collect();
    let again = plan_placeholders(&app, &after_refs, CONTROLLER_NS, cap);
    assert!(
        again.create.is_empty() && again.rewrite.is_empty() && again.delete.is_empty(),
        "not idempotent: {plan:?} then {again:?}"
    );
    assert_eq!(again.used_by, plan.used_by);
    assert_eq!(again.capped, plan.capped);
    assert_eq!(again.adopted, plan.adopted);
}

fn check_workload_action(c: &mut Choices<'_>) {
    use serverconfig_webhook::core::mutate::{
        decide, Decision, Inputs, Operation, WorkloadKind, HASH_ANNOTATION, SOURCE_ANNOTATION,
    };
    use serverconfig_webhook::core::placeholder::placeholder_object;
    use serverconfig_webhook::core::plan::{
        claim_templates_differ, workload_action, WorkloadAction,
    };

    let fixtures = ["mlserver", "triton"];
    let sc_name = c.name(PLAN_NAMES);
    let mut server_v = server(TEAM, "mlserver", &sc_name);
    server_v["spec"]["disableAutoUpdate"] = json!(c.flag());
    match c.pick(4) {
        0 => {}
        1 => {
            server_v["spec"]["podSpec"] = json!({"containers": [{"name": "mlserver",
            "resources": {"limits": {"memory": "2Gi"}}}]})
        }
        2 => server_v["spec"]["podSpec"] = c.value(3),
        _ => server_v["spec"]["capabilities"] = json!(["sklearn", "xgboost"]),
    }
    let Ok(srv) = Server::from_value(&server_v) else {
        return;
    };
    // A ServerConfig of the namespace: the 2.9.1 one, edited.
    let team_config = |c: &mut Choices<'_>| -> Option<ServerConfig> {
        if c.pick(5) == 0 {
            return None;
        }
        let mut v = real_config(fixtures[c.pick(2)], TEAM, &sc_name);
        edit(c, &mut v, CONFIG_PATHS);
        ServerConfig::from_value(&v).ok()
    };
    let config_then = team_config(c);
    let config_now = if c.flag() {
        config_then.clone()
    } else {
        team_config(c)
    };
    let controller_v = match c.pick(3) {
        0 => placeholder_object(&sc_name, CONTROLLER_NS),
        1 => real_config(fixtures[c.pick(2)], CONTROLLER_NS, &sc_name),
        _ => controller_config(c, &sc_name),
    };
    let controller_cfg = ServerConfig::from_value(&controller_v).ok();
    let settings = Settings {
        controller_namespace: CONTROLLER_NS.into(),
        on_missing: [OnMissing::Allow, OnMissing::Deny, OnMissing::Auto][c.pick(3)],
    };
    if controller_cfg.is_none() {
        return; // the controller builds nothing from a config it cannot read
    }
    let kind = if c.flag() {
        WorkloadKind::Deployment
    } else {
        WorkloadKind::StatefulSet
    };
    // What the stock controller writes, built once (each build is a full
    // `desired`) and copied for every use.
    let built = {
        let mut w = controller_statefulset(&server_v, &controller_v);
        if kind == WorkloadKind::Deployment {
            w["kind"] = json!("Deployment");
            for k in ["serviceName", "podManagementPolicy", "volumeClaimTemplates"] {
                set_pointer(&mut w, &format!("/spec/{k}"), None);
            }
        }
        w
    };
    let admit = |w: &mut Value, config: &ServerConfig| -> bool {
        let inputs = Inputs {
            server: Some(&srv),
            config: Some(config),
            controller_config: controller_cfg.as_ref(),
            ..Inputs::default()
        };
        match decide(Operation::Create, kind, TEAM, &*w, inputs, &settings) {
            Decision::Patched { patch, .. } => {
                if let Err(e) = json_patch::patch(w, &patch) {
                    panic!("a CREATE patch does not apply: {e}");
                }
                true
            }
            _ => false,
        }
    };
    // The stored workload: built by the controller, admitted by the webhook
    // with the config of then (or not), then edited by someone.
    let mut stored = built.clone();
    if let (true, Some(then)) = (c.flag(), &config_then) {
        admit(&mut stored, then);
    }
    edit(c, &mut stored, WORKLOAD_PATHS);

    let act = |w: &Value| {
        workload_action(
            kind,
            w,
            &srv,
            config_now.as_ref(),
            controller_cfg.as_ref(),
            &settings,
        )
    };
    let action = act(&stored);
    assert_eq!(action, act(&stored), "deterministic");
    let admitted_before = stored
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(SOURCE_ANNOTATION))
        .is_some();
    let hash = match &action {
        WorkloadAction::Nothing => None,
        WorkloadAction::Held => {
            assert!(srv.disable_auto_update && admitted_before, "{action:?}");
            None
        }
        WorkloadAction::Heal { hash } => {
            assert!(!admitted_before, "{action:?}");
            Some(hash)
        }
        WorkloadAction::Rollout { hash } => {
            assert!(admitted_before && !srv.disable_auto_update, "{action:?}");
            Some(hash)
        }
    };
    // Re-admitting as the sync loop does (an UPDATE of the stored object)
    // gets a patch that applies, carries the hash, and is then up to date.
    if let Some(hash) = hash {
        let inputs = Inputs {
            server: Some(&srv),
            config: config_now.as_ref(),
            controller_config: controller_cfg.as_ref(),
            old_object: Some(&stored),
            ..Inputs::default()
        };
        let Decision::Patched { patch, .. } =
            decide(Operation::Update, kind, TEAM, &stored, inputs, &settings)
        else {
            panic!("{action:?} but the UPDATE is not patched");
        };
        let mut after = stored.clone();
        if let Err(e) = json_patch::patch(&mut after, &patch) {
            panic!("the re-admission patch does not apply: {e}");
        }
        let got = after
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(HASH_ANNOTATION))
            .and_then(Value::as_str);
        assert_eq!(got, Some(hash.as_str()), "hash annotation");
        let again = act(&after);
        assert_eq!(
            again,
            WorkloadAction::Nothing,
            "after {action:?}: {patch:?}"
        );
    }
    // Claim templates: never for a Deployment; never right after the
    // webhook admitted the StatefulSet with that config.
    if let Some(now) = &config_now {
        let differ = claim_templates_differ(kind, &stored, &srv, now);
        assert_eq!(differ, claim_templates_differ(kind, &stored, &srv, now));
        if kind == WorkloadKind::Deployment {
            assert!(!differ);
        }
        let mut w = built.clone();
        if admit(&mut w, now) {
            assert!(
                !claim_templates_differ(kind, &w, &srv, now),
                "just admitted"
            );
        }
    }
}

/// The rollback target: arbitrary text as a `migrate --rollback` file.
/// Parsing never panics; the decode stays within its budget (and agrees
/// with serde_yaml_ng's where there are no aliases); a file that parses
/// writes YAML that parses back to the same file; its undo against an
/// empty namespace recreates everything and refuses nothing.
pub fn check_rollback(data: &[u8]) {
    use serverconfig_webhook::migrate::rollback::{plan_rollback, RollbackFile};
    use serverconfig_webhook::yaml::{budget, one_document, units};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ours = one_document(text);
    if let Ok(v) = &ours {
        assert!(units(v) <= budget(text.len()), "over the budget");
    }
    if !text.contains('*') {
        let theirs: Result<Value, _> = serde_yaml_ng::from_str(text);
        assert_eq!(
            ours.as_ref().ok(),
            theirs.as_ref().ok(),
            "{ours:?} vs {theirs:?}"
        );
    }
    let Ok(file) = RollbackFile::parse(text) else {
        return;
    };
    let yaml = match file.to_yaml() {
        Ok(y) => y,
        Err(e) => panic!("a parsed file does not encode: {e}"),
    };
    match RollbackFile::parse(&yaml) {
        Ok(again) => assert_eq!(again, file, "round trip through\n{yaml}"),
        Err(e) => panic!("its own YAML does not parse: {e}\n{yaml}"),
    }
    let keys = file.keys();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "keys sorted and unique"
    );
    let plan = plan_rollback(&file, &Default::default(), false);
    assert!(!plan.refused(), "{plan:?}");
    assert_eq!(
        plan.steps.len(),
        file.deleted.len() + file.replaced.len(),
        "{plan:?}"
    );
}
