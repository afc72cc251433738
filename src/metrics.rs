//! Prometheus metrics (prometheus-client): admissions by outcome, latency,
//! cache sizes and cache misses, certificate reloads.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of the admissions counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    /// `patched`, `unchanged`, `denied`, `out_of_scope` or `invalid`.
    pub outcome: String,
}

/// Labels naming a cached kind (`Server`, `ServerConfig`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

/// Labels of the TLS reload counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or `error`.
    pub result: String,
}

/// Labels of the sync loop's action counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// `rollout`, `heal`, `held`, `placeholder_create`, `placeholder_update`,
    /// `placeholder_delete`, `placeholder_capped`, or `error`.
    pub action: String,
}

/// Every metric the binary exports.
pub struct Metrics {
    registry: Registry,
    /// Admissions answered, by outcome.
    pub admissions: Family<AdmissionLabels, Counter>,
    /// Time from request parsed to response encoded.
    pub latency: Histogram,
    /// Objects held by the caches.
    pub cache_objects: Family<KindLabels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    /// Lookups the cache could not answer (then served by a direct GET).
    pub cache_misses: Family<KindLabels, Counter>,
    /// Certificate reloads by result.
    pub tls_reloads: Family<ResultLabels, Counter<u64, AtomicU64>>,
    /// What the sync loop did, by action.
    pub sync_actions: Family<ActionLabels, Counter>,
    /// Placeholders currently kept in the controller namespace.
    pub placeholders: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// 1 while this replica holds the sync lease.
    pub leader: Gauge<i64, std::sync::atomic::AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers all metrics under the `serverconfig_webhook` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("serverconfig_webhook");
        let admissions = Family::<AdmissionLabels, Counter>::default();
        registry.register(
            "admissions",
            "Admission reviews answered, by outcome",
            admissions.clone(),
        );
        // 100 µs .. ~3.3 s: the interesting range sits around a millisecond.
        let latency = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.0001, 2.0, 16,
        ));
        registry.register(
            "admission_duration_seconds",
            "Time to answer one admission review",
            latency.clone(),
        );
        let cache_objects = Family::default();
        registry.register(
            "cache_objects",
            "Objects held in the watch caches",
            cache_objects.clone(),
        );
        let cache_misses = Family::default();
        registry.register(
            "cache_misses",
            "Lookups the watch caches could not answer, served by a direct GET",
            cache_misses.clone(),
        );
        let tls_reloads = Family::default();
        registry.register(
            "tls_reloads",
            "Serving certificate reloads, by result",
            tls_reloads.clone(),
        );
        let sync_actions = Family::default();
        registry.register(
            "sync_actions",
            "What the sync loop did, by action",
            sync_actions.clone(),
        );
        let placeholders = Gauge::default();
        registry.register(
            "placeholders",
            "Placeholder ServerConfigs kept in the controller namespace",
            placeholders.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "sync_leader",
            "1 while this replica holds the sync lease",
            leader.clone(),
        );
        Metrics {
            registry,
            sync_actions,
            placeholders,
            leader,
            admissions,
            latency,
            cache_objects,
            cache_misses,
            tls_reloads,
        }
    }

    /// Counts one admission with the given outcome.
    pub fn admission(&self, outcome: &str, seconds: f64) {
        self.admissions
            .get_or_create(&AdmissionLabels {
                outcome: outcome.to_string(),
            })
            .inc();
        self.latency.observe(seconds);
    }

    /// Counts one sync action.
    pub fn sync_action(&self, action: &str) {
        self.sync_actions
            .get_or_create(&ActionLabels {
                action: action.to_string(),
            })
            .inc();
    }

    /// Prometheus text exposition of all metrics.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
