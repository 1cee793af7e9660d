//! Logs and traces.
//!
//! - Logs: `RUST_LOG` filters (default `info`), `JETFN_LOG_FORMAT` picks text or JSON lines; a
//!   line logged during a delivery carries that delivery's `trace_id` and `span_id`.
//! - Traces: every delivery runs in a span named `<subject> process` (kind consumer) whose parent
//!   is the W3C `traceparent` in the message headers, with the OpenTelemetry messaging attributes;
//!   `Context::publish` injects the current context into what it publishes, so a chain of
//!   functions is one trace. Spans are exported over OTLP when the standard `OTEL_*` variables
//!   ask for it (see [`crate::config`]); otherwise trace context is still propagated.

use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{Config, LogFormat, OtlpConfig, OtlpProtocol};
use crate::handler::EventMeta;

/// The installed tracer provider; [`Telemetry::shutdown`] flushes pending spans.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Exports what is still buffered (at most a few seconds).
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::debug!(%error, "tracer provider shutdown");
        }
    }
}

/// Installs the global subscriber: the log format, and the OpenTelemetry layer (exporting over
/// OTLP when configured). A second call leaves the first subscriber in place. `jetfn::main()`
/// calls it; call it yourself when you start a [`Runtime`](crate::Runtime) from your own code.
pub fn init(config: &Config) -> Telemetry {
    let service = config
        .service_name
        .clone()
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        })
        .unwrap_or_else(|| "jetfn".to_owned());
    let mut builder = SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name(service).build());
    let mut export_error = None;
    if let Some(otlp) = &config.otlp {
        match exporter(otlp) {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            Err(error) => export_error = Some(error),
        }
    }
    let provider = builder.build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("jetfn"));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init();
    match (&config.otlp, export_error) {
        (Some(otlp), None) => {
            tracing::info!(endpoint = %otlp.endpoint, protocol = ?otlp.protocol, "exporting spans over OTLP")
        }
        (Some(_), Some(error)) => {
            tracing::error!(%error, "OTLP exporter not built; spans are not exported")
        }
        (None, _) => {}
    }
    Telemetry { provider }
}

fn exporter(otlp: &OtlpConfig) -> Result<opentelemetry_otlp::SpanExporter, String> {
    use opentelemetry_otlp::{SpanExporter, WithExportConfig};
    let built = match otlp.protocol {
        OtlpProtocol::HttpProtobuf => SpanExporter::builder()
            .with_http()
            .with_endpoint(otlp.endpoint.clone())
            .build(),
        OtlpProtocol::Grpc => SpanExporter::builder()
            .with_tonic()
            .with_endpoint(otlp.endpoint.clone())
            .build(),
    };
    built.map_err(|e| e.to_string())
}

/// The span of one delivery: `<subject> process`, kind consumer, child of the message's
/// `traceparent` when it has one. Its `trace_id` and `span_id` fields put the ids into every log
/// line written during the delivery.
pub(crate) fn delivery_span(function: &str, meta: &EventMeta) -> tracing::Span {
    let span = tracing::info_span!(
        "process",
        otel.name = %format_args!("{} process", meta.subject),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        messaging.system = "nats",
        messaging.operation.type = "process",
        messaging.destination.name = %meta.subject,
        messaging.consumer.group.name = function,
        messaging.message.id = meta.id.as_deref(),
        messaging.message.delivery_attempt = meta.attempt,
        messaging.nats.stream = %meta.stream,
        messaging.nats.stream_sequence = meta.stream_sequence,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(&meta.headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", tracing::field::display(span_context.trace_id()));
        span.record("span_id", tracing::field::display(span_context.span_id()));
    }
    span
}

/// Marks the current delivery span as failed.
pub(crate) fn record_failure(span: &tracing::Span) {
    span.record("otel.status_code", "ERROR");
}

/// Writes the current span's context (`traceparent`, `tracestate`) into `headers`.
pub(crate) fn inject_current(headers: &mut HeaderMap) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|value| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value);
    }
}
