//! The dynamic-object calls `migrate` makes on the Seldon kinds, shared by
//! `cluster` (the writes) and `wait` (the verification reads); objects go
//! in and out as JSON with their `apiVersion` and `kind`.

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::Client;
use serde_json::Value;

use super::plan::{describe, Kind, API_VERSION};
use super::rollback::Key;
use super::MigrateError;

/// The API resource of a moved kind (`mlops.seldon.io/v1alpha1`).
fn resource(kind: Kind) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("mlops.seldon.io", "v1alpha1", kind.as_str()),
        kind.plural(),
    )
}

/// The namespaced API of a moved kind.
pub(super) fn api(client: &Client, kind: Kind, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &resource(kind))
}

/// An object as JSON with its `apiVersion` and `kind` (list items may lack them).
pub(super) fn to_value(kind: Kind, o: &DynamicObject) -> Result<Value, MigrateError> {
    let mut v = serde_json::to_value(o).map_err(|source| MigrateError::Json {
        what: format!(
            "cannot encode {kind} {}/{}",
            o.metadata.namespace.as_deref().unwrap_or(""),
            o.metadata.name.as_deref().unwrap_or("")
        ),
        source,
    })?;
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), API_VERSION.into());
        m.insert("kind".into(), kind.as_str().into());
    }
    Ok(v)
}

/// A JSON object as the API's dynamic type, ready to be written.
pub(super) fn to_object(v: &Value) -> Result<DynamicObject, MigrateError> {
    serde_json::from_value(v.clone()).map_err(|source| MigrateError::Json {
        what: describe(v),
        source,
    })
}

/// Whether the API server answered with this HTTP status.
pub(super) fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Reads one object; `None` when it does not exist.
pub(super) async fn get(client: &Client, k: &Key) -> Result<Option<Value>, MigrateError> {
    let (kind, ns, name) = k;
    match api(client, *kind, ns).get_opt(name).await {
        Ok(Some(o)) => to_value(*kind, &o).map(Some),
        Ok(None) => Ok(None),
        Err(e) => Err(MigrateError::kube(
            format!("cannot read {kind} {ns}/{name}"),
            e,
        )),
    }
}
