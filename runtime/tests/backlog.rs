//! `jetfn_consumer_pending` where it matters, against a real nats-server: an idle pod does not
//! ask the server for its consumer's `num_pending`, yet a backlog behind busy workers, behind a
//! paused (breaker-open) consumer, and one waiting when the pod starts each shows in the gauge
//! within 2 s.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use common::{consumer_counts, publish_all, start, start_unready, PATIENCE};
use jetfn::testing::{eventually, http_get, NatsServer};
use jetfn::{event_handler, Context, Event, HandlerError, RuntimeHandle};

/// How soon the gauge must show a backlog.
const LAG_SHOWN_WITHIN: Duration = Duration::from_secs(2);

static BUSY_RELEASED: AtomicBool = AtomicBool::new(false);
static BUSY_STARTED: AtomicUsize = AtomicUsize::new(0);
static START_RELEASED: AtomicBool = AtomicBool::new(false);
static START_STARTED: AtomicUsize = AtomicUsize::new(0);

/// Runs until `released`.
async fn block_until(released: &AtomicBool) {
    while !released.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[event_handler(subject = "backlog.busy", max_workers = 1, ack_wait = "60s")]
async fn busy_blocker(_ctx: Context, _event: Event<serde_json::Value>) -> Result<(), HandlerError> {
    BUSY_STARTED.fetch_add(1, Ordering::SeqCst);
    block_until(&BUSY_RELEASED).await;
    Ok(())
}

#[event_handler(
    subject = "backlog.start",
    max_workers = 1,
    max_ack_pending = 1,
    ack_wait = "60s"
)]
async fn start_blocker(
    _ctx: Context,
    _event: Event<serde_json::Value>,
) -> Result<(), HandlerError> {
    START_STARTED.fetch_add(1, Ordering::SeqCst);
    block_until(&START_RELEASED).await;
    Ok(())
}

#[event_handler(
    subject = "backlog.broken",
    max_workers = 1,
    breaker_failures = 1,
    breaker_cooldown = "5m",
    backoff = "1s..1s",
    max_deliver = 100
)]
async fn always_failing(
    _ctx: Context,
    _event: Event<serde_json::Value>,
) -> Result<(), HandlerError> {
    Err(HandlerError::retryable("the dependency is down"))
}

/// The stream of every function here.
async fn backlog_stream(server: &NatsServer) -> jetstream::Context {
    let js = jetstream::new(server.client().await);
    js.get_or_create_stream(jetstream::stream::Config {
        name: "BACKLOG".to_owned(),
        subjects: vec!["backlog.>".to_owned()],
        ..Default::default()
    })
    .await
    .expect("stream");
    js
}

/// `jetfn_consumer_pending` of `function` as `/metrics` shows it (`None` before it is there).
async fn pending_gauge(runtime: &RuntimeHandle, function: &str) -> Option<i64> {
    let (_, metrics) = http_get(runtime.http_addr(), "/metrics").await.ok()?;
    let prefix = format!("jetfn_consumer_pending{{function=\"{function}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
}

/// Whether the gauge shows `expected` within [`LAG_SHOWN_WITHIN`].
async fn shows(runtime: &RuntimeHandle, function: &str, expected: i64) -> bool {
    eventually(LAG_SHOWN_WITHIN, || async {
        pending_gauge(runtime, function).await == Some(expected)
    })
    .await
}

fn jobs(count: usize) -> impl Iterator<Item = String> {
    (0..count).map(|n| n.to_string())
}

#[tokio::test]
async fn a_backlog_behind_busy_workers_shows_within_two_seconds() {
    let server = NatsServer::start();
    let js = backlog_stream(&server).await;
    let runtime = start(&server, "busy_blocker", &[]).await;
    publish_all(&js, "backlog.busy", jobs(1)).await;
    assert!(
        eventually(PATIENCE, || async {
            BUSY_STARTED.load(Ordering::SeqCst) == 1
        })
        .await,
        "the only worker is busy"
    );
    // Well past the start-up poll: only busy workers make the runtime ask again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pending_gauge(&runtime, "busy_blocker").await, Some(0));

    publish_all(&js, "backlog.busy", jobs(5)).await;
    let shown = shows(&runtime, "busy_blocker", 5).await;
    let server_says = consumer_counts(&js, "BACKLOG", "busy_blocker").await.0;
    BUSY_RELEASED.store(true, Ordering::SeqCst);
    assert!(
        shown,
        "the gauge shows {:?} (the server {server_says}), not 5, within {LAG_SHOWN_WITHIN:?}",
        pending_gauge(&runtime, "busy_blocker").await
    );
    runtime.stop().await;
}

#[tokio::test]
async fn a_paused_consumer_shows_its_backlog_within_two_seconds() {
    let server = NatsServer::start();
    let js = backlog_stream(&server).await;
    let runtime = start(&server, "always_failing", &[]).await;
    publish_all(&js, "backlog.broken", jobs(1)).await;
    let paused = eventually(PATIENCE, || async {
        let mut consumer: jetstream::consumer::PullConsumer = js
            .get_stream("BACKLOG")
            .await
            .expect("stream")
            .get_consumer("always_failing")
            .await
            .expect("consumer");
        consumer.info().await.expect("info").paused
    })
    .await;
    assert!(paused, "the breaker paused the consumer on the server");

    publish_all(&js, "backlog.broken", jobs(4)).await;
    assert!(
        shows(&runtime, "always_failing", 4).await,
        "the gauge shows {:?}, not 4, within {LAG_SHOWN_WITHIN:?}",
        pending_gauge(&runtime, "always_failing").await
    );
    runtime.stop().await;
}

#[tokio::test]
async fn a_backlog_waiting_at_start_up_shows_within_two_seconds() {
    let server = NatsServer::start();
    let js = backlog_stream(&server).await;
    publish_all(&js, "backlog.start", jobs(6)).await;
    // A first pod holds the one message `max_ack_pending` allows; five wait.
    let first = start(&server, "start_blocker", &[]).await;
    assert!(
        eventually(PATIENCE, || async {
            START_STARTED.load(Ordering::SeqCst) == 1
        })
        .await,
        "the first pod runs a message"
    );
    // A pod that starts now is delivered nothing: only asking the server shows the backlog.
    let second = start_unready(&server.url(), "start_blocker", &[]).await;
    let shown = shows(&second, "start_blocker", 5).await;
    START_RELEASED.store(true, Ordering::SeqCst);
    assert!(
        shown,
        "the gauge shows {:?}, not 5, within {LAG_SHOWN_WITHIN:?} of the start",
        pending_gauge(&second, "start_blocker").await
    );
    assert_eq!(
        START_STARTED.load(Ordering::SeqCst),
        1,
        "the second pod got nothing"
    );
    second.stop().await;
    first.stop().await;
}
