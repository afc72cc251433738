//! Building the JSON Patch: only the fields that differ from what is
//! wanted, and never a long one. The API server applies a patch with a
//! JSON Patch library that copies a whole list on every add or remove in
//! it, so a patch of n operations into a list of n entries costs it n²
//! work; a field whose diff would be long is replaced whole instead, and a
//! patch past [`MAX_PATCH_BYTES`] is refused.

use json_patch::jsonptr::{Pointer, PointerBuf};
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use serde_json::Value;

use super::defaults::{eq_normalized, normalize};

/// Most operations the diff of one field may take; past it the field is
/// replaced whole. The controller's objects differ from what is wanted in a
/// few images and annotations: a handful of operations (a pod spec of 60
/// containers, one image each: about 60). With lists bounded
/// (`core::bounds`), 256 operations into them cost the API server at most
/// 256 copies of a list of 1,000.
pub const MAX_FIELD_OPS: usize = 256;
/// Largest patch the webhook answers with (its JSON text).
pub const MAX_PATCH_BYTES: usize = 1 << 20;

/// `value.pointer(path)` for constant paths (no `~` escapes, no array
/// indexes), without allocating per segment: the hot path looks up a dozen
/// paths per admission.
pub fn at<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('/')
        .skip(1)
        .try_fold(value, |v, key| v.as_object()?.get(key))
}

/// Collects the operations that turn `object` into what is wanted.
pub struct PatchBuilder<'a> {
    object: &'a Value,
    ops: Vec<PatchOperation>,
}

impl<'a> PatchBuilder<'a> {
    /// A builder for a patch of `object`.
    pub fn new(object: &'a Value) -> Self {
        PatchBuilder {
            object,
            ops: Vec::new(),
        }
    }

    /// The object being patched.
    pub fn object(&self) -> &'a Value {
        self.object
    }

    /// Adds ops setting `path` to `value` unless it is already equal
    /// semantically. The parent must exist (callers ensure it).
    pub fn set(&mut self, path: &str, value: Value) {
        let normalized = normalize(&value);
        if !self.equals(path, &normalized) {
            self.put(path, &value);
        }
    }

    /// [`Self::set`] for a borrowed value whose normal form is known (the
    /// pod spec, which an already-fixed object matches): nothing is copied
    /// when it is equal, and otherwise only what the patch writes.
    pub fn set_normalized(&mut self, path: &str, value: &Value, normalized: &Value) {
        if !self.equals(path, normalized) {
            self.put(path, value);
        }
    }

    /// Whether the object holds a value at `path` whose normal form is `normalized`.
    fn equals(&self, path: &str, normalized: &Value) -> bool {
        at(self.object, path).is_some_and(|c| eq_normalized(normalized, c))
    }

    /// Adds ops setting `path` to `value`. Where an object or array is
    /// already there, only the fields that differ are written (a small
    /// patch is cheaper for the API server to read and apply than a copy
    /// of the pod spec and of `seldon.io/last-applied`), unless that diff
    /// takes more than [`MAX_FIELD_OPS`] operations: then the value is
    /// replaced whole. Applied, both give the same object. `value` is
    /// copied only where it is written whole.
    pub fn put(&mut self, path: &str, value: &Value) {
        let Ok(pointer) = path.parse::<PointerBuf>() else {
            return; // paths are constants of the core
        };
        let current = at(self.object, path);
        if let Some(current) = current.filter(|c| same_container(c, value)) {
            let diff = json_patch::diff(current, value).0;
            if diff.len() <= MAX_FIELD_OPS {
                self.ops
                    .extend(diff.into_iter().map(|op| under(&pointer, op)));
                return;
            }
        }
        self.ops.push(match current {
            Some(_) => PatchOperation::Replace(ReplaceOperation {
                path: pointer,
                value: value.clone(),
            }),
            None => PatchOperation::Add(AddOperation {
                path: pointer,
                value: value.clone(),
            }),
        });
    }

    /// The patch, `None` when nothing differs.
    pub fn finish(self) -> Option<Patch> {
        (!self.ops.is_empty()).then_some(Patch(self.ops))
    }
}

/// Both objects or both arrays: a diff between them is a valid patch.
fn same_container(a: &Value, b: &Value) -> bool {
    matches!(
        (a, b),
        (Value::Object(_), Value::Object(_)) | (Value::Array(_), Value::Array(_))
    )
}

/// `op` (from a diff of the value at `prefix`) with its paths made absolute.
fn under(prefix: &Pointer, mut op: PatchOperation) -> PatchOperation {
    let absolute = |p: &mut PointerBuf| *p = prefix.concat(p);
    match &mut op {
        PatchOperation::Add(o) => absolute(&mut o.path),
        PatchOperation::Remove(o) => absolute(&mut o.path),
        PatchOperation::Replace(o) => absolute(&mut o.path),
        PatchOperation::Test(o) => absolute(&mut o.path),
        PatchOperation::Move(o) => {
            absolute(&mut o.from);
            absolute(&mut o.path);
        }
        PatchOperation::Copy(o) => {
            absolute(&mut o.from);
            absolute(&mut o.path);
        }
    }
    op
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ops_for(object: Value, path: &str, value: Value) -> Vec<PatchOperation> {
        let mut b = PatchBuilder::new(&object);
        b.put(path, &value);
        b.finish().map(|p| p.0).unwrap_or_default()
    }

    #[test]
    fn a_short_diff_writes_only_what_differs() {
        let ops = ops_for(
            json!({"spec": {"a": 1, "b": [1, 2]}}),
            "/spec",
            json!({"a": 2, "b": [1, 2]}),
        );
        assert_eq!(ops.len(), 1);
        assert_eq!(
            serde_json::to_value(&ops).unwrap_or_default(),
            json!([{"op": "replace", "path": "/spec/a", "value": 2}])
        );
    }

    #[test]
    fn a_long_diff_replaces_the_field_whole() {
        let args: Vec<Value> = (0..MAX_FIELD_OPS + 100).map(|_| json!("")).collect();
        let object = json!({"spec": {"containers": [{"name": "a", "args": args}]}});
        let wanted = json!({"containers": [{"name": "a", "args": ["--x"]}]});
        let ops = ops_for(object.clone(), "/spec", wanted.clone());
        assert_eq!(ops.len(), 1, "one replace instead of hundreds of removes");
        let mut patched = object;
        json_patch::patch(&mut patched, &ops).expect("applies");
        assert_eq!(patched["spec"], wanted);
    }

    #[test]
    fn a_missing_field_is_added() {
        let ops = ops_for(json!({"spec": {}}), "/spec/x", json!([1]));
        assert!(matches!(ops.as_slice(), [PatchOperation::Add(_)]));
    }
}
