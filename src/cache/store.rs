//! The objects a watch has delivered, kept small: each one as the
//! lz4-compressed JSON of the whole object (without `managedFields`,
//! `status` and kubectl's last-applied copy), indexed by namespace and name.
//! A `kube::runtime` reflector store keeps every object as a
//! `DynamicObject` whose body is a `serde_json::Value` tree, about 20 times
//! its JSON size; at 1,000 namespaces that was most of the process's memory.
//!
//! Teams' ServerConfigs are mostly copies of the stock ones with other
//! images, so each store compresses against a dictionary made of the first
//! few objects that did not compress well against it: a copy then takes a
//! few hundred bytes instead of a few KiB.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use kube::api::DynamicObject;
use kube::runtime::watcher;
use kube::ResourceExt;

use super::freshness::Freshness;
use super::packed::{Dictionary, Packed};

/// kubectl's client-side apply annotation.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Why a cached object cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// Its packed bytes do not decompress.
    #[error(transparent)]
    Corrupt(#[from] super::packed::CorruptPack),
    /// Its bytes are not JSON.
    #[error("cached object is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
}

/// One cached object.
pub struct Entry {
    /// `metadata.resourceVersion`: parsed forms are reused while it holds.
    pub resource_version: Box<str>,
    /// The object's compact JSON, packed against the store's dictionary.
    body: Packed,
}

impl Entry {
    /// What the cache keeps of `o`: the server-managed bulk removed, the
    /// rest packed against `dict` (which learns from it).
    fn new(mut o: DynamicObject, dict: &mut Dictionary) -> Result<Entry, serde_json::Error> {
        o.metadata.managed_fields = None;
        if let Some(a) = &mut o.metadata.annotations {
            a.remove(LAST_APPLIED);
        }
        if let serde_json::Value::Object(data) = &mut o.data {
            data.remove("status");
        }
        let json = serde_json::to_vec(&o)?;
        Ok(Entry {
            resource_version: o.resource_version().unwrap_or_default().into(),
            body: dict.pack(&json),
        })
    }

    /// The object as JSON again.
    pub fn value(&self) -> Result<serde_json::Value, EntryError> {
        let json = self.body.unpack()?;
        Ok(serde_json::from_slice(&json)?)
    }
}

/// namespace -> name -> entry.
type Objects = HashMap<Box<str>, HashMap<Box<str>, Arc<Entry>>>;

/// One watch's objects, readable while the watch updates them.
pub struct Store {
    objects: RwLock<Objects>,
    ready: tokio::sync::watch::Sender<bool>,
    dictionary: Mutex<Dictionary>,
    /// The namespace it holds (`None`: all).
    scope: Option<Box<str>>,
    /// Whether its objects may be taken as the API server's current ones.
    pub freshness: Freshness,
}

/// A store filled once (`Caches::from_objects`, tests): every namespace,
/// always current.
impl Default for Store {
    fn default() -> Self {
        Store::new(None, Freshness::fixed())
    }
}

impl Store {
    /// The store of a watch of `scope` (all namespaces with `None`), not
    /// trusted until its first list and then within `window` of the watch
    /// last being heard from.
    pub fn watched(scope: Option<&str>, window: std::time::Duration) -> Self {
        Store::new(scope, Freshness::watched(window))
    }

    fn new(scope: Option<&str>, freshness: Freshness) -> Self {
        Store {
            objects: RwLock::new(Objects::new()),
            ready: tokio::sync::watch::channel(false).0,
            dictionary: Mutex::new(Dictionary::default()),
            scope: scope.map(Into::into),
            freshness,
        }
    }

    /// Whether objects of namespace `ns` belong in this store.
    pub fn holds(&self, ns: &str) -> bool {
        self.scope.as_deref().is_none_or(|s| s == ns)
    }
}

fn insert(objects: &mut Objects, o: DynamicObject, dictionary: &Mutex<Dictionary>) {
    let (ns, name) = (o.namespace().unwrap_or_default(), o.name_any());
    let mut dictionary = dictionary.lock().unwrap_or_else(|e| e.into_inner());
    let entry = Entry::new(o, &mut dictionary);
    match entry {
        Ok(e) => {
            objects
                .entry(ns.into())
                .or_default()
                .insert(name.into(), Arc::new(e));
        }
        // Serialising a decoded object cannot fail; if it ever does, no
        // stale copy is kept: the object is looked up with a direct GET.
        Err(e) => {
            if let Some(by_name) = objects.get_mut(ns.as_str()) {
                by_name.remove(name.as_str());
            }
            tracing::warn!(namespace = ns, name, error = %e, "object not cached");
        }
    }
}

impl Store {
    /// The entry `ns/name`.
    pub fn get(&self, ns: &str, name: &str) -> Option<Arc<Entry>> {
        let objects = self.objects.read().unwrap_or_else(|e| e.into_inner());
        objects.get(ns)?.get(name).cloned()
    }

    /// Every entry of `ns` (all namespaces with `None`), with its name.
    pub fn list(&self, ns: Option<&str>) -> Vec<(String, String, Arc<Entry>)> {
        let objects = self.objects.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        let namespaces: Box<dyn Iterator<Item = _>> = match ns {
            Some(ns) => Box::new(objects.get_key_value(ns).into_iter()),
            None => Box::new(objects.iter()),
        };
        for (n, by_name) in namespaces {
            out.extend(
                by_name
                    .iter()
                    .map(|(name, e)| (n.to_string(), name.to_string(), e.clone())),
            );
        }
        out
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        let objects = self.objects.read().unwrap_or_else(|e| e.into_inner());
        objects.values().map(HashMap::len).sum()
    }

    /// Waits until the first full list has been stored.
    pub async fn wait_until_ready(&self) {
        let mut rx = self.ready.subscribe();
        // The sender lives as long as the store (and so as `self`).
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// Applies a watch event. `buffer` holds a relist in progress, which
    /// replaces the objects as a whole when it is complete.
    pub fn apply(&self, event: watcher::Event<DynamicObject>, buffer: &mut Option<Objects>) {
        let write = || self.objects.write().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Init => *buffer = Some(Objects::new()),
            watcher::Event::InitApply(o) => {
                insert(buffer.get_or_insert_with(Objects::new), o, &self.dictionary)
            }
            watcher::Event::InitDone => {
                *write() = buffer.take().unwrap_or_default();
                self.ready.send_replace(true);
            }
            watcher::Event::Apply(o) => insert(&mut write(), o, &self.dictionary),
            watcher::Event::Delete(o) => {
                let (ns, name) = (o.namespace().unwrap_or_default(), o.name_any());
                let mut objects = write();
                if let Some(by_name) = objects.get_mut(ns.as_str()) {
                    by_name.remove(name.as_str());
                    if by_name.is_empty() {
                        objects.remove(ns.as_str());
                    }
                }
            }
        }
    }
}

/// A relist in progress (see [`Store::apply`]).
pub type Relist = Option<Objects>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(ns: &str, name: &str, rv: &str) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Server",
            "metadata": {"namespace": ns, "name": name, "resourceVersion": rv,
                "managedFields": [{"manager": "kubectl", "operation": "Update"}],
                "annotations": {LAST_APPLIED: "{}", "keep": "me"}},
            "spec": {"serverConfig": "mlserver"},
            "status": {"replicas": 1}
        }))
        .expect("fixture object")
    }

    #[test]
    fn entries_keep_the_object_without_the_server_managed_bulk() {
        let e = Entry::new(object("a", "s", "7"), &mut Dictionary::default()).expect("entry");
        let v = e.value().expect("value");
        assert_eq!(&*e.resource_version, "7");
        assert_eq!(v["spec"], json!({"serverConfig": "mlserver"}));
        assert_eq!(v["metadata"]["annotations"], json!({"keep": "me"}));
        assert!(v["metadata"].get("managedFields").is_none());
        assert!(v.get("status").is_none());
    }

    /// The real 2.9.1 ServerConfigs as a team would copy them into its
    /// namespace: `copies` namespaces x (mlserver, triton), own images.
    fn team_configs(copies: usize) -> Vec<DynamicObject> {
        let text = include_str!("../../tests/fixtures/serverconfigs.yaml");
        let stock: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(text)
            .map(|d| serde::Deserialize::deserialize(d).expect("fixture YAML"))
            .collect();
        let mut out = Vec::new();
        for i in 0..copies {
            for sc in &stock {
                let ns = format!("team-{i}");
                let text = sc
                    .to_string()
                    .replace("docker.io/seldonio", &format!("harbor.test/{ns}"));
                let mut o: DynamicObject = serde_json::from_str(&text).expect("ServerConfig");
                o.metadata.namespace = Some(ns);
                o.metadata.resource_version = Some(format!("{}", 100 + i));
                o.metadata.uid = Some(format!("uid-{i}-{}", o.name_any()));
                out.push(o);
            }
        }
        out
    }

    #[test]
    fn copies_of_a_config_compress_against_the_dictionary() {
        let store = Store::default();
        let mut relist = None;
        let configs = team_configs(20);
        let json_len: Vec<usize> = configs
            .iter()
            .map(|o| serde_json::to_vec(o).expect("json").len())
            .collect();
        store.apply(watcher::Event::Init, &mut relist);
        for o in configs.clone() {
            store.apply(watcher::Event::InitApply(o), &mut relist);
        }
        store.apply(watcher::Event::InitDone, &mut relist);
        // every entry reads back as the object it was made from
        for o in &configs {
            let e = store
                .get(&o.namespace().expect("ns"), &o.name_any())
                .expect("cached");
            let mut want = serde_json::to_value(o).expect("json");
            want["metadata"]
                .as_object_mut()
                .expect("metadata")
                .remove("managedFields");
            assert_eq!(
                e.value().expect("value"),
                want,
                "{:?}",
                o.metadata.namespace
            );
        }
        // the first of each kind taught the dictionary; the copies after
        // them cost a small fraction of their JSON
        let dictionary = store.dictionary.lock().expect("lock");
        assert_eq!(dictionary.parts(), 2, "mlserver and triton, nothing else");
        for (o, len) in configs.iter().zip(&json_len).skip(2) {
            let e = store
                .get(&o.namespace().expect("ns"), &o.name_any())
                .expect("cached");
            assert!(e.body.len() * 20 < *len, "{} of {len} bytes", e.body.len());
        }
    }

    #[test]
    fn watch_events_update_the_store() {
        type Step = (
            watcher::Event<DynamicObject>,
            &'static [(&'static str, &'static str, &'static str)],
        );
        let steps: Vec<Step> = vec![
            (watcher::Event::Init, &[]),
            (watcher::Event::InitApply(object("a", "s", "1")), &[]),
            (watcher::Event::InitApply(object("b", "s", "2")), &[]),
            (
                watcher::Event::InitDone,
                &[("a", "s", "1"), ("b", "s", "2")],
            ),
            (
                watcher::Event::Apply(object("a", "s", "3")),
                &[("a", "s", "3"), ("b", "s", "2")],
            ),
            (
                watcher::Event::Delete(object("b", "s", "2")),
                &[("a", "s", "3")],
            ),
            // A relist replaces everything once complete, not before.
            (watcher::Event::Init, &[("a", "s", "3")]),
            (
                watcher::Event::InitApply(object("c", "t", "9")),
                &[("a", "s", "3")],
            ),
            (watcher::Event::InitDone, &[("c", "t", "9")]),
        ];
        let store = Store::default();
        let mut relist = None;
        for (i, (event, want)) in steps.into_iter().enumerate() {
            store.apply(event, &mut relist);
            let mut got: Vec<(String, String, String)> = store
                .list(None)
                .into_iter()
                .map(|(ns, name, e)| (ns, name, e.resource_version.to_string()))
                .collect();
            got.sort();
            let want: Vec<(String, String, String)> = want
                .iter()
                .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
                .collect();
            assert_eq!(got, want, "step {i}");
            assert_eq!(store.len(), want.len(), "step {i}");
            for (ns, name, rv) in &want {
                let e = store.get(ns, name).expect("present");
                assert_eq!(&*e.resource_version, rv.as_str(), "step {i}");
            }
        }
        assert!(store.get("a", "s").is_none());
        assert_eq!(store.list(Some("c")).len(), 1);
        assert!(store.list(Some("a")).is_empty());
    }

    #[test]
    fn ready_after_the_first_full_list() {
        let store = Store::default();
        let mut relist = None;
        assert!(!*store.ready.borrow());
        store.apply(watcher::Event::Init, &mut relist);
        assert!(!*store.ready.borrow());
        store.apply(watcher::Event::InitDone, &mut relist);
        assert!(*store.ready.borrow());
        futures::executor::block_on(store.wait_until_ready());
    }
}
