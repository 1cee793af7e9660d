//! Batch functions against a real nats-server: mixed failures settle each event on its own, a
//! batch never exceeds `batch`, a lone message waits at most `batch_wait`, undecodable messages
//! never reach the function.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::{consumer_counts, publish_all, start, stored, PATIENCE};
use jetfn::testing::eventually;
use jetfn::testing::NatsServer;
use jetfn::{event_handler, Batch, BatchError, Context, HandlerError};

/// Every call: (value, attempt) of each event.
static CALLS: Mutex<Vec<Vec<(u32, u32)>>> = Mutex::new(Vec::new());

/// Odd values fail once (retryable), multiples of 7 fail for good; the rest succeed.
#[event_handler(
    subject = "mixed.readings",
    batch = 10,
    batch_wait = "200ms",
    backoff = "100ms..200ms"
)]
async fn mixed_batch(_ctx: Context, batch: Batch<u32>) -> Result<(), BatchError> {
    let events: Vec<(u32, u32)> = batch.iter().map(|e| (e.data, e.attempt())).collect();
    CALLS.lock().expect("lock").push(events.clone());
    let failures = events
        .iter()
        .enumerate()
        .filter_map(|(index, &(value, attempt))| {
            if value % 7 == 0 {
                Some((
                    index,
                    HandlerError::permanent(format!("{value} is a multiple of 7")),
                ))
            } else if value % 2 == 1 && attempt == 1 {
                Some((
                    index,
                    HandlerError::retryable(format!("{value} fails once")),
                ))
            } else {
                None
            }
        });
    Err(BatchError::items(failures.collect::<Vec<_>>()))
}

#[tokio::test]
async fn mixed_failures_ack_the_good_and_retry_or_dead_letter_only_the_failed() {
    let server = NatsServer::start();
    let runtime = start(&server, "mixed_batch", &[]).await;
    let js = jetstream::new(server.client().await);
    const N: u32 = 60;
    let mut payloads: Vec<String> = (1..=N).map(|n| n.to_string()).collect();
    payloads.push("not a number".to_owned());
    publish_all(&js, "mixed.readings", payloads).await;
    let sevens = u64::from(N / 7);
    assert!(
        eventually(PATIENCE, || async {
            consumer_counts(&js, "MIXED", "mixed_batch").await == (0, 0)
                && stored(&js, "JETFN_DLQ", "jetfn.dlq.mixed_batch").await == sevens + 1
        })
        .await,
        "everything settled, the multiples of 7 and the undecodable one dead-lettered"
    );
    let calls = CALLS.lock().expect("lock").clone();
    let mut seen: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for call in &calls {
        assert!(
            !call.is_empty() && call.len() <= 10,
            "batch of {}",
            call.len()
        );
        for &(value, attempt) in call {
            seen.entry(value).or_default().push(attempt);
        }
    }
    for value in 1..=N {
        let attempts = &seen[&value];
        let expected: &[u32] = if value % 7 == 0 || value % 2 == 0 {
            &[1] // acked, or dead-lettered, at once
        } else {
            &[1, 2] // retried once, on its own
        };
        assert_eq!(attempts, expected, "attempts of {value}");
    }
    let sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
    println!(
        "batches: {} calls for {N} events + {} retries, sizes {sizes:?}",
        calls.len(),
        (1..=N).filter(|v| v % 2 == 1 && v % 7 != 0).count()
    );
    runtime.stop().await;
}

static LONE: Mutex<Option<Instant>> = Mutex::new(None);

#[event_handler(subject = "lone.readings", batch = 100, batch_wait = "300ms")]
async fn lone_batch(_ctx: Context, batch: Batch<serde_json::Value>) -> Result<(), BatchError> {
    assert_eq!(batch.len(), 1);
    *LONE.lock().expect("lock") = Some(Instant::now());
    Ok(())
}

#[tokio::test]
async fn a_lone_message_waits_at_most_batch_wait() {
    let server = NatsServer::start();
    let runtime = start(&server, "lone_batch", &[]).await;
    let js = jetstream::new(server.client().await);
    let sent = Instant::now();
    publish_all(&js, "lone.readings", [r#"{"t":1}"#.to_owned()]).await;
    assert!(
        eventually(PATIENCE, || async { LONE.lock().expect("lock").is_some() }).await,
        "the lone message is handled"
    );
    let waited = LONE.lock().expect("lock").expect("handled") - sent;
    println!(
        "lone message: handled {:.0} ms after its publish (batch_wait 300 ms)",
        waited.as_secs_f64() * 1e3
    );
    assert!(
        waited < Duration::from_millis(300 + 500),
        "not held much past batch_wait: {waited:?}"
    );
    assert!(
        eventually(PATIENCE, || async {
            consumer_counts(&js, "LONE", "lone_batch").await == (0, 0)
        })
        .await
    );
    runtime.stop().await;
}

#[event_handler(subject = "traced.readings", batch = 5, batch_wait = "300ms")]
async fn traced_batch(_ctx: Context, _batch: Batch<u32>) -> Result<(), BatchError> {
    Ok(())
}

#[tokio::test]
async fn a_batch_runs_in_one_span_linked_to_each_event_trace() {
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let server = NatsServer::start();
    let runtime = start(&server, "traced_batch", &[]).await;
    let js = jetstream::new(server.client().await);
    let traces: Vec<String> = (1..=3).map(|i| format!("{i:032x}")).collect();
    for (i, trace) in traces.iter().enumerate() {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"));
        js.publish_with_headers("traced.readings", headers, i.to_string().into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    let batch_spans = || {
        let _ = provider.force_flush();
        exporter
            .get_finished_spans()
            .expect("spans")
            .into_iter()
            .filter(|span| span.name == "traced.readings process")
            .collect::<Vec<_>>()
    };
    let linked = |spans: &[opentelemetry_sdk::trace::SpanData]| {
        spans
            .iter()
            .flat_map(|span| span.links.iter())
            .map(|link| link.span_context.trace_id().to_string())
            .collect::<Vec<_>>()
    };
    assert!(
        eventually(PATIENCE, || async { linked(&batch_spans()).len() == 3 }).await,
        "every event linked from a batch span: {:?}",
        batch_spans()
    );
    let spans = batch_spans();
    let mut links = linked(&spans);
    links.sort();
    assert_eq!(links, traces, "each event's own trace, once");
    let counted: i64 = spans
        .iter()
        .flat_map(|span| span.attributes.iter())
        .filter(|kv| kv.key.as_str() == "messaging.batch.message_count")
        .map(|kv| kv.value.to_string().parse::<i64>().expect("a count"))
        .sum();
    assert_eq!(counted, 3, "the spans' message counts add up to the events");
    println!("batch spans: {} for 3 events", spans.len());
    runtime.stop().await;
}
