//! Pure planning of a move: which objects, in which order, what is written
//! (stripped of server-managed fields, only `metadata.namespace` changed),
//! what already exists in the target, what is refused, and the per-object
//! unified diff. No I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::core::model::ServerConfig;
use crate::core::placeholder::is_ours;

/// The `mlops.seldon.io/v1alpha1` kinds `migrate` moves, in dependency order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    ServerConfig,
    Server,
    Model,
    Experiment,
    Pipeline,
}

/// The Seldon API group and version of every kind.
pub const API_VERSION: &str = "mlops.seldon.io/v1alpha1";

impl Kind {
    /// Every kind, in the order objects are created.
    pub const ALL: [Kind; 5] = [
        Kind::ServerConfig,
        Kind::Server,
        Kind::Model,
        Kind::Experiment,
        Kind::Pipeline,
    ];

    /// The kind's name as in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ServerConfig => "ServerConfig",
            Kind::Server => "Server",
            Kind::Model => "Model",
            Kind::Experiment => "Experiment",
            Kind::Pipeline => "Pipeline",
        }
    }

    /// The resource (plural) name.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::ServerConfig => "serverconfigs",
            Kind::Server => "servers",
            Kind::Model => "models",
            Kind::Experiment => "experiments",
            Kind::Pipeline => "pipelines",
        }
    }

    /// The kind of an object from its `apiVersion` and `kind`.
    pub fn of(obj: &Value) -> Option<Kind> {
        let api = obj.get("apiVersion").and_then(Value::as_str)?;
        if api != API_VERSION {
            return None;
        }
        let kind = obj.get("kind").and_then(Value::as_str)?;
        Kind::ALL.into_iter().find(|k| k.as_str() == kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `--kinds` entry that names no kind `migrate` moves.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a kind migrate moves (serverconfigs, servers, models, experiments, pipelines)"
)]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;

    /// Singular or plural, any case: `Server`, `servers`, `serverconfig`.
    fn from_str(s: &str) -> Result<Kind, UnknownKind> {
        let l = s.trim().to_ascii_lowercase();
        Kind::ALL
            .into_iter()
            .find(|k| l == k.as_str().to_ascii_lowercase() || l == k.plural())
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}

/// Metadata fields the API server owns; never carried to the copy.
pub const SERVER_MANAGED_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "ownerReferences",
    "selfLink",
];

/// `kubectl apply`'s record of the last applied manifest.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Finalizers the Seldon controller adds (`seldon.*`); it adds them again
/// to the copy, and a copied one blocks deletion where no controller runs.
fn is_controller_finalizer(f: &str) -> bool {
    f.starts_with("seldon.") || f.contains("mlops.seldon.io")
}

fn name(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn namespace(obj: &Value) -> &str {
    obj.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The object without what the API server manages: the metadata fields in
/// [`SERVER_MANAGED_METADATA`], `status`, and the controller's finalizers.
/// Everything else (spec, labels, annotations, namespace) is kept.
pub fn strip(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(o) = out.as_object_mut() {
        o.remove("status");
    }
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in SERVER_MANAGED_METADATA {
            meta.remove(*f);
        }
        if let Some(fins) = meta.get_mut("finalizers").and_then(Value::as_array_mut) {
            fins.retain(|f| !f.as_str().is_some_and(is_controller_finalizer));
        }
        if meta
            .get("finalizers")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
        {
            meta.remove("finalizers");
        }
    }
    out
}

/// The object to write in namespace `to`: [`strip`], `metadata.namespace`
/// set, and the `kubectl apply` annotation's own `metadata.namespace`
/// rewritten the same way (kept so that the team's next `kubectl apply`
/// still prunes fields it removed; dropped when it is not JSON).
pub fn moved(obj: &Value, to: &str) -> Value {
    let mut out = strip(obj);
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("namespace".into(), Value::String(to.to_string()));
        if let Some(ann) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            if let Some(text) = ann.get(LAST_APPLIED).and_then(Value::as_str) {
                match serde_json::from_str::<Value>(text) {
                    Ok(mut applied) => {
                        if let Some(m) = applied
                            .get_mut("metadata")
                            .and_then(Value::as_object_mut)
                            .filter(|m| m.contains_key("namespace"))
                        {
                            m.insert("namespace".into(), Value::String(to.to_string()));
                        }
                        ann.insert(LAST_APPLIED.into(), Value::String(applied.to_string()));
                    }
                    Err(_) => {
                        ann.remove(LAST_APPLIED);
                    }
                }
            }
        }
    }
    out
}

/// Whether two objects hold the same content (everything [`strip`] keeps).
pub fn same_content(a: &Value, b: &Value) -> bool {
    strip(a) == strip(b)
}

/// Whether the object is a ServerConfig placeholder the sync loop still
/// owns (`core::placeholder`: its exact content, current or of an earlier
/// release): `migrate` replaces it without `--force`, since the real one is
/// what it stands for. A labelled ServerConfig somebody changed (adopted)
/// is theirs, and is not replaced without `--force`.
pub fn is_placeholder(obj: &Value) -> bool {
    Kind::of(obj) == Some(Kind::ServerConfig)
        && ServerConfig::from_value(obj).is_ok_and(|c| is_ours(&c))
}

/// What happens to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing of that name in the target: create it.
    Create,
    /// An identical object is already in the target: nothing to write.
    Skip,
    /// The target holds the sync loop's placeholder of that name: replace it.
    ReplacePlaceholder,
    /// The target holds a different object and `--force` was given: replace it.
    Overwrite,
    /// The target holds a different object: refused (no `--force`).
    Refuse,
}

impl Action {
    /// Word for the plan table.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Skip => "skip",
            Action::ReplacePlaceholder => "replace",
            Action::Overwrite => "overwrite",
            Action::Refuse => "REFUSED",
        }
    }

    /// Whether the target is written.
    pub fn writes(self) -> bool {
        matches!(
            self,
            Action::Create | Action::ReplacePlaceholder | Action::Overwrite
        )
    }
}

/// One object of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub kind: Kind,
    pub name: String,
    pub action: Action,
    /// The source as stored.
    pub source: Value,
    /// What is written in the target.
    pub desired: Value,
    /// The object of that name already in the target, as stored.
    pub existing: Option<Value>,
    /// One sentence for the table.
    pub detail: String,
}

impl Item {
    /// Unified diff of what changes: for a create, the source as stored
    /// against the object written (the namespace and the stripped fields);
    /// for an object already in the target, that object (stripped) against
    /// the one written. Empty when identical.
    pub fn diff(&self, from: &str, to: &str) -> String {
        let (old, old_label) = match &self.existing {
            Some(e) => (
                strip(e),
                format!("{to}/{}/{} (in target)", self.kind, self.name),
            ),
            None => (
                self.source.clone(),
                format!("{from}/{}/{} (source, as stored)", self.kind, self.name),
            ),
        };
        let new_label = format!(
            "{to}/{}/{} ({})",
            self.kind,
            self.name,
            self.action.as_str()
        );
        let old_text = serde_yaml_ng::to_string(&old).unwrap_or_default();
        let new_text = serde_yaml_ng::to_string(&self.desired).unwrap_or_default();
        if old_text == new_text {
            return String::new();
        }
        similar::TextDiff::from_lines(&old_text, &new_text)
            .unified_diff()
            .context_radius(3)
            .header(&old_label, &new_label)
            .to_string()
    }
}

/// What to plan from: objects as the API server returned them.
#[derive(Clone, Debug, Default)]
pub struct PlanInput {
    pub from: String,
    pub to: String,
    /// The selected objects of the source namespace (any order).
    pub sources: Vec<Value>,
    /// Every object of the moved kinds already in the target namespace.
    pub targets: Vec<Value>,
    /// Every Server and Model of the source namespace (for references left
    /// behind when the sources are deleted).
    pub source_all: Vec<Value>,
    pub force: bool,
    pub delete_source: bool,
    /// The Seldon controller's namespace (warning when a ServerConfig leaves it).
    pub controller_namespace: String,
}

/// The plan: items in creation order, refusals, warnings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub from: String,
    pub to: String,
    pub items: Vec<Item>,
    /// Sentences saying why nothing may be written.
    pub refusals: Vec<String>,
    /// Sentences worth reading, not blocking.
    pub warnings: Vec<String>,
    pub delete_source: bool,
}

/// Plans a move. Refuses a differing target object without `force`, and
/// deleting a source still referenced by a Server or Model that stays.
pub fn plan(input: &PlanInput) -> Plan {
    let mut sources: Vec<(Kind, Value)> = input
        .sources
        .iter()
        .filter_map(|o| Kind::of(o).map(|k| (k, o.clone())))
        .collect();
    sources.sort_by(|(ka, a), (kb, b)| (ka, name(a)).cmp(&(kb, name(b))));
    let targets: BTreeMap<(Kind, &str), &Value> = input
        .targets
        .iter()
        .filter_map(|o| Kind::of(o).map(|k| ((k, name(o)), o)))
        .collect();
    let mut plan = Plan {
        from: input.from.clone(),
        to: input.to.clone(),
        delete_source: input.delete_source,
        ..Plan::default()
    };
    for (kind, src) in &sources {
        let n = name(src).to_string();
        let desired = moved(src, &input.to);
        let existing = targets.get(&(*kind, n.as_str())).map(|v| (*v).clone());
        let (action, detail) = match &existing {
            None => (Action::Create, String::new()),
            Some(e) if same_content(e, &desired) => (
                Action::Skip,
                format!("an identical {kind} is already in {}", input.to),
            ),
            Some(e) if is_placeholder(e) => (
                Action::ReplacePlaceholder,
                "replaces the sync loop's placeholder of that name".to_string(),
            ),
            Some(_) if input.force => (
                Action::Overwrite,
                format!("overwrites the different {kind} in {} (--force)", input.to),
            ),
            Some(_) => (
                Action::Refuse,
                format!("a different {kind} of that name is in {}", input.to),
            ),
        };
        if action == Action::Refuse {
            plan.refusals.push(format!(
                "refusing to overwrite {kind} {}/{n}, which differs from {}/{n} (see the diff; --force overwrites it)",
                input.to, input.from
            ));
        }
        plan.items.push(Item {
            kind: *kind,
            name: n,
            action,
            source: src.clone(),
            desired,
            existing,
            detail,
        });
    }
    references(input, &mut plan, &targets);
    plan
}

/// Reference checks: a moved Server's ServerConfig and a moved Model's
/// Server should exist in the target; with `--delete-source`, nothing that
/// stays behind may still use a deleted ServerConfig or Server.
fn references(input: &PlanInput, plan: &mut Plan, targets: &BTreeMap<(Kind, &str), &Value>) {
    let moved: BTreeSet<(Kind, String)> = plan
        .items
        .iter()
        .map(|i| (i.kind, i.name.clone()))
        .collect();
    let field = |o: &Value, p: &str| o.pointer(p).and_then(Value::as_str).map(str::to_string);
    let in_target =
        |k: Kind, n: &str| moved.contains(&(k, n.to_string())) || targets.contains_key(&(k, n));
    for item in &plan.items {
        let (wanted, ptr) = match item.kind {
            Kind::Server => (Kind::ServerConfig, "/spec/serverConfig"),
            Kind::Model => (Kind::Server, "/spec/server"),
            _ => continue,
        };
        if let Some(r) = field(&item.source, ptr).filter(|r| !r.is_empty()) {
            if !in_target(wanted, &r) {
                plan.warnings.push(format!(
                    "{} {}/{} uses {wanted} {r:?}, which is neither moved nor in {}",
                    item.kind, input.to, item.name, input.to
                ));
            }
        }
    }
    if !input.delete_source {
        return;
    }
    for other in &input.source_all {
        let Some(kind) = Kind::of(other) else {
            continue;
        };
        if moved.contains(&(kind, name(other).to_string())) {
            continue;
        }
        let (used, ptr) = match kind {
            Kind::Server => (Kind::ServerConfig, "/spec/serverConfig"),
            Kind::Model => (Kind::Server, "/spec/server"),
            _ => continue,
        };
        if let Some(r) = field(other, ptr) {
            if moved.contains(&(used, r.clone())) {
                plan.refusals.push(format!(
                    "refusing to delete {used} {}/{r}: {kind} {}/{}, which is not moved, still uses it (move it too, or drop --delete-source)",
                    input.from, input.from, name(other)
                ));
            }
        }
    }
    if input.from == input.controller_namespace {
        for item in plan.items.iter().filter(|i| i.kind == Kind::ServerConfig) {
            let used = plan.items.iter().any(|s| {
                s.kind == Kind::Server
                    && field(&s.source, "/spec/serverConfig").as_deref() == Some(item.name.as_str())
            });
            if used {
                plan.warnings.push(format!(
                    "ServerConfig {}/{} is deleted from the controller namespace: the stock controller builds moved Servers only while a ServerConfig of that name is there (the webhook's sync loop keeps a placeholder)",
                    input.from, item.name
                ));
            }
        }
    }
}

impl Plan {
    /// Whether the plan may be carried out.
    pub fn refused(&self) -> bool {
        !self.refusals.is_empty()
    }

    /// The plan as a table (KIND NAME ACTION DETAIL), then deletions.
    pub fn table(&self) -> String {
        let mut rows: Vec<[String; 4]> = vec![[
            "KIND".into(),
            "NAME".into(),
            "ACTION".into(),
            "DETAIL".into(),
        ]];
        for i in &self.items {
            rows.push([
                i.kind.to_string(),
                i.name.clone(),
                i.action.as_str().into(),
                i.detail.clone(),
            ]);
        }
        let w0 = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
        let w1 = rows.iter().map(|r| r[1].len()).max().unwrap_or(0);
        let w2 = rows.iter().map(|r| r[2].len()).max().unwrap_or(0);
        let mut out = format!("migrate {} -> {}\n", self.from, self.to);
        for r in &rows {
            let line = format!("  {:<w0$}  {:<w1$}  {:<w2$}  {}", r[0], r[1], r[2], r[3]);
            out.push_str(line.trim_end());
            out.push('\n');
        }
        if self.items.is_empty() {
            out.push_str("  (nothing selected)\n");
        }
        if self.delete_source && !self.items.is_empty() {
            out.push_str(&format!(
                "then, once verified, deletes the {} source object(s) in {}\n",
                self.items.len(),
                self.from
            ));
        }
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        for r in &self.refusals {
            out.push_str(&format!("refused: {r}\n"));
        }
        out
    }

    /// The unified diff of every item that differs, one after another.
    pub fn diffs(&self) -> String {
        let mut out = String::new();
        for i in &self.items {
            if i.action == Action::Skip {
                continue;
            }
            out.push_str(&i.diff(&self.from, &self.to));
        }
        out
    }
}

/// Object identity for messages: `Kind ns/name`.
pub fn describe(obj: &Value) -> String {
    format!(
        "{} {}/{}",
        obj.get("kind").and_then(Value::as_str).unwrap_or("?"),
        namespace(obj),
        name(obj)
    )
}
