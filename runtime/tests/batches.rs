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
