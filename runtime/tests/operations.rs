//! Autoscaled workers and graceful drain against a real nats-server, with the figures printed
//! (run with `--nocapture` to see them): they are measurements, not timed assertions.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::{consumer_counts, publish_all, start, PATIENCE};
use jetfn::testing::{eventually, http_get, NatsServer};
use jetfn::{event_handler, Context, Event, HandlerError};

fn workers_of(functions: &str) -> i64 {
    let body: serde_json::Value = serde_json::from_str(functions).expect("JSON");
    body[0]["workers"].as_i64().expect("workers")
}

// --- a burst scales workers up, idleness scales them back down --------------------------------

static BURST_DONE: AtomicUsize = AtomicUsize::new(0);

#[event_handler(subject = "burst.jobs", min_workers = 1, max_workers = 16)]
async fn twenty_ms_job(
    _ctx: Context,
    _event: Event<serde_json::Value>,
) -> Result<(), HandlerError> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    BURST_DONE.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test]
async fn a_burst_scales_workers_up_and_idleness_scales_them_back() {
    let server = NatsServer::start();
    let runtime = start(&server, "twenty_ms_job", &[]).await;
    let addr = runtime.http_addr();
    let js = jetstream::new(server.client().await);
    let functions = || async {
        http_get(addr, "/functions")
            .await
            .expect("GET /functions")
            .1
    };
    assert_eq!(workers_of(&functions().await), 1, "idle at min_workers");

    const N: usize = 1_000;
    publish_all(&js, "burst.jobs", (0..N).map(|i| format!(r#"{{"n":{i}}}"#))).await;
    let published = Instant::now();
    let mut at_max = None;
    let mut samples = Vec::new(); // (seconds since publish, done, workers)
    while BURST_DONE.load(Ordering::SeqCst) < N {
        assert!(published.elapsed() < PATIENCE, "burst not finished");
        let workers = workers_of(&functions().await);
        samples.push((
            published.elapsed().as_secs_f64(),
            BURST_DONE.load(Ordering::SeqCst),
            workers,
        ));
        if workers == 16 && at_max.is_none() {
            at_max = Some(published.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let at_max = at_max.expect("workers reached max_workers");
    let total = published.elapsed();
    // Throughput in the first 300 ms (few workers) against the rest (16 workers).
    let early = samples.iter().rfind(|s| s.0 <= 0.3).map_or(0, |s| s.1);
    let early_rate = early as f64 / 0.3;
    let late_rate = (N - early) as f64 / (total.as_secs_f64() - 0.3);
    println!(
        "autoscale: backlog of {N} x 20 ms -> 16 workers after {:.0} ms; {early_rate:.0} msg/s in the first 300 ms, {late_rate:.0} msg/s after; all done in {:.2} s",
        at_max.as_secs_f64() * 1000.0,
        total.as_secs_f64()
    );
    // One worker does at most 50 of these a second; scaled out, the pod must do far more.
    assert!(
        late_rate > 150.0,
        "throughput rose with the workers: {late_rate:.0} msg/s"
    );
    assert!(
        eventually(PATIENCE, || async {
            consumer_counts(&js, "BURST", "twenty_ms_job").await == (0, 0)
        })
        .await
    );

    let idle = Instant::now();
    assert!(
        eventually(Duration::from_secs(40), || async {
            workers_of(&functions().await) == 1
        })
        .await,
        "back to min_workers when idle"
    );
    println!(
        "autoscale: back to 1 worker {:.1} s after the burst",
        idle.elapsed().as_secs_f64()
    );
    runtime.stop().await;
}

// --- graceful drain ----------------------------------------------------------------------------

static DRAIN_STARTED: AtomicUsize = AtomicUsize::new(0);
static DRAIN_DONE: AtomicUsize = AtomicUsize::new(0);

#[event_handler(
    subject = "drain.jobs",
    min_workers = 1000,
    max_workers = 1000,
    max_ack_pending = 2000
)]
async fn short_job(_ctx: Context, _event: Event<serde_json::Value>) -> Result<(), HandlerError> {
    DRAIN_STARTED.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(800)).await;
    DRAIN_DONE.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test]
async fn shutdown_turns_unready_at_once_and_drains_in_flight_handlers() {
    let server = NatsServer::start();
    let runtime = start(&server, "short_job", &[]).await;
    let js = jetstream::new(server.client().await);
    const N: usize = 1_000;
    let payloads: Vec<String> = (0..N).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    // Publish without waiting for each ack, so the handlers are all in flight together.
    let acks = futures::future::join_all(payloads.into_iter().map(|p| {
        let js = js.clone();
        async move {
            js.publish("drain.jobs", p.into())
                .await
                .expect("publish")
                .await
                .expect("ack")
        }
    }));
    acks.await;
    assert!(
        eventually(PATIENCE, || async {
            DRAIN_STARTED.load(Ordering::SeqCst) >= N
        })
        .await,
        "all {N} in flight (started {})",
        DRAIN_STARTED.load(Ordering::SeqCst)
    );
    let in_flight = N - DRAIN_DONE.load(Ordering::SeqCst);
    assert!(in_flight > 0, "handlers in flight at the signal");

    let signal = Instant::now();
    runtime.shutdown();
    let unready = signal.elapsed();
    assert!(!runtime.is_ready());
    runtime.wait().await;
    let drained = signal.elapsed();
    println!(
        "drain: not ready {:.3} ms after the signal; {in_flight} in-flight handlers drained in {:.0} ms",
        unready.as_secs_f64() * 1000.0,
        drained.as_secs_f64() * 1000.0
    );
    assert_eq!(
        DRAIN_DONE.load(Ordering::SeqCst),
        N,
        "every in-flight handler finished"
    );
    assert_eq!(
        consumer_counts(&js, "DRAIN", "short_job").await,
        (0, 0),
        "every message acked"
    );
}
