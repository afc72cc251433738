//! The I/O of `migrate`: reads the namespaces, the controller Deployment and
//! the objects, carries out a [`plan::Plan`] or a [`rollback::RollbackPlan`],
//! keeps the rollback file current (through `journal`), and runs the verification (`wait`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::Client;
use serde_json::Value;

use super::api::{api, get, is_status, to_object, to_value};
use super::journal::Journal;
use super::plan::{self, describe, Kind, Plan, PlanInput};
use super::rollback::{self, key, Key, RollbackFile, RollbackPlan, Step};
use super::wait::wait_verified;
use super::{MigrateError, MoveConfig, RollbackConfig};
use crate::seldon_controller::{read_deployment, ControllerWatch};

/// Field manager of every write.
const FIELD_MANAGER: &str = "serverconfig-webhook";

/// The parameters of every create and replace.
fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    }
}

/// Lists one kind in `ns`; a selector the API server rejects is bad input.
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
        Err(e) => Err(match selector {
            Some(s) if is_status(&e, 400) => MigrateError::BadSelector {
                selector: s.to_string(),
                source: e,
            },
            _ if is_status(&e, 404) => MigrateError::kube(
                format!(
                    "{} are not served in {ns} (are the Seldon CRDs installed?)",
                    kind.plural()
                ),
                e,
            ),
            _ => MigrateError::kube(format!("cannot list {} in {ns}", kind.plural()), e),
        }),
    }
}

async fn namespace_exists(client: &Client, ns: &str) -> Result<bool, MigrateError> {
    let api: Api<Namespace> = Api::all(client.clone());
    api.get_opt(ns)
        .await
        .map(|n| n.is_some())
        .map_err(|e| MigrateError::kube(format!("cannot read namespace {ns}"), e))
}

/// Refusal sentence when the controller does not watch `ns`.
async fn watch_refusal(client: &Client, cfg: &MoveConfig) -> Result<Option<String>, MigrateError> {
    let (ctl_ns, ctl) = (&cfg.controller_namespace, &cfg.controller_deployment);
    let dep = read_deployment(client, ctl_ns, ctl).await.map_err(|e| {
        MigrateError::kube(
            format!("cannot read the Seldon controller Deployment {ctl_ns}/{ctl}"),
            e,
        )
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

/// What [`print_plan`] leaves to do.
#[derive(PartialEq, Eq)]
enum Next {
    /// Carry the plan out.
    Write,
    /// Done: a dry run, or nothing selected.
    Done,
}

/// Carries out a move (see the module docs); prints the plan on stdout and
/// progress on stderr.
pub async fn run_move(client: Client, cfg: &MoveConfig) -> Result<(), MigrateError> {
    super::validate(cfg)?;
    check_namespaces(&client, cfg).await?;
    let plan = plan_move(&client, cfg).await?;
    if print_plan(cfg, &plan)? == Next::Done {
        return Ok(());
    }
    let mut record = Journal::start(&cfg.rollback_file, &cfg.from, &cfg.to)?;
    apply_plan(&client, cfg, &plan, &mut record).await?;
    verify_move(&client, cfg, &plan)
        .await
        .map_err(|e| record.after_writes(e))?;
    if cfg.delete_source {
        delete_sources(&client, cfg, &plan, &mut record).await?;
    }
    println!(
        "moved {} object(s) from {} to {}{}; verified; undo with: serverconfig-webhook migrate --rollback {}",
        plan.items.len(),
        cfg.from,
        cfg.to,
        if cfg.delete_source { " (sources deleted)" } else { "" },
        record.path().display()
    );
    Ok(())
}

/// Refuses a move from or into a namespace that does not exist.
async fn check_namespaces(client: &Client, cfg: &MoveConfig) -> Result<(), MigrateError> {
    for ns in [&cfg.from, &cfg.to] {
        if !namespace_exists(client, ns).await? {
            return Err(MigrateError::Refused(format!(
                "namespace {ns} does not exist"
            )));
        }
    }
    Ok(())
}

/// Reads what the plan needs: the selected sources, everything in the
/// target, and (for `--delete-source`) the Servers and Models left behind.
async fn read_plan_input(client: &Client, cfg: &MoveConfig) -> Result<PlanInput, MigrateError> {
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
            .extend(list(client, *kind, &cfg.from, cfg.selector.as_deref()).await?);
    }
    for kind in Kind::ALL {
        input
            .targets
            .extend(list(client, kind, &cfg.to, None).await?);
    }
    if cfg.delete_source {
        for kind in [Kind::Server, Kind::Model] {
            input
                .source_all
                .extend(list(client, kind, &cfg.from, None).await?);
        }
    }
    Ok(input)
}

/// Plans the move from the objects read, the controller's refusal (an
/// unwatched target) first.
async fn plan_move(client: &Client, cfg: &MoveConfig) -> Result<Plan, MigrateError> {
    let mut plan = plan::plan(&read_plan_input(client, cfg).await?);
    if let Some(r) = watch_refusal(client, cfg).await? {
        plan.refusals.insert(0, r);
    }
    Ok(plan)
}

/// Prints the plan's table (and on a dry run its diffs); refuses when the
/// plan has refusals; done when it is a dry run or selects nothing.
fn print_plan(cfg: &MoveConfig, plan: &Plan) -> Result<Next, MigrateError> {
    print!("{}", plan.table());
    if cfg.dry_run {
        print!("{}", plan.diffs());
        return match plan.refusals.first() {
            Some(r) => Err(MigrateError::Refused(format!("dry run: {r}"))),
            None => {
                println!("dry run: nothing written");
                Ok(Next::Done)
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
        return Ok(Next::Done);
    }
    Ok(Next::Write)
}

/// Writes the plan's items into the target in order, recording each write.
async fn apply_plan(
    client: &Client,
    cfg: &MoveConfig,
    plan: &Plan,
    record: &mut Journal,
) -> Result<(), MigrateError> {
    let pp = post_params();
    for item in &plan.items {
        apply_item(client, cfg, &pp, item, record).await?;
    }
    Ok(())
}

/// Creates, replaces or skips one item in the target, per its action.
async fn apply_item(
    client: &Client,
    cfg: &MoveConfig,
    pp: &PostParams,
    item: &plan::Item,
    record: &mut Journal,
) -> Result<(), MigrateError> {
    let what = format!("{} {}/{}", item.kind, cfg.to, item.name);
    match item.action {
        plan::Action::Create => {
            record.pending(&item.desired, None)?;
            let created = api(client, item.kind, &cfg.to)
                .create(pp, &to_object(&item.desired)?)
                .await
                .map_err(|e| {
                    record.after_writes(MigrateError::kube(format!("cannot create {what}"), e))
                })?;
            record.created(to_value(item.kind, &created)?)?;
            eprintln!("created {what}");
        }
        plan::Action::ReplacePlaceholder | plan::Action::Overwrite => {
            let current = item.existing.clone().unwrap_or(Value::Null);
            record.pending(&item.desired, Some(&current))?;
            match replace_exact(client, pp, &current, &item.desired)
                .await
                .map_err(|e| record.after_writes(e))?
            {
                Written::Replaced { before, after } => {
                    record.replaced(before, after)?;
                    eprintln!("replaced {what}");
                }
                Written::Created(after) => {
                    record.created(after)?;
                    eprintln!("created {what} (the object it replaced went meanwhile)");
                }
            }
        }
        plan::Action::Skip => eprintln!("skipped {what} (identical)"),
        // Refusals return before the first write.
        plan::Action::Refuse => {
            return Err(MigrateError::Internal(
                "a refused item was about to be written",
            ))
        }
    }
    Ok(())
}

/// Waits for every moved object to verify in the target.
async fn verify_move(client: &Client, cfg: &MoveConfig, plan: &Plan) -> Result<(), MigrateError> {
    let present: Vec<Key> = plan
        .items
        .iter()
        .map(|i| (i.kind, cfg.to.clone(), i.name.clone()))
        .collect();
    wait_verified(client, &present, &[], cfg.timeout)
        .await
        .map_err(|source| MigrateError::MoveNotVerified {
            timeout: cfg.timeout,
            source,
        })
}

/// Deletes the moved sources, last first, each recorded before its delete.
async fn delete_sources(
    client: &Client,
    cfg: &MoveConfig,
    plan: &Plan,
    record: &mut Journal,
) -> Result<(), MigrateError> {
    for item in plan.items.iter().rev() {
        let k = (item.kind, cfg.from.clone(), item.name.clone());
        let Some(current) = get(client, &k).await? else {
            eprintln!(
                "source {} {}/{} is gone already",
                item.kind, cfg.from, item.name
            );
            continue;
        };
        record.deleting(current.clone())?;
        delete_exact(client, &current)
            .await
            .map_err(|e| record.after_writes(e))?;
        eprintln!("deleted source {}", describe(&current));
    }
    Ok(())
}

/// Deletes an object only if it is still exactly `current` (uid and
/// resourceVersion preconditions); gone already is fine.
async fn delete_exact(client: &Client, current: &Value) -> Result<(), MigrateError> {
    let Some((kind, ns, name)) = key(current) else {
        return Err(MigrateError::NotMovedKind {
            object: describe(current),
        });
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
    let what = || format!("cannot delete {}", describe(current));
    match api(client, kind, &ns).delete(&name, &dp).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(source) if is_status(&source, 409) => Err(MigrateError::Changed {
            what: what(),
            source,
        }),
        Err(e) => Err(MigrateError::kube(what(), e)),
    }
}

/// Undoes a move recorded in a rollback file.
pub async fn run_rollback(
    client: Client,
    cfg: &RollbackConfig,
    file: &RollbackFile,
) -> Result<(), MigrateError> {
    let current = read_current(&client, file).await?;
    let plan = rollback::plan_rollback(file, &current, cfg.force);
    print_rollback_plan(cfg, file, &plan);
    if let Some(r) = plan.refusals.first() {
        return Err(MigrateError::Refused(format!("{r}; nothing written")));
    }
    if cfg.dry_run {
        println!("dry run: nothing written");
        return Ok(());
    }
    apply_rollback(&client, &plan).await?;
    verify_rollback(&client, cfg, file, &plan).await?;
    println!("rolled back: {} write(s); verified", plan.steps.len());
    Ok(())
}

/// Reads every object the rollback file names, as it is now.
async fn read_current(
    client: &Client,
    file: &RollbackFile,
) -> Result<BTreeMap<Key, Value>, MigrateError> {
    let mut current = BTreeMap::new();
    for k in file.keys() {
        if let Some(v) = get(client, &k).await? {
            current.insert(k, v);
        }
    }
    Ok(current)
}

/// Prints the undo's steps, notes and refusals on stdout.
fn print_rollback_plan(cfg: &RollbackConfig, file: &RollbackFile, plan: &RollbackPlan) {
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
}

/// Carries out the undo's steps in order.
async fn apply_rollback(client: &Client, plan: &RollbackPlan) -> Result<(), MigrateError> {
    let pp = post_params();
    for step in &plan.steps {
        match step {
            Step::Create(o) => create(client, &pp, o).await?,
            Step::Replace { current, with } => {
                replace_exact(client, &pp, current, with).await?;
            }
            Step::Delete { current } => delete_exact(client, current).await?,
        }
        eprintln!("{}", step.describe());
    }
    Ok(())
}

/// Waits for the restored sources to verify and the deleted copies to go.
async fn verify_rollback(
    client: &Client,
    cfg: &RollbackConfig,
    file: &RollbackFile,
    plan: &RollbackPlan,
) -> Result<(), MigrateError> {
    let present: Vec<Key> = file.deleted.iter().filter_map(key).collect();
    let gone: Vec<Key> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Delete { current } => key(current),
            _ => None,
        })
        .collect();
    wait_verified(client, &present, &gone, cfg.timeout)
        .await
        .map_err(|source| MigrateError::RollbackNotVerified {
            timeout: cfg.timeout,
            source,
        })
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
) -> Result<Written, MigrateError> {
    let Some((kind, ns, name)) = key(with) else {
        return Err(MigrateError::NotMovedKind {
            object: describe(with),
        });
    };
    let what = || format!("cannot replace {}", describe(with));
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
        let obj = to_object(&obj)?;
        let placeholder = plan::is_placeholder(&current);
        match a.replace(&name, pp, &obj).await {
            Ok(after) => {
                return Ok(Written::Replaced {
                    before: current,
                    after: to_value(kind, &after)?,
                })
            }
            Err(e) if is_status(&e, 404) => {
                let created = a.create(pp, &to_object(with)?).await.map_err(|e| {
                    MigrateError::kube(format!("cannot create {}", describe(with)), e)
                })?;
                return Ok(Written::Created(to_value(kind, &created)?));
            }
            Err(source) if is_status(&source, 409) && placeholder && attempt == 0 => {
                match get(client, &(kind, ns.clone(), name.clone())).await? {
                    Some(now) if plan::is_placeholder(&now) => current = now,
                    _ => {
                        return Err(MigrateError::Changed {
                            what: what(),
                            source,
                        })
                    }
                }
            }
            Err(e) => return Err(MigrateError::kube(what(), e)),
        }
    }
    Err(MigrateError::KeptChanging { what: what() })
}

/// Creates an object the undo restores.
async fn create(client: &Client, pp: &PostParams, o: &Value) -> Result<(), MigrateError> {
    let Some((kind, ns, _)) = key(o) else {
        return Err(MigrateError::NotMovedKind {
            object: describe(o),
        });
    };
    api(client, kind, &ns)
        .create(pp, &to_object(o)?)
        .await
        .map(|_| ())
        .map_err(|e| MigrateError::kube(format!("cannot create {}", describe(o)), e))
}
