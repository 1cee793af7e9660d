//! Pulling against a real nats-server: an idle pod always has a request waiting, deliveries
//! abandoned at the shutdown deadline go to another pod at once, two pods split a backlog and
//! hold little ahead, and large payloads stay within the byte budget. The figures are printed
//! (`--nocapture`); the assertions are bounds, not timings of this machine.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use common::{consumer_counts, publish_all, start, PATIENCE};
use futures::StreamExt;
use jetfn::testing::{eventually, http_get, NatsServer};
use jetfn::{event_handler, Context, Event, HandlerError};

/// A pull request's expiry in the runtime: an idle pod must renew it.
const REQUEST_EXPIRY: Duration = Duration::from_secs(30);

/// When each payload of the `idle.jobs` function was handled.
static IDLE_HANDLED: Mutex<Vec<(String, Instant)>> = Mutex::new(Vec::new());

#[event_handler(subject = "idle.jobs", ack_wait = "40s")]
async fn idle_waiter(_ctx: Context, event: Event<serde_json::Value>) -> Result<(), HandlerError> {
    let id = event.data.as_str().unwrap_or_default().to_owned();
    IDLE_HANDLED
        .lock()
        .expect("lock")
        .push((id, Instant::now()));
    Ok(())
}

fn idle_handled(id: &str) -> Option<Instant> {
    let handled = IDLE_HANDLED.lock().expect("lock");
    handled
        .iter()
        .find(|(data, _)| data == id)
        .map(|(_, at)| *at)
}

#[tokio::test]
async fn an_idle_pod_keeps_a_request_waiting_for_new_and_abandoned_messages() {
    let server = NatsServer::start();
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    // The stream and durable as the runtime makes them, so a "pod" can take a message first.
    let stream = js
        .create_stream(stream::Config {
            name: "IDLE".to_owned(),
            subjects: vec!["idle.>".to_owned()],
            ..Default::default()
        })
        .await
        .expect("stream");
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("idle_waiter".to_owned()),
            filter_subject: "idle.jobs".to_owned(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(40),
            ..Default::default()
        })
        .await
        .expect("durable");

    // A pod that takes a message and dies without settling it: a raw pull request, queued at the
    // server before the runtime's.
    let doomed = async_nats::connect(server.url()).await.expect("connect");
    let inbox = doomed.new_inbox();
    let mut taken = doomed.subscribe(inbox.clone()).await.expect("subscribe");
    doomed
        .publish_with_reply(
            "$JS.API.CONSUMER.MSG.NEXT.IDLE.idle_waiter",
            inbox,
            r#"{"batch":1,"expires":60000000000}"#.into(),
        )
        .await
        .expect("pull request");
    doomed.flush().await.expect("flush");

    let runtime = start(&server, "idle_waiter", &[]).await;
    let started = Instant::now();
    publish_all(&js, "idle.jobs", [r#""abandoned""#.to_owned()]).await;
    let message = tokio::time::timeout(PATIENCE, taken.next())
        .await
        .expect("the doomed pod gets the first message")
        .expect("a message");
    assert_eq!(&message.payload[..], br#""abandoned""#);
    let abandoned = Instant::now();
    drop(taken);
    drop(doomed); // the pod dies: no ack, no NAK

    // (a) Idle past the expiry of the runtime's first request: a new message is still handled
    // at once.
    tokio::time::sleep_until((started + REQUEST_EXPIRY + Duration::from_secs(2)).into()).await;
    let sent = Instant::now();
    publish_all(&js, "idle.jobs", [r#""fresh""#.to_owned()]).await;
    assert!(
        eventually(PATIENCE, || async { idle_handled("fresh").is_some() }).await,
        "a message after the idle spell is handled"
    );
    let fresh = idle_handled("fresh").expect("handled") - sent;
    println!(
        "idle pod: {:.1} s idle, then a new message handled {:.2} ms after its publish",
        (sent - started).as_secs_f64(),
        fresh.as_secs_f64() * 1e3
    );
    assert!(
        fresh < Duration::from_secs(1),
        "handled within milliseconds, not at the next backlog poll: {fresh:?}"
    );

    // (b) The abandoned message is redelivered (ack_wait 40 s) to the idle pod, whose request
    // was renewed since: not counted in num_pending, it must not wait for other traffic.
    let ack_wait = Duration::from_secs(40);
    assert!(
        eventually(ack_wait + PATIENCE, || async {
            idle_handled("abandoned").is_some()
        })
        .await,
        "the abandoned message is redelivered to the idle pod"
    );
    let redelivered = idle_handled("abandoned").expect("handled") - abandoned;
    println!(
        "idle pod: the abandoned message handled {:.2} s after its pod died (ack_wait 40 s)",
        redelivered.as_secs_f64()
    );
    assert!(
        redelivered <= ack_wait + Duration::from_secs(1),
        "redelivered within ack_wait + 1 s: {redelivered:?}"
    );
    assert_eq!(
        consumer_counts(&js, "IDLE", "idle_waiter").await,
        (0, 0),
        "both acked"
    );
    runtime.stop().await;
}

// --- the shutdown deadline -----------------------------------------------------------------------

static HANDOFF_STARTED: AtomicBool = AtomicBool::new(false);
static HANDOFF_DONE: Mutex<Option<(u32, Instant)>> = Mutex::new(None);

/// Hangs on its first delivery (a pod that cannot finish before its shutdown deadline);
/// finishes at once on a later one.
#[event_handler(subject = "handoff.jobs", ack_wait = "60s")]
async fn hangs_first(_ctx: Context, event: Event<serde_json::Value>) -> Result<(), HandlerError> {
    if event.attempt() == 1 {
        HANDOFF_STARTED.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(600)).await;
    }
    *HANDOFF_DONE.lock().expect("lock") = Some((event.attempt(), Instant::now()));
    Ok(())
}

#[tokio::test]
async fn past_the_shutdown_deadline_running_deliveries_go_to_another_pod_at_once() {
    let server = NatsServer::start();
    let js = jetstream::new(server.client().await);
    let leaving = start(&server, "hangs_first", &[("JETFN_SHUTDOWN_TIMEOUT", "1s")]).await;
    publish_all(&js, "handoff.jobs", [r#""job""#.to_owned()]).await;
    assert!(
        eventually(PATIENCE, || async {
            HANDOFF_STARTED.load(Ordering::SeqCst)
        })
        .await,
        "the first pod runs the job"
    );
    // A second pod, idle past its first pull request's expiry.
    let staying = start(&server, "hangs_first", &[]).await;
    tokio::time::sleep(REQUEST_EXPIRY + Duration::from_secs(2)).await;

    let signal = Instant::now();
    leaving.shutdown();
    leaving.wait().await;
    let exited = Instant::now();
    assert!(
        eventually(PATIENCE, || async {
            HANDOFF_DONE.lock().expect("lock").is_some()
        })
        .await,
        "the second pod runs the abandoned job"
    );
    let (attempt, done) = HANDOFF_DONE.lock().expect("lock").expect("done");
    println!(
        "shutdown deadline: first pod exited {:.2} s after SIGTERM (deadline 1 s); the second pod \
         finished the job {:.0} ms after that (attempt {attempt}; ack_wait is 60 s)",
        (exited - signal).as_secs_f64(),
        (done - exited).as_secs_f64() * 1e3,
    );
    assert_eq!(attempt, 2, "handed back once, run again");
    assert!(
        done - exited <= Duration::from_secs(5),
        "retried within 5 s of the pod's exit, not after ack_wait"
    );
    assert_eq!(
        consumer_counts(&js, "HANDOFF", "hangs_first").await,
        (0, 0),
        "acked"
    );
    staying.stop().await;
}

// --- two pods, one backlog -----------------------------------------------------------------------

static FAIR_DONE: AtomicUsize = AtomicUsize::new(0);

#[event_handler(subject = "fair.jobs", max_workers = 16)]
async fn fair_job(_ctx: Context, _event: Event<u32>) -> Result<(), HandlerError> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    FAIR_DONE.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// `jetfn_messages_total{function,outcome="ack"}` of one runtime.
async fn acked(addr: std::net::SocketAddr, function: &str) -> u64 {
    let (_, body) = http_get(addr, "/metrics").await.expect("GET /metrics");
    let prefix = format!(r#"jetfn_messages_total{{function="{function}",outcome="ack"}} "#);
    body.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
        // The series exists from the start: a missing one is a broken metric, not zero.
        .unwrap_or_else(|| panic!("no {prefix}in {body}"))
}

/// `requested` and `ahead` of the runtime's first function, from `/functions`.
async fn pulling(addr: std::net::SocketAddr) -> (u64, u64) {
    let (_, body) = http_get(addr, "/functions").await.expect("GET /functions");
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let status = &body[0]["status"];
    (
        status["requested"].as_u64().expect("requested"),
        status["ahead"].as_u64().expect("ahead"),
    )
}

#[tokio::test]
async fn two_pods_split_a_backlog_and_neither_holds_more_than_the_bound() {
    let server = NatsServer::start();
    let js = jetstream::new(server.client().await);
    let a = start(&server, "fair_job", &[]).await;
    let b = start(&server, "fair_job", &[]).await;
    const N: usize = 1_600;
    publish_all(&js, "fair.jobs", (0..N).map(|i| i.to_string())).await;
    // 16 workers x 20 ms = 800 msg/s a pod; 5 ms of that (prefetch) = 4 messages ahead at most.
    const BOUND_AHEAD: u64 = 4;
    let mut peak = [(0u64, 0u64); 2];
    let started = Instant::now();
    while FAIR_DONE.load(Ordering::SeqCst) < N {
        assert!(started.elapsed() < PATIENCE, "backlog not done");
        for (pod, addr) in [a.http_addr(), b.http_addr()].into_iter().enumerate() {
            let (requested, ahead) = pulling(addr).await;
            peak[pod] = (peak[pod].0.max(requested), peak[pod].1.max(ahead));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        eventually(PATIENCE, || async {
            consumer_counts(&js, "FAIR", "fair_job").await == (0, 0)
        })
        .await
    );
    let (done_a, done_b) = (
        acked(a.http_addr(), "fair_job").await,
        acked(b.http_addr(), "fair_job").await,
    );
    let share = done_a as f64 / (done_a + done_b) as f64;
    println!(
        "fairness: {N} x 20 ms over two pods in {:.2} s: {done_a} / {done_b} ({:.0} % / {:.0} %); \
         peak requested-not-received {} / {}, peak ahead of free workers {} / {} (bound {BOUND_AHEAD})",
        started.elapsed().as_secs_f64(),
        share * 100.0,
        (1.0 - share) * 100.0,
        peak[0].0,
        peak[1].0,
        peak[0].1,
        peak[1].1,
    );
    assert_eq!(done_a + done_b, N as u64, "every message acked once");
    assert!(
        (0.4..=0.6).contains(&share),
        "the work splits within 60/40: {share:.2}"
    );
    for (requested, ahead) in peak {
        assert!(ahead <= BOUND_AHEAD, "ahead of the free workers: {ahead}");
        assert!(requested <= 16 + BOUND_AHEAD, "requested: {requested}");
    }
    a.stop().await;
    b.stop().await;
}

// --- large payloads ------------------------------------------------------------------------------

static BIG_DONE: AtomicUsize = AtomicUsize::new(0);

#[event_handler(subject = "big.jobs")]
async fn big_noop(_ctx: Context, _event: Event<serde::de::IgnoredAny>) -> Result<(), HandlerError> {
    BIG_DONE.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// This process's resident set, bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

#[tokio::test]
async fn a_backlog_of_large_payloads_is_pulled_within_the_byte_budget() {
    let server = NatsServer::start();
    let js = jetstream::new(server.client().await);
    // 100 JSON strings of 900 KiB: 88 MiB waiting. What is pulled ahead is bounded by the time
    // of work it stands for and by the byte budget (prefetch_bytes, 8 MiB: about nine of these);
    // the unit tests of `Prefetch` check each bound alone.
    const N: usize = 100;
    let payload = format!("\"{}\"", "x".repeat(900 * 1024));
    js.create_stream(stream::Config {
        name: "BIG".to_owned(),
        subjects: vec!["big.>".to_owned()],
        ..Default::default()
    })
    .await
    .expect("stream");
    for _ in 0..N {
        js.publish("big.jobs", payload.clone().into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    drop(payload);
    let baseline = rss();
    let runtime = start(&server, "big_noop", &[]).await;
    let mut peak = baseline;
    let started = Instant::now();
    while BIG_DONE.load(Ordering::SeqCst) < N {
        assert!(started.elapsed() < PATIENCE * 3, "backlog not done");
        peak = peak.max(rss());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let growth = peak.saturating_sub(baseline) as f64 / f64::from(1 << 20);
    println!(
        "large payloads: {N} x 900 KiB handled in {:.2} s; peak RSS {:.1} MiB, {growth:.1} MiB above the {:.1} MiB before the runtime started",
        started.elapsed().as_secs_f64(),
        peak as f64 / f64::from(1 << 20),
        baseline as f64 / f64::from(1 << 20),
    );
    assert!(
        growth < 40.0,
        "memory stays bounded by the byte budget, not the backlog (88 MiB): {growth:.1} MiB"
    );
    runtime.stop().await;
}
