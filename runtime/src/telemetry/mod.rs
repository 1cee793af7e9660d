//! Logs and traces.
//!
//! - Logs: `RUST_LOG` filters (default `info`), `JETFN_LOG_FORMAT` picks text or JSON lines; a
//!   line logged during a delivery carries that delivery's `trace_id` and `span_id` (see
//!   the `log` module).
//! - Traces: every delivery runs in an OpenTelemetry span named `<subject> process` (kind
//!   consumer) whose parent is the W3C `traceparent` in the message headers, with the
//!   OpenTelemetry messaging attributes. The span is made with the OpenTelemetry API through the
//!   global tracer provider (which [`init`] installs), not through `tracing`: a delivery costs one
//!   span, not a `tracing` span translated field by field. Its context is the current
//!   OpenTelemetry context while the handler runs, so `tracing` spans the handler opens are its
//!   children, and `Context::publish` injects it (or that of a handler's span) into what it
//!   publishes: a chain of functions is one trace. Spans are exported over OTLP when the standard
//!   `OTEL_*` variables ask for it (see [`crate::config`]; `http/protobuf` through the `otlp`
//!   module's encoder, `grpc`, with the cargo feature `otlp-grpc`, through `opentelemetry-otlp`); the standard `OTEL_TRACES_SAMPLER` /
//!   `OTEL_TRACES_SAMPLER_ARG` pick the sampler (default: parent-based, always on). Without an
//!   exporter, spans still get ids, so trace context is propagated and logs carry ids.
//!
//! If you install your own subscriber instead of calling [`init`], set the global tracer provider
//! too, or deliveries get no spans of their own (trace context still passes through).

mod log;
mod otlp;

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer as _, TracerProvider as _,
};
use opentelemetry::{KeyValue, StringValue};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{Config, LogFormat, OtlpProtocol};
use crate::handler::EventMeta;
use crate::propagation;
use log::{Layout, WithTraceIds};

/// The name of jetfn's tracer (its instrumentation scope).
const TRACER: &str = "jetfn";

/// Whether deliveries make their spans through the global tracer provider. [`init`] turns it
/// off when the provider it installs exports nothing (no `OTEL_*` endpoint) and samples as by
/// default: a delivery's span would then be built, attributes and all, only to be dropped
/// unread. Its context still gets ids (see [`unrecorded`]), so logs carry them and outputs carry
/// the trace on. A provider set by other code than [`init`] is always used.
static RECORD_DELIVERY_SPANS: AtomicBool = AtomicBool::new(true);

/// The installed tracer provider; [`Telemetry::shutdown`] flushes pending spans.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Installs the global subscriber (the log format, and the OpenTelemetry layer for the
    /// handlers' own `tracing` spans) and the global tracer provider (exporting over OTLP when
    /// the `OTEL_*` variables ask for it), which the delivery spans of runtimes started
    /// afterwards use. A second call leaves the first subscriber in place and replaces the
    /// tracer provider. `jetfn::main()` calls it first; call it yourself when you start a
    /// [`Runtime`](crate::Runtime) from your own code.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), jetfn::ConfigError> {
    /// let config = jetfn::Config::from_env()?;
    /// let telemetry = jetfn::Telemetry::init(&config);
    /// // ... run ...
    /// telemetry.shutdown();
    /// # Ok(()) }
    /// ```
    pub fn init(config: &Config) -> Self {
        init(config)
    }

    /// Exports what is still buffered (at most a few seconds).
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::debug!(%error, "tracer provider shutdown");
        }
    }
}

/// Installs the global subscriber (the log format, and the OpenTelemetry layer for the handlers'
/// own `tracing` spans) and the global tracer provider (exporting over OTLP when configured),
/// which the delivery spans of runtimes started afterwards use. A second call leaves the first
/// subscriber in place and replaces the tracer provider. `jetfn::main()`
/// calls it; call it yourself when you start a [`Runtime`](crate::Runtime) from your own code.
pub(crate) fn init(config: &Config) -> Telemetry {
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
        match otlp.protocol {
            OtlpProtocol::HttpProtobuf => match otlp::HttpExporter::new(otlp) {
                Ok(exporter) => builder = builder.with_batch_exporter(exporter),
                Err(error) => export_error = Some(error),
            },
            #[cfg(feature = "otlp-grpc")]
            OtlpProtocol::Grpc => match grpc_exporter(otlp) {
                Ok(exporter) => builder = builder.with_batch_exporter(exporter),
                Err(error) => export_error = Some(error),
            },
            // The configuration refuses `grpc` without the feature (exit 2); a `Config` made
            // in code may still hold it.
            #[cfg(not(feature = "otlp-grpc"))]
            OtlpProtocol::Grpc => export_error = Some(crate::config::GRPC_NEEDS_FEATURE.to_owned()),
        }
    }
    let exporting = config.otlp.is_some() && export_error.is_none();
    let default_sampler = std::env::var("OTEL_TRACES_SAMPLER").map_or(true, |sampler| {
        matches!(sampler.trim(), "" | "parentbased_always_on")
    });
    let provider = builder.build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    RECORD_DELIVERY_SPANS.store(exporting || !default_sampler, Ordering::Relaxed);
    // Spans the user opens in a handler become OpenTelemetry spans too (children of the delivery
    // span: the layer takes the current OpenTelemetry context as the parent).
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(TRACER))
        .with_filter(log_filter());
    let fmt = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(log::ansi())
            .event_format(WithTraceIds {
                inner: tracing_subscriber::fmt::format().with_ansi(log::ansi()),
                layout: Layout::Text,
            })
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .event_format(WithTraceIds {
                inner: tracing_subscriber::fmt::format()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
                layout: Layout::Json,
            })
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(log_filter()))
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

/// `RUST_LOG`, default `info`: what is logged, and which `tracing` spans and events reach the
/// OpenTelemetry layer (without it, every `trace!` in the libraries below would be built).
fn log_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The gRPC exporter (`opentelemetry-otlp`'s, over tonic, which reads the headers from the
/// environment itself); HTTP is [`otlp::HttpExporter`].
#[cfg(feature = "otlp-grpc")]
fn grpc_exporter(
    otlp: &crate::config::OtlpConfig,
) -> Result<opentelemetry_otlp::SpanExporter, String> {
    use opentelemetry_otlp::{SpanExporter, WithExportConfig};
    SpanExporter::builder()
        .with_tonic()
        .with_endpoint(otlp.endpoint.clone())
        .with_timeout(otlp.timeout)
        .build()
        .map_err(|e| e.to_string())
}

/// jetfn's tracer, from the global tracer provider as it is when called.
pub(crate) fn tracer() -> BoxedTracer {
    opentelemetry::global::tracer(TRACER)
}

/// The messaging attributes every delivery span has, in a vector with room for `capacity`.
fn common_attributes(
    function: &Arc<str>,
    destination: StringValue,
    capacity: usize,
) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(capacity);
    attributes.extend([
        KeyValue::new("messaging.system", "nats"),
        KeyValue::new("messaging.operation.type", "process"),
        KeyValue::new("messaging.destination.name", destination),
        KeyValue::new(
            "messaging.consumer.group.name",
            StringValue::from(function.clone()),
        ),
    ]);
    attributes
}

/// The span of one delivery, `<subject> process` (kind consumer, child of the message's
/// `traceparent` when it has one), as the context the delivery runs in.
pub(crate) struct DeliverySpan {
    pub(crate) otel: opentelemetry::Context,
}

/// The span name and destination of a function's deliveries, made once when its subject is
/// one subject (no wildcard), so a delivery allocates neither.
#[derive(Debug)]
pub(crate) struct SpanNames {
    /// The subject and its `<subject> process` span name (kept for the process's life).
    fixed: Option<(Arc<str>, &'static str)>,
}

impl SpanNames {
    pub(crate) fn new(subject: &str) -> Self {
        let wildcard = subject.split('.').any(|token| token == "*" || token == ">");
        let fixed = (!wildcard).then(|| {
            let name: &'static str = Box::leak(format!("{subject} process").into_boxed_str());
            (Arc::<str>::from(subject), name)
        });
        Self { fixed }
    }

    /// The span name and destination of a message on `subject`.
    fn of(&self, subject: &str) -> (Cow<'static, str>, StringValue) {
        match &self.fixed {
            Some((fixed, name)) if **fixed == *subject => {
                (Cow::Borrowed(*name), StringValue::from(fixed.clone()))
            }
            _ => {
                let mut name = String::with_capacity(subject.len() + 8);
                name.push_str(subject);
                name.push_str(" process");
                (Cow::Owned(name), StringValue::from(subject.to_owned()))
            }
        }
    }
}

/// The context of a delivery whose span nobody records: as the default sampler with no exporter
/// would make it, a child of `parent` (its trace, its sampling decision and trace state, a new
/// span id) or the root of a new, sampled trace; without the span record.
fn unrecorded(parent: opentelemetry::Context) -> opentelemetry::Context {
    let mut rng = rand::rng();
    let span_id = SpanId::from(rand::Rng::random::<u64>(&mut rng));
    let context = {
        let span = parent.span();
        let of_parent = span.span_context();
        if of_parent.is_valid() {
            SpanContext::new(
                of_parent.trace_id(),
                span_id,
                of_parent.trace_flags(),
                false,
                of_parent.trace_state().clone(),
            )
        } else {
            SpanContext::new(
                TraceId::from(rand::Rng::random::<u128>(&mut rng)),
                span_id,
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            )
        }
    };
    parent.with_remote_span_context(context)
}

impl DeliverySpan {
    pub(crate) fn start(
        tracer: &BoxedTracer,
        function: &Arc<str>,
        names: &SpanNames,
        meta: &EventMeta,
    ) -> Self {
        let parent = propagation::extract(&meta.headers);
        if !RECORD_DELIVERY_SPANS.load(Ordering::Relaxed) {
            return Self {
                otel: unrecorded(parent),
            };
        }
        let (name, destination) = names.of(&meta.subject);
        let mut attributes = common_attributes(function, destination, 8);
        attributes.extend([
            KeyValue::new(
                "messaging.message.delivery_attempt",
                i64::from(meta.attempt),
            ),
            KeyValue::new(
                "messaging.nats.stream",
                StringValue::from(meta.stream.clone()),
            ),
            KeyValue::new(
                "messaging.nats.stream_sequence",
                i64::try_from(meta.stream_sequence).unwrap_or(i64::MAX),
            ),
        ]);
        if let Some(id) = &meta.id {
            attributes.push(KeyValue::new("messaging.message.id", id.clone()));
        }
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        Self {
            otel: parent.with_span(span),
        }
    }

    /// The span of one call of a batch function, `<subject> process` (kind consumer, a new
    /// trace), linked to the trace context of each of its messages: the OpenTelemetry messaging
    /// convention for a batch receive. `metas` is not empty.
    pub(crate) fn start_batch(
        tracer: &BoxedTracer,
        function: &Arc<str>,
        names: &SpanNames,
        metas: &[EventMeta],
    ) -> Self {
        let subject = metas.first().map_or("", |meta| meta.subject.as_str());
        let (name, destination) = names.of(subject);
        // Only valid contexts: a malformed `traceparent` extracts as an invalid one, which
        // would be exported as a link with zero ids.
        let links: Vec<Link> = metas
            .iter()
            .map(|meta| {
                propagation::extract(&meta.headers)
                    .span()
                    .span_context()
                    .clone()
            })
            .filter(SpanContext::is_valid)
            .map(Link::with_context)
            .collect();
        let mut attributes = common_attributes(function, destination, 5);
        attributes.push(KeyValue::new(
            "messaging.batch.message_count",
            i64::try_from(metas.len()).unwrap_or(i64::MAX),
        ));
        let parent = opentelemetry::Context::new();
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes)
            .with_links(links)
            .start_with_context(tracer, &parent);
        Self {
            otel: parent.with_span(span),
        }
    }

    /// The span of one request of a request function, `<subject> process` (kind server, child
    /// of the request's `traceparent`), with the messaging attributes (the consumer group is
    /// the queue group `queue_group`) and `jetfn.function`.
    pub(crate) fn start_request(
        tracer: &BoxedTracer,
        function: &Arc<str>,
        names: &SpanNames,
        subject: &str,
        headers: &async_nats::HeaderMap,
        queue_group: &'static str,
    ) -> Self {
        let parent = propagation::extract(headers);
        let (name, destination) = names.of(subject);
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("messaging.system", "nats"),
                KeyValue::new("messaging.operation.type", "process"),
                KeyValue::new("messaging.destination.name", destination),
                KeyValue::new("messaging.consumer.group.name", queue_group),
                KeyValue::new("jetfn.function", StringValue::from(function.clone())),
            ])
            .start_with_context(tracer, &parent);
        Self {
            otel: parent.with_span(span),
        }
    }

    /// Marks the delivery as failed.
    pub(crate) fn record_failure(&self, error: &impl std::fmt::Display) {
        self.otel
            .span()
            .set_status(Status::error(error.to_string()));
    }

    /// Marks a request as failed, with the status code its caller gets.
    pub(crate) fn record_reply_failure(&self, message: &str, code: u16) {
        let span = self.otel.span();
        span.set_status(Status::error(message.to_owned()));
        span.set_attribute(KeyValue::new("rpc.response.status_code", i64::from(code)));
    }

    /// Ends the OpenTelemetry span (it is exported, when export is on).
    pub(crate) fn end(&self) {
        self.otel.span().end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unrecorded_delivery_continues_its_parents_trace_under_a_span_id_of_its_own() {
        let parent = SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736_u128),
            SpanId::from(0x00f0_67aa_0ba9_02b7_u64),
            TraceFlags::NOT_SAMPLED,
            true,
            TraceState::from_key_value([("vendor", "value")]).expect("trace state"),
        );
        let context =
            unrecorded(opentelemetry::Context::new().with_remote_span_context(parent.clone()));
        let span = context.span();
        let child = span.span_context();
        assert!(child.is_valid());
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_ne!(child.span_id(), parent.span_id());
        assert_eq!(
            child.trace_flags(),
            TraceFlags::NOT_SAMPLED,
            "the parent's decision"
        );
        assert_eq!(child.trace_state(), parent.trace_state());
        assert!(!child.is_remote());
        assert!(!span.is_recording());
    }

    #[test]
    fn an_unrecorded_delivery_without_a_parent_starts_a_sampled_trace() {
        let first = unrecorded(opentelemetry::Context::new());
        let second = unrecorded(opentelemetry::Context::new());
        let (first, second) = (first.span(), second.span());
        let (first, second) = (first.span_context(), second.span_context());
        assert!(first.is_valid() && first.is_sampled());
        assert_ne!(first.trace_id(), second.trace_id(), "a new trace each");
    }
}
