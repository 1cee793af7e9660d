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
    breaker_cooldown = "3s",
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

/// The consumer's pause as the server holds it: its end, and how long it still lasts.
async fn server_pause(js: &jetstream::Context) -> Option<(time::OffsetDateTime, Duration)> {
    let mut consumer: jetstream::consumer::PullConsumer = js
        .get_stream("BRK")
        .await
        .expect("stream")
        .get_consumer("guarded")
        .await
        .expect("consumer");
    let info = consumer.info().await.expect("info");
    if !info.paused {
        return None;
    }
    Some((info.config.pause_until?, info.pause_remaining?))
}

/// No handler starts while the breaker is open. The window of observation must lie inside one
/// open period: its start is read from the server (the pause the breaker set), and a window is
/// conclusive only when the same pause still has time left at its end (no half-open trial can
/// have run). Before, the test slept 800 ms after it first saw the pause, whose start it did not
/// know: on a slow machine the 2 s cool-down ended inside and the trial counted as a pull.
async fn nothing_runs_while_open(js: &jetstream::Context) {
    const WINDOW: Duration = Duration::from_millis(500);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        let Some((until, remaining)) = server_pause(js).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if remaining < WINDOW * 2 {
            // Too close to the trial: wait for the next open period.
            tokio::time::sleep(remaining).await;
            continue;
        }
        let calls = CALLS.load(Ordering::SeqCst);
        tokio::time::sleep(WINDOW).await;
        let calls_after = CALLS.load(Ordering::SeqCst);
        match server_pause(js).await {
            Some((same, left)) if same == until && left > Duration::from_millis(100) => {
                assert_eq!(calls_after, calls, "nothing pulled while open");
                return;
            }
            _ => continue, // The window outlived the pause (a slow machine): try again.
        }
    }
    panic!("no conclusive {WINDOW:?} window inside one open period within {PATIENCE:?}");
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
    nothing_runs_while_open(&js).await;
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
