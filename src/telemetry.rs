//! Logging, and OpenTelemetry traces when `--otel` asks for them: one
//! `tracing` subscriber whose log layer sees events only, plus, when
//! tracing is on, a `tracing-opentelemetry` layer that turns this crate's
//! spans (admission, sync-loop reconcile and write) into OTel spans
//! exported over OTLP/gRPC by a batch processor.
//!
//! Off (the default), no span of the crate is enabled by any layer, so
//! `info_span!` returns a disabled span at the cost of a cached callsite
//! check and no exporter exists. On, the OpenTelemetry SDK reads its
//! standard environment (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`,
//! `OTEL_TRACES_SAMPLER`, ...; the list is in docs/reference.md).

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Key, Value};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// The `service.name` the spans carry unless `OTEL_SERVICE_NAME` or
/// `OTEL_RESOURCE_ATTRIBUTES` name one.
pub const DEFAULT_SERVICE_NAME: &str = "serverconfig-webhook";

/// The target of the crate's spans: the OTel layer exports spans of this
/// crate only (not the Kubernetes client's, not events).
const CRATE_TARGET: &str = "serverconfig_webhook";

/// Why tracing could not be started; the process exits with it before
/// serving anything.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter refused its configuration (a malformed endpoint,
    /// an `https` endpoint: this build speaks plain gRPC only).
    #[error("--otel: cannot build the OTLP exporter (OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT): {0}")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber was already set (only in tests).
    #[error("cannot install the log subscriber: {0}")]
    Subscriber(#[source] tracing_subscriber::util::TryInitError),
}

/// How the process logs and whether it traces.
#[derive(Clone, Copy, Debug)]
pub struct TelemetryConfig {
    /// JSON log lines (else human-readable text).
    pub json_logs: bool,
    /// `--otel`: export OpenTelemetry traces.
    pub otel: bool,
}

/// What must outlive the process's work: the tracer provider, flushed by
/// [`Telemetry::shutdown`] after the background has drained.
#[must_use = "call shutdown() at the end to flush the last spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn tracing_enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still queued and stops the exporter; the last
    /// step of `serve` and `sync`, after [`crate::shutdown::Shutdown::drain`].
    /// The SDK's flush blocks, so it runs on a blocking thread while the
    /// runtime (which drives the gRPC channel) is still up.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match flushed {
            Ok(Ok(())) => tracing::debug!("OpenTelemetry spans flushed"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not flush the last OpenTelemetry spans")
            }
            Err(e) => tracing::warn!(error = %e, "OpenTelemetry flush task failed"),
        }
    }
}

/// Installs the global subscriber: the log layer (filtered by `RUST_LOG`,
/// default `info`, events only) and, when `config.otel` and not
/// `OTEL_SDK_DISABLED=true`, the OTel layer. Must run inside the Tokio
/// runtime (the gRPC channel spawns its worker on it).
pub fn init(config: TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    let provider = if config.otel && !sdk_disabled() {
        Some(tracer_provider()?)
    } else {
        None
    };
    let logs = log_layer(config.json_logs);
    let registry = tracing_subscriber::registry().with(logs);
    match &provider {
        Some(p) => {
            let otel = tracing_opentelemetry::layer()
                .with_tracer(p.tracer(DEFAULT_SERVICE_NAME))
                .with_filter(filter_fn(|m| {
                    m.is_span() && m.target().starts_with(CRATE_TARGET)
                }));
            registry.with(otel).try_init()
        }
        None => registry.try_init(),
    }
    .map_err(TelemetryError::Subscriber)?;
    if provider.is_some() {
        tracing::info!(
            endpoint = %std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT"))
                .unwrap_or_else(|_| "http://localhost:4317 (the default)".into()),
            "OpenTelemetry traces on (OTLP/gRPC)"
        );
    }
    Ok(Telemetry { provider })
}

/// The log lines: events only (spans never reach the log, so turning
/// tracing on changes no log line), filtered by `RUST_LOG`.
fn log_layer(json: bool) -> Box<dyn Layer<Registry> + Send + Sync> {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let events_only = env.and(filter_fn(|m| m.is_event()));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if json {
        fmt.json()
            .flatten_event(true)
            .with_filter(events_only)
            .boxed()
    } else {
        fmt.with_filter(events_only).boxed()
    }
}

/// `OTEL_SDK_DISABLED=true`: the standard switch that turns the SDK off
/// whatever else is set.
fn sdk_disabled() -> bool {
    std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The SDK's tracer provider: the OTLP/gRPC exporter behind a batch
/// processor, the sampler and resource from the standard environment.
fn tracer_provider() -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(TelemetryError::Exporter)?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource())
        .build())
}

/// The resource from `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`.
fn resource() -> Resource {
    named_or_default(Resource::builder().build())
}

/// `from_env`, or one naming [`DEFAULT_SERVICE_NAME`] when it names no
/// service (the SDK then says `unknown_service`).
fn named_or_default(from_env: Resource) -> Resource {
    let named = from_env.get(&Key::new("service.name")).is_some_and(
        |v| !matches!(&v, Value::String(s) if s.as_str().starts_with("unknown_service")),
    );
    if named {
        from_env
    } else {
        Resource::builder()
            .with_service_name(DEFAULT_SERVICE_NAME)
            .build()
    }
}

/// Makes `span` continue the trace whose W3C `traceparent` / `tracestate`
/// headers came with a request (the API server sends them when its own
/// tracing is on). Does nothing for a disabled span (tracing off) or
/// without a valid `traceparent`: the span then starts a trace.
pub fn continue_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if span.is_disabled() || !headers.contains_key("traceparent") {
        return;
    }
    let parent =
        TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    // a span already started cannot change its parent: the caller sets it
    // first, so an error here only means the OTel layer is absent
    let _ = span.set_parent(parent);
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanKind, TraceContextExt};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

    /// A subscriber like [`init`]'s on, with an in-memory exporter.
    fn traced() -> (
        InMemorySpanExporter,
        SdkTracerProvider,
        impl tracing::Subscriber,
    ) {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let otel = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("test"))
            .with_filter(filter_fn(|m| {
                m.is_span() && m.target().starts_with(CRATE_TARGET)
            }));
        (
            exporter,
            provider,
            tracing_subscriber::registry().with(otel),
        )
    }

    #[test]
    fn a_traceparent_header_makes_the_span_its_child() {
        let (exporter, provider, subscriber) = traced();
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            "traceparent",
            axum::http::HeaderValue::from_static(
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("admission", otel.kind = "server");
            continue_trace(&span, &headers);
            drop(span);
        });
        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!(s.name, "admission");
        assert_eq!(s.span_kind, SpanKind::Server);
        assert_eq!(
            s.span_context.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(s.parent_span_id.to_string(), "b7ad6b7169203331");
    }

    #[test]
    fn without_traceparent_the_span_starts_a_trace() {
        let (exporter, provider, subscriber) = traced();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("admission");
            continue_trace(&span, &axum::http::HeaderMap::new());
            drop(span);
        });
        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.len(), 1);
        assert_eq!(
            spans[0].parent_span_id,
            opentelemetry::trace::SpanId::INVALID
        );
    }

    #[test]
    fn a_disabled_span_ignores_the_headers() {
        let span = tracing::Span::none();
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            "traceparent",
            axum::http::HeaderValue::from_static("garbage"),
        );
        continue_trace(&span, &headers);
        assert!(span.is_disabled());
        // nothing to export: the current context stays empty
        assert!(!opentelemetry::Context::current().has_active_span());
    }

    #[test]
    fn the_default_service_name_applies_when_none_is_named() {
        let unnamed = Resource::builder_empty()
            .with_service_name("unknown_service:serverconfig-webhook")
            .build();
        assert_eq!(
            named_or_default(unnamed).get(&Key::new("service.name")),
            Some(Value::from(DEFAULT_SERVICE_NAME))
        );
        let named = Resource::builder_empty()
            .with_service_name("webhook-a")
            .build();
        assert_eq!(
            named_or_default(named).get(&Key::new("service.name")),
            Some(Value::from("webhook-a"))
        );
    }
}
