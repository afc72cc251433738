//! The sync loop (`serverconfig-webhook sync`, or `serve --sync`): keeps
//! placeholders in the controller namespace, rolls out ServerConfig
//! changes, heals workloads admitted without the webhook. Only the holder
//! of a `coordination.k8s.io` Lease runs it; every write carries the field
//! manager `serverconfig-webhook` and is retried with backoff.

pub mod lease;
mod limits;
mod own_writes;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::StreamExt;
    use k8s_openapi::api::apps::v1::StatefulSet;
    use kube::api::DynamicObject;
    use kube::runtime::{reflector, watcher};
    use serde_json::json;

    use super::{cache_triggers, CachedKind, Caches, Change};
    use crate::metrics::Metrics;

    fn object(v: serde_json::Value) -> DynamicObject {
        serde_json::from_value(v).expect("fixture object")
    }

    fn server(ns: &str, name: &str, config: &str) -> DynamicObject {
        object(
            json!({"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Server",
            "metadata": {"namespace": ns, "name": name, "resourceVersion": "1"},
            "spec": {"serverConfig": config}}),
        )
    }

    fn sts(ns: &str, name: &str) -> StatefulSet {
        serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}}))
            .expect("fixture workload")
    }

    /// The workloads each change triggers, for a controller over `scope`
    /// whose store holds a/{s1,s2,s3} and b/s1.
    #[tokio::test]
    async fn cache_changes_trigger_the_workloads_they_concern() {
        let caches = Caches::from_objects(
            [
                server("a", "s1", "mlserver"),
                server("a", "s2", "mlserver"),
                server("a", "s3", "triton"),
                server("b", "s1", "mlserver"),
            ],
            Arc::new(Metrics::default()),
        );
        let (store, mut writer) = reflector::store::<StatefulSet>();
        for (ns, name) in [("a", "s1"), ("a", "s2"), ("a", "s3"), ("b", "s1")] {
            writer.apply_watcher_event(&watcher::Event::Apply(sts(ns, name)));
        }
        let object = |kind, ns: &str, name: &str| Change::Object {
            kind,
            namespace: ns.into(),
            name: name.into(),
        };
        let relisted = |ns: Option<&str>| Change::Relisted {
            kind: CachedKind::ServerConfig,
            namespace: ns.map(str::to_string),
        };
        let cases: Vec<(Option<&str>, Change, Vec<&str>)> = vec![
            (
                None,
                object(CachedKind::ServerConfig, "a", "mlserver"),
                vec!["a/s1", "a/s2"],
            ),
            (
                None,
                object(CachedKind::ServerConfig, "a", "unused"),
                vec![],
            ),
            (None, object(CachedKind::Server, "b", "s1"), vec!["b/s1"]),
            (
                Some("a"),
                object(CachedKind::ServerConfig, "b", "mlserver"),
                vec![],
            ),
            (
                Some("b"),
                object(CachedKind::ServerConfig, "b", "mlserver"),
                vec!["b/s1"],
            ),
            (None, relisted(Some("a")), vec!["a/s1", "a/s2", "a/s3"]),
            (None, relisted(None), vec!["a/s1", "a/s2", "a/s3", "b/s1"]),
        ];
        for (scope, change, want) in cases {
            let (tx, rx) = tokio::sync::broadcast::channel(4);
            let triggers =
                cache_triggers(caches.clone(), rx, scope.map(str::to_string), store.clone());
            tx.send(change.clone()).expect("a subscriber");
            drop(tx);
            let mut got: Vec<String> = triggers
                .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
                .collect()
                .await;
            got.sort();
            assert_eq!(got, want, "scope {scope:?}, change {change:?}");
        }
    }

    /// A subscriber that fell behind the feed re-checks every workload it has.
    #[tokio::test]
    async fn a_lagging_subscriber_triggers_everything() {
        let caches = Caches::from_objects([], Arc::new(Metrics::default()));
        let (store, mut writer) = reflector::store::<StatefulSet>();
        writer.apply_watcher_event(&watcher::Event::Apply(sts("a", "s1")));
        let (tx, rx) = tokio::sync::broadcast::channel(1);
        for name in ["x", "y"] {
            tx.send(Change::Object {
                kind: CachedKind::Server,
                namespace: "a".into(),
                name: name.into(),
            })
            .expect("a subscriber");
        }
        drop(tx);
        let got: Vec<String> = cache_triggers(caches, rx, None, store)
            .map(|r| r.name)
            .collect()
            .await;
        assert_eq!(
            got,
            vec!["s1", "y"],
            "lag (x dropped) re-checks the store, then y"
        );
    }

    #[test]
    fn event_notes_fit_the_api_limit() {
        let long = "é".repeat(2000);
        let t = super::truncate_note(long);
        assert!(t.len() <= 1024 && t.ends_with("..."));
        assert_eq!(super::truncate_note("short".into()), "short");
    }
}

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::field::Empty;
use tracing::{Instrument, Span};

use crate::cache::inputs::{Found, Lookups, Misses};
use crate::cache::{server_config_resource, CachedKind, Caches, Change, Namespaces};
use crate::core::desired::{desired, differences};
use crate::core::model::{Meta, Server, ServerConfig, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::core::mutate::{controller_server_owner, Settings, WorkloadKind, HASH_ANNOTATION};
use crate::core::placeholder::{is_ours, placeholder_object};
use crate::core::plan::{
    claim_templates_differ, plan_placeholders, workload_action, PlaceholderPlan, WorkloadAction,
};
use crate::metrics::{Metrics, SyncAction};

/// Field manager of every write.
pub const FIELD_MANAGER: &str = "serverconfig-webhook";
/// Label the stock controller puts on Server workloads; the sync loop
/// watches only those.
const WORKLOAD_SELECTOR: &str = "app.kubernetes.io/name=seldon-server";

/// Settings of the sync loop.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    pub settings: Settings,
    pub namespaces: Namespaces,
    /// Most placeholders one application namespace can cause.
    pub max_placeholders_per_namespace: usize,
    /// How often every workload is re-checked (heal).
    pub heal_interval: Duration,
    pub lease: lease::LeaseConfig,
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Read back after the re-admission, the template still differs (how).
    #[error("re-admitted, but the stored template is still not the webhook's ({0}): is the webhook registered and reachable?")]
    NotApplied(String),
}

struct Ctx {
    client: Client,
    caches: Arc<Caches>,
    cfg: SyncConfig,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    failures: Mutex<HashMap<String, u32>>,
    /// Per workload, the hash whose `InjectedServerConfig` was published.
    seen_hash: Mutex<HashMap<String, String>>,
    /// Per workload, the hash whose `WebhookNotApplied` was published: the
    /// retries of the same failure do not repeat the Warning.
    not_applied: Mutex<HashMap<String, String>>,
    /// The rates one namespace's churn may cause work at.
    limits: limits::PerNamespace,
    /// What was reported, so that each Warning is published once per change.
    reported: Mutex<Reported>,
    /// Workload writes the Controller's store has not shown yet.
    own_writes: own_writes::OwnWrites,
}

impl Ctx {
    /// The shared state of one sync loop; Events name this replica.
    fn new(
        client: Client,
        caches: Arc<Caches>,
        cfg: SyncConfig,
        metrics: Arc<Metrics>,
    ) -> Arc<Ctx> {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: Some(cfg.lease.identity.clone()),
            },
        );
        let limits = limits::PerNamespace::new(cfg.max_placeholders_per_namespace);
        Arc::new(Ctx {
            client,
            caches,
            cfg,
            metrics,
            recorder,
            failures: Mutex::default(),
            seen_hash: Mutex::default(),
            not_applied: Mutex::default(),
            limits,
            reported: Mutex::default(),
            own_writes: own_writes::OwnWrites::default(),
        })
    }
}

/// The Event reference to a Seldon object (a Server or ServerConfig).
fn seldon_reference(kind: &str, meta: &Meta) -> ObjectReference {
    ObjectReference {
        api_version: Some("mlops.seldon.io/v1alpha1".into()),
        kind: Some(kind.into()),
        name: Some(meta.name.clone()),
        namespace: Some(meta.namespace.clone()),
        uid: (!meta.uid.is_empty()).then(|| meta.uid.clone()),
        ..ObjectReference::default()
    }
}

/// What the placeholder pass last reported.
#[derive(Default)]
struct Reported {
    /// Per namespace, the names past the cap already named in an Event.
    capped: BTreeMap<String, BTreeSet<String>>,
    /// `name/uid` of the adopted placeholders already named in an Event.
    adopted: BTreeSet<String>,
}

impl Ctx {
    /// Forgets the failures counted for a workload (its backoff restarts,
    /// and a later failure is reported again).
    fn forget_failures(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
        let had = self
            .not_applied
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
        if had.is_some() {
            tracing::info!(
                workload = key,
                "workload fixed: a later failure is reported again"
            );
        }
    }

    async fn event_to_server(&self, server: &Server, type_: EventType, reason: &str, note: String) {
        let reference = seldon_reference("Server", &server.meta);
        self.publish(&reference, type_, reason, note).await;
    }

    /// Publishes an Event; whether the API server took it.
    async fn publish(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) -> bool {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(truncate_note(note)),
            action: reason.into(),
            secondary: None,
        };
        let span = write_span(
            "create",
            "Event",
            reference.namespace.as_deref().unwrap_or(""),
            reference.name.as_deref().unwrap_or(""),
        );
        match traced_write(span, self.recorder.publish(&ev, reference)).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, reason, "could not publish event");
                false
            }
        }
    }
}

/// The span of one reconcile of a workload (an OTel span when tracing is
/// on; disabled, recording nothing, when off): its kind, namespace and
/// name, and what the reconcile decided.
fn reconcile_span<K: Workload>(kind: WorkloadKind, obj: &K) -> Span {
    let meta = obj.meta();
    tracing::info_span!(
        "sync.reconcile",
        sync.kind = ?kind,
        k8s.namespace.name = meta.namespace.as_deref().unwrap_or(""),
        sync.workload = meta.name.as_deref().unwrap_or(""),
        sync.action = Empty,
        sync.result = Empty,
    )
}

/// The span of one write the sync loop makes (a client span): the verb,
/// the resource, its namespace and name, and the answer.
fn write_span(verb: &'static str, resource: &str, namespace: &str, name: &str) -> Span {
    tracing::info_span!(
        "sync.write",
        otel.kind = "client",
        sync.verb = verb,
        sync.resource = resource,
        k8s.namespace.name = namespace,
        sync.name = name,
        sync.dry_run = Empty,
        sync.result = Empty,
        sync.http_status = Empty,
    )
}

/// Runs one write inside `span`, recording whether the API server took it
/// (and the HTTP status of a refusal).
async fn traced_write<T>(
    span: Span,
    write: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    let result = write.instrument(span.clone()).await;
    if !span.is_disabled() {
        match &result {
            Ok(_) => {
                span.record("sync.result", "ok");
            }
            Err(kube::Error::Api(e)) => {
                span.record("sync.result", "refused");
                span.record("sync.http_status", e.code);
            }
            Err(_) => {
                span.record("sync.result", "error");
            }
        }
    }
    result
}

/// Runs the election and, while leading, the sync loop; returns when
/// `stop` is cancelled and the lease is given up.
pub async fn run(
    client: Client,
    caches: Arc<Caches>,
    cfg: SyncConfig,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    // the election outlives the leader's tasks: the lease is given up only
    // once they have stopped writing, since the next holder starts at once
    let release = CancellationToken::new();
    let (mut leading, election) = lease::elect(client.clone(), cfg.lease.clone(), release.clone());
    let ctx = Ctx::new(client, caches, cfg, metrics);
    while !stop.is_cancelled() {
        let became_leader = tokio::select! {
            r = leading.wait_for(|l| *l) => r.is_ok(),
            () = stop.cancelled() => false,
        };
        if !became_leader {
            break; // shutdown, or the election ended
        }
        ctx.metrics.leader.set(1);
        tracing::info!("leading: sync loop started");
        let term = stop.child_token();
        let tasks = lead(ctx.clone(), &term);
        tokio::select! {
            _ = leading.wait_for(|l| !*l) => {}
            () = stop.cancelled() => {}
        }
        term.cancel();
        for t in tasks {
            let _ = t.await;
        }
        ctx.metrics.leader.set(0);
        // what the cap leaves out is the leader's to say; a replica that
        // stepped down must not keep an alert firing
        ctx.metrics.capped_placeholders.set(0);
        tracing::info!("sync loop stopped (lease lost or shutdown)");
    }
    release.cancel();
    let _ = election.await;
}

/// Starts everything a leader runs, until `term` is cancelled: the
/// placeholder loop and one controller per workload kind and scope.
fn lead(ctx: Arc<Ctx>, term: &CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![tokio::spawn(placeholder_loop(ctx.clone(), term.clone()))];
    let scopes: Vec<Option<String>> = match &ctx.cfg.namespaces {
        Namespaces::All => vec![None],
        Namespaces::List(l) => l.iter().cloned().map(Some).collect(),
    };
    for ns in scopes {
        tasks.push(tokio::spawn(workload_controller::<StatefulSet>(
            ctx.clone(),
            ns.clone(),
            WorkloadKind::StatefulSet,
            term.clone(),
        )));
        tasks.push(tokio::spawn(workload_controller::<Deployment>(
            ctx.clone(),
            ns,
            WorkloadKind::Deployment,
            term.clone(),
        )));
    }
    tasks
}

/// Re-plans placeholders whenever a cache changes (debounced) and every minute.
async fn placeholder_loop(ctx: Arc<Ctx>, stop: CancellationToken) {
    let mut feed = ctx.caches.change_feed();
    let mut backoff = Duration::from_secs(1);
    loop {
        while !ctx.caches.is_ready() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                () = stop.cancelled() => return,
            }
        }
        let pass = tracing::info_span!("sync.placeholders");
        let wait = match sync_placeholders(&ctx).instrument(pass).await {
            Ok(Pass::Done) => {
                backoff = Duration::from_secs(1);
                Duration::from_secs(60)
            }
            Ok(Pass::Deferred) => {
                backoff = Duration::from_secs(1);
                limits::DEFERRED_RETRY
            }
            Err(e) => {
                ctx.metrics.sync_action(SyncAction::Error);
                tracing::warn!(error = %e, retry_in_s = backoff.as_secs(), "placeholder sync failed");
                let w = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(300));
                w
            }
        };
        tokio::select! {
            _ = feed.recv() => {
                // Debounce bursts (initial lists, many objects applied at
                // once); what arrived meanwhile is covered by the next pass.
                tokio::time::sleep(Duration::from_millis(300)).await;
                feed = feed.resubscribe();
            }
            _ = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// What a placeholder pass left for later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// Everything planned was done.
    Done,
    /// Some namespace was over its rate of placeholder creates: run again soon.
    Deferred,
}

/// One placeholder pass: plan from the caches (names only), then create,
/// rewrite and delete, then report what is capped or adopted.
async fn sync_placeholders(ctx: &Ctx) -> Result<Pass, SyncError> {
    let ctl_ns = ctx.cfg.settings.controller_namespace.clone();
    let controller_parsed = ctx.caches.server_configs_in(&ctl_ns);
    let controller: Vec<&ServerConfig> = controller_parsed
        .iter()
        .filter_map(|r| r.as_ref().as_ref().ok())
        .collect();
    let app_names: Vec<(String, String)> = ctx
        .caches
        .server_config_names()
        .into_iter()
        .filter(|(ns, _)| *ns != ctl_ns && ctx.cfg.namespaces.contains(ns))
        .collect();
    let plan = plan_placeholders(
        &app_names,
        &controller,
        &ctl_ns,
        ctx.cfg.max_placeholders_per_namespace,
    );
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &ctl_ns, &server_config_resource());
    let (created, pass) = create_placeholders(ctx, &api, &plan).await?;
    rewrite_placeholders(ctx, &api, &plan, &controller).await?;
    let deleted = delete_placeholders(ctx, &api, &plan, &controller).await?;
    let reported = report_capped(ctx, &plan).await;
    report_adopted(ctx, &plan, &controller).await;
    let kept = (controller.iter().filter(|c| is_ours(c)).count() + created).saturating_sub(deleted);
    ctx.metrics
        .placeholders
        .set(i64::try_from(kept).unwrap_or(i64::MAX));
    ctx.metrics
        .adopted_placeholders
        .set(i64::try_from(plan.adopted.len()).unwrap_or(i64::MAX));
    let capped: usize = plan.capped.values().map(Vec::len).sum();
    ctx.metrics
        .capped_placeholders
        .set(i64::try_from(capped).unwrap_or(i64::MAX));
    Ok(if reported == Pass::Deferred {
        reported
    } else {
        pass
    })
}

/// Creates the planned placeholders, as far as each namespace's rate of
/// creates allows (a create is charged to one namespace that uses the
/// name): a namespace that churns through names delays only itself.
async fn create_placeholders(
    ctx: &Ctx,
    api: &Api<DynamicObject>,
    plan: &PlaceholderPlan,
) -> Result<(usize, Pass), SyncError> {
    let ctl_ns = &ctx.cfg.settings.controller_namespace;
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    let (mut created, mut pass) = (0usize, Pass::Done);
    for name in &plan.create {
        let users = plan
            .used_by
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if !users
            .iter()
            .any(|ns| ctx.limits.creates.check_key(ns).is_ok())
        {
            pass = Pass::Deferred;
            continue;
        }
        let obj: DynamicObject = serde_json::from_value(placeholder_object(name, ctl_ns))
            .map_err(kube::Error::SerdeError)?;
        let span = write_span("create", "ServerConfig", ctl_ns, name);
        match traced_write(span, api.create(&pp, &obj)).await {
            Ok(stored) => {
                created += 1;
                ctx.metrics.sync_action(SyncAction::PlaceholderCreate);
                tracing::info!(name = %name, uid = ?stored.metadata.uid, used_by = ?users, "placeholder created");
                notify_users(ctx, name, users, "PlaceholderCreated", format!(
                    "created placeholder ServerConfig {ctl_ns}/{name} (no containers) so the stock controller builds this Server; the webhook applies this namespace's ServerConfig")).await;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {} // appeared meanwhile: next pass decides
            Err(e) => return Err(e.into()),
        }
    }
    Ok((created, pass))
}

/// Rewrites placeholders of an earlier release's shape (the users'
/// container names, a `used-by` list) as the current one. Conditional on
/// the uid and resourceVersion the pass classified, so an object changed
/// since is never overwritten.
async fn rewrite_placeholders(
    ctx: &Ctx,
    api: &Api<DynamicObject>,
    plan: &PlaceholderPlan,
    controller: &[&ServerConfig],
) -> Result<(), SyncError> {
    let ctl_ns = &ctx.cfg.settings.controller_namespace;
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    for existing in controller
        .iter()
        .filter(|c| plan.rewrite.contains(&c.meta.name))
    {
        let mut obj = placeholder_object(&existing.meta.name, ctl_ns);
        obj["metadata"]["resourceVersion"] = json!(existing.meta.resource_version);
        obj["metadata"]["uid"] = json!(existing.meta.uid);
        let obj: DynamicObject = serde_json::from_value(obj).map_err(kube::Error::SerdeError)?;
        let span = write_span("replace", "ServerConfig", ctl_ns, &existing.meta.name);
        match traced_write(span, api.replace(&existing.meta.name, &pp, &obj)).await {
            Ok(stored) => {
                ctx.metrics.sync_action(SyncAction::PlaceholderUpdate);
                tracing::info!(name = %existing.meta.name, resource_version = ?stored.metadata.resource_version,
                    "placeholder rewritten in the current shape (no containers, no used-by list)");
            }
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Deletes placeholders no namespace uses, each only as the incarnation and
/// version the pass classified as the sync loop's own.
async fn delete_placeholders(
    ctx: &Ctx,
    api: &Api<DynamicObject>,
    plan: &PlaceholderPlan,
    controller: &[&ServerConfig],
) -> Result<usize, SyncError> {
    let mut deleted = 0usize;
    for existing in controller
        .iter()
        .filter(|c| plan.delete.contains(&c.meta.name))
    {
        let name = &existing.meta.name;
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: Some(existing.meta.resource_version.clone()),
                uid: (!existing.meta.uid.is_empty()).then(|| existing.meta.uid.clone()),
            }),
            ..DeleteParams::default()
        };
        let span = write_span(
            "delete",
            "ServerConfig",
            &ctx.cfg.settings.controller_namespace,
            name,
        );
        match traced_write(span, api.delete(name, &dp)).await {
            Ok(_) => {
                deleted += 1;
                ctx.metrics.sync_action(SyncAction::PlaceholderDelete);
                tracing::info!(name = %name, "placeholder deleted: no namespace uses the name");
            }
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(deleted)
}

/// One Warning per namespace when the set of its names past the cap grows
/// (not on every pass), at most one per namespace per
/// [`limits::EVENT_PERIOD`]; `Deferred` when one had to wait for that.
async fn report_capped(ctx: &Ctx, plan: &PlaceholderPlan) -> Pass {
    let ctl_ns = &ctx.cfg.settings.controller_namespace;
    let cap = ctx.cfg.max_placeholders_per_namespace;
    let news: Vec<(String, Vec<String>)> = {
        let mut reported = ctx
            .reported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        reported.capped.retain(|ns, _| plan.capped.contains_key(ns));
        plan.capped
            .iter()
            .filter_map(|(ns, names)| {
                let seen = reported.capped.entry(ns.clone()).or_default();
                seen.retain(|n| names.contains(n));
                let new: Vec<String> = names
                    .iter()
                    .filter(|n| !seen.contains(*n))
                    .cloned()
                    .collect();
                (!new.is_empty()).then(|| (ns.clone(), new))
            })
            .collect()
    };
    let mut pass = Pass::Done;
    for (ns, new) in news {
        if ctx.limits.events.check_key(&ns).is_err() {
            pass = Pass::Deferred; // reported on a later pass
            continue;
        }
        let total = plan.capped.get(&ns).map_or(0, Vec::len);
        let reference = ObjectReference {
            api_version: Some("mlops.seldon.io/v1alpha1".into()),
            kind: Some("ServerConfig".into()),
            name: Some(new[0].clone()),
            namespace: Some(ns.clone()),
            ..ObjectReference::default()
        };
        let shown: Vec<&str> = new.iter().take(5).map(String::as_str).collect();
        let more = if new.len() > shown.len() { ", ..." } else { "" };
        let published = ctx.publish(&reference, EventType::Warning, "PlaceholderCapReached", format!(
            "namespace {ns} already causes {cap} placeholders in {ctl_ns} (--max-placeholders-per-namespace); {total} ServerConfig names have none, newly: {}{more}",
            shown.join(", "))).await;
        if !published {
            pass = Pass::Deferred;
            continue;
        }
        ctx.metrics.sync_action(SyncAction::PlaceholderCapped);
        let mut reported = ctx
            .reported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        reported.capped.entry(ns).or_default().extend(new);
    }
    pass
}

/// One Warning per adopted placeholder (by uid): somebody else changed it,
/// so the sync loop will never modify or delete it again.
async fn report_adopted(ctx: &Ctx, plan: &PlaceholderPlan, controller: &[&ServerConfig]) {
    for c in controller
        .iter()
        .filter(|c| plan.adopted.contains(&c.meta.name))
    {
        let key = format!("{}/{}", c.meta.name, c.meta.uid);
        let seen = ctx
            .reported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .adopted
            .contains(&key);
        if seen {
            continue;
        }
        let reference = seldon_reference("ServerConfig", &c.meta);
        tracing::warn!(name = %c.meta.name, "placeholder adopted: changed by someone else, never touched again");
        let published = ctx.publish(&reference, EventType::Warning, "PlaceholderAdopted", format!(
            "ServerConfig {}/{} carries the label {MANAGED_BY_LABEL}={MANAGED_BY_VALUE} but is no longer the placeholder serverconfig-webhook wrote; it is treated as a real ServerConfig and never modified or deleted by serverconfig-webhook again. Remove the label to say so.",
            c.meta.namespace, c.meta.name)).await;
        if published {
            ctx.reported
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .adopted
                .insert(key);
        }
    }
}

async fn notify_users(ctx: &Ctx, name: &str, users: &[String], reason: &str, note: String) {
    for ns in users {
        for server in ctx.caches.servers_using(ns, name) {
            ctx.event_to_server(&server, EventType::Normal, reason, note.clone())
                .await;
        }
    }
}

/// The API server rejects Event notes over 1024 bytes (422); keep the
/// start, which names the object and the failure.
fn truncate_note(mut note: String) -> String {
    const MAX: usize = 1024;
    if note.len() > MAX {
        let mut cut = MAX - 3;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str("...");
    }
    note
}

/// A namespaced workload kind the controller builds for a Server.
trait Workload:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Workload for K where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug
        + Send
        + Sync
        + 'static
{
}

fn object_key<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

/// A kube-runtime Controller over one workload kind in one scope: triggered
/// by the workload itself, by the caches' changes to Servers (same name) and
/// ServerConfigs (the workloads whose Server uses it), and every
/// `heal_interval`. The triggers come from the caches the reconcile reads,
/// after they hold the change: a watch of its own could deliver a change
/// before the caches have it, and the reconcile would then find nothing to
/// do and never look again.
async fn workload_controller<K>(
    ctx: Arc<Ctx>,
    ns: Option<String>,
    kind: WorkloadKind,
    stop: CancellationToken,
) where
    K: Workload,
{
    let api: Api<K> = match &ns {
        Some(n) => Api::namespaced(ctx.client.clone(), n),
        None => Api::all(ctx.client.clone()),
    };
    let controller = Controller::new(
        api,
        watcher::Config::default()
            .labels(WORKLOAD_SELECTOR)
            .any_semantic(),
    );
    let triggers = cache_triggers(
        ctx.caches.clone(),
        ctx.caches.change_feed(),
        ns,
        controller.store(),
    );
    controller
        .reconcile_on(triggers)
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(
            move |obj: Arc<K>, ctx: Arc<Ctx>| {
                let span = reconcile_span(kind, obj.as_ref());
                reconcile_workload(obj, ctx, kind, span.clone()).instrument(span)
            },
            move |obj: Arc<K>, err: &SyncError, ctx: Arc<Ctx>| {
                let key = object_key(obj.as_ref());
                let n = {
                    let mut f = ctx.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    let n = f.entry(key.clone()).or_insert(0);
                    *n = n.saturating_add(1);
                    *n
                };
                let wait = Duration::from_secs(1u64 << n.min(8)).min(Duration::from_secs(300));
                tracing::warn!(workload = %key, error = %err, attempt = n, retry_in_s = wait.as_secs(), "sync of workload failed");
                ctx.metrics.sync_action(SyncAction::Error);
                Action::requeue(wait)
            },
            ctx.clone(),
        )
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// The workloads each cache change concerns, in scope `ns` (all with
/// `None`): a Server's own workload, the workloads of the Servers that use a
/// ServerConfig; every workload of the store after a relist, or when this
/// subscriber fell behind the feed.
fn cache_triggers<K: Workload>(
    caches: Arc<Caches>,
    feed: tokio::sync::broadcast::Receiver<Change>,
    ns: Option<String>,
    store: Store<K>,
) -> impl futures::Stream<Item = ObjectRef<K>> + Send + 'static {
    futures::stream::unfold(feed, |mut feed| async move {
        let change = match feed.recv().await {
            Ok(c) => Some(c),
            Err(RecvError::Lagged(_)) => None,
            Err(RecvError::Closed) => return None,
        };
        Some((change, feed))
    })
    .flat_map(move |change| {
        let in_scope = |namespace: &str| ns.as_deref().is_none_or(|n| n == namespace);
        let every_workload = |namespace: Option<&str>| -> Vec<ObjectRef<K>> {
            store
                .state()
                .iter()
                .filter(|w| namespace.is_none() || w.meta().namespace.as_deref() == namespace)
                .map(|w| ObjectRef::from_obj(w.as_ref()))
                .collect()
        };
        let refs: Vec<ObjectRef<K>> = match change {
            Some(Change::Object { namespace, .. }) if !in_scope(&namespace) => Vec::new(),
            Some(Change::Object {
                kind: CachedKind::Server,
                namespace,
                name,
            }) => vec![ObjectRef::new(&name).within(&namespace)],
            Some(Change::Object {
                kind: CachedKind::ServerConfig,
                namespace,
                name,
            }) => caches
                .servers_using(&namespace, &name)
                .into_iter()
                .map(|s| ObjectRef::new(&s.meta.name).within(&namespace))
                .collect(),
            Some(Change::Relisted { namespace, .. }) => every_workload(namespace.as_deref()),
            None => every_workload(None),
        };
        futures::stream::iter(refs)
    })
}

/// Deletes `workload` (only this incarnation: uid and resourceVersion
/// preconditions) so its controller creates it again.
async fn recreate<K: Workload>(api: &Api<K>, workload: &K) -> Result<(), SyncError> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: workload.meta().uid.clone(),
            resource_version: workload.meta().resource_version.clone(),
        }),
        ..DeleteParams::default()
    };
    let name = workload.meta().name.clone().unwrap_or_default();
    let namespace = workload.meta().namespace.clone().unwrap_or_default();
    let span = write_span("delete", &K::kind(&()), &namespace, &name);
    traced_write(span, api.delete(&name, &params)).await?;
    Ok(())
}

/// What one reconcile works on: the stored workload, its Server and the
/// ServerConfigs that apply, all from the caches.
struct Target {
    ns: String,
    key: String,
    workload: Value,
    server: Server,
    /// Its ServerConfig and the controller namespace's, from the caches.
    found: Found,
}

impl Target {
    /// `None` when the workload is not one the sync loop looks after (the
    /// controller namespace's, not owned by a Server, Server not cached).
    async fn gather<K: Workload>(ctx: &Ctx, obj: &K) -> Option<Target> {
        let ns = obj.meta().namespace.clone().unwrap_or_default();
        let name = obj.meta().name.clone().unwrap_or_default();
        let settings = &ctx.cfg.settings;
        if ns == settings.controller_namespace {
            return None;
        }
        let workload = serde_json::to_value(obj).ok()?;
        let server_name = controller_server_owner(&workload)?;
        let found = Lookups::new(
            &ctx.caches,
            &settings.controller_namespace,
            Misses::CacheOnly,
        )
        .for_server(&ns, &server_name)
        .await;
        Some(Target {
            key: format!("{ns}/{name}"),
            ns,
            workload,
            server: found.server()?.clone(),
            found,
        })
    }

    fn config(&self) -> Option<&ServerConfig> {
        self.found.config()
    }

    /// Notes this replica's write of the workload (its new resourceVersion,
    /// `None` once deleted) so a reconcile from the store's older copy waits.
    fn wrote(&self, ctx: &Ctx, to: Option<&str>) {
        let from = self
            .workload
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str);
        ctx.own_writes.wrote(&self.key, from, to, Instant::now());
    }

    /// What the sync loop should do with `workload` (the stored one, or one
    /// read back after a write).
    fn action(&self, kind: WorkloadKind, workload: &Value, settings: &Settings) -> WorkloadAction {
        workload_action(
            kind,
            workload,
            &self.server,
            self.config(),
            self.found.controller_config(),
            settings,
        )
    }

    /// How the stored pod template differs from the desired one, for
    /// messages.
    fn differences(&self, workload: &Value) -> String {
        self.config()
            .map(|c| differences(workload, &desired(&self.server, c)).join("; "))
            .unwrap_or_else(|| "no ServerConfig".into())
    }
}

/// One workload: nothing to do (then, once per hash, the
/// `InjectedServerConfig` Event), held, or re-admitted.
async fn reconcile_workload<K>(
    obj: Arc<K>,
    ctx: Arc<Ctx>,
    kind: WorkloadKind,
    span: Span,
) -> Result<Action, SyncError>
where
    K: Workload,
{
    let result = reconcile_steps(obj, ctx, kind, &span).await;
    span.record("sync.result", if result.is_ok() { "ok" } else { "error" });
    result
}

/// [`reconcile_workload`]'s steps: gather, decide, act.
async fn reconcile_steps<K>(
    obj: Arc<K>,
    ctx: Arc<Ctx>,
    kind: WorkloadKind,
    span: &Span,
) -> Result<Action, SyncError>
where
    K: Workload,
{
    let requeue = Action::requeue(ctx.cfg.heal_interval);
    if !ctx.caches.is_ready() {
        span.record("sync.action", "wait_for_caches");
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    if ctx.own_writes.before_own_write(
        &object_key(obj.as_ref()),
        obj.meta().resource_version.as_deref(),
        Instant::now(),
    ) {
        // the store has not shown this replica's last write of it yet: its
        // event triggers the next reconcile, RECHECK in case it never comes
        span.record("sync.action", "deferred");
        ctx.metrics.sync_action(SyncAction::Deferred);
        return Ok(Action::requeue(own_writes::RECHECK));
    }
    let Some(target) = Target::gather(&ctx, obj.as_ref()).await else {
        span.record("sync.action", "not_ours");
        return Ok(requeue);
    };
    let action = target.action(kind, &target.workload, &ctx.cfg.settings);
    span.record("sync.action", action_name(&action));
    match action {
        WorkloadAction::Nothing => {
            report_injected(&ctx, &target).await;
            ctx.forget_failures(&target.key);
            Ok(requeue)
        }
        WorkloadAction::Held => {
            ctx.metrics.sync_action(SyncAction::Held);
            Ok(requeue)
        }
        WorkloadAction::Rollout { hash } => {
            readmit(&ctx, obj.as_ref(), &target, kind, Readmit::Rollout, &hash).await?;
            Ok(requeue)
        }
        WorkloadAction::Heal { hash } => {
            readmit(&ctx, obj.as_ref(), &target, kind, Readmit::Heal, &hash).await?;
            Ok(requeue)
        }
    }
}

/// The name of a workload action on the reconcile span.
fn action_name(action: &WorkloadAction) -> &'static str {
    match action {
        WorkloadAction::Nothing => "nothing",
        WorkloadAction::Held => "held",
        WorkloadAction::Rollout { .. } => "rollout",
        WorkloadAction::Heal { .. } => "heal",
    }
}

/// `InjectedServerConfig` once per hash, and only for a stored workload
/// whose template is what the webhook produces (read from the watch, not
/// inferred from the hash annotation, which the sync loop itself writes).
async fn report_injected(ctx: &Ctx, target: &Target) {
    let Some(h) = target
        .workload
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(HASH_ANNOTATION))
        .and_then(Value::as_str)
    else {
        return;
    };
    let new = ctx
        .seen_hash
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(target.key.clone(), h.to_string())
        .as_deref()
        != Some(h);
    if new {
        let note = format!(
            "pod template built from ServerConfig {}/{} (hash {h})",
            target.ns, target.server.server_config
        );
        ctx.event_to_server(
            &target.server,
            EventType::Normal,
            "InjectedServerConfig",
            note,
        )
        .await;
    }
}

/// Why a workload is re-admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Readmit {
    Rollout,
    Heal,
}

/// Re-admits the workload (a patch of the hash annotation makes the API
/// server call the webhook), reads the stored object back, and only when
/// it is what the webhook produces counts and reports success. A
/// StatefulSet healed whose claim templates are not the ServerConfig's is
/// re-admitted as a dry run (proving the webhook reachable) and then
/// deleted for the controller to create again.
async fn readmit<K: Workload>(
    ctx: &Ctx,
    obj: &K,
    target: &Target,
    kind: WorkloadKind,
    why: Readmit,
    hash: &str,
) -> Result<(), SyncError> {
    let recreate_it = why == Readmit::Heal
        && target
            .config()
            .is_some_and(|c| claim_templates_differ(kind, &target.workload, &target.server, c));
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &target.ns);
    let result = patch_hash(ctx, &api, target, kind, hash, recreate_it).await;
    let result = match result {
        Ok(()) if recreate_it => recreate(&api, obj).await.map(|()| {
            target.wrote(ctx, None);
            SyncAction::Recreate
        }),
        Ok(()) => Ok(match why {
            Readmit::Rollout => SyncAction::Rollout,
            Readmit::Heal => SyncAction::Heal,
        }),
        Err(e) => Err(e),
    };
    match result {
        Ok(done) => {
            report_readmitted::<K>(ctx, target, done, hash).await;
            Ok(())
        }
        Err(SyncError::NotApplied(what)) => {
            report_not_applied::<K>(ctx, target, hash, &what).await;
            Err(SyncError::NotApplied(what))
        }
        Err(e) => {
            ctx.event_to_server(
                &target.server,
                EventType::Warning,
                "SyncFailed",
                format!("could not re-admit {} {}: {e}", K::kind(&()), target.key),
            )
            .await;
            Err(e)
        }
    }
}

/// A re-admission read back fixed: counted, logged, and the Event.
async fn report_readmitted<K: Workload>(ctx: &Ctx, target: &Target, done: SyncAction, hash: &str) {
    ctx.metrics.sync_action(done);
    ctx.forget_failures(&target.key);
    tracing::info!(workload = %target.key, action = ?done, hash = %hash, "re-admitted workload, read back fixed");
    let (reason, note) = success_note::<K>(done, target, hash);
    ctx.event_to_server(&target.server, EventType::Normal, reason, note)
        .await;
}

/// A re-admission read back not fixed: counted and logged each time, the
/// `WebhookNotApplied` Warning once per hash.
async fn report_not_applied<K: Workload>(ctx: &Ctx, target: &Target, hash: &str, what: &str) {
    ctx.metrics.sync_action(SyncAction::NotApplied);
    let first = ctx
        .not_applied
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(target.key.clone(), hash.to_string())
        .as_deref()
        != Some(hash);
    tracing::warn!(workload = %target.key, hash = %hash, first, "re-admitted, read back not fixed: the webhook did not apply");
    if first {
        ctx.event_to_server(&target.server, EventType::Warning, "WebhookNotApplied", format!(
            "re-admitted {} {}, but the stored pod template is still not what ServerConfig {}/{} gives ({what}): is the webhook registered and reachable?",
            K::kind(&()), target.key, target.ns, target.server.server_config)).await;
    }
}

/// Patches the hash annotation (as a dry run when `dry_run`) and checks
/// the object the API server answers with: Err(NotApplied) unless the
/// webhook rewrote it.
async fn patch_hash<K: Workload>(
    ctx: &Ctx,
    api: &Api<K>,
    target: &Target,
    kind: WorkloadKind,
    hash: &str,
    dry_run: bool,
) -> Result<(), SyncError> {
    let name = target.key.rsplit('/').next().unwrap_or_default();
    let patch = json!({"metadata": {"annotations": {HASH_ANNOTATION: hash}}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        dry_run,
        ..PatchParams::default()
    };
    let span = write_span("patch", &K::kind(&()), &target.ns, name);
    span.record("sync.dry_run", dry_run);
    let stored = traced_write(span, api.patch(name, &params, &Patch::Merge(&patch))).await?;
    if !dry_run {
        target.wrote(ctx, stored.meta().resource_version.as_deref());
    }
    let stored = serde_json::to_value(&stored).map_err(kube::Error::SerdeError)?;
    match target.action(kind, &stored, &ctx.cfg.settings) {
        WorkloadAction::Nothing | WorkloadAction::Held => Ok(()),
        _ => Err(SyncError::NotApplied(target.differences(&stored))),
    }
}

/// The Event for a re-admission that was read back fixed.
fn success_note<K: Workload>(
    done: SyncAction,
    target: &Target,
    hash: &str,
) -> (&'static str, String) {
    let (kind, key, ns, sc) = (
        K::kind(&()),
        &target.key,
        &target.ns,
        &target.server.server_config,
    );
    match done {
        SyncAction::Recreate => ("Recreated", format!(
            "deleted {kind} {key} for the controller to create again: it was admitted without the webhook and lacks the volume claim templates of ServerConfig {ns}/{sc}, which cannot change on update")),
        SyncAction::Heal => ("Healed", format!("re-admitted {kind} {key}; it now uses ServerConfig {ns}/{sc} (hash {hash})")),
        _ => ("RolledOut", format!("re-admitted {kind} {key}; it now uses ServerConfig {ns}/{sc} (hash {hash})")),
    }
}
