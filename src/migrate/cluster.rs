//! The I/O of `migrate`: reads the namespaces, the controller Deployment and
//! the objects, carries out a [`plan::Plan`] or a [`rollback::RollbackPlan`],
//! keeps the rollback file current, and runs the verification (`wait`).

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
    Preconditions,
};
use kube::Client;
use serde_json::Value;

use super::plan::{self, describe, Kind, PlanInput, API_VERSION};
use super::rollback::{self, key, Key, Replaced, RollbackFile, Step};
use super::wait::wait_verified;
use super::{MigrateError, MoveConfig, RollbackConfig};
use crate::seldon_controller::{read_deployment, ControllerWatch};

/// Field manager of every write.
const FIELD_MANAGER: &str = "serverconfig-webhook";

pub(super) fn failed(what: impl std::fmt::Display) -> MigrateError {
    MigrateError::Failed(what.to_string())
}

fn resource(kind: Kind) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("mlops.seldon.io", "v1alpha1", kind.as_str()),
        kind.plural(),
    )
}

fn api(client: &Client, kind: Kind, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &resource(kind))
}

/// An object as JSON with its `apiVersion` and `kind` (list items may lack them).
fn to_value(kind: Kind, o: &DynamicObject) -> Result<Value, MigrateError> {
    let mut v = serde_json::to_value(o).map_err(failed)?;
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), API_VERSION.into());
        m.insert("kind".into(), kind.as_str().into());
    }
    Ok(v)
}

fn to_object(v: &Value) -> Result<DynamicObject, MigrateError> {
    serde_json::from_value(v.clone()).map_err(|e| failed(format!("{}: {e}", describe(v))))
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

async fn list(
    client: &Client,
    kind: Kind,
    ns: &str,
    selector: Option<&str>,
) -> Result<Vec<Value>, MigrateError> {
    let mut lp = ListParams::default();
    if let Some(s) = selector {
        lp = lp.labels(s);
    }
    match api(client, kind, ns).list(&lp).await {
        Ok(l) => l.items.iter().map(|o| to_value(kind, o)).collect(),
        Err(e) if is_status(&e, 400) && selector.is_some() => Err(MigrateError::Usage(format!(
            "--selector {:?} is not a valid label selector: {e}",
            selector.unwrap_or_default()
        ))),
        Err(e) if is_status(&e, 404) => Err(failed(format!(
            "{} are not served in {ns} (are the Seldon CRDs installed?): {e}",
            kind.plural()
        ))),
        Err(e) => Err(failed(format!(
            "cannot list {} in {ns}: {e}",
            kind.plural()
        ))),
    }
}

pub(super) async fn get(client: &Client, k: &Key) -> Result<Option<Value>, MigrateError> {
    let (kind, ns, name) = k;
    match api(client, *kind, ns).get_opt(name).await {
        Ok(Some(o)) => to_value(*kind, &o).map(Some),
        Ok(None) => Ok(None),
        Err(e) => Err(failed(format!("cannot read {kind} {ns}/{name}: {e}"))),
    }
}

async fn namespace_exists(client: &Client, ns: &str) -> Result<bool, MigrateError> {
    let api: Api<Namespace> = Api::all(client.clone());
    api.get_opt(ns)
        .await
        .map(|n| n.is_some())
        .map_err(|e| failed(format!("cannot read namespace {ns}: {e}")))
}

/// Refusal sentence when the controller does not watch `ns`.
async fn watch_refusal(client: &Client, cfg: &MoveConfig) -> Result<Option<String>, MigrateError> {
    let (ctl_ns, ctl) = (&cfg.controller_namespace, &cfg.controller_deployment);
    let dep = read_deployment(client, ctl_ns, ctl).await.map_err(|e| {
        failed(format!(
            "cannot read the Seldon controller Deployment {ctl_ns}/{ctl}: {e}"
        ))
    })?;
    let Some(dep) = dep else {
        return Ok(Some(format!(
            "cannot tell whether the Seldon controller watches {}: Deployment {ctl_ns}/{ctl} not found (pass --controller-namespace/--controller-deployment)",
            cfg.to
        )));
    };
    let Some(watch) = ControllerWatch::from_deployment(&dep) else {
        return Ok(Some(format!(
            "cannot tell whether the Seldon controller watches {}: Deployment {ctl_ns}/{ctl} has no container",
            cfg.to
        )));
    };
    Ok((!watch.watches(&cfg.to)).then(|| {
        format!(
            "refusing to move into {}: the Seldon controller ({ctl_ns}/{ctl}) does not watch it ({})",
            cfg.to,
            watch.describe()
        )
    }))
}

/// Writes the rollback file (via a temporary file and a rename).
fn save(path: &Path, file: &RollbackFile) -> Result<(), MigrateError> {
    let text = file
        .to_yaml()
        .map_err(|e| failed(format!("cannot encode the rollback file: {e}")))?;
    let tmp = path.with_extension("yaml.partial");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| {
            failed(format!(
                "cannot write the rollback file {}: {e}",
                path.display()
            ))
        })
}

/// Carries out a move (see the module docs); prints the plan on stdout and
/// progress on stderr.
pub async fn run_move(client: Client, cfg: &MoveConfig) -> Result<(), MigrateError> {
    super::validate(cfg)?;
    for ns in [&cfg.from, &cfg.to] {
        if !namespace_exists(&client, ns).await? {
            return Err(MigrateError::Refused(format!(
                "namespace {ns} does not exist"
            )));
        }
    }
    let kinds: Vec<Kind> = if cfg.kinds.is_empty() {
        Kind::ALL.to_vec()
    } else {
        cfg.kinds.clone()
    };
    let mut input = PlanInput {
        from: cfg.from.clone(),
        to: cfg.to.clone(),
        force: cfg.force,
        delete_source: cfg.delete_source,
        controller_namespace: cfg.controller_namespace.clone(),
        ..PlanInput::default()
    };
    for kind in &kinds {
        input
            .sources
            .extend(list(&client, *kind, &cfg.from, cfg.selector.as_deref()).await?);
    }
    for kind in Kind::ALL {
        input
            .targets
            .extend(list(&client, kind, &cfg.to, None).await?);
    }
    if cfg.delete_source {
        for kind in [Kind::Server, Kind::Model] {
            input
                .source_all
                .extend(list(&client, kind, &cfg.from, None).await?);
        }
    }
    let mut plan = plan::plan(&input);
    if let Some(r) = watch_refusal(&client, cfg).await? {
        plan.refusals.insert(0, r);
    }
    print!("{}", plan.table());
    if cfg.dry_run {
        print!("{}", plan.diffs());
        return match plan.refusals.first() {
            Some(r) => Err(MigrateError::Refused(format!("dry run: {r}"))),
            None => {
                println!("dry run: nothing written");
                Ok(())
            }
        };
    }
    if let Some(r) = plan.refusals.first() {
        return Err(MigrateError::Refused(format!(
            "{r}; nothing written{}",
            if plan.refusals.len() > 1 {
                format!(" ({} refusals, listed above)", plan.refusals.len())
            } else {
                String::new()
            }
        )));
    }
    if plan.items.is_empty() {
        println!("nothing selected in {}: nothing written", cfg.from);
        return Ok(());
    }

    let path = &cfg.rollback_file;
    let mut record = RollbackFile::new(&cfg.from, &cfg.to);
    save(path, &record)?;
    eprintln!("rollback file: {}", path.display());
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    let undo_hint = format!(
        "the rollback file {} records what was written (migrate --rollback {})",
        path.display(),
        path.display()
    );
    for item in &plan.items {
        let a = api(&client, item.kind, &cfg.to);
        let what = format!("{} {}/{}", item.kind, cfg.to, item.name);
        match item.action {
            plan::Action::Create => {
                let created = a
                    .create(&pp, &to_object(&item.desired)?)
                    .await
                    .map_err(|e| failed(format!("cannot create {what}: {e}; {undo_hint}")))?;
                record.created.push(to_value(item.kind, &created)?);
                eprintln!("created {what}");
            }
            plan::Action::ReplacePlaceholder | plan::Action::Overwrite => {
                let current = item.existing.clone().unwrap_or(Value::Null);
                match replace_exact(&client, &pp, &current, &item.desired).await {
                    Ok(Written::Replaced { before, after }) => {
                        record.replaced.push(Replaced { before, after });
                        eprintln!("replaced {what}");
                    }
                    Ok(Written::Created(after)) => {
                        record.created.push(after);
                        eprintln!("created {what} (the object it replaced went meanwhile)");
                    }
                    Err(e) => return Err(failed(format!("{e}; {undo_hint}"))),
                }
            }
            plan::Action::Skip => eprintln!("skipped {what} (identical)"),
            plan::Action::Refuse => unreachable_refusal()?,
        }
        save(path, &record)?;
    }

    let present: Vec<Key> = plan
        .items
        .iter()
        .map(|i| (i.kind, cfg.to.clone(), i.name.clone()))
        .collect();
    if let Err(failing) = wait_verified(&client, &present, &[], cfg.timeout).await {
        return Err(failed(format!(
            "verification failed within {:?} ({failing}); the sources are kept; {undo_hint}",
            cfg.timeout
        )));
    }

    if cfg.delete_source {
        for item in plan.items.iter().rev() {
            let k = (item.kind, cfg.from.clone(), item.name.clone());
            let Some(current) = get(&client, &k).await? else {
                eprintln!(
                    "source {} {}/{} is gone already",
                    item.kind, cfg.from, item.name
                );
                continue;
            };
            record.deleted.push(current.clone());
            save(path, &record)?;
            delete_exact(&client, &current)
                .await
                .map_err(|e| failed(format!("{e}; {undo_hint}")))?;
            eprintln!("deleted source {}", describe(&current));
        }
    }
    println!(
        "moved {} object(s) from {} to {}{}; verified; undo with: serverconfig-webhook migrate --rollback {}",
        plan.items.len(),
        cfg.from,
        cfg.to,
        if cfg.delete_source { " (sources deleted)" } else { "" },
        path.display()
    );
    Ok(())
}

/// A refused item never reaches the write loop (refusals return earlier).
fn unreachable_refusal() -> Result<(), MigrateError> {
    Err(failed(
        "internal error: a refused item was about to be written",
    ))
}

/// Deletes an object only if it is still exactly `current` (uid and
/// resourceVersion preconditions); gone already is fine.
async fn delete_exact(client: &Client, current: &Value) -> Result<(), String> {
    let Some((kind, ns, name)) = key(current) else {
        return Err(format!("{} is not a moved kind", describe(current)));
    };
    let field = |p: &str| {
        current
            .pointer(p)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: field("/metadata/uid"),
            resource_version: field("/metadata/resourceVersion"),
        }),
        ..DeleteParams::default()
    };
    match api(client, kind, &ns).delete(&name, &dp).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(e) if is_status(&e, 409) => Err(format!(
            "cannot delete {}: it changed meanwhile ({e})",
            describe(current)
        )),
        Err(e) => Err(format!("cannot delete {}: {e}", describe(current))),
    }
}

/// Undoes a move recorded in a rollback file.
pub async fn run_rollback(
    client: Client,
    cfg: &RollbackConfig,
    file: &RollbackFile,
) -> Result<(), MigrateError> {
    let mut current = BTreeMap::new();
    for k in file.keys() {
        if let Some(v) = get(&client, &k).await? {
            current.insert(k, v);
        }
    }
    let plan = rollback::plan_rollback(file, &current, cfg.force);
    println!(
        "rollback of migrate {} -> {} ({})",
        file.from,
        file.to,
        cfg.file.display()
    );
    for s in &plan.steps {
        println!("  {}", s.describe());
    }
    for n in &plan.notes {
        println!("  note: {n}");
    }
    for r in &plan.refusals {
        println!("refused: {r}");
    }
    if let Some(r) = plan.refusals.first() {
        return Err(MigrateError::Refused(format!("{r}; nothing written")));
    }
    if cfg.dry_run {
        println!("dry run: nothing written");
        return Ok(());
    }
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    for step in &plan.steps {
        match step {
            Step::Create(o) => create_or_fail(&client, &pp, o).await?,
            Step::Replace { current, with } => {
                replace_exact(&client, &pp, current, with)
                    .await
                    .map_err(failed)?;
            }
            Step::Delete { current } => delete_exact(&client, current).await.map_err(failed)?,
        }
        eprintln!("{}", step.describe());
    }
    let present: Vec<Key> = file.deleted.iter().filter_map(key).collect();
    let gone: Vec<Key> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Delete { current } => key(current),
            _ => None,
        })
        .collect();
    if let Err(failing) = wait_verified(&client, &present, &gone, cfg.timeout).await {
        return Err(failed(format!(
            "rolled back, but verification failed within {:?} ({failing})",
            cfg.timeout
        )));
    }
    println!("rolled back: {} write(s); verified", plan.steps.len());
    Ok(())
}

/// What [`replace_exact`] wrote.
enum Written {
    /// `before` (the version replaced) became `after`.
    Replaced { before: Value, after: Value },
    /// The object had gone meanwhile (e.g. a placeholder the sync loop deleted): created.
    Created(Value),
}

/// Replaces `current` with `with`, `current`'s resourceVersion as the
/// precondition. A placeholder the sync loop changed meanwhile (409: it
/// rewrites one of an earlier release's shape) is re-read and replaced once
/// more if it is still a placeholder; an object gone meanwhile (404) is created.
async fn replace_exact(
    client: &Client,
    pp: &PostParams,
    current: &Value,
    with: &Value,
) -> Result<Written, String> {
    let Some((kind, ns, name)) = key(with) else {
        return Err(format!("{} is not a moved kind", describe(with)));
    };
    let a = api(client, kind, &ns);
    let mut current = current.clone();
    for attempt in 0..2 {
        let mut obj = with.clone();
        if let (Some(rv), Some(m)) = (
            current.pointer("/metadata/resourceVersion").cloned(),
            obj.get_mut("metadata").and_then(Value::as_object_mut),
        ) {
            m.insert("resourceVersion".into(), rv);
        }
        let obj = to_object(&obj).map_err(|e| e.to_string())?;
        let placeholder = plan::is_placeholder(&current);
        match a.replace(&name, pp, &obj).await {
            Ok(after) => {
                return Ok(Written::Replaced {
                    before: current,
                    after: to_value(kind, &after).map_err(|e| e.to_string())?,
                })
            }
            Err(e) if is_status(&e, 404) => {
                let created = a
                    .create(pp, &to_object(with).map_err(|e| e.to_string())?)
                    .await
                    .map_err(|e| format!("cannot create {}: {e}", describe(with)))?;
                return Ok(Written::Created(
                    to_value(kind, &created).map_err(|e| e.to_string())?,
                ));
            }
            Err(e) if is_status(&e, 409) && placeholder && attempt == 0 => {
                match get(client, &(kind, ns.clone(), name.clone()))
                    .await
                    .map_err(|e| e.to_string())?
                {
                    Some(now) if plan::is_placeholder(&now) => current = now,
                    _ => {
                        return Err(format!(
                            "cannot replace {}: it changed meanwhile ({e})",
                            describe(with)
                        ))
                    }
                }
            }
            Err(e) => return Err(format!("cannot replace {}: {e}", describe(with))),
        }
    }
    Err(format!(
        "cannot replace {}: it kept changing",
        describe(with)
    ))
}

async fn create_or_fail(client: &Client, pp: &PostParams, o: &Value) -> Result<(), MigrateError> {
    let Some((kind, ns, _)) = key(o) else {
        return Err(failed(format!("{} is not a moved kind", describe(o))));
    };
    api(client, kind, &ns)
        .create(pp, &to_object(o)?)
        .await
        .map(|_| ())
        .map_err(|e| failed(format!("cannot create {}: {e}", describe(o))))
}
