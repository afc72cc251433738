//! `doctor`: reads the cluster and says, per Server and for the
//! environment, whether the setup works and what is wrong. Exit 0 when
//! healthy, 1 when something is wrong (2 for usage errors, from clap).

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::Client;
use serde::Serialize;
use serde_json::Value;

use std::sync::Arc;

use crate::cache::inputs::{Lookups, Misses};
use crate::cache::{server_config_resource, server_resource, Caches, Namespaces};
use crate::core::desired::{desired, differences, mounts_without_volume};
use crate::core::model::{Server, ServerConfig};
use crate::core::mutate::{Settings, WorkloadKind};
use crate::core::placeholder::{placeholder_state, PlaceholderState};
use crate::core::plan::{workload_action, WorkloadAction};
use crate::metrics::Metrics;
use crate::seldon_controller::{read_deployment, ControllerWatch};

/// One finding.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// What was checked (a Server `ns/name`, or an environment item).
    pub subject: String,
    pub status: Status,
    pub detail: String,
}

/// How a check came out; serialised (and printed) as `ok`, `warn`, `fail`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it should be.
    Ok,
    /// Works, but worth a look (the report stays healthy).
    Warn,
    /// Broken: `doctor` exits 1.
    Fail,
}

impl Status {
    /// The word the table and the JSON use.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The whole report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub servers: Vec<Check>,
    pub environment: Vec<Check>,
}

impl Report {
    /// Whether anything failed.
    pub fn healthy(&self) -> bool {
        self.servers
            .iter()
            .chain(&self.environment)
            .all(|c| c.status != Status::Fail)
    }

    /// Human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for (title, checks) in [
            ("SERVERS", &self.servers),
            ("ENVIRONMENT", &self.environment),
        ] {
            out.push_str(&format!("{title}\n"));
            let width = checks
                .iter()
                .map(|c| c.subject.len())
                .max()
                .unwrap_or(0)
                .max(7);
            out.push_str(&format!(
                "  {:<width$}  {:<6}  DETAIL\n",
                "SUBJECT", "STATUS"
            ));
            for c in checks {
                out.push_str(&format!(
                    "  {:<width$}  {:<6}  {}\n",
                    c.subject, c.status, c.detail
                ));
            }
            if checks.is_empty() {
                out.push_str("  (none)\n");
            }
        }
        out.push_str(if self.healthy() {
            "healthy\n"
        } else {
            "PROBLEMS FOUND\n"
        });
        out
    }
}

/// What `doctor` inspects.
#[derive(Clone, Debug)]
pub struct DoctorConfig {
    pub settings: Settings,
    pub namespaces: Namespaces,
    pub webhook_configuration: String,
    pub webhook_namespace: String,
    pub service_account: String,
    pub controller_deployment: String,
}

fn check(subject: impl Into<String>, status: Status, detail: impl Into<String>) -> Check {
    Check {
        subject: subject.into(),
        status,
        detail: detail.into(),
    }
}

fn dyn_api(client: &Client, ns: Option<&str>, r: &kube::api::ApiResource) -> Api<DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, r),
        None => Api::all_with(client.clone(), r),
    }
}

/// Every object of `resource` in `ns` (all namespaces when `None`), with
/// its type set (the snapshot caches sort objects by kind).
async fn list_objects(
    client: &Client,
    ns: Option<&str>,
    resource: &kube::api::ApiResource,
) -> Result<Vec<DynamicObject>, kube::Error> {
    let list = dyn_api(client, ns, resource)
        .list(&ListParams::default())
        .await?;
    Ok(list
        .items
        .into_iter()
        .map(|mut o| {
            o.types = Some(kube::api::TypeMeta {
                api_version: resource.api_version.clone(),
                kind: resource.kind.clone(),
            });
            o
        })
        .collect())
}

/// What `doctor` read of the cluster's Servers and ServerConfigs: the
/// parsed objects for the environment checks, and the same objects as
/// snapshot caches for the one lookup layer the webhook uses.
struct Snapshot {
    servers: Vec<Server>,
    configs: BTreeMap<(String, String), ServerConfig>,
    caches: Arc<Caches>,
}

/// Lists the Servers and ServerConfigs doctor looks at (the watched
/// namespaces, plus the controller namespace's ServerConfigs); an object
/// that cannot be read is a failed check.
async fn read_snapshot(
    client: &Client,
    scopes: &[Option<String>],
    ctl: &str,
    failed: &mut Vec<Check>,
) -> Result<Snapshot, kube::Error> {
    let mut objects = Vec::new();
    for ns in scopes {
        objects.extend(list_objects(client, ns.as_deref(), &server_resource()).await?);
        objects.extend(list_objects(client, ns.as_deref(), &server_config_resource()).await?);
    }
    let controller_configs = list_objects(client, Some(ctl), &server_config_resource()).await?;
    let (mut servers, mut configs) = (Vec::new(), BTreeMap::new());
    for o in &objects {
        let Ok(v) = serde_json::to_value(o) else {
            continue;
        };
        let parsed = match o.types.as_ref().map(|t| t.kind.as_str()) {
            Some("Server") => Server::from_value(&v).map(|s| servers.push(s)),
            _ => ServerConfig::from_value(&v).map(|c| {
                configs.insert((c.meta.namespace.clone(), c.meta.name.clone()), c);
            }),
        };
        if let Err(e) = parsed {
            failed.push(check("?", Status::Fail, e.to_string()));
        }
    }
    for o in &controller_configs {
        if let Some(c) = serde_json::to_value(o)
            .ok()
            .and_then(|v| ServerConfig::from_value(&v).ok())
        {
            configs.insert((c.meta.namespace.clone(), c.meta.name.clone()), c);
        }
    }
    objects.extend(controller_configs);
    let caches = Caches::from_objects(objects, Arc::new(Metrics::new()));
    Ok(Snapshot {
        servers,
        configs,
        caches,
    })
}

/// Runs every check.
pub async fn run(client: Client, cfg: &DoctorConfig) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let ctl = cfg.settings.controller_namespace.clone();
    let scopes: Vec<Option<String>> = match &cfg.namespaces {
        Namespaces::All => vec![None],
        Namespaces::List(l) => l.iter().cloned().map(Some).collect(),
    };
    let Snapshot {
        servers,
        configs,
        caches,
    } = read_snapshot(&client, &scopes, &ctl, &mut report.servers).await?;
    let lookups = Lookups::new(&caches, &ctl, Misses::CacheOnly);
    let server_namespaces: Vec<String> = servers.iter().map(|s| s.meta.namespace.clone()).collect();
    for s in servers.iter().filter(|s| s.meta.namespace != ctl) {
        report
            .servers
            .push(server_check(&client, s, &lookups, &cfg.settings).await);
    }
    placeholder_checks(&configs, &ctl, &mut report.environment);
    let controller = read_deployment(&client, &ctl, &cfg.controller_deployment).await;
    let watch = controller
        .as_ref()
        .ok()
        .and_then(Option::as_ref)
        .and_then(ControllerWatch::from_deployment);
    deployment_mode_checks(
        &servers,
        &configs,
        watch.as_ref(),
        &ctl,
        &mut report.environment,
    );
    scheduler_checks(&client, &server_namespaces, &ctl, &mut report.environment).await;
    controller_checks(cfg, controller, &server_namespaces, &mut report.environment);
    webhook_checks(&client, cfg, &server_namespaces, &mut report.environment).await;
    rbac_checks(&client, cfg, &mut report.environment).await;
    Ok(report)
}

async fn server_check(
    client: &Client,
    s: &Server,
    lookups: &Lookups<'_>,
    settings: &Settings,
) -> Check {
    let ns = &s.meta.namespace;
    let subject = format!("{ns}/{}", s.meta.name);
    let ctl = &settings.controller_namespace;
    let sc = &s.server_config;
    let found = lookups.for_server(ns, &s.meta.name).await;
    let Some(config) = found.config() else {
        return check(
            subject,
            Status::Fail,
            format!("uses ServerConfig {sc:?}, which does not exist in {ns}"),
        );
    };
    let ctl_config = found.controller_config();
    let Some(placeholder) = ctl_config.map(controller_config_state) else {
        return check(subject, Status::Fail, format!(
            "no ServerConfig {sc:?} in {ctl}: the stock controller builds nothing (run the sync loop to keep a placeholder)"));
    };
    let Some((kind, workload)) = stored_workload(client, ns, &s.meta.name).await else {
        return check(subject, Status::Fail, format!("ServerConfig {ns}/{sc} found, {placeholder}, but no StatefulSet or Deployment exists yet"));
    };
    match workload_action(kind, &workload, s, Some(config), ctl_config, settings) {
        WorkloadAction::Nothing => check(
            subject,
            Status::Ok,
            format!("pod template matches ServerConfig {ns}/{sc}; {placeholder}"),
        ),
        other => {
            let differing = differences(&workload, &desired(s, config));
            let what = match other {
                WorkloadAction::Held => "out of date (disableAutoUpdate: true)",
                WorkloadAction::Heal { .. } => "never admitted by the webhook",
                _ => "out of date",
            };
            check(
                subject,
                Status::Fail,
                format!(
                    "pod template {what}; containers that differ: {}",
                    differing.join(", ")
                ),
            )
        }
    }
}

/// What the controller namespace's ServerConfig of a Server's name is, in
/// words.
fn controller_config_state(c: &ServerConfig) -> &'static str {
    match placeholder_state(c) {
        Some(PlaceholderState::Ours) => "placeholder in place",
        Some(PlaceholderState::Legacy) => "placeholder in place (an earlier release's shape; the sync loop rewrites it)",
        Some(PlaceholderState::Adopted) => "adopted placeholder (labelled, but changed by someone else: treated as a shared ServerConfig, never touched by the sync loop)",
        None => "shared ServerConfig of that name in the controller namespace",
    }
}

/// The Server's workload as stored: its StatefulSet, else its Deployment.
async fn stored_workload(client: &Client, ns: &str, name: &str) -> Option<(WorkloadKind, Value)> {
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    if let Ok(Some(w)) = sts.get_opt(name).await {
        return Some((WorkloadKind::StatefulSet, serde_json::to_value(w).ok()?));
    }
    let deploy: Api<Deployment> = Api::namespaced(client.clone(), ns);
    match deploy.get_opt(name).await {
        Ok(Some(w)) => Some((WorkloadKind::Deployment, serde_json::to_value(w).ok()?)),
        _ => None,
    }
}

/// The controller namespace's placeholders: how many, how many of an
/// earlier release's shape, and which were adopted (labelled, but changed
/// by someone else: never touched by the sync loop again).
fn placeholder_checks(
    configs: &BTreeMap<(String, String), ServerConfig>,
    ctl: &str,
    out: &mut Vec<Check>,
) {
    let (mut ours, mut legacy, mut adopted) = (0usize, 0usize, Vec::new());
    for c in configs.values().filter(|c| c.meta.namespace == ctl) {
        match placeholder_state(c) {
            Some(PlaceholderState::Ours) => ours += 1,
            Some(PlaceholderState::Legacy) => legacy += 1,
            Some(PlaceholderState::Adopted) => adopted.push(c.meta.name.clone()),
            None => {}
        }
    }
    let subject = format!("placeholders in {ctl}");
    let kept = format!("{} kept by the sync loop ({legacy} of an earlier release's shape, rewritten by the sync loop)", ours + legacy);
    out.push(if adopted.is_empty() {
        check(subject, Status::Ok, kept)
    } else {
        check(subject, Status::Warn, format!(
            "{kept}; adopted (labelled but changed by someone else, never modified or deleted by the sync loop; remove the label to make it a plain ServerConfig): {}",
            adopted.join(", ")))
    });
}

/// With Deployments for Servers (Seldon 2.10's
/// `--use-deployments-for-servers`, or a Server whose workload is a
/// Deployment), every ServerConfig that mounts a volume only a claim
/// template provides: the API server refuses such a Deployment (422).
fn deployment_mode_checks(
    servers: &[Server],
    configs: &BTreeMap<(String, String), ServerConfig>,
    watch: Option<&ControllerWatch>,
    ctl: &str,
    out: &mut Vec<Check>,
) {
    if !watch.is_some_and(|w| w.use_deployments) {
        return;
    }
    let mut problems = Vec::new();
    let used: std::collections::BTreeSet<(String, String)> = servers
        .iter()
        .flat_map(|s| {
            [
                (s.meta.namespace.clone(), s.server_config.clone()),
                (ctl.to_string(), s.server_config.clone()),
            ]
        })
        .collect();
    for key in used {
        let Some(c) = configs.get(&key) else { continue };
        for (container, volume) in mounts_without_volume(&Value::Object(c.pod_spec.clone())) {
            let claim = c.volume_claim_templates.iter().any(|v| v.name == volume);
            problems.push(format!(
                "ServerConfig {}/{}: container {container:?} mounts volume {volume:?}{}; add {volume:?} to spec.podSpec.volumes (an emptyDir, or a persistentVolumeClaim)",
                key.0,
                key.1,
                if claim { ", which only its volumeClaimTemplates provide (a Deployment has none)" } else { ", which it does not define" }
            ));
        }
    }
    let subject = "Deployments for Servers (--use-deployments-for-servers)";
    out.push(if problems.is_empty() {
        check(
            subject,
            Status::Ok,
            "every ServerConfig in use defines the volumes its containers mount",
        )
    } else {
        check(
            subject,
            Status::Fail,
            format!(
                "the API server refuses these Deployments (volumeMounts[].name: Not found): {}",
                problems.join("; ")
            ),
        )
    });
}

/// The stock controller dials `seldon-scheduler.<Server namespace>:9004`,
/// so every namespace with Servers needs Seldon's runtime (its scheduler)
/// installed there.
async fn scheduler_checks(
    client: &Client,
    server_namespaces: &[String],
    ctl: &str,
    out: &mut Vec<Check>,
) {
    let namespaces: std::collections::BTreeSet<&String> =
        server_namespaces.iter().filter(|n| *n != ctl).collect();
    let mut missing = Vec::new();
    for ns in &namespaces {
        let api: Api<Service> = Api::namespaced(client.clone(), ns);
        match api.get_opt("seldon-scheduler").await {
            Ok(Some(_)) => {}
            Ok(None) => missing.push(ns.to_string()),
            Err(e) => missing.push(format!("{ns} (cannot read: {e})")),
        }
    }
    let subject = "seldon-scheduler per namespace";
    out.push(if missing.is_empty() {
        check(subject, Status::Ok, format!("a seldon-scheduler Service in each of the {} namespaces with Servers", namespaces.len()))
    } else {
        check(subject, Status::Fail, format!(
            "no seldon-scheduler Service in {}: the stock controller dials seldon-scheduler.<Server namespace>:9004, so install Seldon's runtime there (the seed's Pattern 1)",
            missing.join(", ")))
    });
}

fn controller_checks(
    cfg: &DoctorConfig,
    controller: Result<Option<Deployment>, kube::Error>,
    server_namespaces: &[String],
    out: &mut Vec<Check>,
) {
    let ctl = &cfg.settings.controller_namespace;
    let subject = format!("controller {ctl}/{}", cfg.controller_deployment);
    let dep = match controller {
        Ok(Some(d)) => d,
        Ok(None) => {
            out.push(check(
                subject,
                Status::Warn,
                "Seldon controller Deployment not found; pass --controller-deployment",
            ));
            return;
        }
        Err(e) => {
            out.push(check(subject, Status::Warn, format!("cannot read: {e}")));
            return;
        }
    };
    let Some(ControllerWatch {
        clusterwide,
        watch_namespaces: watch,
        ..
    }) = ControllerWatch::from_deployment(&dep)
    else {
        out.push(check(subject, Status::Warn, "no container"));
        return;
    };
    let app_ns: Vec<&String> = server_namespaces
        .iter()
        .filter(|n| *n != ctl)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !clusterwide && !watch.is_empty() {
        out.push(check(subject, Status::Fail, format!(
            "--watch-namespaces={} is IGNORED because --clusterwide=false (the seed's trap): set controller.clusterwide=true", watch.join(","))));
    } else if !clusterwide && !app_ns.is_empty() {
        out.push(check(subject, Status::Fail, "--clusterwide=false: the controller only watches its own namespace, so Servers in application namespaces are never built"));
    } else if clusterwide && !watch.is_empty() {
        let missing: Vec<&&String> = app_ns.iter().filter(|n| !watch.contains(n)).collect();
        if missing.is_empty() {
            out.push(check(
                subject,
                Status::Ok,
                format!("clusterwide, watching {}", watch.join(",")),
            ));
        } else {
            out.push(check(
                subject,
                Status::Fail,
                format!("Servers in namespaces the controller does not watch: {missing:?}"),
            ));
        }
    } else {
        out.push(check(subject, Status::Ok, "clusterwide, all namespaces"));
    }
}

fn selector_matches(
    sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    if let Some(ml) = &sel.match_labels {
        if ml.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    }
    for e in sel.match_expressions.iter().flatten() {
        let vals = e.values.clone().unwrap_or_default();
        let got = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" => got.is_some_and(|g| vals.contains(g)),
            "NotIn" => got.is_none_or(|g| !vals.contains(g)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

async fn webhook_checks(
    client: &Client,
    cfg: &DoctorConfig,
    server_namespaces: &[String],
    out: &mut Vec<Check>,
) {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let subject = format!("webhook {}", cfg.webhook_configuration);
    let mwc = match api.get_opt(&cfg.webhook_configuration).await {
        Ok(Some(m)) => m,
        Ok(None) => {
            out.push(check(
                subject,
                Status::Fail,
                "MutatingWebhookConfiguration not found",
            ));
            return;
        }
        Err(e) => {
            out.push(check(subject, Status::Fail, format!("cannot read: {e}")));
            return;
        }
    };
    let Some(hook) = mwc.webhooks.as_ref().and_then(|w| w.first()) else {
        out.push(check(
            subject,
            Status::Fail,
            "no webhooks in the configuration",
        ));
        return;
    };
    let has_ca = hook
        .client_config
        .ca_bundle
        .as_ref()
        .is_some_and(|b| !b.0.is_empty());
    out.push(check(format!("{subject} caBundle"), if has_ca { Status::Ok } else { Status::Fail },
        if has_ca { "present" } else { "empty: the API server cannot verify the webhook (is cert-manager's cainjector running?)" }));
    let fp = hook.failure_policy.clone().unwrap_or_else(|| "Fail".into());
    out.push(check(format!("{subject} failurePolicy"), if fp == "Fail" { Status::Ok } else { Status::Warn },
        if fp == "Fail" { "Fail".to_string() } else { format!("{fp}: objects admitted while the webhook is down keep the controller's images until healed") }));
    let ns_api: Api<Namespace> = Api::all(client.clone());
    let mut uncovered = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for ns in server_namespaces
        .iter()
        .filter(|n| **n != cfg.settings.controller_namespace)
    {
        if !seen.insert(ns.clone()) {
            continue;
        }
        let labels: BTreeMap<String, String> = match ns_api.get_opt(ns).await {
            Ok(Some(n)) => n.metadata.labels.unwrap_or_default(),
            _ => BTreeMap::from([("kubernetes.io/metadata.name".to_string(), ns.clone())]),
        };
        if let Some(sel) = &hook.namespace_selector {
            if !selector_matches(sel, &labels) {
                uncovered.push(ns.clone());
            }
        }
    }
    out.push(if uncovered.is_empty() {
        check(
            format!("{subject} namespaces"),
            Status::Ok,
            "namespaceSelector covers every namespace with Servers",
        )
    } else {
        check(
            format!("{subject} namespaces"),
            Status::Fail,
            format!("namespaceSelector misses {}", uncovered.join(",")),
        )
    });
}

/// One permission the webhook's service account needs.
struct Permission {
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    namespace: Option<String>,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.verb, self.group, self.resource)?;
        match &self.namespace {
            Some(n) => write!(f, " in {n}"),
            None => Ok(()),
        }
    }
}

/// What the webhook and the sync loop need: asked per watched namespace
/// when there is a list (a scoped install grants only there), cluster-wide
/// otherwise; the placeholders' writes in the controller namespace; the
/// Lease in the webhook's own.
fn permissions_needed(cfg: &DoctorConfig) -> Vec<Permission> {
    let watched: Vec<Option<String>> = match &cfg.namespaces {
        Namespaces::All => vec![None],
        Namespaces::List(l) => l.iter().cloned().map(Some).collect(),
    };
    let at = |verb, group, resource, namespace: &Option<String>| Permission {
        verb,
        group,
        resource,
        namespace: namespace.clone(),
    };
    let mut wanted = Vec::new();
    for ns in &watched {
        wanted.push(at("list", "mlops.seldon.io", "servers", ns));
        wanted.push(at("watch", "mlops.seldon.io", "serverconfigs", ns));
        wanted.push(at("patch", "apps", "statefulsets", ns));
        wanted.push(at("create", "events.k8s.io", "events", ns));
    }
    let ctl = Some(cfg.settings.controller_namespace.clone());
    wanted.push(at("create", "mlops.seldon.io", "serverconfigs", &ctl));
    wanted.push(at("delete", "mlops.seldon.io", "serverconfigs", &ctl));
    let own = Some(cfg.webhook_namespace.clone());
    wanted.push(at("create", "coordination.k8s.io", "leases", &own));
    wanted
}

/// Whether `user` (a service account of `namespace`) may do `what`, by a
/// SubjectAccessReview.
async fn allowed(
    api: &Api<SubjectAccessReview>,
    user: &str,
    namespace: &str,
    what: &Permission,
) -> Result<bool, kube::Error> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_string()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
            ]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(what.verb.into()),
                group: Some(what.group.into()),
                resource: Some(what.resource.into()),
                namespace: what.namespace.clone(),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// Asks the API server whether the webhook's service account holds every
/// permission it needs.
async fn rbac_checks(client: &Client, cfg: &DoctorConfig, out: &mut Vec<Check>) {
    let user = format!(
        "system:serviceaccount:{}:{}",
        cfg.webhook_namespace, cfg.service_account
    );
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let mut missing = Vec::new();
    for what in permissions_needed(cfg) {
        match allowed(&api, &user, &cfg.webhook_namespace, &what).await {
            Ok(true) => {}
            Ok(false) => missing.push(what.to_string()),
            Err(e) => {
                out.push(check(
                    format!("rbac {user}"),
                    Status::Warn,
                    format!("cannot check (needs permission to create SubjectAccessReviews): {e}"),
                ));
                return;
            }
        }
    }
    out.push(if missing.is_empty() {
        check(
            format!("rbac {user}"),
            Status::Ok,
            "can do everything the webhook and sync loop need",
        )
    } else {
        check(
            format!("rbac {user}"),
            Status::Fail,
            format!("missing: {}", missing.join("; ")),
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    #[test]
    fn selector_matching_follows_kubernetes_rules() {
        let not_in = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "kubernetes.io/metadata.name".into(),
                operator: "NotIn".into(),
                values: Some(vec!["kube-system".into(), "seldon-system".into()]),
            }]),
            ..LabelSelector::default()
        };
        let labels =
            |n: &str| BTreeMap::from([("kubernetes.io/metadata.name".to_string(), n.to_string())]);
        assert!(selector_matches(&not_in, &labels("team-a")));
        assert!(!selector_matches(&not_in, &labels("seldon-system")));
        let by_label = LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "serverconfig-webhook/enabled".to_string(),
                "true".to_string(),
            )])),
            ..LabelSelector::default()
        };
        assert!(!selector_matches(&by_label, &labels("team-a")));
    }

    #[test]
    fn report_is_unhealthy_on_any_failure() {
        let mut r = Report::default();
        r.servers.push(check("a/m", Status::Ok, "fine"));
        r.environment.push(check("webhook", Status::Warn, "meh"));
        assert!(r.healthy());
        assert!(r.table().ends_with("healthy\n"));
        r.environment
            .push(check("controller", Status::Fail, "trap"));
        assert!(!r.healthy());
        assert!(r.table().contains("PROBLEMS FOUND"));
    }
}
