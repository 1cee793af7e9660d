//! A request function runs in a span `<subject> process` of kind server, child of the
//! request's `traceparent`; a failed request marks it as an error.

mod common;

use common::{start, PATIENCE};
use jetfn::testing::{eventually, NatsServer};
use jetfn::{request_handler, Context, HandlerError, Request};
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

#[request_handler(subject = "trace.req.echo")]
async fn traced_echo(_ctx: Context, req: Request<String>) -> Result<String, HandlerError> {
    if req.data == "fail" {
        return Err(HandlerError::permanent("asked to fail"));
    }
    Ok(req.data)
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn a_request_runs_in_a_server_span_child_of_its_traceparent() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());

    let server = NatsServer::start();
    let runtime = start(&server, "traced_echo", &[]).await;
    let client = server.client().await;
    for body in ["hello", "fail"] {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"));
        client
            .request_with_headers("trace.req.echo", headers, body.into())
            .await
            .expect("a reply");
    }
    let spans = || {
        let _ = provider.force_flush();
        exporter.get_finished_spans().expect("spans")
    };
    assert!(
        eventually(PATIENCE, || async {
            spans()
                .iter()
                .filter(|s| s.name == "trace.req.echo process")
                .count()
                == 2
        })
        .await,
        "two request spans"
    );
    let spans = spans();
    let ours: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "trace.req.echo process")
        .collect();
    for span in &ours {
        assert_eq!(span.span_kind, SpanKind::Server);
        assert_eq!(span.span_context.trace_id().to_string(), TRACE_ID);
        assert_eq!(span.parent_span_id.to_string(), CALLER_SPAN);
    }
    assert_eq!(ours[0].status, Status::Unset);
    assert!(
        matches!(ours[1].status, Status::Error { .. }),
        "{:?}",
        ours[1].status
    );
    runtime.stop().await;
}
