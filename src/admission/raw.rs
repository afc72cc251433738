//! The review's `object` and `oldObject` kept as the JSON text the API
//! server sent, with only the owner references read. A review is parsed
//! into a tree only once it is known to be in scope and within the size
//! bounds: a JSON tree takes 10 to 50 times its text, and a review may be
//! 7 MiB.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::core::DynamicResourceScope;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// An object of an admission review as its JSON text, plus its owner
/// references (the scope check needs nothing else).
#[derive(Clone, Debug)]
pub struct RawObject {
    /// Only `ownerReferences` is filled.
    meta: ObjectMeta,
    text: Box<RawValue>,
}

impl RawObject {
    /// The object's JSON text, as sent.
    pub fn text(&self) -> &str {
        self.text.get()
    }

    /// The owner references (empty when the object has none).
    pub fn owner_references(&self) -> &[OwnerReference] {
        self.meta.owner_references.as_deref().unwrap_or_default()
    }
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// What is read of the object: serde skips every other field
        /// without building anything.
        #[derive(Deserialize)]
        struct Head {
            #[serde(default)]
            metadata: Option<HeadMeta>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct HeadMeta {
            #[serde(default)]
            owner_references: Option<Vec<OwnerReference>>,
        }
        let text = Box::<RawValue>::deserialize(d)?;
        let head: Head = serde_json::from_str(text.get()).map_err(serde::de::Error::custom)?;
        let meta = ObjectMeta {
            owner_references: head.metadata.and_then(|m| m.owner_references),
            ..ObjectMeta::default()
        };
        Ok(RawObject { meta, text })
    }
}

impl serde::Serialize for RawObject {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.text.serialize(s)
    }
}

/// kube's admission types need a `Resource`; this one is never sent to
/// the API server, so its type information is empty.
impl kube::Resource for RawObject {
    type DynamicType = ();
    type Scope = DynamicResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }
    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}
