//! Soak: a long run at a steady rate with a mix of successes, retries and dead letters, and a
//! nats-server restart half-way; this process's RSS and live tokio task count are sampled every
//! 10 s and printed with their slope (least squares, after the warm-up). Not part of `cargo test`.
//!
//! ```text
//! cargo bench -p jetfn --features testing --bench soak
//! JETFN_SOAK_DURATION=2m cargo bench -p jetfn --features testing --bench soak
//! ```
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `JETFN_SOAK_DURATION` | how long messages are published | `10m` |
//! | `JETFN_SOAK_RATE` | messages per second | `2000` |
//! | `JETFN_SOAK_WARMUP` | samples before this are left out of the slope | `2m` (at most a fifth of the run) |
//!
//! The mix, by message number: 1 in 50 fails permanently (dead letter), 1 in 10 of the others
//! fails its first delivery (retried after 100 ms), the rest succeed. At the end every message is
//! accounted for: handled successfully once at least, or stored once in the dead-letter stream.
//! The process holds the runtime, the publisher and the sampler (the nats-server is a child
//! process, not counted).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use jetfn::testing::NatsServer;
use jetfn::{event_handler, Config, Context, Event, HandlerError, Registry, Runtime};

const SUBJECT: &str = "soak.jobs";
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Publishes awaiting their ack at once.
const IN_FLIGHT: usize = 256;

/// Per message: 0 unseen, 1 handled.
static SEEN: OnceLock<Vec<AtomicU8>> = OnceLock::new();
static HANDLED: AtomicU64 = AtomicU64::new(0);

#[derive(serde::Deserialize)]
struct Job {
    n: u64,
}

#[event_handler(subject = "soak.jobs", backoff = "100ms..1s", max_workers = 64)]
async fn soak_work(_ctx: Context, event: Event<Job>) -> Result<(), HandlerError> {
    let n = event.data.n;
    if n % 50 == 49 {
        return Err(HandlerError::permanent("soak: refused for good"));
    }
    if n % 10 == 3 && event.attempt() == 1 {
        return Err(HandlerError::retryable("soak: try again"));
    }
    if let Some(seen) = SEEN.get().and_then(|seen| seen.get(n as usize)) {
        seen.store(1, Ordering::Relaxed);
    }
    HANDLED.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn env_duration(name: &str, default: Duration) -> Duration {
    match std::env::var(name) {
        Ok(text) => humantime::parse_duration(&text)
            .unwrap_or_else(|e| panic!("{name}: expected a duration like 10m: {e}")),
        Err(_) => default,
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Least-squares slope of `(t, y)`, per second.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

async fn publish_surely(js: &jetstream::Context, n: u64) {
    loop {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("soak-{n}"));
        let payload = format!(r#"{{"n":{n}}}"#);
        if let Ok(ack) = js
            .publish_with_headers(SUBJECT, headers, payload.into())
            .await
        {
            if ack.await.is_ok() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Default)]
struct Samples {
    rows: Vec<(f64, f64, f64)>,
}

impl Samples {
    fn take(&mut self, started: Instant, published: u64) {
        let t = started.elapsed().as_secs_f64();
        let rss = rss_kib() as f64;
        let tasks = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks() as f64;
        println!(
            "t={t:>6.0}s rss={:>8.1} MiB tasks={tasks:>5} published={published:>8} handled={:>8}",
            rss / 1024.0,
            HANDLED.load(Ordering::Relaxed)
        );
        self.rows.push((t, rss, tasks));
    }
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("soak: run with `cargo bench --bench soak` (not part of cargo test)");
        return;
    }
    let duration = env_duration("JETFN_SOAK_DURATION", Duration::from_secs(600));
    let rate: u64 = std::env::var("JETFN_SOAK_RATE")
        .ok()
        .map(|r| r.parse().expect("JETFN_SOAK_RATE: an integer"))
        .unwrap_or(2000);
    let warmup = env_duration("JETFN_SOAK_WARMUP", Duration::from_secs(120)).min(duration / 5);
    let total = rate * duration.as_secs();
    SEEN.get_or_init(|| (0..total).map(|_| AtomicU8::new(0)).collect());
    println!(
        "soak: {total} messages at {rate} msg/s for {}, server restart at {}, warm-up {}",
        humantime::format_duration(duration),
        humantime::format_duration(duration / 2),
        humantime::format_duration(warmup)
    );

    let mut server = NatsServer::start();
    let registry = Registry::collect().expect("registry");
    let config = Config::from_vars([
        ("NATS_URL", server.url()),
        ("JETFN_HTTP_ADDR", "127.0.0.1:0".to_owned()),
    ])
    .expect("config");
    let runtime = Runtime::new(config, &registry)
        .expect("functions")
        .start()
        .await
        .expect("runtime starts");
    assert!(runtime.wait_ready(Duration::from_secs(20)).await, "ready");
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(server.url())
        .await
        .expect("client");
    let js = jetstream::new(client);

    let started = Instant::now();
    let mut samples = Samples::default();
    let mut next_sample = started;
    let mut restarted = false;
    let mut pending = FuturesUnordered::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut published = 0u64;
    while published < total {
        ticker.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        while published < due {
            while pending.len() >= IN_FLIGHT {
                pending.next().await;
            }
            let js = js.clone();
            let n = published;
            pending.push(async move { publish_surely(&js, n).await });
            published += 1;
        }
        while futures::FutureExt::now_or_never(pending.next())
            .flatten()
            .is_some()
        {}
        if !restarted && started.elapsed() >= duration / 2 {
            restarted = true;
            println!(
                "t={:>6.0}s restarting nats-server",
                started.elapsed().as_secs_f64()
            );
            tokio::task::block_in_place(|| server.restart());
        }
        if Instant::now() >= next_sample {
            samples.take(started, published);
            next_sample += SAMPLE_EVERY;
        }
    }
    while pending.next().await.is_some() {}
    let publish_time = started.elapsed();

    // Drain: every message handled or dead-lettered.
    let dead_expected = (0..total).filter(|n| n % 50 == 49).count() as u64;
    let ok_expected = total - dead_expected;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut dead = 0;
    loop {
        let seen = SEEN
            .get()
            .map(|seen| {
                seen.iter()
                    .filter(|s| s.load(Ordering::Relaxed) == 1)
                    .count() as u64
            })
            .unwrap_or(0);
        dead = match js.get_stream("JETFN_DLQ").await {
            Ok(mut stream) => stream
                .info()
                .await
                .map(|i| i.state.messages)
                .unwrap_or(dead),
            Err(_) => dead,
        };
        if (seen == ok_expected && dead == dead_expected) || Instant::now() >= deadline {
            println!(
                "drained: {seen} of {ok_expected} handled, {dead} of {dead_expected} dead letters, \
                 {} handler successes in all ({:.0} msg/s published over {:.0} s)",
                HANDLED.load(Ordering::Relaxed),
                total as f64 / publish_time.as_secs_f64(),
                publish_time.as_secs_f64()
            );
            break;
        }
        if Instant::now() >= next_sample {
            samples.take(started, published);
            next_sample += SAMPLE_EVERY;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    samples.take(started, published);

    let after: Vec<_> = samples
        .rows
        .iter()
        .filter(|(t, _, _)| *t >= warmup.as_secs_f64())
        .copied()
        .collect();
    let rss: Vec<_> = after.iter().map(|(t, rss, _)| (*t, *rss)).collect();
    let tasks: Vec<_> = after.iter().map(|(t, _, tasks)| (*t, *tasks)).collect();
    let per_10_min = 600.0;
    let first = after.first().map(|r| r.1).unwrap_or(0.0);
    let last = after.last().map(|r| r.1).unwrap_or(0.0);
    println!(
        "after warm-up ({} samples): RSS slope {:+.3} MiB per 10 min ({:.1} -> {:.1} MiB); \
         task slope {:+.1} tasks per 10 min",
        after.len(),
        slope(&rss) * per_10_min / 1024.0,
        first / 1024.0,
        last / 1024.0,
        slope(&tasks) * per_10_min
    );
    runtime.stop().await;
    let lost = ok_expected
        - SEEN
            .get()
            .map(|seen| {
                seen.iter()
                    .filter(|s| s.load(Ordering::Relaxed) == 1)
                    .count() as u64
            })
            .unwrap_or(0);
    assert_eq!(lost, 0, "messages never handled");
    assert_eq!(dead, dead_expected, "dead letters");
}
