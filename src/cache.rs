//! Watch-backed caches of Servers and ServerConfigs (`kube::runtime`
//! reflectors, `managedFields` stripped), and the lookups the admission
//! handler needs: cache first, one direct GET on a miss.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use crate::core::model::{ModelError, Server, ServerConfig};
use crate::metrics::{KindLabels, Metrics};

/// `mlops.seldon.io/v1alpha1` Server.
pub fn server_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("mlops.seldon.io", "v1alpha1", "Server"),
        "servers",
    )
}

/// `mlops.seldon.io/v1alpha1` ServerConfig.
pub fn server_config_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("mlops.seldon.io", "v1alpha1", "ServerConfig"),
        "serverconfigs",
    )
}

/// Which namespaces the caches watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Namespaces {
    /// Every namespace (one cluster-wide watch per kind).
    All,
    /// These namespaces (one watch per namespace and kind).
    List(Vec<String>),
}

impl Namespaces {
    /// Whether objects in `ns` are watched.
    pub fn contains(&self, ns: &str) -> bool {
        match self {
            Namespaces::All => true,
            Namespaces::List(l) => l.iter().any(|n| n == ns),
        }
    }
}

/// (namespace, name) -> (resourceVersion, parsed object), bounded: parsed
/// ServerConfigs hold pod-spec trees, so only the ones in use are kept.
type Parsed<T> = quick_cache::sync::Cache<(String, String), (String, Arc<Result<T, ModelError>>)>;

/// Parsed Servers kept (small objects; the sync loop scans them all).
const PARSED_SERVERS: usize = 65_536;
/// Parsed ServerConfigs kept: those the workloads being written now use.
const PARSED_CONFIGS: usize = 512;

/// One kind's reflector stores plus a parse cache keyed by resourceVersion.
struct KindCache<T> {
    kind: &'static str,
    resource: ApiResource,
    stores: Vec<Store<DynamicObject>>,
    parsed: Parsed<T>,
}

impl<T> KindCache<T> {
    fn find(&self, ns: &str, name: &str) -> Option<Arc<DynamicObject>> {
        let key = ObjectRef::new_with(name, self.resource.clone()).within(ns);
        self.stores.iter().find_map(|s| s.get(&key))
    }

    fn len(&self) -> usize {
        self.stores.iter().map(|s| s.state().len()).sum()
    }
}

/// Result of looking up one object.
pub type Lookup<T> = Option<Arc<Result<T, ModelError>>>;

/// The Server and ServerConfig caches.
pub struct Caches {
    /// `None` for caches filled from files (tests, benchmarks): a miss is final.
    client: Option<Client>,
    servers: KindCache<Server>,
    configs: KindCache<ServerConfig>,
    ready: AtomicBool,
    metrics: Arc<Metrics>,
    /// Bumped on every watch event, so the sync loop can react to changes.
    changes: Arc<tokio::sync::watch::Sender<u64>>,
}

fn start_reflector(
    client: &Client,
    resource: &ApiResource,
    ns: Option<&str>,
    changes: Arc<tokio::sync::watch::Sender<u64>>,
) -> (
    Store<DynamicObject>,
    impl futures::Future<Output = ()> + Send + 'static,
) {
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    };
    let writer = reflector::store::Writer::new(resource.clone());
    let reader = writer.as_reader();
    // Default list semantic: paged (500 a page) rather than one body of
    // every object at once, so the initial list's peak stays small.
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(compact)
        .reflect(writer)
        .for_each(move |event| {
            match event {
                Ok(_) => changes.send_modify(|n| *n = n.wrapping_add(1)),
                Err(e) => tracing::warn!(error = %e, "watch error; retrying with backoff"),
            }
            futures::future::ready(())
        });
    (reader, stream)
}

/// What the caches keep of an object, to keep memory bounded: no
/// `managedFields` (often larger than the spec), no `status`, no kubectl
/// last-applied copy (a second copy of the object; never copied into a
/// workload), and the rest of the body as one compact JSON string instead
/// of a `serde_json::Value` tree, which takes about 20 times the bytes in
/// small allocations. It is parsed again only when looked up.
fn compact(o: &mut DynamicObject) {
    o.managed_fields_mut().clear();
    o.annotations_mut().remove(LAST_APPLIED);
    if let serde_json::Value::Object(data) = &mut o.data {
        data.remove("status");
        o.data =
            serde_json::Value::String(serde_json::Value::Object(std::mem::take(data)).to_string());
    }
}

/// kubectl's client-side apply annotation.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

impl Caches {
    /// Starts the reflectors: Servers and ServerConfigs in the watched
    /// namespaces, plus ServerConfigs of the controller namespace.
    pub fn start(
        client: Client,
        namespaces: &Namespaces,
        controller_namespace: &str,
        metrics: Arc<Metrics>,
    ) -> (Arc<Caches>, Vec<tokio::task::JoinHandle<()>>) {
        let mut tasks = Vec::new();
        let changes = Arc::new(tokio::sync::watch::channel(0u64).0);
        let mut make = |resource: &ApiResource, with_controller_ns: bool| {
            let mut stores = Vec::new();
            let mut namespaces_for_kind: Vec<Option<String>> = match namespaces {
                Namespaces::All => vec![None],
                Namespaces::List(l) => l.iter().cloned().map(Some).collect(),
            };
            if with_controller_ns && !namespaces.contains(controller_namespace) {
                namespaces_for_kind.push(Some(controller_namespace.to_string()));
            }
            for ns in namespaces_for_kind {
                let (store, fut) =
                    start_reflector(&client, resource, ns.as_deref(), changes.clone());
                stores.push(store);
                tasks.push(tokio::spawn(fut));
            }
            stores
        };
        let server_stores = make(&server_resource(), false);
        let config_stores = make(&server_config_resource(), true);
        let caches = Arc::new(Caches {
            client: Some(client),
            servers: KindCache {
                kind: "Server",
                resource: server_resource(),
                stores: server_stores,
                parsed: Parsed::new(PARSED_SERVERS),
            },
            configs: KindCache {
                kind: "ServerConfig",
                resource: server_config_resource(),
                stores: config_stores,
                parsed: Parsed::new(PARSED_CONFIGS),
            },
            ready: AtomicBool::new(false),
            metrics,
            changes,
        });
        let waiter = caches.clone();
        tasks.push(tokio::spawn(async move {
            for s in waiter
                .servers
                .stores
                .iter()
                .chain(waiter.configs.stores.iter())
            {
                if s.wait_until_ready().await.is_err() {
                    return;
                }
            }
            waiter.ready.store(true, Ordering::SeqCst);
            tracing::info!("caches synced");
        }));
        (caches, tasks)
    }

    /// Caches pre-filled with these objects and no API server behind them:
    /// for tests and benchmarks of the HTTP shell, where a miss is final.
    pub fn from_objects(objects: Vec<DynamicObject>, metrics: Arc<Metrics>) -> Arc<Caches> {
        let fill = |resource: ApiResource| {
            let mut writer = reflector::store::Writer::new(resource.clone());
            let reader = writer.as_reader();
            writer.apply_watcher_event(&watcher::Event::Init);
            for o in objects
                .iter()
                .filter(|o| o.types.as_ref().is_some_and(|t| t.kind == resource.kind))
            {
                let mut o = o.clone();
                compact(&mut o);
                writer.apply_watcher_event(&watcher::Event::InitApply(o));
            }
            writer.apply_watcher_event(&watcher::Event::InitDone);
            (reader, writer)
        };
        let (servers, _sw) = fill(server_resource());
        let (configs, _cw) = fill(server_config_resource());
        Arc::new(Caches {
            client: None,
            servers: KindCache {
                kind: "Server",
                resource: server_resource(),
                stores: vec![servers],
                parsed: Parsed::new(PARSED_SERVERS),
            },
            configs: KindCache {
                kind: "ServerConfig",
                resource: server_config_resource(),
                stores: vec![configs],
                parsed: Parsed::new(PARSED_CONFIGS),
            },
            ready: AtomicBool::new(true),
            metrics,
            changes: Arc::new(tokio::sync::watch::channel(0u64).0),
        })
    }

    /// Whether every reflector has finished its initial list.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// A receiver that changes on every watch event of any cache.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Every cached ServerConfig, parsed (unreadable ones are skipped and logged).
    pub fn all_server_configs(&self) -> Vec<Arc<Result<ServerConfig, ModelError>>> {
        all_parsed(&self.configs, ServerConfig::from_value)
    }

    /// Cached Servers of `ns` whose `spec.serverConfig` is `config_name`.
    pub fn servers_using(&self, ns: &str, config_name: &str) -> Vec<Server> {
        // Servers are small: keep them parsed (the sync loop asks often).
        self.servers
            .stores
            .iter()
            .flat_map(|s| s.state())
            .map(|o| parse_cached(&self.servers, &o, Server::from_value))
            .collect::<Vec<_>>()
            .iter()
            .filter_map(|r| r.as_ref().as_ref().ok())
            .filter(|s| s.meta.namespace == ns && s.server_config == config_name)
            .cloned()
            .collect()
    }

    /// The Server `ns/name` from the cache only.
    pub fn cached_server(&self, ns: &str, name: &str) -> Lookup<Server> {
        let obj = self.servers.find(ns, name)?;
        Some(parse_cached(&self.servers, &obj, Server::from_value))
    }

    /// Refreshes the cache size gauges.
    pub fn record_sizes(&self) {
        for (kind, n) in [
            (self.servers.kind, self.servers.len()),
            (self.configs.kind, self.configs.len()),
        ] {
            self.metrics
                .cache_objects
                .get_or_create(&KindLabels { kind: kind.into() })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The Server `ns/name`, parsed.
    pub async fn server(&self, ns: &str, name: &str) -> Lookup<Server> {
        self.lookup(&self.servers, ns, name, Server::from_value)
            .await
    }

    /// The ServerConfig `ns/name`, parsed.
    pub async fn server_config(&self, ns: &str, name: &str) -> Lookup<ServerConfig> {
        self.lookup(&self.configs, ns, name, ServerConfig::from_value)
            .await
    }

    /// The ServerConfig `ns/name` from the cache only (no GET): for the
    /// controller namespace, where a miss is an answer.
    pub fn cached_server_config(&self, ns: &str, name: &str) -> Lookup<ServerConfig> {
        let obj = self.configs.find(ns, name)?;
        Some(parse_cached(&self.configs, &obj, ServerConfig::from_value))
    }

    async fn lookup<T>(
        &self,
        cache: &KindCache<T>,
        ns: &str,
        name: &str,
        parse: fn(&serde_json::Value) -> Result<T, ModelError>,
    ) -> Lookup<T> {
        if let Some(obj) = cache.find(ns, name) {
            return Some(parse_cached(cache, &obj, parse));
        }
        cache_miss(self, cache, ns, name, parse).await
    }
}

async fn cache_miss<T>(
    caches: &Caches,
    cache: &KindCache<T>,
    ns: &str,
    name: &str,
    parse: fn(&serde_json::Value) -> Result<T, ModelError>,
) -> Lookup<T> {
    caches
        .metrics
        .cache_misses
        .get_or_create(&KindLabels {
            kind: cache.kind.into(),
        })
        .inc();
    let client = caches.client.clone()?;
    let api: Api<DynamicObject> = Api::namespaced_with(client, ns, &cache.resource);
    match api.get_opt(name).await {
        Ok(Some(obj)) => Some(Arc::new(to_value(&obj).and_then(|v| parse(&v)))),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(kind = cache.kind, namespace = ns, name, error = %e, "direct GET after cache miss failed");
            None
        }
    }
}

/// The whole object as JSON, whether its body is [`compact`] or not.
fn to_value(obj: &DynamicObject) -> Result<serde_json::Value, ModelError> {
    let invalid = |e: serde_json::Error| ModelError::Invalid {
        what: "object",
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
        detail: e.to_string(),
    };
    let serde_json::Value::String(body) = &obj.data else {
        return serde_json::to_value(obj).map_err(invalid);
    };
    let mut value: serde_json::Value = serde_json::from_str(body).map_err(invalid)?;
    if let serde_json::Value::Object(map) = &mut value {
        map.insert(
            "metadata".into(),
            serde_json::to_value(&obj.metadata).map_err(invalid)?,
        );
        if let Some(t) = &obj.types {
            map.insert("apiVersion".into(), t.api_version.clone().into());
            map.insert("kind".into(), t.kind.clone().into());
        }
    }
    Ok(value)
}

fn parse_cached<T>(
    cache: &KindCache<T>,
    obj: &DynamicObject,
    parse: fn(&serde_json::Value) -> Result<T, ModelError>,
) -> Arc<Result<T, ModelError>> {
    let key = (obj.namespace().unwrap_or_default(), obj.name_any());
    let rv = obj.resource_version().unwrap_or_default();
    if let Some((seen_rv, parsed)) = cache.parsed.get(&key) {
        if seen_rv == rv {
            return parsed;
        }
    }
    let parsed = Arc::new(to_value(obj).and_then(|v| parse(&v)));
    cache.parsed.insert(key, (rv, parsed.clone()));
    parsed
}

/// Every cached object, parsed. Objects not in the parse cache are parsed
/// without being added to it, so a full scan (the sync loop's) does not
/// keep a parsed copy of every object in memory.
fn all_parsed<T>(
    cache: &KindCache<T>,
    parse: fn(&serde_json::Value) -> Result<T, ModelError>,
) -> Vec<Arc<Result<T, ModelError>>> {
    cache
        .stores
        .iter()
        .flat_map(|s| s.state())
        .map(|o| {
            let key = (o.namespace().unwrap_or_default(), o.name_any());
            let rv = o.resource_version().unwrap_or_default();
            match cache.parsed.peek(&key) {
                Some((seen, p)) if seen == rv => p,
                _ => Arc::new(to_value(&o).and_then(|v| parse(&v))),
            }
        })
        .collect()
}
