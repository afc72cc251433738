//! The sync loop (`serverconfig-webhook sync`, or `serve --sync`): keeps
//! placeholders in the controller namespace, rolls out ServerConfig
//! changes, heals workloads admitted without the webhook. Only the holder
//! of a `coordination.k8s.io` Lease runs it; every write carries the field
//! manager `serverconfig-webhook` and is retried with backoff.

pub mod lease;
pub mod plan;

#[cfg(test)]
mod tests {
    #[test]
    fn event_notes_fit_the_api_limit() {
        let long = "é".repeat(2000);
        let t = super::truncate_note(long);
        assert!(t.len() <= 1024 && t.ends_with("..."));
        assert_eq!(super::truncate_note("short".into()), "short");
    }
}

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::cache::{server_config_resource, server_resource, Caches, Namespaces};
use crate::core::model::{Server, ServerConfig};
use crate::core::mutate::{controller_server_owner, Settings, WorkloadKind, HASH_ANNOTATION};
use crate::metrics::Metrics;
use plan::{plan_placeholders, workload_action, PlaceholderSpec, WorkloadAction};

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
    #[error("re-admitted, but the stored template is still not the webhook's: is the webhook registered and reachable?")]
    NotApplied,
}

struct Ctx {
    client: Client,
    caches: Arc<Caches>,
    cfg: SyncConfig,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    failures: Mutex<HashMap<String, u32>>,
    seen_hash: Mutex<HashMap<String, String>>,
}

impl Ctx {
    async fn event_to_server(&self, server: &Server, type_: EventType, reason: &str, note: String) {
        let reference = ObjectReference {
            api_version: Some("mlops.seldon.io/v1alpha1".into()),
            kind: Some("Server".into()),
            name: Some(server.meta.name.clone()),
            namespace: Some(server.meta.namespace.clone()),
            uid: (!server.meta.uid.is_empty()).then(|| server.meta.uid.clone()),
            ..ObjectReference::default()
        };
        self.publish(&reference, type_, reason, note).await;
    }

    async fn publish(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(truncate_note(note)),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, reference).await {
            tracing::warn!(error = %e, reason, "could not publish event");
        }
    }
}

/// Runs the election and, while leading, the sync loop; returns when
/// `stop` flips to true.
pub async fn run(
    client: Client,
    caches: Arc<Caches>,
    cfg: SyncConfig,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) {
    let mut leading = lease::elect(client.clone(), cfg.lease.clone(), stop.clone());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(cfg.lease.identity.clone()),
        },
    );
    let ctx = Arc::new(Ctx {
        client,
        caches,
        cfg,
        metrics,
        recorder,
        failures: Mutex::default(),
        seen_hash: Mutex::default(),
    });
    loop {
        if *stop.borrow() {
            return;
        }
        if leading.wait_for(|l| *l).await.is_err() {
            return; // election ended (shutdown)
        }
        ctx.metrics.leader.set(1);
        tracing::info!("leading: sync loop started");
        let mut lost = leading.clone();
        let mut stop2 = stop.clone();
        let until_lost = async move {
            tokio::select! {
                _ = lost.wait_for(|l| !*l) => {}
                _ = stop2.wait_for(|s| *s) => {}
            }
        };
        lead(ctx.clone(), until_lost).await;
        ctx.metrics.leader.set(0);
        tracing::info!("sync loop stopped (lease lost or shutdown)");
    }
}

/// Everything a leader runs, until `until` resolves.
async fn lead(ctx: Arc<Ctx>, until: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let (done_tx, done_rx) = watch::channel(false);
    let signal = || {
        let mut rx = done_rx.clone();
        async move {
            let _ = rx.wait_for(|d| *d).await;
        }
    };
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(placeholder_loop(ctx.clone(), signal())));
    let scopes: Vec<Option<String>> = match &ctx.cfg.namespaces {
        Namespaces::All => vec![None],
        Namespaces::List(l) => l.iter().cloned().map(Some).collect(),
    };
    for ns in scopes {
        tasks.push(tokio::spawn(workload_controller::<StatefulSet>(
            ctx.clone(),
            ns.clone(),
            WorkloadKind::StatefulSet,
            signal(),
        )));
        tasks.push(tokio::spawn(workload_controller::<Deployment>(
            ctx.clone(),
            ns,
            WorkloadKind::Deployment,
            signal(),
        )));
    }
    until.await;
    let _ = done_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
}

/// Re-plans placeholders whenever a cache changes (debounced) and every minute.
async fn placeholder_loop(ctx: Arc<Ctx>, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    let mut changes = ctx.caches.subscribe();
    let mut backoff = Duration::from_secs(1);
    loop {
        while !ctx.caches.is_ready() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = &mut stop => return,
            }
        }
        let wait = match sync_placeholders(&ctx).await {
            Ok(()) => {
                backoff = Duration::from_secs(1);
                Duration::from_secs(60)
            }
            Err(e) => {
                ctx.metrics.sync_action("error");
                tracing::warn!(error = %e, retry_in_s = backoff.as_secs(), "placeholder sync failed");
                let w = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(300));
                w
            }
        };
        tokio::select! {
            _ = changes.changed() => {
                // Debounce bursts (initial lists, many objects applied at once).
                tokio::time::sleep(Duration::from_millis(300)).await;
                changes.borrow_and_update();
            }
            _ = tokio::time::sleep(wait) => {}
            _ = &mut stop => return,
        }
    }
}

async fn sync_placeholders(ctx: &Ctx) -> Result<(), SyncError> {
    let ctl_ns = ctx.cfg.settings.controller_namespace.clone();
    let all = ctx.caches.all_server_configs();
    let parsed: Vec<&ServerConfig> = all
        .iter()
        .filter_map(|r| r.as_ref().as_ref().ok())
        .collect();
    let (controller, app): (Vec<&ServerConfig>, Vec<&ServerConfig>) =
        parsed.into_iter().partition(|c| c.meta.namespace == ctl_ns);
    let app: Vec<&ServerConfig> = app
        .into_iter()
        .filter(|c| ctx.cfg.namespaces.contains(&c.meta.namespace))
        .collect();
    let plan = plan_placeholders(
        &app,
        &controller,
        &ctl_ns,
        ctx.cfg.max_placeholders_per_namespace,
    );
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &ctl_ns, &server_config_resource());
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    let mut created = 0usize;
    let mut deleted = 0usize;
    for spec in &plan.create {
        let obj: DynamicObject =
            serde_json::from_value(spec.to_object(&ctl_ns)).map_err(kube::Error::SerdeError)?;
        match api.create(&pp, &obj).await {
            Ok(_) => {
                created += 1;
                ctx.metrics.sync_action("placeholder_create");
                tracing::info!(name = %spec.name, used_by = ?spec.used_by, "placeholder created");
                notify_users(ctx, spec, "PlaceholderCreated", format!(
                    "created placeholder ServerConfig {ctl_ns}/{} (no images) so the stock controller builds this Server; the webhook applies this namespace's ServerConfig", spec.name)).await;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {} // appeared meanwhile: next pass decides
            Err(e) => return Err(e.into()),
        }
    }
    for spec in &plan.update {
        let Some(existing) = controller.iter().find(|c| c.meta.name == spec.name) else {
            continue;
        };
        let mut obj = spec.to_object(&ctl_ns);
        // resourceVersion makes the apply conditional: never clobber an
        // object that changed since we read it (it may no longer be ours).
        obj["metadata"]["resourceVersion"] = json!(existing.meta.resource_version);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match api.patch(&spec.name, &params, &Patch::Apply(&obj)).await {
            Ok(_) => {
                ctx.metrics.sync_action("placeholder_update");
                tracing::info!(name = %spec.name, used_by = ?spec.used_by, "placeholder updated");
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for name in &plan.delete {
        let Some(existing) = controller.iter().find(|c| &c.meta.name == name) else {
            continue;
        };
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: Some(existing.meta.resource_version.clone()),
                uid: (!existing.meta.uid.is_empty()).then(|| existing.meta.uid.clone()),
            }),
            ..DeleteParams::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => {
                deleted += 1;
                ctx.metrics.sync_action("placeholder_delete");
                tracing::info!(name = %name, "placeholder deleted: no namespace uses the name");
            }
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for (ns, names) in &plan.capped {
        ctx.metrics.sync_action("placeholder_capped");
        for name in names {
            let reference = ObjectReference {
                api_version: Some("mlops.seldon.io/v1alpha1".into()),
                kind: Some("ServerConfig".into()),
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..ObjectReference::default()
            };
            ctx.publish(&reference, EventType::Warning, "PlaceholderCapReached", format!(
                "namespace {ns} already causes {} placeholders in {ctl_ns} (--max-placeholders-per-namespace); no placeholder for {name:?}",
                ctx.cfg.max_placeholders_per_namespace)).await;
        }
    }
    let kept = (controller.iter().filter(|c| c.is_placeholder()).count() + created)
        .saturating_sub(deleted);
    ctx.metrics
        .placeholders
        .set(i64::try_from(kept).unwrap_or(i64::MAX));
    Ok(())
}

async fn notify_users(ctx: &Ctx, spec: &PlaceholderSpec, reason: &str, note: String) {
    for ns in &spec.used_by {
        for server in ctx.caches.servers_using(ns, &spec.name) {
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
/// by the workload itself, by Servers (same name) and by ServerConfigs (the
/// workloads whose Server uses it), and every `heal_interval`.
async fn workload_controller<K>(
    ctx: Arc<Ctx>,
    ns: Option<String>,
    kind: WorkloadKind,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) where
    K: Workload,
{
    let api: Api<K> = match &ns {
        Some(n) => Api::namespaced(ctx.client.clone(), n),
        None => Api::all(ctx.client.clone()),
    };
    let (sc_api, server_api): (Api<DynamicObject>, Api<DynamicObject>) = match &ns {
        Some(n) => (
            Api::namespaced_with(ctx.client.clone(), n, &server_config_resource()),
            Api::namespaced_with(ctx.client.clone(), n, &server_resource()),
        ),
        None => (
            Api::all_with(ctx.client.clone(), &server_config_resource()),
            Api::all_with(ctx.client.clone(), &server_resource()),
        ),
    };
    let caches = ctx.caches.clone();
    let sc_mapper = move |sc: DynamicObject| {
        let ns = sc.namespace().unwrap_or_default();
        caches
            .servers_using(&ns, &sc.name_any())
            .into_iter()
            .map(|s| ObjectRef::<K>::new(&s.meta.name).within(&ns))
            .collect::<Vec<_>>()
    };
    let server_mapper = |s: DynamicObject| {
        let ns = s.namespace().unwrap_or_default();
        Some(ObjectRef::<K>::new(&s.name_any()).within(&ns))
    };
    Controller::new(api, watcher::Config::default().labels(WORKLOAD_SELECTOR).any_semantic())
        .watches_with(sc_api, server_config_resource(), watcher::Config::default().any_semantic(), sc_mapper)
        .watches_with(server_api, server_resource(), watcher::Config::default().any_semantic(), server_mapper)
        .graceful_shutdown_on(stop)
        .run(
            move |obj: Arc<K>, ctx: Arc<Ctx>| reconcile_workload(obj, ctx, kind),
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
                ctx.metrics.sync_action("error");
                Action::requeue(wait)
            },
            ctx.clone(),
        )
        .for_each(|_| futures::future::ready(()))
        .await;
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
    api.delete(&name, &params).await?;
    Ok(())
}

async fn reconcile_workload<K>(
    obj: Arc<K>,
    ctx: Arc<Ctx>,
    kind: WorkloadKind,
) -> Result<Action, SyncError>
where
    K: Workload,
{
    let requeue = Action::requeue(ctx.cfg.heal_interval);
    let ns = obj.meta().namespace.clone().unwrap_or_default();
    let name = obj.meta().name.clone().unwrap_or_default();
    if ns == ctx.cfg.settings.controller_namespace || !ctx.caches.is_ready() {
        return Ok(if ctx.caches.is_ready() {
            Action::await_change()
        } else {
            Action::requeue(Duration::from_secs(2))
        });
    }
    let workload: Value = match serde_json::to_value(obj.as_ref()) {
        Ok(v) => v,
        Err(_) => return Ok(requeue),
    };
    let Some(server_name) = controller_server_owner(&workload) else {
        return Ok(Action::await_change());
    };
    let Some(server) = ctx
        .caches
        .cached_server(&ns, &server_name)
        .and_then(|r| r.as_ref().as_ref().ok().cloned())
    else {
        return Ok(requeue);
    };
    let config = ctx.caches.cached_server_config(&ns, &server.server_config);
    let config = config.as_deref().and_then(|r| r.as_ref().ok());
    let controller_config = ctx.caches.cached_server_config(
        &ctx.cfg.settings.controller_namespace,
        &server.server_config,
    );
    let controller_config = controller_config.as_deref().and_then(|r| r.as_ref().ok());
    let key = format!("{ns}/{name}");

    // Report what the webhook applied, once per new hash.
    if let Some(h) = workload
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(HASH_ANNOTATION))
        .and_then(Value::as_str)
    {
        let new = {
            let mut seen = ctx
                .seen_hash
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            seen.insert(key.clone(), h.to_string()).as_deref() != Some(h)
        };
        if new {
            ctx.event_to_server(
                &server,
                EventType::Normal,
                "InjectedServerConfig",
                format!(
                    "pod template built from ServerConfig {ns}/{} (hash {h})",
                    server.server_config
                ),
            )
            .await;
        }
    }

    let action = workload_action(
        kind,
        &workload,
        &server,
        config,
        controller_config,
        &ctx.cfg.settings,
    );
    let (hash, reason, what) = match action {
        WorkloadAction::Nothing => {
            ctx.failures
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&key);
            return Ok(requeue);
        }
        WorkloadAction::Held => {
            ctx.metrics.sync_action("held");
            return Ok(requeue);
        }
        WorkloadAction::Rollout { hash } => (hash, "RolledOut", "rollout"),
        WorkloadAction::Heal { hash } => (hash, "Healed", "heal"),
    };
    // A StatefulSet admitted without the webhook whose claim templates are
    // not the ServerConfig's never gets a Pod once healed (they cannot
    // change on UPDATE): it is recreated instead. The re-admit below then
    // runs as a dry run, only to prove the webhook reachable, so a failed
    // delete is retried from the same state. A rollout of changed claim
    // templates is the team's call (the webhook warns on it).
    let recreate_it = what == "heal"
        && config.is_some_and(|c| plan::claim_templates_differ(kind, &workload, &server, c));
    // Any UPDATE re-admits the object; setting the hash annotation to the
    // desired value makes the request a real change and records intent.
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = json!({"metadata": {"annotations": {HASH_ANNOTATION: hash}}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        dry_run: recreate_it,
        ..PatchParams::default()
    };
    let result = api.patch(&name, &params, &Patch::Merge(&patch)).await;
    // Count it only if the webhook really rewrote the object: with the
    // webhook bypassed (unregistered, failurePolicy Ignore) the patch
    // succeeds but changes nothing but the annotation.
    let result = result.map_err(SyncError::from).and_then(|updated| {
        let now = serde_json::to_value(&updated).unwrap_or_default();
        match workload_action(
            kind,
            &now,
            &server,
            config,
            controller_config,
            &ctx.cfg.settings,
        ) {
            WorkloadAction::Nothing | WorkloadAction::Held => Ok(()),
            _ => Err(SyncError::NotApplied),
        }
    });
    let result = match result {
        Ok(()) if recreate_it => recreate(&api, obj.as_ref()).await.map(|()| "recreate"),
        Ok(()) => Ok(what),
        Err(e) => Err(e),
    };
    match result {
        Ok(what) => {
            let reason = if what == "recreate" {
                "Recreated"
            } else {
                reason
            };
            ctx.metrics.sync_action(what);
            ctx.failures
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&key);
            tracing::info!(workload = %key, action = what, hash = %hash, "re-admitted workload");
            let note = if what == "recreate" {
                format!(
                    "deleted {} {key} for the controller to create again: it was admitted without the webhook and lacks the volume claim templates of ServerConfig {ns}/{}, which cannot change on update",
                    K::kind(&()),
                    server.server_config
                )
            } else {
                format!(
                    "re-admitted {} {key} so it uses ServerConfig {ns}/{} (hash {hash})",
                    K::kind(&()),
                    server.server_config
                )
            };
            ctx.event_to_server(&server, EventType::Normal, reason, note)
                .await;
            Ok(requeue)
        }
        Err(e) => {
            ctx.event_to_server(
                &server,
                EventType::Warning,
                "SyncFailed",
                format!("could not re-admit {} {key}: {e}", K::kind(&())),
            )
            .await;
            Err(e)
        }
    }
}
