//! What [`desired`] built, kept per Server while neither the Server nor its
//! ServerConfig changes. A few recent results are kept as value trees (60
//! to 170 KiB each: `serde_json` maps are B-trees); every other Server's is
//! kept packed (under 100 bytes for a copy of a stock ServerConfig) and
//! turned back into a tree when its workload is written again. A controller burst over many Servers (or a
//! load test cycling through them) then reads JSON instead of looking up,
//! parsing and merging the ServerConfig again.

use std::sync::{Arc, Mutex};

use super::packed::{Dictionary, Packed};
use crate::core::desired::{desired, Desired};
use crate::core::model::{Server, ServerConfig};

/// Desired workloads kept as trees: the Servers whose workloads the
/// controller is writing now (a create and the updates that follow it).
/// Each holds two pod-spec trees, so the bound is small (ARCHITECTURE.md,
/// "The cache stack", has what larger bounds cost).
pub const HOT_CAPACITY: usize = 32;
/// Bytes of packed desired workloads kept, as [`PackedWeight`] counts them:
/// room for the desired workloads of about 10,000 Servers that use copies
/// of stock ServerConfigs (the RSS it takes: BENCHMARKS.md, growth).
pub const PACKED_BYTES: u64 = 4 << 20;
/// What an entry costs beyond its bytes: its allocations and the cache's
/// slot, ghost and table space (fitted to the growth bench's RSS per
/// entry: docs/history.md, "Packed desired workloads").
const ENTRY_OVERHEAD: usize = 320;

/// (namespace, Server name).
type Slot = (String, String);

/// Weighs a packed entry by the bytes it holds.
#[derive(Clone)]
struct PackedWeight;

impl quick_cache::Weighter<Slot, (Box<str>, Arc<Packed>)> for PackedWeight {
    fn weight(&self, slot: &Slot, (version, packed): &(Box<str>, Arc<Packed>)) -> u64 {
        let bytes = slot.0.len() + slot.1.len() + version.len() + packed.len() + ENTRY_OVERHEAD;
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }
}

/// Bounded cache of [`desired`] results, keyed by (namespace, Server name)
/// and valid for one (Server, ServerConfig) version.
pub struct DesiredCache {
    hot: quick_cache::sync::Cache<Slot, (Box<str>, Arc<Desired>)>,
    packed: quick_cache::sync::Cache<Slot, (Box<str>, Arc<Packed>), PackedWeight>,
    dictionary: Mutex<Dictionary>,
}

impl Default for DesiredCache {
    fn default() -> Self {
        DesiredCache {
            hot: quick_cache::sync::Cache::new(HOT_CAPACITY),
            packed: quick_cache::sync::Cache::with_weighter(1024, PACKED_BYTES, PackedWeight),
            dictionary: Mutex::new(Dictionary::default()),
        }
    }
}

/// The version a cached result is valid for: the Server's uid and
/// resourceVersion and the ServerConfig's resourceVersion (unique per
/// write across the cluster, so a recreated ServerConfig has a new one).
/// `None` for objects never stored (no resourceVersion): never cached.
fn version(server: &Server, config_resource_version: &str) -> Option<Box<str>> {
    if server.meta.resource_version.is_empty() || config_resource_version.is_empty() {
        return None;
    }
    Some(
        format!(
            "{}/{}/{}",
            server.meta.uid, server.meta.resource_version, config_resource_version
        )
        .into(),
    )
}

fn slot(server: &Server) -> Slot {
    (server.meta.namespace.clone(), server.meta.name.clone())
}

impl DesiredCache {
    /// The cached result for this Server and the version of its
    /// ServerConfig, without needing the ServerConfig itself.
    pub fn cached(&self, server: &Server, config_resource_version: &str) -> Option<Arc<Desired>> {
        let version = version(server, config_resource_version)?;
        let slot = slot(server);
        if let Some((v, d)) = self.hot.get(&slot) {
            if v == version {
                return Some(d);
            }
        }
        let (v, packed) = self.packed.get(&slot)?;
        if v != version {
            return None;
        }
        // Packed by this process from a `Desired`; if it ever does not read
        // back, the caller recomputes it.
        let json = packed.unpack().ok()?;
        let d: Arc<Desired> = Arc::new(serde_json::from_slice(&json).ok()?);
        self.hot.insert(slot, (version, d.clone()));
        Some(d)
    }

    /// The desired workload for this Server and ServerConfig: from the
    /// cache while their versions hold, else computed and kept.
    pub fn get(&self, server: &Server, config: &ServerConfig) -> Arc<Desired> {
        let rv = &config.meta.resource_version;
        if let Some(d) = self.cached(server, rv) {
            return d;
        }
        let d = Arc::new(desired(server, config));
        if let Some(version) = version(server, rv) {
            self.hot.insert(slot(server), (version.clone(), d.clone()));
            if let Ok(json) = serde_json::to_vec(&*d) {
                let packed = self
                    .dictionary
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pack(&json);
                self.packed
                    .insert(slot(server), (version, Arc::new(packed)));
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// The real 2.9.1 `mlserver` ServerConfig and Server in namespace `ns`,
    /// with the team's own image and the given resourceVersions.
    fn pair(ns: &str, server_rv: &str, config_rv: &str) -> (Server, ServerConfig) {
        let docs = |text: &str| -> Vec<Value> {
            serde_yaml_ng::Deserializer::from_str(text)
                .map(|d| serde::Deserialize::deserialize(d).expect("fixture YAML"))
                .collect()
        };
        let find = |docs: Vec<Value>| {
            let mut v = docs
                .into_iter()
                .find(|d| d["metadata"]["name"] == "mlserver")
                .expect("mlserver");
            v["metadata"]["namespace"] = json!(ns);
            v
        };
        let mut sc = find(docs(include_str!(
            "../../tests/fixtures/serverconfigs.yaml"
        )));
        sc = serde_json::from_str(&sc.to_string().replace("docker.io/seldonio", "harbor.test"))
            .expect("json");
        sc["metadata"]["resourceVersion"] = json!(config_rv);
        let mut server = find(docs(include_str!("../../tests/fixtures/servers.yaml")));
        server["metadata"]["resourceVersion"] = json!(server_rv);
        server["metadata"]["uid"] = json!(format!("uid-{ns}"));
        (
            Server::from_value(&server).expect("server"),
            ServerConfig::from_value(&sc).expect("config"),
        )
    }

    #[test]
    fn results_are_kept_per_version_and_read_back_packed() {
        let cache = DesiredCache::default();
        let (server, config) = pair("team-0", "10", "20");
        assert!(cache.cached(&server, "20").is_none(), "nothing built yet");
        let built = cache.get(&server, &config);
        assert_eq!(*built, desired(&server, &config));
        assert_eq!(cache.cached(&server, "20").as_deref(), Some(&*built));
        // a new ServerConfig version is a miss, and so is a new Server one
        assert!(cache.cached(&server, "21").is_none());
        let (newer, _) = pair("team-0", "11", "20");
        assert!(cache.cached(&newer, "20").is_none());

        // out of the trees, they come back from their packed copies
        let others: Vec<_> = (1..=2 * HOT_CAPACITY)
            .map(|i| pair(&format!("team-{i}"), "10", "20"))
            .collect();
        for (s, c) in &others {
            cache.get(s, c);
        }
        cache.hot.clear();
        assert_eq!(cache.cached(&server, "20").as_deref(), Some(&*built));
        assert!(cache.hot.get(&slot(&server)).is_some(), "a tree again");
        for (s, c) in &others {
            assert_eq!(cache.cached(s, "20").as_deref(), Some(&desired(s, c)));
        }
    }

    #[test]
    fn copies_pack_small_and_unstored_objects_are_not_kept() {
        let cache = DesiredCache::default();
        for i in 0..10 {
            let (s, c) = pair(&format!("team-{i}"), "10", "20");
            cache.get(&s, &c);
        }
        let (s, _) = pair("team-9", "10", "20");
        let json = serde_json::to_vec(&*cache.cached(&s, "20").expect("kept")).expect("json");
        let (_, packed) = cache.packed.get(&slot(&s)).expect("packed");
        assert!(
            packed.len() * 10 < json.len(),
            "{} of {}",
            packed.len(),
            json.len()
        );

        let (unstored, config) = pair("team-x", "", "20");
        cache.get(&unstored, &config);
        assert!(cache.hot.get(&slot(&unstored)).is_none());
        assert!(cache.packed.get(&slot(&unstored)).is_none());
    }
}
