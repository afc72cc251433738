//! The rollback file (what a move created, replaced and deleted, exactly
//! as the API server returned it, and the write it was about to make) and
//! the pure planning of its undo. No I/O: `journal` reads and writes it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::plan::{describe, is_placeholder, same_content, strip, Kind};

/// `apiVersion` of the rollback file.
pub const FILE_API_VERSION: &str = "serverconfig-webhook/v1";
/// `kind` of the rollback file.
pub const FILE_KIND: &str = "MigrationRollback";

/// Why a rollback file was not accepted: nothing of it is undone.
#[derive(Debug, thiserror::Error)]
pub enum RollbackFileError {
    /// Neither YAML nor JSON, or its aliases expand past the budget.
    #[error("not a rollback file: {0}")]
    Syntax(#[source] crate::yaml::YamlError),
    /// YAML or JSON, but not of the file's shape.
    #[error("not a rollback file: {0}")]
    Shape(#[source] serde_json::Error),
    /// Another `apiVersion`/`kind`.
    #[error("not a rollback file: apiVersion/kind are {api_version:?}/{kind:?}, want {FILE_API_VERSION}/{FILE_KIND}")]
    WrongType { api_version: String, kind: String },
    /// An object of a kind `migrate` does not move.
    #[error("{section}: {object} is not a Seldon kind migrate moves")]
    NotMovedKind {
        section: &'static str,
        object: String,
    },
    /// An object without a name, or outside the namespace its section names.
    #[error("{section}: {object} needs a name and namespace {namespace}")]
    Misplaced {
        section: &'static str,
        object: String,
        namespace: String,
    },
    /// A pending write whose `before` is another object than its `desired`.
    #[error("pending: before is {before}, but the write is to {desired}")]
    PendingMismatch { desired: String, before: String },
}

/// An object `migrate` replaced in the target: what was there, and what it wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Replaced {
    pub before: Value,
    pub after: Value,
}

/// A write into the target that `migrate` recorded before making it (the
/// write-ahead entry): if the process died before the write was read back,
/// the undo reads the object to tell whether the write happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pending {
    /// The object as it was to be written (its key is the pending write's key).
    pub desired: Value,
    /// The object as it was before the write; absent: there was none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
}

/// The rollback file. Rewritten before and after every write of a move
/// (a [`Pending`] entry first, replaced by the written object once the API
/// server answered), so that it covers every write even when the move is
/// killed half-way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollbackFile {
    pub api_version: String,
    pub kind: String,
    pub from: String,
    pub to: String,
    /// Objects created in the target, as the API server returned them.
    #[serde(default)]
    pub created: Vec<Value>,
    /// Objects replaced in the target (placeholders, or with `--force`).
    #[serde(default)]
    pub replaced: Vec<Replaced>,
    /// Source objects deleted, as stored just before the delete.
    #[serde(default)]
    pub deleted: Vec<Value>,
    /// Writes into the target recorded but not yet read back (at most one
    /// when `migrate` wrote the file; absent in files of earlier releases).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<Pending>,
}

impl RollbackFile {
    /// An empty record of a move from `from` to `to`.
    pub fn new(from: &str, to: &str) -> RollbackFile {
        RollbackFile {
            api_version: FILE_API_VERSION.into(),
            kind: FILE_KIND.into(),
            from: from.into(),
            to: to.into(),
            created: Vec::new(),
            replaced: Vec::new(),
            deleted: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Reads a rollback file (YAML or JSON) and checks every object in it.
    /// Aliases may not expand it past [`crate::yaml::budget`] of its length.
    pub fn parse(text: &str) -> Result<RollbackFile, RollbackFileError> {
        let value = crate::yaml::one_document(text).map_err(RollbackFileError::Syntax)?;
        let file: RollbackFile = serde_json::from_value(value).map_err(RollbackFileError::Shape)?;
        if file.api_version != FILE_API_VERSION || file.kind != FILE_KIND {
            return Err(RollbackFileError::WrongType {
                api_version: file.api_version,
                kind: file.kind,
            });
        }
        let objects = file
            .created
            .iter()
            .map(|o| ("created", o, &file.to))
            .chain(file.replaced.iter().flat_map(|r| {
                [
                    ("replaced.before", &r.before, &file.to),
                    ("replaced.after", &r.after, &file.to),
                ]
            }))
            .chain(file.deleted.iter().map(|o| ("deleted", o, &file.from)))
            .chain(file.pending.iter().flat_map(|p| {
                std::iter::once(("pending.desired", &p.desired, &file.to))
                    .chain(p.before.iter().map(|b| ("pending.before", b, &file.to)))
            }));
        for (section, o, ns) in objects {
            let Some(_) = Kind::of(o) else {
                return Err(RollbackFileError::NotMovedKind {
                    section,
                    object: describe(o),
                });
            };
            let name = o.pointer("/metadata/name").and_then(Value::as_str);
            let got_ns = o.pointer("/metadata/namespace").and_then(Value::as_str);
            if name.is_none_or(str::is_empty) || got_ns != Some(ns.as_str()) {
                return Err(RollbackFileError::Misplaced {
                    section,
                    object: describe(o),
                    namespace: ns.clone(),
                });
            }
        }
        for p in &file.pending {
            if let Some(b) = p.before.as_ref().filter(|b| key(b) != key(&p.desired)) {
                return Err(RollbackFileError::PendingMismatch {
                    desired: describe(&p.desired),
                    before: describe(b),
                });
            }
        }
        Ok(file)
    }

    /// The file as YAML.
    pub fn to_yaml(&self) -> Result<String, serde_yaml_ng::Error> {
        serde_yaml_ng::to_string(self)
    }

    /// Every object the undo must read first: `(kind, namespace, name)`.
    pub fn keys(&self) -> Vec<Key> {
        let mut keys: Vec<Key> = self
            .deleted
            .iter()
            .chain(self.replaced.iter().map(|r| &r.after))
            .chain(&self.created)
            .chain(self.pending.iter().map(|p| &p.desired))
            .filter_map(key)
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

/// `(kind, namespace, name)` of an object.
pub type Key = (Kind, String, String);

/// The key of an object, when it is a moved kind.
pub fn key(o: &Value) -> Option<Key> {
    let kind = Kind::of(o)?;
    let ns = o.pointer("/metadata/namespace")?.as_str()?.to_string();
    let name = o.pointer("/metadata/name")?.as_str()?.to_string();
    Some((kind, ns, name))
}

fn uid(o: &Value) -> &str {
    o.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// One write of the undo.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Create this object (stripped) again.
    Create(Value),
    /// Replace `current` (as stored now) with `with` (stripped).
    Replace { current: Value, with: Value },
    /// Delete this object, only if it is still exactly `current` (uid and
    /// resourceVersion as preconditions).
    Delete { current: Value },
}

impl Step {
    /// One line for the progress output.
    pub fn describe(&self) -> String {
        match self {
            Step::Create(o) => format!("create {}", describe(o)),
            Step::Replace { with, .. } => format!("restore {}", describe(with)),
            Step::Delete { current } => format!("delete {}", describe(current)),
        }
    }
}

/// The undo: steps in order (sources back first, in dependency order, then
/// the created objects deleted in reverse order), refusals and notes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RollbackPlan {
    pub steps: Vec<Step>,
    pub refusals: Vec<String>,
    /// Objects left alone, and why.
    pub notes: Vec<String>,
}

impl RollbackPlan {
    /// Whether the undo may run.
    pub fn refused(&self) -> bool {
        !self.refusals.is_empty()
    }
}

fn order(objs: &mut [Value]) {
    objs.sort_by_key(key);
}

/// Whether every field of `want` is in `have` with the same value (arrays
/// element by element, of the same length): `have` may carry more, such as
/// the defaults the API server filled in.
pub fn contains(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| h.get(k).is_some_and(|hv| contains(hv, wv))),
        (Value::Array(h), Value::Array(w)) => {
            h.len() == w.len() && h.iter().zip(w).all(|(hv, wv)| contains(hv, wv))
        }
        _ => have == want,
    }
}

/// Whether `now` is `desired` as the API server stores it: the same
/// metadata (labels, annotations, finalizers, all [`strip`] keeps), and
/// every spec field written, with any defaults the API server added.
fn written_as(now: &Value, desired: &Value) -> bool {
    let (n, d) = (strip(now), strip(desired));
    n.get("metadata") == d.get("metadata") && contains(&n, &d)
}

/// What a [`Pending`] write turned out to be, read against the cluster.
#[derive(Clone, Debug, PartialEq)]
pub enum PendingOutcome {
    /// The object is as it was before (or still absent): nothing to undo.
    NotWritten,
    /// The object is as it was to be written (`now`): undo it like a
    /// created (no `before`) or replaced object.
    Written { now: Value },
    /// The object is gone although there was one before: put `before` back
    /// (like a replaced object deleted since).
    Gone,
    /// Neither as before nor as it was to be written: changed since.
    Changed { now: Value },
}

/// Reads a pending write against the object as it is now (`now`): as
/// before means not written; the same metadata and every field written
/// (see [`contains`]; the API server adds defaults) means written.
pub fn resolve_pending(p: &Pending, now: Option<&Value>) -> PendingOutcome {
    match (now, &p.before) {
        (None, None) => PendingOutcome::NotWritten,
        (None, Some(_)) => PendingOutcome::Gone,
        // as before; or still the sync loop's placeholder, which it may
        // have rewritten meanwhile (an earlier release's shape)
        (Some(c), Some(b))
            if uid(c) == uid(b)
                && (same_content(c, b) || (is_placeholder(b) && is_placeholder(c))) =>
        {
            PendingOutcome::NotWritten
        }
        (Some(c), _) if written_as(c, &p.desired) => PendingOutcome::Written { now: c.clone() },
        (Some(c), _) => PendingOutcome::Changed { now: c.clone() },
    }
}

/// `file` with its pending writes resolved against `current` (written ones
/// moved to `created`/`replaced`), and the notes and refusals they give.
fn fold_pending(
    file: &RollbackFile,
    current: &BTreeMap<Key, Value>,
    force: bool,
    plan: &mut RollbackPlan,
) -> RollbackFile {
    let mut out = file.clone();
    out.pending.clear();
    for p in &file.pending {
        let now = key(&p.desired).and_then(|k| current.get(&k));
        let what = describe(&p.desired);
        let undo = |out: &mut RollbackFile, now: Value| match &p.before {
            None => out.created.push(now),
            Some(b) => out.replaced.push(Replaced {
                before: b.clone(),
                after: now,
            }),
        };
        match resolve_pending(p, now) {
            PendingOutcome::NotWritten => plan.notes.push(format!(
                "{what}: the write migrate was about to make did not happen: nothing to undo"
            )),
            PendingOutcome::Written { now } => undo(&mut out, now),
            PendingOutcome::Changed { now } if force => undo(&mut out, now),
            PendingOutcome::Changed { .. } => plan.refusals.push(format!(
                "refusing to undo the write migrate was about to make to {what}: it is neither as it was before nor as migrate was writing it (--force undoes it anyway)"
            )),
            PendingOutcome::Gone => {
                if let Some(b) = &p.before {
                    out.replaced.push(Replaced {
                        before: b.clone(),
                        after: p.desired.clone(),
                    })
                }
            }
        }
    }
    out
}

/// Plans the undo of `file` against the objects as they are now (`current`,
/// keyed by [`key`]). A created or replaced object is only removed when it
/// is the same object (uid) with the same content as written; otherwise the
/// undo is refused (with `force`: removed anyway, but never one with
/// another uid, which `migrate` did not create). A pending write is first
/// resolved ([`resolve_pending`]): undone if it happened, left if not.
pub fn plan_rollback(
    file: &RollbackFile,
    current: &BTreeMap<Key, Value>,
    force: bool,
) -> RollbackPlan {
    let mut plan = RollbackPlan::default();
    let file = &fold_pending(file, current, force, &mut plan);
    let now = |o: &Value| key(o).and_then(|k| current.get(&k));

    let mut deleted = file.deleted.clone();
    order(&mut deleted);
    for d in &deleted {
        let want = strip(d);
        match now(d) {
            None => plan.steps.push(Step::Create(want)),
            Some(c) if same_content(c, d) => plan
                .notes
                .push(format!("{} is back already", describe(d))),
            Some(c) if is_placeholder(c) || force => plan.steps.push(Step::Replace {
                current: c.clone(),
                with: want,
            }),
            Some(_) => plan.refusals.push(format!(
                "refusing to restore {}: a different object of that name exists now (--force replaces it)",
                describe(d)
            )),
        }
    }

    let mut replaced = file.replaced.clone();
    replaced.sort_by_key(|r| key(&r.after));
    for r in &replaced {
        match now(&r.after) {
            None => plan.steps.push(Step::Create(strip(&r.before))),
            Some(c) if (uid(c) == uid(&r.after) && same_content(c, &r.after)) || force => {
                plan.steps.push(Step::Replace {
                    current: c.clone(),
                    with: strip(&r.before),
                })
            }
            Some(_) => plan.refusals.push(format!(
                "refusing to restore {}: it changed after migrate replaced it (--force restores it anyway)",
                describe(&r.after)
            )),
        }
    }

    let mut created = file.created.clone();
    order(&mut created);
    for o in created.iter().rev() {
        match now(o) {
            None => plan.notes.push(format!("{} is gone already", describe(o))),
            Some(c) if uid(c) != uid(o) => plan.notes.push(format!(
                "{} is not the object migrate created (another uid): left alone",
                describe(o)
            )),
            Some(c) if same_content(c, o) || force => {
                plan.steps.push(Step::Delete { current: c.clone() })
            }
            Some(_) => plan.refusals.push(format!(
                "refusing to delete {}: it changed after migrate created it (--force deletes it anyway)",
                describe(o)
            )),
        }
    }
    plan
}
