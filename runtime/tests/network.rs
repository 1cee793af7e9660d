//! Network paths that fail between the runtime and nats-server, through `jetfn_test_support::TcpProxy`:
//! one that dies without closing (no FIN, no RST) and comes back, and one that is cut. Each counts
//! every message.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::{consumer_counts, publish_all, start_unready, PATIENCE};
use jetfn::testing::{eventually, http_get, NatsServer};
use jetfn::NatsConfig;
use jetfn::{event_handler, Context, Event, HandlerError};
use jetfn_test_support::TcpProxy;

#[derive(serde::Deserialize)]
struct Job {
    n: u32,
}

fn jobs(range: std::ops::Range<u32>) -> impl Iterator<Item = String> {
    range.map(|n| format!(r#"{{"n":{n}}}"#))
}

/// The bound the issue sets for noticing a dead path.
const DEAD_PATH_BOUND: Duration = Duration::from_secs(30);

// --- a path that freezes ---------------------------------------------------------------------------

/// Job number -> when it was first processed.
static FROZEN_SEEN: Mutex<BTreeMap<u32, Instant>> = Mutex::new(BTreeMap::new());

#[event_handler(subject = "frozen.jobs", ack_wait = "5s")]
async fn behind_a_frozen_path(_ctx: Context, event: Event<Job>) -> Result<(), HandlerError> {
    FROZEN_SEEN
        .lock()
        .expect("lock")
        .entry(event.data.n)
        .or_insert_with(Instant::now);
    Ok(())
}

fn frozen_seen() -> usize {
    FROZEN_SEEN.lock().expect("lock").len()
}

#[tokio::test]
async fn a_path_that_dies_without_closing_is_noticed_and_nothing_is_lost() {
    let server = NatsServer::start();
    let proxy = TcpProxy::start(server.port()).await;
    // The default ping interval: the figure is the one a deployment gets.
    let runtime = start_unready(&proxy.url(), "behind_a_frozen_path", &[]).await;
    assert!(
        runtime.wait_ready(PATIENCE).await,
        "ready through the proxy"
    );
    let addr = runtime.http_addr();
    let ready = || async { http_get(addr, "/ready").await.map(|r| r.0).ok() };
    // The test's own client goes straight to the server.
    let js = jetstream::new(server.client().await);
    publish_all(&js, "frozen.jobs", jobs(0..50)).await;
    assert!(eventually(PATIENCE, || async { frozen_seen() == 50 }).await);

    proxy.freeze();
    let frozen = Instant::now();
    publish_all(&js, "frozen.jobs", jobs(50..150)).await;
    let noticed = eventually(DEAD_PATH_BOUND + Duration::from_secs(10), || async {
        ready().await == Some(503)
    })
    .await;
    let detection = frozen.elapsed();
    println!(
        "dead path noticed (/ready 503) {:.1} s after the freeze (ping interval {:?}; bound {:?})",
        detection.as_secs_f64(),
        NatsConfig::DEFAULT_PING_INTERVAL,
        DEAD_PATH_BOUND
    );
    assert!(noticed, "/ready still 200 {detection:?} after the freeze");
    assert!(detection <= DEAD_PATH_BOUND, "noticed after {detection:?}");
    assert_eq!(frozen_seen(), 50, "nothing gets through a frozen path");

    proxy.thaw();
    let thawed = Instant::now();
    assert!(
        eventually(PATIENCE, || async { ready().await == Some(200) }).await,
        "ready again after the thaw"
    );
    let reconnected = thawed.elapsed();
    assert!(
        eventually(Duration::from_secs(60), || async { frozen_seen() == 150 }).await,
        "processing resumed: {} of 150",
        frozen_seen()
    );
    let all = thawed.elapsed();
    let first = FROZEN_SEEN
        .lock()
        .expect("lock")
        .range(50..)
        .map(|(_, at)| *at)
        .min()
        .expect("jobs after the freeze");
    println!(
        "after the thaw: /ready 200 in {:.1} s, first message processed in {:.1} s, all 100 \
         published while frozen in {:.1} s",
        reconnected.as_secs_f64(),
        first.saturating_duration_since(thawed).as_secs_f64(),
        all.as_secs_f64()
    );
    assert!(
        eventually(PATIENCE, || async {
            consumer_counts(&js, "FROZEN", "behind_a_frozen_path").await == (0, 0)
        })
        .await,
        "every message acked"
    );
    runtime.stop().await;
}

// --- a path that is cut ----------------------------------------------------------------------------

static CUT_SEEN: Mutex<BTreeMap<u32, Instant>> = Mutex::new(BTreeMap::new());

#[event_handler(subject = "cut.jobs", ack_wait = "5s")]
async fn behind_a_cut_path(_ctx: Context, event: Event<Job>) -> Result<(), HandlerError> {
    tokio::time::sleep(Duration::from_millis(1)).await;
    CUT_SEEN
        .lock()
        .expect("lock")
        .entry(event.data.n)
        .or_insert_with(Instant::now);
    Ok(())
}

#[tokio::test]
async fn a_cut_path_reconnects_and_nothing_is_lost() {
    let server = NatsServer::start();
    let proxy = TcpProxy::start(server.port()).await;
    let runtime = start_unready(&proxy.url(), "behind_a_cut_path", &[]).await;
    assert!(
        runtime.wait_ready(PATIENCE).await,
        "ready through the proxy"
    );
    let js = jetstream::new(server.client().await);
    let publisher = {
        let js = js.clone();
        tokio::spawn(async move { publish_all(&js, "cut.jobs", jobs(0..300)).await })
    };
    assert!(
        eventually(PATIENCE, || async {
            CUT_SEEN.lock().expect("lock").len() >= 50
        })
        .await
    );
    let cut = Instant::now();
    proxy.cut();
    publisher.await.expect("published");
    assert!(
        eventually(Duration::from_secs(60), || async {
            CUT_SEEN.lock().expect("lock").len() == 300
        })
        .await,
        "processing resumed: {} of 300",
        CUT_SEEN.lock().expect("lock").len()
    );
    println!(
        "cut path: all 300 processed {:.1} s after the cut",
        cut.elapsed().as_secs_f64()
    );
    assert!(
        eventually(PATIENCE, || async {
            consumer_counts(&js, "CUT", "behind_a_cut_path").await == (0, 0)
        })
        .await,
        "every message acked"
    );
    runtime.stop().await;
}
