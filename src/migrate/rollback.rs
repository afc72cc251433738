//! The rollback file (what a move created, replaced and deleted, exactly
//! as the API server returned it) and the pure planning of its undo. No I/O.

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
}

/// An object `migrate` replaced in the target: what was there, and what it wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Replaced {
    pub before: Value,
    pub after: Value,
}

/// The rollback file. Rewritten after every write of a move, so that it is
/// complete up to the last write even when the move stops half-way.
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
            .chain(file.deleted.iter().map(|o| ("deleted", o, &file.from)));
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

/// Plans the undo of `file` against the objects as they are now (`current`,
/// keyed by [`key`]). A created or replaced object is only removed when it
/// is the same object (uid) with the same content as written; otherwise the
/// undo is refused (with `force`: removed anyway, but never one with
/// another uid, which `migrate` did not create).
pub fn plan_rollback(
    file: &RollbackFile,
    current: &BTreeMap<Key, Value>,
    force: bool,
) -> RollbackPlan {
    let mut plan = RollbackPlan::default();
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
