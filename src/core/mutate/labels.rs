//! Labels and annotations: which keys the patch keeps, drops or sets, on
//! the object and in its pod template.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::super::model::ServerConfig;
use super::super::patch::{at, PatchBuilder};
use super::super::placeholder::{is_ours, is_own_key};
use super::LAST_APPLIED_ANNOTATION;

/// A label or annotation map, borrowed: the object's maps can be large
/// (annotations up to the API server's 256 KiB, more from a client that is
/// not the API server), and are never copied to be compared.
pub(super) type StrMap<'a> = BTreeMap<&'a str, &'a str>;

pub(super) fn str_map(v: Option<&Value>) -> StrMap<'_> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.as_str(), s)))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn borrowed(m: &BTreeMap<String, String>) -> StrMap<'_> {
    m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// What to do with the keys the controller copied from the
/// controller-namespace ServerConfig.
#[derive(Clone, Copy)]
pub(super) enum Copied<'a> {
    /// Nothing known about the controller's ServerConfig.
    Unknown,
    /// A real shared ServerConfig: its keys are not desired, drop them.
    Drop(&'a BTreeMap<String, String>),
    /// A placeholder: keep its keys in the pod template with their stored
    /// value (on CREATE, the value the controller sends). The stock
    /// controller copies ServerConfig labels and annotations into the
    /// template and compares the template on every reconcile; without them
    /// it would send an Update each time. A placeholder's keys never change
    /// (`core::placeholder`), and keeping the stored value means that the
    /// ones earlier releases changed never roll a pod either.
    Freeze(&'a BTreeMap<String, String>),
}

/// Keeps keys other parties set on the object (for example
/// `kubectl.kubernetes.io/restartedAt`), treats keys copied from the
/// controller-namespace ServerConfig as [`Copied`] says, and sets every
/// desired key. `stored` is the stored map on UPDATE of a pod template:
/// there this tool's own keys are kept at their stored value too.
pub(super) fn reconcile_map<'a>(
    current: &StrMap<'a>,
    wanted: &StrMap<'a>,
    copied: Copied<'a>,
    stored: Option<&StrMap<'a>>,
) -> StrMap<'a> {
    let mut out = current.clone();
    match copied {
        Copied::Unknown => {}
        Copied::Drop(keys) => {
            for k in keys.keys() {
                if !wanted.contains_key(k.as_str()) && k != LAST_APPLIED_ANNOTATION {
                    out.remove(k.as_str());
                }
            }
        }
        Copied::Freeze(keys) => {
            for k in keys.keys() {
                if let Some((k, v)) = stored.and_then(|s| s.get_key_value(k.as_str())) {
                    out.insert(k, v);
                }
            }
        }
    }
    for (k, v) in stored.into_iter().flatten() {
        if is_own_key(k) && !wanted.contains_key(k) {
            out.insert(k, v);
        }
    }
    out.extend(wanted.iter().map(|(k, v)| (*k, *v)));
    out
}

/// Sets the string map at `path` to `out` unless it already is exactly
/// that (a missing map counts as empty).
pub(super) fn set_map(b: &mut PatchBuilder<'_>, path: &str, out: &StrMap<'_>) {
    if str_map(at(b.object(), path)) != *out {
        b.put(path, &json!(out));
    }
}

/// How the keys the controller copied from its own namespace's
/// ServerConfig are treated: labels and annotations, on the object and in
/// the pod template.
#[derive(Clone, Copy)]
pub(super) struct CopiedKeys<'a> {
    pub(super) config: Option<&'a ServerConfig>,
}

impl<'a> CopiedKeys<'a> {
    pub(super) fn of(
        &self,
        field: fn(&ServerConfig) -> &BTreeMap<String, String>,
        template: bool,
    ) -> Copied<'a> {
        match self.config {
            None => Copied::Unknown,
            Some(c) if template && is_ours(c) => Copied::Freeze(field(c)),
            Some(c) => Copied::Drop(field(c)),
        }
    }
}

pub(super) fn labels_of(c: &ServerConfig) -> &BTreeMap<String, String> {
    &c.meta.labels
}

pub(super) fn annotations_of(c: &ServerConfig) -> &BTreeMap<String, String> {
    &c.meta.annotations
}
