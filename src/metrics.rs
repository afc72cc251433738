//! Prometheus metrics (prometheus-client): admissions by outcome, latency,
//! cache sizes and cache misses, certificate reloads and expiry, the sync
//! loop's actions. The alert rules and dashboard of the chart read these
//! names (checked against a scrape by `cargo xtask monitoring`).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{
    text::encode, EncodeLabelSet, EncodeLabelValue, LabelValueEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A label value enum: a fixed set of meanings, each with its text.
macro_rules! label_values {
    ($(#[$m:meta])* pub enum $name:ident { $( $(#[$vm:meta])* $variant:ident => $text:literal, )* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
        pub enum $name { $( $(#[$vm])* $variant, )* }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )* ];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $text, )* }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                use std::fmt::Write;
                encoder.write_str(self.as_str())
            }
        }
    };
}

/// Labels of the admissions counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    /// `patched`, `unchanged`, `denied`, `out_of_scope` or `invalid`.
    pub outcome: String,
}

/// The kinds the watch caches hold (the `kind` label).
pub const CACHED_KINDS: [&str; 2] = ["Server", "ServerConfig"];

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

label_values! {
    /// What the sync loop did (the `action` label of `sync_actions_total`).
    pub enum SyncAction {
        /// Re-admitted after its ServerConfig or Server changed, read back fixed.
        Rollout => "rollout",
        /// Re-admitted after being admitted without the webhook, read back fixed.
        Heal => "heal",
        /// Deleted for the controller to create again (claim templates).
        Recreate => "recreate",
        /// Out of date, but the Server says `disableAutoUpdate`.
        Held => "held",
        /// Re-admitted, but the template read back is still not the webhook's.
        NotApplied => "not_applied",
        /// A placeholder created.
        PlaceholderCreate => "placeholder_create",
        /// A placeholder of an earlier release rewritten in the current shape.
        PlaceholderUpdate => "placeholder_update",
        /// An unused placeholder deleted.
        PlaceholderDelete => "placeholder_delete",
        /// A namespace's set of names past the cap grew (one Warning Event).
        PlaceholderCapped => "placeholder_capped",
        /// Not looked at yet: the store still shows the workload as it was
        /// before this replica's last write of it (retried on its event).
        Deferred => "deferred",
        /// A write or read of the sync loop failed (retried with backoff).
        Error => "error",
    }
}

/// Labels of the sync loop's action counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: SyncAction,
}

label_values! {
    /// How a direct GET after a cache miss ended (the `result` label of
    /// `direct_gets_total`).
    pub enum GetResult {
        /// Sent; the object exists.
        Found => "found",
        /// Sent; no such object.
        NotFound => "not_found",
        /// Sent; the API server answered with an error.
        Error => "error",
        /// Not sent: the same name was not found moments ago.
        NotFoundCached => "not_found_cached",
        /// Not sent: over the rate of direct GETs.
        Throttled => "throttled",
    }
}

label_values! {
    /// Why a watch started over with a full list (the `reason` label of
    /// `watch_restarts_total`).
    pub enum WatchRestart {
        /// A list or watch request failed, or the stream broke.
        Error => "error",
        /// No event, bookmark or end of the watch within its window.
        Stalled => "stalled",
        /// The API server no longer had the watch's resourceVersion (410).
        Gone => "gone",
    }
}

/// Labels of the watch restart counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchRestartLabels {
    pub kind: String,
    pub reason: WatchRestart,
}

label_values! {
    /// What answered a lookup whose watch was not trusted (the `answer`
    /// label of `untrusted_lookups_total`).
    pub enum UntrustedAnswer {
        /// A direct GET sent for it.
        Get => "get",
        /// A direct GET of the same object sent moments before.
        RecentGet => "recent_get",
        /// The cached copy, which may be older than the API server's: the
        /// GET failed, timed out or was over its rate.
        Cache => "cache",
    }
}

/// Labels of the untrusted lookup counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UntrustedLabels {
    pub kind: String,
    pub answer: UntrustedAnswer,
}

/// Labels of the direct GET counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GetLabels {
    pub kind: String,
    pub result: GetResult,
}

label_values! {
    /// Which listener a connection came to.
    pub enum Listener {
        /// The HTTPS admission listener.
        Webhook => "webhook",
        /// The plain-HTTP metrics and probe listener.
        Metrics => "metrics",
    }
}

label_values! {
    /// Why a connection or request was turned away.
    pub enum Refusal {
        /// `--max-connections` open already, every one busy: closed at once.
        ConnectionCap => "connection_cap",
        /// At the cap, an open connection that had sent nothing, closed to
        /// make room for a new one.
        Evicted => "evicted",
        /// No byte within the first-byte timeout, or idle past the idle timeout.
        Idle => "idle",
        /// Over the budget of request bytes in flight: 503.
        InflightBytes => "inflight_bytes",
        /// Body larger than the limit: 413.
        TooLarge => "too_large",
    }
}

/// Labels of the refusal counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub listener: Listener,
    pub reason: Refusal,
}

/// Labels of the open-connections gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: Listener,
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
    /// Direct GETs after a cache miss, by kind and result (sent or not).
    pub direct_gets: Family<GetLabels, Counter>,
    /// Watches that broke and started over with a list, by kind and reason.
    pub watch_restarts: Family<WatchRestartLabels, Counter>,
    /// Lookups made while their watch was not trusted, by what answered.
    pub untrusted_lookups: Family<UntrustedLabels, Counter>,
    /// Connections and requests turned away, by listener and reason.
    pub refusals: Family<RefusalLabels, Counter>,
    /// Connections open now, by listener.
    pub open_connections: Family<ListenerLabels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    /// Bytes of request bodies held now (the in-flight budget's use).
    pub inflight_bytes: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Certificate reloads by result.
    pub tls_reloads: Family<ResultLabels, Counter<u64, AtomicU64>>,
    /// `notAfter` of the serving certificate in use (the leaf), Unix seconds.
    pub tls_certificate_expiry: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// What the sync loop did, by action.
    pub sync_actions: Family<ActionLabels, Counter>,
    /// Placeholders currently kept in the controller namespace.
    pub placeholders: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Labelled ServerConfigs of the controller namespace somebody else changed.
    pub adopted_placeholders: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// ServerConfig names left without a placeholder by the per-namespace cap.
    pub capped_placeholders: Gauge<i64, std::sync::atomic::AtomicI64>,
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
        // 100 µs .. ~52 s: the interesting range sits around a millisecond,
        // and the top buckets reach past the API server's 30 s cap on
        // `timeoutSeconds`, so a p99 near the timeout can be told apart.
        let latency = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.0001, 2.0, 20,
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
        let direct_gets = Family::default();
        registry.register(
            "direct_gets",
            "Direct GETs after a cache miss, by kind and result (not_found_cached and throttled were not sent)",
            direct_gets.clone(),
        );
        let watch_restarts = Family::default();
        registry.register(
            "watch_restarts",
            "Watches that broke (error, stalled, gone) and started over with a full list; their store is not trusted until it completes",
            watch_restarts.clone(),
        );
        let untrusted_lookups = Family::default();
        registry.register(
            "untrusted_lookups",
            "Admission lookups made while their watch was not trusted, by what answered (cache: the cached copy, possibly older than the API server's)",
            untrusted_lookups.clone(),
        );
        let refusals = Family::default();
        registry.register(
            "refusals",
            "Connections and requests turned away, by listener and reason",
            refusals.clone(),
        );
        let open_connections = Family::default();
        registry.register(
            "open_connections",
            "Connections open now, by listener",
            open_connections.clone(),
        );
        let inflight_bytes = Gauge::default();
        registry.register(
            "inflight_bytes",
            "Bytes of request bodies held now (counted against --max-inflight-bytes)",
            inflight_bytes.clone(),
        );
        let tls_reloads = Family::default();
        registry.register(
            "tls_reloads",
            "Serving certificate reloads, by result",
            tls_reloads.clone(),
        );
        let tls_certificate_expiry = Gauge::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate in use (the leaf of the chain last loaded), in Unix seconds",
            tls_certificate_expiry.clone(),
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
        let adopted_placeholders = Gauge::default();
        registry.register(
            "adopted_placeholders",
            "Labelled ServerConfigs of the controller namespace changed by someone else (never touched)",
            adopted_placeholders.clone(),
        );
        let capped_placeholders = Gauge::default();
        registry.register(
            "capped_placeholders",
            "ServerConfig names of application namespaces left without a placeholder by --max-placeholders-per-namespace (leader only)",
            capped_placeholders.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "sync_leader",
            "1 while this replica holds the sync lease",
            leader.clone(),
        );
        let metrics = Metrics {
            registry,
            sync_actions,
            placeholders,
            adopted_placeholders,
            capped_placeholders,
            leader,
            direct_gets,
            watch_restarts,
            untrusted_lookups,
            refusals,
            open_connections,
            inflight_bytes,
            admissions,
            latency,
            cache_objects,
            cache_misses,
            tls_reloads,
            tls_certificate_expiry,
        };
        metrics.zero_series();
        metrics
    }

    /// Creates every labelled counter series the binary can count, at 0: a
    /// series that first appears at 1 hides that increment from `rate()` and
    /// `increase()` (and so from the alert rules), and the families are then
    /// declared in every scrape.
    fn zero_series(&self) {
        for outcome in ["patched", "unchanged", "denied", "out_of_scope", "invalid"] {
            let _ = self.admissions.get_or_create(&AdmissionLabels {
                outcome: outcome.into(),
            });
        }
        for &action in SyncAction::ALL {
            let _ = self.sync_actions.get_or_create(&ActionLabels { action });
        }
        for &reason in Refusal::ALL {
            let _ = self.refusals.get_or_create(&RefusalLabels {
                listener: Listener::Webhook,
                reason,
            });
            // the metrics port has no body limits
            if !matches!(reason, Refusal::InflightBytes | Refusal::TooLarge) {
                let _ = self.refusals.get_or_create(&RefusalLabels {
                    listener: Listener::Metrics,
                    reason,
                });
            }
        }
        for result in ["ok", "error"] {
            let _ = self.tls_reloads.get_or_create(&ResultLabels {
                result: result.into(),
            });
        }
        for kind in CACHED_KINDS {
            let _ = self
                .cache_misses
                .get_or_create(&KindLabels { kind: kind.into() });
            for &result in GetResult::ALL {
                let _ = self.direct_gets.get_or_create(&GetLabels {
                    kind: kind.into(),
                    result,
                });
            }
            for &reason in WatchRestart::ALL {
                let _ = self.watch_restarts.get_or_create(&WatchRestartLabels {
                    kind: kind.into(),
                    reason,
                });
            }
            for &answer in UntrustedAnswer::ALL {
                let _ = self.untrusted_lookups.get_or_create(&UntrustedLabels {
                    kind: kind.into(),
                    answer,
                });
            }
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
    pub fn sync_action(&self, action: SyncAction) {
        self.sync_actions
            .get_or_create(&ActionLabels { action })
            .inc();
    }

    /// Counts one direct GET (or one not sent).
    pub fn direct_get(&self, kind: &str, result: GetResult) {
        self.direct_gets
            .get_or_create(&GetLabels {
                kind: kind.to_string(),
                result,
            })
            .inc();
    }

    /// Counts one watch that broke and starts over.
    pub fn watch_restart(&self, kind: &str, reason: WatchRestart) {
        self.watch_restarts
            .get_or_create(&WatchRestartLabels {
                kind: kind.to_string(),
                reason,
            })
            .inc();
    }

    /// Counts one lookup made while its watch was not trusted.
    pub fn untrusted_lookup(&self, kind: &str, answer: UntrustedAnswer) {
        self.untrusted_lookups
            .get_or_create(&UntrustedLabels {
                kind: kind.to_string(),
                answer,
            })
            .inc();
    }

    /// Counts one connection or request turned away.
    pub fn refusal(&self, listener: Listener, reason: Refusal) {
        self.refusals
            .get_or_create(&RefusalLabels { listener, reason })
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
