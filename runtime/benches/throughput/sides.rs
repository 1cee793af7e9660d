//! The contenders of a throughput run: raw async-nats with `messages()`, and the jetfn runtime.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use jetfn::middleware::{from_fn, Next};
use jetfn::{App, Call, Config, Registry, Runtime, RuntimeHandle};

use crate::measure::now_nanos;
use crate::settings::Settings;
use crate::{BENCH_STREAM, FIRST_HANDLED, HANDLED};

/// (a) A fresh durable pull consumer of `subject`, `messages()` with pull batches of `batch`,
/// one `ack()` per message; from the first pull to the server having no ack pending.
pub(crate) async fn raw_throughput(
    url: &str,
    control: &jetstream::Context,
    settings: &Settings,
    subject: &str,
    durable: &str,
    batch: usize,
) -> Duration {
    let client = async_nats::connect(url).await.expect("connect");
    let js = jetstream::new(client.clone());
    let stream = js.get_stream(BENCH_STREAM).await.expect("bench stream");
    let consumer = raw_consumer(&stream, subject, durable, settings).await;

    let work = async {
        let started = Instant::now();
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(batch)
            .messages()
            .await
            .expect("pull");
        let mut count = 0;
        while count < settings.messages {
            let message = messages
                .next()
                .await
                .expect("the pull stream ended")
                .expect("pull error");
            message.ack().await.expect("ack");
            count += 1;
        }
        client.flush().await.expect("flush");
        wait_all_acked(control, BENCH_STREAM, durable).await;
        started.elapsed()
    };
    let elapsed = tokio::time::timeout(settings.patience(settings.messages), work)
        .await
        .expect("raw run did not finish in time");
    stream
        .delete_consumer(durable)
        .await
        .expect("delete raw consumer");
    elapsed
}

/// A fresh durable pull consumer of `subject` for raw async-nats: explicit acks, from the start.
pub(crate) async fn raw_consumer(
    stream: &stream::Stream,
    subject: &str,
    durable: &str,
    settings: &Settings,
) -> consumer::PullConsumer {
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(durable.to_owned()),
            filter_subject: subject.to_owned(),
            ack_policy: consumer::AckPolicy::Explicit,
            deliver_policy: consumer::DeliverPolicy::All,
            max_ack_pending: i64::from(settings.max_ack_pending),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("raw consumer {durable}: {e}"))
}

/// The overrides of `function` given to the runtime, as `JETFN__FUNCTIONS__<NAME>__<KEY>`:
/// `max_ack_pending` of the settings, `max_workers` when given, and the settings' extra ones.
pub(crate) fn jetfn_overrides(
    settings: &Settings,
    function: &str,
    max_workers: Option<u32>,
) -> Vec<(String, String)> {
    let key = |k: &str| format!("JETFN__FUNCTIONS__{}__{k}", function.to_uppercase());
    let mut vars = vec![(key("MAX_ACK_PENDING"), settings.max_ack_pending.to_string())];
    if let Some(workers) = max_workers {
        vars.push((key("MAX_WORKERS"), workers.to_string()));
    }
    vars.extend(settings.extra.iter().cloned());
    vars
}

pub(crate) async fn start_runtime(
    url: &str,
    function: &str,
    overrides: &[(String, String)],
    layered: bool,
) -> RuntimeHandle {
    let mut vars = vec![
        ("NATS_URL".to_owned(), url.to_owned()),
        ("JETFN_FUNCTIONS".to_owned(), function.to_owned()),
        ("JETFN_HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("JETFN_SHUTDOWN_TIMEOUT".to_owned(), "10s".to_owned()),
    ];
    vars.extend(overrides.iter().cloned());
    let config = Config::from_vars(vars).expect("benchmark configuration");
    let registry = Registry::collect().expect("registry");
    let runtime = Runtime::new(config, &registry).expect("benchmark functions");
    let app = if layered {
        // What one user middleware costs: a layer that only calls the rest of the stack.
        App::new().layer(from_fn(|call: Call, next: Next| next.run(call)))
    } else {
        App::new()
    };
    runtime.app(app).start().await.expect("runtime starts")
}

/// One jetfn throughput run.
pub(crate) struct JetfnRun {
    /// The function's `jetfn_workers` gauge at the end of the run, from `/metrics`.
    pub(crate) workers: Option<String>,
    /// From `start()` to the first handler run: connecting and binding.
    pub(crate) startup: Duration,
    /// From the first handler run to N handled and no ack pending.
    pub(crate) steady: Duration,
}

/// (b) The runtime running `function` on a fresh durable, until `messages` handled and no ack
/// pending.
pub(crate) async fn jetfn_throughput(
    url: &str,
    control: &jetstream::Context,
    settings: &Settings,
    function: &str,
    messages: u64,
    overrides: &[(String, String)],
    layered: bool,
) -> JetfnRun {
    HANDLED.store(0, Ordering::SeqCst);
    FIRST_HANDLED.store(0, Ordering::SeqCst);
    let started = now_nanos();
    let handle = start_runtime(url, function, overrides, layered).await;
    let work = async {
        // (handled, when that count was reached, whether this pause was reported)
        let mut last = (0, Instant::now(), false);
        let mut stalled = Duration::ZERO;
        loop {
            let handled = HANDLED.load(Ordering::Relaxed);
            if handled >= messages {
                break;
            }
            if handled != last.0 {
                if last.2 {
                    stalled += last.1.elapsed();
                }
                last = (handled, Instant::now(), false);
            } else if !last.2 && handled > 0 && last.1.elapsed() >= STALL {
                report_stall(control, function, handled, last.1.elapsed()).await;
                last.2 = true;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if last.2 {
            stalled += last.1.elapsed();
        }
        if !stalled.is_zero() {
            println!("       jetfn handled nothing for {stalled:.1?} in total during this run");
        }
        wait_all_acked(control, BENCH_STREAM, function).await;
        now_nanos()
    };
    let finished = tokio::time::timeout(settings.patience(messages), work)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "jetfn run did not finish in time: {} of {} handled",
                HANDLED.load(Ordering::SeqCst),
                messages
            )
        });
    let workers = workers_gauge(&handle, function).await;
    handle.stop().await;
    let handled = HANDLED.load(Ordering::SeqCst);
    assert_eq!(handled, messages, "every message handled exactly once");
    let first = FIRST_HANDLED.load(Ordering::SeqCst);
    control
        .get_stream(BENCH_STREAM)
        .await
        .expect("bench stream")
        .delete_consumer(function)
        .await
        .expect("delete the jetfn durable");
    JetfnRun {
        workers,
        startup: Duration::from_nanos(first.saturating_sub(started)),
        steady: Duration::from_nanos(finished.saturating_sub(first)),
    }
}

/// How long jetfn may make no progress before the benchmark reports the consumer's state.
const STALL: Duration = Duration::from_secs(2);

/// Prints the jetfn consumer's state when it has made no progress for a while.
async fn report_stall(control: &jetstream::Context, function: &str, handled: u64, idle: Duration) {
    let info = async {
        let mut consumer: consumer::PullConsumer = control
            .get_stream(BENCH_STREAM)
            .await
            .ok()?
            .get_consumer(function)
            .await
            .ok()?;
        consumer.info().await.ok().cloned()
    }
    .await;
    match info {
        Some(info) => println!(
            "       stall: no handler run for {idle:.1?} at {handled} handled; consumer: delivered {}, \
             ack floor {}, num_pending {}, num_ack_pending {}, num_waiting {}, num_redelivered {}",
            info.delivered.consumer_sequence,
            info.ack_floor.consumer_sequence,
            info.num_pending,
            info.num_ack_pending,
            info.num_waiting,
            info.num_redelivered
        ),
        None => println!("       stall: no handler run for {idle:.1?} at {handled} handled; no consumer info"),
    }
}

/// The `jetfn_workers` gauge of `function`, read from the runtime's `/metrics`.
async fn workers_gauge(handle: &RuntimeHandle, function: &str) -> Option<String> {
    let (_, body) = jetfn::testing::http_get(handle.http_addr(), "/metrics")
        .await
        .ok()?;
    body.lines()
        .find(|line| line.starts_with("jetfn_workers{") && line.contains(function))
        .and_then(|line| line.rsplit(' ').next())
        .map(str::to_owned)
}

/// Polls the consumer until nothing is pending or unacknowledged.
pub(crate) async fn wait_all_acked(js: &jetstream::Context, stream: &str, durable: &str) {
    let mut consumer: consumer::PullConsumer = js
        .get_stream(stream)
        .await
        .expect("stream")
        .get_consumer(durable)
        .await
        .expect("consumer");
    loop {
        let info = consumer.info().await.expect("consumer info");
        if info.num_ack_pending == 0 && info.num_pending == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
