//! Scheduled functions against a real nats-server: ticks fleet-wide with two runtimes (one
//! handler run per firing, not one per pod) and how close to its time each one fires; the
//! schedule survives restarts unchanged and is rewritten when it changes; no pile-up of ticks
//! after downtime; a tick is retried and dead-lettered like any message.

mod common;

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use jetfn::testing::{eventually, NatsServer};
use jetfn::{event_handler, Context, Event, HandlerError, Tick};

use common::{start, PATIENCE};

/// (stream sequence, fired at, handled at) of every tick of `sched_fleet`.
static FLEET: Mutex<Vec<(u64, SystemTime, SystemTime)>> = Mutex::new(Vec::new());

#[event_handler(schedule = "@every 1s")]
async fn sched_fleet(_ctx: Context, tick: Event<Tick>) -> Result<(), HandlerError> {
    assert_eq!(tick.data.schedule, "@every 1s");
    FLEET
        .lock()
        .expect("lock")
        .push((tick.stream_sequence(), tick.published(), SystemTime::now()));
    Ok(())
}

#[event_handler(schedule = "0 0 3 * * *")]
async fn sched_nightly(_ctx: Context, _tick: Event<Tick>) -> Result<(), HandlerError> {
    Ok(())
}

static PILED: Mutex<Vec<SystemTime>> = Mutex::new(Vec::new());

#[event_handler(schedule = "@every 1s", schedule_ttl = "2s")]
async fn sched_piled(_ctx: Context, tick: Event<Tick>) -> Result<(), HandlerError> {
    PILED.lock().expect("lock").push(tick.published());
    Ok(())
}

static FAILING: Mutex<Vec<(u64, u32)>> = Mutex::new(Vec::new());

#[event_handler(
    schedule = "@every 1m",
    schedule_ttl = "1m",
    max_deliver = 2,
    backoff = "100ms..100ms"
)]
async fn sched_failing(_ctx: Context, tick: Event<Tick>) -> Result<(), HandlerError> {
    FAILING
        .lock()
        .expect("lock")
        .push((tick.stream_sequence(), tick.attempt()));
    Err(HandlerError::retryable("the nightly job failed"))
}

fn secs(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

async fn schedule_message(js: &jetstream::Context, function: &str) -> (u64, String) {
    let stream = js.get_stream("JETFN_SCHEDULES").await.expect("stream");
    let message = stream
        .get_last_raw_message_by_subject(&format!("jetfn.schedule.{function}"))
        .await
        .expect("the schedule");
    let schedule = message
        .headers
        .get("Nats-Schedule")
        .map(|v| v.to_string())
        .unwrap_or_default();
    (message.sequence, schedule)
}

#[tokio::test]
async fn ticks_once_per_firing_across_two_runtimes_within_a_second_of_their_time() {
    let server = NatsServer::start();
    let first = start(&server, "sched_fleet", &[]).await;
    let second = start(&server, "sched_fleet", &[]).await;
    let collected = eventually(PATIENCE, || async {
        FLEET.lock().expect("lock").len() >= 6
    })
    .await;
    assert!(collected, "six ticks");
    first.stop().await;
    second.stop().await;
    let ticks = FLEET.lock().expect("lock").clone();
    let mut sequences: Vec<u64> = ticks.iter().map(|t| t.0).collect();
    sequences.sort_unstable();
    sequences.dedup();
    assert_eq!(sequences.len(), ticks.len(), "one handler run per tick");
    let mut fired: Vec<f64> = ticks.iter().map(|t| secs(t.1)).collect();
    fired.sort_by(f64::total_cmp);
    let firings: Vec<i64> = fired.iter().map(|t| t.floor() as i64).collect();
    let mut distinct = firings.clone();
    distinct.dedup();
    assert_eq!(distinct, firings, "one tick per firing (second)");
    // How far after its second each tick fired, and how long until a handler ran it.
    let late: Vec<f64> = fired.iter().map(|t| t - t.floor()).collect();
    let to_handler: Vec<f64> = ticks.iter().map(|t| secs(t.2) - secs(t.1)).collect();
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "{} ticks over 2 runtimes: fired at most {:.1} ms after their second, handled at most \
         {:.1} ms after firing",
        ticks.len(),
        max(&late) * 1e3,
        max(&to_handler) * 1e3
    );
    assert!(max(&late) < 1.0 && max(&to_handler) < 1.0, "within 1 s");
}

#[tokio::test]
async fn the_schedule_survives_restarts_unchanged_and_is_rewritten_when_it_changes() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = jetstream::new(client);
    let runtime = start(&server, "sched_nightly", &[]).await;
    runtime.stop().await;
    let (written, schedule) = schedule_message(&js, "sched_nightly").await;
    assert_eq!(schedule, "0 0 3 * * *");
    for _ in 0..2 {
        start(&server, "sched_nightly", &[]).await.stop().await;
        assert_eq!(
            schedule_message(&js, "sched_nightly").await,
            (written, schedule.clone()),
            "a restart leaves the schedule alone"
        );
    }
    let changed = [("JETFN__FUNCTIONS__SCHED_NIGHTLY__SCHEDULE", "0 30 4 * * *")];
    start(&server, "sched_nightly", &changed).await.stop().await;
    let (rewritten, schedule) = schedule_message(&js, "sched_nightly").await;
    assert!(rewritten > written, "a changed schedule is written");
    assert_eq!(schedule, "0 30 4 * * *");
    let stream = js.get_stream("JETFN_SCHEDULES").await.expect("stream");
    let info = stream.get_info().await.expect("info");
    assert!(info.config.allow_message_schedules && info.config.allow_message_ttl);
}

#[tokio::test]
async fn ticks_do_not_pile_up_while_no_runtime_runs() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = jetstream::new(client);
    // Write the schedule, then stop: no pod for five seconds, five firings.
    start(&server, "sched_piled", &[]).await.stop().await;
    PILED.lock().expect("lock").clear();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let waiting = common::stored(&js, "JETFN_SCHEDULES", "jetfn.tick.sched_piled").await;
    println!("ticks waiting after 5 s without a runtime (schedule_ttl 2s): {waiting}");
    assert!(waiting <= 3, "expired ticks are gone: {waiting} stored");
    let restarted = SystemTime::now();
    let runtime = start(&server, "sched_piled", &[]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    runtime.stop().await;
    let piled = PILED.lock().expect("lock").clone();
    let old = piled
        .iter()
        .filter(|fired| **fired < restarted - Duration::from_secs(3))
        .count();
    assert!(!piled.is_empty(), "the restarted runtime runs ticks again");
    assert_eq!(old, 0, "no tick older than the TTL is delivered: {piled:?}");
}

#[tokio::test]
async fn a_tick_is_retried_then_dead_lettered_like_any_message() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = jetstream::new(client);
    let runtime = start(&server, "sched_failing", &[]).await;
    // `@every 1m`: publish one tick now, as the server would, to not wait a minute.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-TTL", "1m");
    js.publish_with_headers(
        "jetfn.tick.sched_failing",
        headers,
        r#"{"schedule":"@every 1m"}"#.into(),
    )
    .await
    .expect("publish")
    .await
    .expect("ack");
    let dead = eventually(PATIENCE, || async {
        common::stored(&js, "JETFN_DLQ", "jetfn.dlq.sched_failing").await == 1
    })
    .await;
    assert!(dead, "dead-lettered after max_deliver");
    let attempts: Vec<u32> = FAILING.lock().expect("lock").iter().map(|t| t.1).collect();
    assert_eq!(attempts, [1, 2], "retried once, then dead-lettered");
    let letter = js
        .get_stream("JETFN_DLQ")
        .await
        .expect("dlq")
        .get_last_raw_message_by_subject("jetfn.dlq.sched_failing")
        .await
        .expect("dead letter");
    assert_eq!(
        letter.headers.get("Jetfn-Subject").map(|v| v.as_str()),
        Some("jetfn.tick.sched_failing")
    );
    assert_eq!(
        letter.headers.get("Jetfn-Error-Kind").map(|v| v.as_str()),
        Some("exhausted")
    );
    runtime.stop().await;
}
