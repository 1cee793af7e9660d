//! The circuit breaker against a real nats-server: it pauses the consumer on the server, stops
//! pulling, dead-letters nothing, and lets everything through once the dependency recovers.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream;
use common::{consumer_counts, publish_all, start, PATIENCE};
use jetfn::testing::{eventually, http_get, NatsServer};
use jetfn::{event_handler, Context, Event, HandlerError};

static DEPENDENCY_UP: AtomicBool = AtomicBool::new(false);
static CALLS: AtomicUsize = AtomicUsize::new(0);
static DONE: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

#[derive(serde::Deserialize)]
struct Job {
    id: u32,
}

#[event_handler(
    subject = "brk.jobs",
    breaker_failures = 3,
    breaker_cooldown = "2s",
    max_deliver = 20,
    backoff = "100ms..200ms",
    max_workers = 2
)]
async fn guarded(_ctx: Context, event: Event<Job>) -> Result<(), HandlerError> {
    CALLS.fetch_add(1, Ordering::SeqCst);
    if !DEPENDENCY_UP.load(Ordering::SeqCst) {
        return Err(HandlerError::retryable("inventory service unavailable"));
    }
    DONE.lock().expect("lock").insert(event.data.id);
    Ok(())
}

async fn paused(js: &jetstream::Context) -> bool {
    let mut consumer: jetstream::consumer::PullConsumer = js
        .get_stream("BRK")
        .await
        .expect("stream")
        .get_consumer("guarded")
        .await
        .expect("consumer");
    consumer.info().await.expect("info").paused
}

async fn dead_letters(js: &jetstream::Context) -> u64 {
    js.get_stream("JETFN_DLQ")
        .await
        .expect("DLQ stream")
        .info()
        .await
        .expect("info")
        .state
        .messages
}

#[tokio::test]
async fn the_breaker_pauses_the_consumer_then_lets_everything_through() {
    let server = NatsServer::start();
    let runtime = start(&server, "guarded", &[]).await;
    let addr = runtime.http_addr();
    let js = jetstream::new(server.client().await);
    const N: u32 = 20;
    publish_all(&js, "brk.jobs", (0..N).map(|i| format!(r#"{{"id":{i}}}"#))).await;

    assert!(
        eventually(PATIENCE, || paused(&js)).await,
        "consumer paused on the server"
    );
    let (_, metrics) = http_get(addr, "/metrics").await.expect("GET /metrics");
    assert!(
        metrics.contains(r#"jetfn_breaker_state{function="guarded"} 2"#),
        "{metrics}"
    );
    let calls_when_open = CALLS.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        calls_when_open,
        "nothing pulled while open"
    );
    assert_eq!(
        dead_letters(&js).await,
        0,
        "no dead letter because the breaker is open"
    );

    DEPENDENCY_UP.store(true, Ordering::SeqCst);
    assert!(
        eventually(PATIENCE, || async {
            DONE.lock().expect("lock").len() == N as usize
        })
        .await,
        "all processed after recovery: {:?}",
        DONE.lock().expect("lock")
    );
    assert!(
        eventually(PATIENCE, || async {
            consumer_counts(&js, "BRK", "guarded").await == (0, 0)
        })
        .await
    );
    assert_eq!(dead_letters(&js).await, 0);
    let (_, metrics) = http_get(addr, "/metrics").await.expect("GET /metrics");
    assert!(
        metrics.contains(r#"jetfn_breaker_state{function="guarded"} 0"#),
        "{metrics}"
    );
    runtime.stop().await;
}
