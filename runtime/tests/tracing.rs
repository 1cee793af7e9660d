//! Trace context flows through a chain of functions: one trace, correct parent/child links.

mod common;

use async_nats::jetstream;
use common::{start, PATIENCE};
use jetfn::testing::{eventually, NatsServer};
use jetfn::{event_handler, Context, Event, HandlerError};
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[event_handler(subject = "trace.orders.created")]
async fn first_step(ctx: Context, event: Event<serde_json::Value>) -> Result<(), HandlerError> {
    // A span of the handler's own: a child of the delivery span, and the parent of what it
    // publishes.
    ctx.publish("trace.orders.reserved", &event.data)
        .instrument(tracing::info_span!("reserve stock"))
        .await?;
    Ok(())
}

#[event_handler(subject = "trace.orders.reserved")]
async fn second_step(_ctx: Context, _event: Event<serde_json::Value>) -> Result<(), HandlerError> {
    Ok(())
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[tokio::test]
async fn a_chain_of_functions_is_one_trace() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    // What `jetfn::Telemetry::init` sets up: jetfn's delivery spans come from the global tracer
    // provider; the handler's own `tracing` spans go through a tracing-opentelemetry layer.
    opentelemetry::global::set_tracer_provider(provider.clone());
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let server = NatsServer::start();
    let runtime = start(&server, "first_step,second_step", &[]).await;
    let js = jetstream::new(server.client().await);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"));
    js.publish_with_headers("trace.orders.created", headers, r#"{"order":1}"#.into())
        .await
        .expect("publish")
        .await
        .expect("ack");

    let spans = || {
        let _ = provider.force_flush();
        exporter.get_finished_spans().expect("spans")
    };
    assert!(
        eventually(PATIENCE, || async {
            spans()
                .iter()
                .filter(|s| s.name.ends_with(" process"))
                .count()
                >= 2
        })
        .await,
        "two delivery spans: {:?}",
        spans()
            .iter()
            .map(|s| s.name.to_string())
            .collect::<Vec<_>>()
    );
    let spans = spans();
    let names: Vec<String> = spans.iter().map(|s| s.name.to_string()).collect();
    assert_eq!(
        names.iter().filter(|n| n.ends_with("process")).count(),
        2,
        "one span per delivery, no duplicates: {names:?}"
    );
    let own = spans
        .iter()
        .find(|s| s.name == "reserve stock")
        .expect("the handler's own span");
    let first = spans
        .iter()
        .find(|s| s.name == "trace.orders.created process")
        .expect("first span");
    let second = spans
        .iter()
        .find(|s| s.name == "trace.orders.reserved process")
        .expect("second span");

    assert_eq!(first.span_context.trace_id().to_string(), TRACE_ID);
    assert_eq!(
        second.span_context.trace_id().to_string(),
        TRACE_ID,
        "one trace"
    );
    assert_eq!(
        first.parent_span_id.to_string(),
        CALLER_SPAN,
        "child of the publisher"
    );
    assert_eq!(
        own.parent_span_id,
        first.span_context.span_id(),
        "the handler's span is a child of its delivery span"
    );
    assert_eq!(
        second.parent_span_id,
        own.span_context.span_id(),
        "the second function's span is a child of the span that published to it"
    );
    assert_eq!(first.span_kind, SpanKind::Consumer);
    assert_eq!(
        attribute(first, "messaging.system").as_deref(),
        Some("nats")
    );
    assert_eq!(
        attribute(first, "messaging.destination.name").as_deref(),
        Some("trace.orders.created")
    );
    assert_eq!(
        attribute(first, "messaging.consumer.group.name").as_deref(),
        Some("first_step")
    );
    assert_eq!(
        attribute(first, "messaging.message.delivery_attempt").as_deref(),
        Some("1")
    );
    runtime.stop().await;
}
