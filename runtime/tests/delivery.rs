//! End to end against a real nats-server: events in, handlers run, acks out, nothing lost.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{consumer_counts, publish_all, start, stored, PATIENCE};
use jetfn::testing::{eventually, NatsServer};
use jetfn::{event_handler, Context, Event, HandlerError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, Serialize)]
struct Order {
    order_id: String,
    amount: f64,
}

fn orders(n: usize) -> impl Iterator<Item = String> {
    (0..n).map(|i| format!(r#"{{"order_id":"o-{i}","amount":{i}.5}}"#))
}

// --- N events in -> N handled -------------------------------------------------------------

static COUNTED: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[event_handler(subject = "count.orders.created")]
async fn count_orders(_ctx: Context, event: Event<Order>) -> Result<(), HandlerError> {
    COUNTED.lock().expect("lock").push(event.data.order_id);
    Ok(())
}

#[tokio::test]
async fn every_event_is_handled_once_and_acked() {
    let server = NatsServer::start();
    let runtime = start(&server, "count_orders", &[]).await;
    let js = async_nats::jetstream::new(server.client().await);
    const N: usize = 500;
    publish_all(&js, "count.orders.created", orders(N)).await;

    assert!(
        eventually(PATIENCE, || async {
            COUNTED.lock().expect("lock").len() >= N
        })
        .await,
        "handled {} of {N}",
        COUNTED.lock().expect("lock").len()
    );
    assert!(
        eventually(PATIENCE, || async {
            consumer_counts(&js, "COUNT", "count_orders").await == (0, 0)
        })
        .await,
        "every message acked: {:?}",
        consumer_counts(&js, "COUNT", "count_orders").await
    );
    let handled = COUNTED.lock().expect("lock").clone();
    let unique: HashSet<_> = handled.iter().collect();
    assert_eq!(handled.len(), N, "no message handled twice");
    assert_eq!(unique.len(), N);
    runtime.stop().await;
}

// --- CloudEvents ----------------------------------------------------------------------------

static CLOUD: Mutex<Vec<(String, Option<String>, String)>> = Mutex::new(Vec::new());

#[event_handler(subject = "cloud.orders.created")]
async fn cloud_orders(_ctx: Context, event: Event<Order>) -> Result<(), HandlerError> {
    let id = event.id().map(str::to_owned);
    let subject = event.subject().to_owned();
    CLOUD
        .lock()
        .expect("lock")
        .push((event.data.order_id, id, subject));
    Ok(())
}

#[tokio::test]
async fn cloud_events_are_unwrapped() {
    let server = NatsServer::start();
    let runtime = start(&server, "cloud_orders", &[]).await;
    let js = async_nats::jetstream::new(server.client().await);
    let envelope = r#"{"specversion":"1.0","id":"evt-1","type":"shop.order.created",
        "source":"/shop","datacontenttype":"application/json",
        "data":{"order_id":"o-ce","amount":12.0}}"#;
    publish_all(
        &js,
        "cloud.orders.created",
        [envelope.to_owned(), orders(1).collect()],
    )
    .await;

    assert!(
        eventually(PATIENCE, || async {
            CLOUD.lock().expect("lock").len() == 2
        })
        .await
    );
    let mut seen = CLOUD.lock().expect("lock").clone();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("o-0".to_owned(), None, "cloud.orders.created".to_owned()),
            (
                "o-ce".to_owned(),
                Some("evt-1".to_owned()),
                "cloud.orders.created".to_owned()
            ),
        ]
    );
    runtime.stop().await;
}

// --- outputs of a retried handler are stored once ---------------------------------------------

static PUBLISH_ATTEMPTS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[event_handler(subject = "pub.orders.created", backoff = "100ms..1s")]
async fn publish_then_fail_once(ctx: Context, event: Event<Order>) -> Result<(), HandlerError> {
    ctx.publish("pub.inventory.reserved", &event.data).await?;
    ctx.publish("pub.audit.logged", &event.data.order_id)
        .await?;
    PUBLISH_ATTEMPTS.lock().expect("lock").push(event.attempt());
    if event.attempt() == 1 {
        return Err(HandlerError::retryable("gateway timeout"));
    }
    Ok(())
}

#[tokio::test]
async fn a_retried_handler_stores_its_outputs_once() {
    let server = NatsServer::start();
    let runtime = start(&server, "publish_then_fail_once", &[]).await;
    let js = async_nats::jetstream::new(server.client().await);
    publish_all(&js, "pub.orders.created", orders(1)).await;

    assert!(
        eventually(PATIENCE, || async {
            PUBLISH_ATTEMPTS.lock().expect("lock").len() == 2
        })
        .await
    );
    assert!(
        eventually(PATIENCE, || async {
            consumer_counts(&js, "PUB", "publish_then_fail_once").await == (0, 0)
        })
        .await
    );
    assert_eq!(*PUBLISH_ATTEMPTS.lock().expect("lock"), [1, 2]);
    assert_eq!(stored(&js, "PUB", "pub.inventory.reserved").await, 1);
    assert_eq!(stored(&js, "PUB", "pub.audit.logged").await, 1);
    runtime.stop().await;
}

// --- failures are retried with backoff, never in a hot loop, never lost ----------------------

/// Every run, in order: a duplicate delivery with the same attempt number shows as two entries
/// (keyed by attempt in a map, as before, the second overwrote the first unseen).
static FAILURES: Mutex<Vec<(u32, Instant)>> = Mutex::new(Vec::new());

#[event_handler(
    subject = "flaky.orders.created",
    backoff = "300ms..2s",
    max_deliver = 3
)]
async fn always_fails(_ctx: Context, event: Event<Order>) -> Result<(), HandlerError> {
    FAILURES
        .lock()
        .expect("lock")
        .push((event.attempt(), Instant::now()));
    Err(HandlerError::retryable("payment gateway down"))
}

#[tokio::test]
async fn failures_back_off_and_end_in_the_dead_letter_stream() {
    let server = NatsServer::start();
    let runtime = start(&server, "always_fails", &[]).await;
    let js = async_nats::jetstream::new(server.client().await);
    publish_all(&js, "flaky.orders.created", orders(1)).await;

    assert!(
        eventually(PATIENCE, || async {
            stored(&js, "JETFN_DLQ", "jetfn.dlq.always_fails").await == 1
        })
        .await,
        "dead letter stored"
    );
    let runs = FAILURES.lock().expect("lock").clone();
    let numbers: Vec<u32> = runs.iter().map(|(attempt, _)| *attempt).collect();
    assert_eq!(numbers, [1, 2, 3], "each attempt ran once, in order");
    let at = |attempt: u32| runs[attempt as usize - 1].1;
    let gap = |a: u32, b: u32| at(b).duration_since(at(a));
    // 300ms then 600ms, each +-10% jitter.
    assert!(gap(1, 2) >= Duration::from_millis(270), "{:?}", gap(1, 2));
    assert!(gap(2, 3) >= Duration::from_millis(540), "{:?}", gap(2, 3));
    assert_eq!(consumer_counts(&js, "FLAKY", "always_fails").await, (0, 0));
    runtime.stop().await;
}

// --- an output subject without a stream gets one -------------------------------------------

static SHIPPED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[event_handler(subject = "ship.orders.paid")]
async fn request_shipping(ctx: Context, event: Event<Order>) -> Result<(), HandlerError> {
    ctx.publish("shipping.requested", &event.data).await?;
    SHIPPED.lock().expect("lock").push(event.attempt());
    Ok(())
}

#[tokio::test]
async fn publishing_to_a_subject_without_a_stream_creates_one() {
    let server = NatsServer::start();
    let runtime = start(&server, "request_shipping", &[]).await;
    let js = async_nats::jetstream::new(server.client().await);
    publish_all(&js, "ship.orders.paid", orders(3)).await;

    assert!(
        eventually(PATIENCE, || async {
            SHIPPED.lock().expect("lock").len() == 3
        })
        .await
    );
    assert_eq!(
        *SHIPPED.lock().expect("lock"),
        [1, 1, 1],
        "no retry was needed"
    );
    assert_eq!(stored(&js, "SHIPPING", "shipping.requested").await, 3);
    runtime.stop().await;
}

// --- handlers that block before their first await still run side by side -----------------

static BLOCKING_NOW: AtomicUsize = AtomicUsize::new(0);
static BLOCKING_MOST: AtomicUsize = AtomicUsize::new(0);
static BLOCKING_DONE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Blocks its thread for 50 ms without awaiting (heavy computation, or a blocking call).
#[event_handler(subject = "blocking.jobs", max_workers = 4)]
async fn blocking_job(_ctx: Context, event: Event<Order>) -> Result<(), HandlerError> {
    let now = BLOCKING_NOW.fetch_add(1, Ordering::SeqCst) + 1;
    BLOCKING_MOST.fetch_max(now, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(50));
    BLOCKING_NOW.fetch_sub(1, Ordering::SeqCst);
    BLOCKING_DONE
        .lock()
        .expect("lock")
        .push(event.data.order_id);
    Ok(())
}

/// The pull loop runs a delivery's first poll itself only while first polls are quick; a handler
/// that holds its thread goes to tasks, so such deliveries run on all the runtime's threads
/// instead of one after another in the loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_that_block_before_awaiting_still_run_side_by_side() {
    let server = NatsServer::start();
    let js = async_nats::jetstream::new(server.client().await);
    const N: usize = 12;
    let runtime = start(&server, "blocking_job", &[]).await;
    publish_all(&js, "blocking.jobs", orders(N)).await;
    assert!(
        eventually(PATIENCE, || async {
            BLOCKING_DONE.lock().expect("lock").len() >= N
        })
        .await,
        "handled {} of {N}",
        BLOCKING_DONE.lock().expect("lock").len()
    );
    assert!(
        eventually(PATIENCE, || async {
            consumer_counts(&js, "BLOCKING", "blocking_job").await == (0, 0)
        })
        .await,
        "every message acked"
    );
    let done = BLOCKING_DONE.lock().expect("lock").clone();
    let unique: HashSet<_> = done.iter().collect();
    assert_eq!(unique.len(), N, "each handled once: {done:?}");
    let most = BLOCKING_MOST.load(Ordering::SeqCst);
    println!("blocking handlers: at most {most} at once on 2 threads");
    assert!(
        most >= 2,
        "deliveries of a blocking handler ran one at a time (at most {most} at once)"
    );
    runtime.stop().await;
}
