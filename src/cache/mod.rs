//! Watch-backed caches of Servers and ServerConfigs (watches feeding
//! compact [`store::Store`]s), and the lookups the admission handler needs:
//! cache first, one direct GET on a miss, and the API server instead of a
//! store its watch cannot vouch for ([`freshness`]).

pub mod desired;
mod freshness;
pub mod inputs;
mod packed;
mod store;
mod watch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use store::{Entry, Relist, Store};
pub use watch::WatchTiming;

use crate::core::model::{ModelError, Server, ServerConfig};
use crate::metrics::{GetResult, KindLabels, Metrics, UntrustedAnswer};
use crate::shutdown::Shutdown;

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
type Parsed<T> = quick_cache::sync::Cache<(String, String), (Box<str>, Arc<Result<T, ModelError>>)>;

/// Parsed Servers kept. A miss costs a few microseconds (a Server is a
/// few hundred bytes of JSON), so only recent ones are kept.
const PARSED_SERVERS: usize = 512;
/// Parsed ServerConfigs kept: those the workloads being written now use.
/// Each is a pod-spec tree (`serde_json` maps are B-trees), so the cap is
/// what keeps memory flat as namespaces grow (BENCHMARKS.md, growth).
const PARSED_CONFIGS: usize = 16;
/// What a direct GET found while a store was not trusted, reused for
/// [`RECENT_GET`] so a burst of reviews of one workload sends one GET.
type Recent<T> = quick_cache::sync::Cache<(String, String), (std::time::Instant, Lookup<T>)>;

/// One kind's stores (one per watched namespace, or one for all), a parse
/// cache keyed by resourceVersion, and the recent GETs made instead of
/// asking an untrusted store.
struct KindCache<T> {
    kind: &'static str,
    resource: ApiResource,
    stores: Vec<Arc<Store>>,
    parsed: Parsed<T>,
    recent: Recent<T>,
}

impl<T> KindCache<T> {
    fn new(
        kind: &'static str,
        resource: ApiResource,
        stores: Vec<Arc<Store>>,
        parsed: usize,
    ) -> Self {
        KindCache {
            kind,
            resource,
            stores,
            parsed: Parsed::new(parsed),
            recent: Recent::new(RECENT_ENTRIES),
        }
    }

    fn find(&self, ns: &str, name: &str) -> Option<Arc<Entry>> {
        self.stores.iter().find_map(|s| s.get(ns, name))
    }

    /// Whether the store that holds `ns` may be taken as current (a
    /// namespace no store holds is a miss, answered by a direct GET).
    fn trusted(&self, ns: &str) -> bool {
        self.distrust(ns).is_none()
    }

    /// Why the store holding `ns` is not trusted, if it is not.
    fn distrust(&self, ns: &str) -> Option<freshness::Distrust> {
        self.stores
            .iter()
            .find(|s| s.holds(ns))
            .and_then(|s| s.freshness.distrust())
    }

    /// A direct GET's answer for `ns/name` from the last [`RECENT_GET`].
    fn recent(&self, ns: &str, name: &str) -> Option<Lookup<T>> {
        let (at, found) = self.recent.get(&(ns.to_string(), name.to_string()))?;
        (at.elapsed() < RECENT_GET).then_some(found)
    }

    /// `ns/name` from the stores only, parsed.
    fn cached(
        &self,
        ns: &str,
        name: &str,
        parse: fn(&serde_json::Value) -> Result<T, ModelError>,
    ) -> Lookup<T> {
        let e = self.find(ns, name)?;
        Some(parse_cached(self, ns, name, &e, parse))
    }

    fn len(&self) -> usize {
        self.stores.iter().map(|s| s.len()).sum()
    }

    /// Every entry of `ns` (all with `None`) as (namespace, name, entry).
    fn list(&self, ns: Option<&str>) -> Vec<(String, String, Arc<Entry>)> {
        self.stores.iter().flat_map(|s| s.list(ns)).collect()
    }
}

/// The kinds the caches hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CachedKind {
    /// `mlops.seldon.io` Server.
    Server,
    /// `mlops.seldon.io` ServerConfig.
    ServerConfig,
}

/// One change a cache has applied, published after the store holds it, so
/// whoever reacts reads the new state (the sync loop's triggers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// One object was added, changed or deleted.
    Object {
        /// Its kind.
        kind: CachedKind,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A watch finished a (re)list: any object of its kind in its scope (a
    /// namespace, all with `None`) may have changed.
    Relisted {
        /// The kind it watches.
        kind: CachedKind,
        /// The namespace it watches (`None`: all).
        namespace: Option<String>,
    },
}

/// Changes a slow subscriber may fall behind by before it is told it
/// lagged (and then treats everything as changed).
const CHANGE_FEED_CAPACITY: usize = 1024;

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
    /// Every applied change, by object, so the sync loop can react to it.
    feed: tokio::sync::broadcast::Sender<Change>,
    misses: Misses,
}

/// Where a watch reports what it applied.
struct Notify {
    kind: CachedKind,
    namespace: Option<String>,
    feed: tokio::sync::broadcast::Sender<Change>,
}

impl CachedKind {
    /// The kind's name, as metrics and logs give it.
    pub fn name(self) -> &'static str {
        match self {
            CachedKind::Server => "Server",
            CachedKind::ServerConfig => "ServerConfig",
        }
    }
}

impl Notify {
    /// The kind's name, as metrics and logs give it.
    fn kind_name(&self) -> &'static str {
        self.kind.name()
    }

    /// What `event` changes, once it is applied (`None` while a list is
    /// still being buffered).
    fn change_of(&self, event: &watcher::Event<DynamicObject>) -> Option<Change> {
        match event {
            watcher::Event::Apply(o) | watcher::Event::Delete(o) => Some(Change::Object {
                kind: self.kind,
                namespace: o.namespace().unwrap_or_default(),
                name: o.name_any(),
            }),
            watcher::Event::InitDone => Some(Change::Relisted {
                kind: self.kind,
                namespace: self.namespace.clone(),
            }),
            watcher::Event::Init | watcher::Event::InitApply(_) => None,
        }
    }

    fn applied(&self, change: Option<Change>) {
        if let Some(c) = change {
            // no subscriber (not leading) is not an error
            let _ = self.feed.send(c);
        }
    }
}

impl Caches {
    /// Starts the watches: Servers and ServerConfigs in the watched
    /// namespaces, plus ServerConfigs of the controller namespace. They run
    /// on `shutdown`'s tasks and stop with it.
    pub fn start(
        client: Client,
        namespaces: &Namespaces,
        controller_namespace: &str,
        timing: WatchTiming,
        metrics: Arc<Metrics>,
        shutdown: &Shutdown,
    ) -> Arc<Caches> {
        let feed = tokio::sync::broadcast::channel(CHANGE_FEED_CAPACITY).0;
        let make = |kind: CachedKind, resource: &ApiResource, with_controller_ns: bool| {
            let mut stores = Vec::new();
            let mut namespaces_for_kind: Vec<Option<String>> = match namespaces {
                Namespaces::All => vec![None],
                Namespaces::List(l) => l.iter().cloned().map(Some).collect(),
            };
            if with_controller_ns && !namespaces.contains(controller_namespace) {
                namespaces_for_kind.push(Some(controller_namespace.to_string()));
            }
            for ns in namespaces_for_kind {
                let notify = Notify {
                    kind,
                    namespace: ns.clone(),
                    feed: feed.clone(),
                };
                let store = Arc::new(Store::watched(ns.as_deref(), timing.window()));
                let api = match ns.as_deref() {
                    Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
                    None => Api::all_with(client.clone(), resource),
                };
                let watch = watch::Watch {
                    api,
                    store: store.clone(),
                    notify,
                    timing,
                    metrics: metrics.clone(),
                };
                stores.push(store);
                shutdown.spawn_until_cancelled(watch.run());
            }
            stores
        };
        let server_stores = make(CachedKind::Server, &server_resource(), false);
        let config_stores = make(CachedKind::ServerConfig, &server_config_resource(), true);
        let caches = Caches::new(Some(client), server_stores, config_stores, metrics, feed);
        let waiter = caches.clone();
        shutdown.spawn_until_cancelled(async move {
            waiter.synced().await;
            waiter.ready.store(true, Ordering::SeqCst);
            tracing::info!("caches synced");
        });
        caches
    }

    /// Returns once every store has been filled by its first full list.
    pub async fn synced(&self) {
        for s in self.servers.stores.iter().chain(self.configs.stores.iter()) {
            s.wait_until_ready().await;
        }
    }

    /// Caches pre-filled with these objects and no API server behind them,
    /// where a miss is final: `doctor`'s snapshot of the cluster, and the
    /// HTTP shell's tests and benchmarks.
    pub fn from_objects(
        objects: impl IntoIterator<Item = DynamicObject>,
        metrics: Arc<Metrics>,
    ) -> Arc<Caches> {
        // One pass, each object compacted as it comes: callers may stream
        // objects that would not fit in memory all at once.
        let (servers, configs) = (Arc::new(Store::default()), Arc::new(Store::default()));
        let (mut server_list, mut config_list): (Relist, Relist) = (None, None);
        servers.apply(watcher::Event::Init, &mut server_list);
        configs.apply(watcher::Event::Init, &mut config_list);
        for o in objects {
            match o.types.as_ref().map(|t| t.kind.as_str()) {
                Some("Server") => servers.apply(watcher::Event::InitApply(o), &mut server_list),
                Some("ServerConfig") => {
                    configs.apply(watcher::Event::InitApply(o), &mut config_list)
                }
                _ => {}
            }
        }
        servers.apply(watcher::Event::InitDone, &mut server_list);
        configs.apply(watcher::Event::InitDone, &mut config_list);
        let caches = Caches::new(
            None,
            vec![servers],
            vec![configs],
            metrics,
            tokio::sync::broadcast::channel(1).0,
        );
        caches.ready.store(true, Ordering::SeqCst);
        caches
    }

    /// Caches over these stores, not yet ready.
    fn new(
        client: Option<Client>,
        server_stores: Vec<Arc<Store>>,
        config_stores: Vec<Arc<Store>>,
        metrics: Arc<Metrics>,
        feed: tokio::sync::broadcast::Sender<Change>,
    ) -> Arc<Caches> {
        Arc::new(Caches {
            client,
            servers: KindCache::new(
                CachedKind::Server.name(),
                server_resource(),
                server_stores,
                PARSED_SERVERS,
            ),
            configs: KindCache::new(
                CachedKind::ServerConfig.name(),
                server_config_resource(),
                config_stores,
                PARSED_CONFIGS,
            ),
            ready: AtomicBool::new(false),
            metrics,
            feed,
            misses: Misses::default(),
        })
    }

    /// Whether every watch has finished its initial list.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Every change the caches apply from now on, each sent after the store
    /// holds it.
    pub fn change_feed(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.feed.subscribe()
    }

    /// The cached ServerConfigs of `ns`, parsed (unreadable ones as errors).
    pub fn server_configs_in(&self, ns: &str) -> Vec<Arc<Result<ServerConfig, ModelError>>> {
        all_parsed(&self.configs, Some(ns), ServerConfig::from_value)
    }

    /// `(namespace, name)` of every cached ServerConfig, without parsing
    /// any: the placeholder plan needs names only.
    pub fn server_config_names(&self) -> Vec<(String, String)> {
        self.configs
            .list(None)
            .into_iter()
            .map(|(ns, name, _)| (ns, name))
            .collect()
    }

    /// Cached Servers of `ns` whose `spec.serverConfig` is `config_name`.
    pub fn servers_using(&self, ns: &str, config_name: &str) -> Vec<Server> {
        self.servers
            .list(Some(ns))
            .iter()
            .map(|(ns, name, e)| parse_cached(&self.servers, ns, name, e, Server::from_value))
            .filter_map(|r| r.as_ref().as_ref().ok().cloned())
            .filter(|s| s.server_config == config_name)
            .collect()
    }

    /// The Server `ns/name` from the cache only.
    pub fn cached_server(&self, ns: &str, name: &str) -> Lookup<Server> {
        self.servers.cached(ns, name, Server::from_value)
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

    /// The resourceVersion of the cached ServerConfig `ns/name`, without
    /// parsing it: enough to find what was built from it before. `None`
    /// while the store is not trusted (its version may be an old one).
    pub fn server_config_version(&self, ns: &str, name: &str) -> Option<Box<str>> {
        if !self.configs.trusted(ns) {
            return None;
        }
        self.configs
            .find(ns, name)
            .map(|e| e.resource_version.clone())
    }

    /// The ServerConfig `ns/name` from the cache only (no GET): for the
    /// controller namespace, where a miss is an answer.
    pub fn cached_server_config(&self, ns: &str, name: &str) -> Lookup<ServerConfig> {
        self.configs.cached(ns, name, ServerConfig::from_value)
    }

    async fn lookup<T>(
        &self,
        cache: &KindCache<T>,
        ns: &str,
        name: &str,
        parse: fn(&serde_json::Value) -> Result<T, ModelError>,
    ) -> Lookup<T> {
        if let Some(distrust) = cache.distrust(ns) {
            return untrusted_lookup(self, cache, ns, name, parse, distrust).await;
        }
        match cache.cached(ns, name, parse) {
            Some(found) => Some(found),
            None => cache_miss(self, cache, ns, name, parse).await,
        }
    }
}

/// `ns/name` while its store is not trusted: a direct GET (or one sent in
/// the last [`RECENT_GET`]), bounded by its own rate limit and a short
/// timeout; when none can be had, the cache's copy, counted, since it may
/// be older than the API server's.
async fn untrusted_lookup<T>(
    caches: &Caches,
    cache: &KindCache<T>,
    ns: &str,
    name: &str,
    parse: fn(&serde_json::Value) -> Result<T, ModelError>,
    distrust: freshness::Distrust,
) -> Lookup<T> {
    let answered = |answer| caches.metrics.untrusted_lookup(cache.kind, answer);
    if let Some(lines) = caches.misses.distrust_log.occurred() {
        tracing::info!(
            kind = cache.kind,
            namespace = ns,
            %distrust,
            lines,
            "watch not trusted: lookups ask the API server (lines: how many lookups since the last such line)"
        );
    }
    if let Some(found) = cache.recent(ns, name) {
        answered(UntrustedAnswer::RecentGet);
        return found;
    }
    match fresh_get(caches, cache, ns, name, parse).await {
        Ok(found) => {
            answered(UntrustedAnswer::Get);
            cache.recent.insert(
                (ns.to_string(), name.to_string()),
                (std::time::Instant::now(), found.clone()),
            );
            found
        }
        Err(why) => {
            answered(UntrustedAnswer::Cache);
            if let Some(lines) = caches.misses.untrusted_log.occurred() {
                tracing::warn!(
                    kind = cache.kind,
                    namespace = ns,
                    name,
                    why,
                    %distrust,
                    lines,
                    "watch not trusted and no direct GET answered: using the cached copy (lines: how many since the last such line)"
                );
            }
            cache.cached(ns, name, parse)
        }
    }
}

/// One GET of `ns/name` instead of an untrusted store: the object (`None`
/// when it does not exist), or why there is no answer.
async fn fresh_get<T>(
    caches: &Caches,
    cache: &KindCache<T>,
    ns: &str,
    name: &str,
    parse: fn(&serde_json::Value) -> Result<T, ModelError>,
) -> Result<Lookup<T>, &'static str> {
    let client = caches.client.clone().ok_or("no API server")?;
    let misses = &caches.misses;
    if misses.untrusted_paused() {
        return Err("direct GETs paused after one failed (the API server is down or throttling)");
    }
    if misses.untrusted_limiter.check().is_err() {
        return Err("over the rate of direct GETs for untrusted watches");
    }
    let api: Api<DynamicObject> = Api::namespaced_with(client, ns, &cache.resource);
    // created before the GET is sent: a failure of any GET in flight
    // from now on ends this one's wait too
    let another_failed = misses.untrusted_failed.notified();
    let answer = tokio::select! {
        got = api.get_opt(name) => match got {
            Ok(Some(obj)) => Ok(Some(Arc::new(to_value(&obj).and_then(|v| parse(&v))))),
            Ok(None) => Ok(None),
            Err(_) => Err("the GET failed"),
        },
        () = tokio::time::sleep(UNTRUSTED_GET_TIMEOUT) => Err("the GET timed out"),
        () = another_failed => return Err("another direct GET failed or timed out meanwhile"),
    };
    if answer.is_err() {
        misses.pause_untrusted();
    }
    answer
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
    let counted = |result| {
        caches.metrics.direct_get(cache.kind, result);
        None
    };
    let key = (cache.kind, ns.to_string(), name.to_string());
    if caches.misses.recently_not_found(&key) {
        return counted(GetResult::NotFoundCached);
    }
    if caches.misses.limiter.check().is_err() {
        if let Some(throttled) = caches.misses.throttled_log.occurred() {
            tracing::warn!(
                kind = cache.kind,
                namespace = ns,
                name,
                throttled,
                "direct GET after cache miss not sent: over the rate limit (throttled: how many since the last such line)"
            );
        }
        return counted(GetResult::Throttled);
    }
    let api: Api<DynamicObject> = Api::namespaced_with(client, ns, &cache.resource);
    match api.get_opt(name).await {
        Ok(Some(obj)) => {
            caches.metrics.direct_get(cache.kind, GetResult::Found);
            Some(Arc::new(to_value(&obj).and_then(|v| parse(&v))))
        }
        Ok(None) => {
            caches.misses.not_found(key);
            counted(GetResult::NotFound)
        }
        Err(e) => {
            tracing::warn!(kind = cache.kind, namespace = ns, name, error = %e, "direct GET after cache miss failed");
            counted(GetResult::Error)
        }
    }
}

/// What bounds the direct GETs of cache misses: names are checked by the
/// caller (`core::names`), a name not found is not asked for again for
/// [`NOT_FOUND_TTL`], and GETs are rate limited, so reviews naming random
/// objects cannot turn into a stream of API requests.
struct Misses {
    not_found: quick_cache::sync::Cache<(&'static str, String, String), std::time::Instant>,
    limiter: governor::DefaultDirectRateLimiter,
    /// The "not sent" warning, so a flood of misses is not a flood of lines.
    throttled_log: crate::log_limit::LogLimit,
    /// GETs sent instead of asking a store that is not trusted.
    untrusted_limiter: governor::DefaultDirectRateLimiter,
    /// The "cached copy used" warning.
    untrusted_log: crate::log_limit::LogLimit,
    /// The "watch not trusted" line.
    distrust_log: crate::log_limit::LogLimit,
    /// Told when such a GET fails or times out: every other one in flight
    /// gives up at once, so a slow API server holds the reviews of one
    /// timeout at most, not each its own.
    untrusted_failed: tokio::sync::Notify,
    /// Until when no such GET is sent: one failed, so the API server is
    /// down, slow or throttling us (429s are retried inside the client),
    /// and every review asking again would only add to its load and to
    /// each review's wait.
    untrusted_pause_until: freshness::AtomicMoment,
}

/// How long a name the API server did not find is answered from memory.
const NOT_FOUND_TTL: std::time::Duration = std::time::Duration::from_secs(2);
/// Names remembered as not found.
const NOT_FOUND_ENTRIES: usize = 4096;
/// Direct GETs per second, and the burst above it.
const GETS_PER_SECOND: u32 = 20;
const GETS_BURST: u32 = 50;
/// GETs per second (and burst) instead of untrusted stores: every review
/// asks while a watch is broken, so this is what an outage costs the API
/// server at most, whatever the review rate.
const UNTRUSTED_GETS_PER_SECOND: u32 = 100;
const UNTRUSTED_GETS_BURST: u32 = 200;
/// How long a GET made instead of an untrusted store answers for that
/// object: the staleness it adds, and what bounds GETs per object.
const RECENT_GET: std::time::Duration = std::time::Duration::from_millis(500);
/// Objects whose recent GET is remembered.
const RECENT_ENTRIES: usize = 1024;
/// How long such a GET may take before the cached copy is used: at the
/// review rate the soak drives, longer waits fill the API server's (and a
/// load generator's) requests in flight (docs/reliability.md, "Soak").
const UNTRUSTED_GET_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);
/// After one such GET failed, how long the cached copy answers at once.
const UNTRUSTED_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

impl Default for Misses {
    fn default() -> Self {
        Misses {
            not_found: quick_cache::sync::Cache::new(NOT_FOUND_ENTRIES),
            limiter: rate_limiter(GETS_PER_SECOND, GETS_BURST),
            throttled_log: crate::log_limit::LogLimit::default(),
            untrusted_limiter: rate_limiter(UNTRUSTED_GETS_PER_SECOND, UNTRUSTED_GETS_BURST),
            untrusted_log: crate::log_limit::LogLimit::default(),
            distrust_log: crate::log_limit::LogLimit::default(),
            untrusted_failed: tokio::sync::Notify::new(),
            untrusted_pause_until: freshness::AtomicMoment::new(),
        }
    }
}

/// `per_second` with bursts of `burst`.
fn rate_limiter(per_second: u32, burst: u32) -> governor::DefaultDirectRateLimiter {
    let rate = std::num::NonZeroU32::new(per_second).unwrap_or(std::num::NonZeroU32::MIN);
    let burst = std::num::NonZeroU32::new(burst).unwrap_or(std::num::NonZeroU32::MIN);
    governor::RateLimiter::direct(governor::Quota::per_second(rate).allow_burst(burst))
}

impl Misses {
    /// Whether GETs instead of untrusted stores are paused.
    fn untrusted_paused(&self) -> bool {
        std::time::Instant::now() < self.untrusted_pause_until.get()
    }

    /// Pauses GETs instead of untrusted stores for [`UNTRUSTED_PAUSE`].
    fn pause_untrusted(&self) {
        self.untrusted_pause_until
            .advance_to(std::time::Instant::now() + UNTRUSTED_PAUSE);
        self.untrusted_failed.notify_waiters();
    }

    fn recently_not_found(&self, key: &(&'static str, String, String)) -> bool {
        self.not_found
            .get(key)
            .is_some_and(|at| at.elapsed() < NOT_FOUND_TTL)
    }

    fn not_found(&self, key: (&'static str, String, String)) {
        self.not_found.insert(key, std::time::Instant::now());
    }
}

/// A direct GET's object as JSON.
fn to_value(obj: &DynamicObject) -> Result<serde_json::Value, ModelError> {
    serde_json::to_value(obj).map_err(|e| {
        invalid(
            obj.namespace().unwrap_or_default(),
            obj.name_any(),
            e.to_string(),
        )
    })
}

fn invalid(namespace: String, name: String, detail: String) -> ModelError {
    ModelError::Invalid {
        what: "object",
        namespace,
        name,
        detail,
    }
}

/// The entry parsed: from the parse cache while its resourceVersion holds.
fn parse_cached<T>(
    cache: &KindCache<T>,
    ns: &str,
    name: &str,
    entry: &Entry,
    parse: fn(&serde_json::Value) -> Result<T, ModelError>,
) -> Arc<Result<T, ModelError>> {
    let key = (ns.to_string(), name.to_string());
    if let Some((seen_rv, parsed)) = cache.parsed.get(&key) {
        if seen_rv == entry.resource_version {
            return parsed;
        }
    }
    let parsed = parse_entry(ns, name, entry, parse);
    cache
        .parsed
        .insert(key, (entry.resource_version.clone(), parsed.clone()));
    parsed
}

fn parse_entry<T>(
    ns: &str,
    name: &str,
    entry: &Entry,
    parse: fn(&serde_json::Value) -> Result<T, ModelError>,
) -> Arc<Result<T, ModelError>> {
    Arc::new(
        entry
            .value()
            .map_err(|e| invalid(ns.to_string(), name.to_string(), e.to_string()))
            .and_then(|v| parse(&v)),
    )
}

/// Every cached object of `ns` (all with `None`), parsed. Objects not in
/// the parse cache are parsed without being added to it, so a full scan
/// does not keep a parsed copy of every object in memory.
fn all_parsed<T>(
    cache: &KindCache<T>,
    ns: Option<&str>,
    parse: fn(&serde_json::Value) -> Result<T, ModelError>,
) -> Vec<Arc<Result<T, ModelError>>> {
    cache
        .list(ns)
        .into_iter()
        .map(
            |(ns, name, e)| match cache.parsed.peek(&(ns.clone(), name.clone())) {
                Some((seen, p)) if seen == e.resource_version => p,
                _ => parse_entry(&ns, &name, &e, parse),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Caches whose watches never listed (so every lookup is untrusted)
    /// and whose API server accepts connections and never answers: a
    /// hand-written stand-in, since a real API server cannot be made to
    /// hang on demand inside a unit test (the e2e suite stalls a real one).
    async fn untrusted_caches_before_a_silent_api_server() -> (Arc<Caches>, tokio::net::TcpListener)
    {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let url = format!("http://{}", silent.local_addr().expect("its address"));
        let config = kube::Config::new(url.parse().expect("a URL"));
        let client = Client::try_from(config).expect("a client");
        let store = || Arc::new(Store::watched(None, Duration::from_secs(4)));
        let caches = Caches::new(
            Some(client),
            vec![store()],
            vec![store()],
            Arc::new(Metrics::default()),
            tokio::sync::broadcast::channel(1).0,
        );
        (caches, silent)
    }

    #[tokio::test(start_paused = true)]
    async fn one_timed_out_get_ends_every_wait_in_flight() {
        let (caches, _silent) = untrusted_caches_before_a_silent_api_server().await;
        let first = {
            let caches = caches.clone();
            tokio::spawn(async move { caches.server("team", "a").await })
        };
        // (tokio's paused clock: these are the lookups' own timers, not
        // the machine's speed)
        let late = Duration::from_millis(400);
        tokio::time::sleep(late).await;
        let asked = tokio::time::Instant::now();
        let second = caches.server_config("team", "b").await;
        let waited = asked.elapsed();
        assert!(second.is_none(), "nothing cached, nothing answered");
        assert!(
            waited <= UNTRUSTED_GET_TIMEOUT - late,
            "the second GET gave up when the first timed out, after {waited:?}"
        );
        assert!(first.await.expect("the first lookup").is_none());
        // paused since: the next lookup answers from the cache at once
        let asked = tokio::time::Instant::now();
        assert!(caches.server("team", "c").await.is_none());
        assert_eq!(asked.elapsed(), Duration::ZERO);
    }
}
