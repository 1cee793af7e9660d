//! Throughput and latency of jetfn against raw async-nats, on a fresh local nats-server.
//!
//! ```text
//! cargo bench -p jetfn --features testing --bench throughput
//! ```
//!
//! 1. Throughput: N messages of 128 bytes of JSON are stored in stream `BENCH` once; then, runs
//!    times, alternately, (a) a fresh durable pull consumer read with `messages()` and acked one by
//!    one with raw async-nats, and (b) the jetfn runtime with a no-op handler on a fresh durable,
//!    with `max_workers` 200 (raw's pull batch: the same depth of messages in flight) and, as in
//!    production, logs, metrics and a span per delivery exported over OTLP/HTTP (to a sink in
//!    this process that answers 200). The standard `OTEL_TRACES_SAMPLER`/`_ARG` variables apply.
//!    After each run: this process's CPU time per message, and the server's (from `/proc`), with
//!    the messages it received and sent per handled message (from `/varz`).
//!    Each run's rate is printed, then the medians and their ratio. Raw is timed from its first
//!    pull, jetfn from its first handler run (the time from `start()` to it, connecting and
//!    binding, is printed apart), both until N messages are handled and the server has no ack
//!    pending. Each line also gives this process's CPU time per message and, for jetfn, its
//!    `jetfn_workers` gauge at the end; a pause of 2 s or more without a handler run is reported
//!    with the consumer's state.
//! 2. Latency: publish-to-handler latency at a fixed publish rate, jetfn then raw async-nats.
//!
//! Without `--bench` (that is, under `cargo test`) it does a small smoke run and checks the
//! counts, so that the benchmark keeps compiling and working.
//!
//! Knobs (environment variable, or the argument in parentheses):
//!
//! | variable | argument | meaning | full / smoke |
//! |---|---|---|---|
//! | `JETFN_BENCH_MESSAGES` | `--messages N` | messages per throughput run | 200000 / 2000 |
//! | `JETFN_BENCH_RUNS` | `--runs N` | runs of each of raw and jetfn | 3 / 1 |
//! | `JETFN_BENCH_LATENCY_MESSAGES` | `--latency-messages N` | messages per latency phase (0 = skip) | 20000 / 500 |
//! | `JETFN_BENCH_RATE` | `--rate N` | latency publish rate, msg/s | 2000 / 2000 |
//! | `JETFN_BENCH_MAX_WORKERS` | `--max-workers N` | the jetfn function's `max_workers` (`default`: the runtime's, 16) | 200, raw's pull batch |
//! | `JETFN_BENCH_MAX_ACK_PENDING` | `--max-ack-pending N` | `max_ack_pending` of every consumer | 20000 |
//! | `JETFN_BENCH_CONFIG` | `--config K=V,K=V` | extra runtime variables, e.g. `JETFN__FUNCTIONS__BENCH_NOOP__MIN_WORKERS=64` | none |
//! | `JETFN_BENCH_TRACING` | — | `export`: production log + OpenTelemetry subscriber, spans exported over OTLP/HTTP to a sink in the process; `local`: spans made, not exported; `0`: no subscriber | `export` |
//! | `JETFN_BENCH_ONLY` | `--only raw\|jetfn` | run one side of the throughput comparison (profiling) | both |

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use jetfn::testing::NatsServer;
use jetfn::{
    event_handler, Config, Context, Event, HandlerError, Registry, Runtime, RuntimeHandle,
};
use serde::Deserialize;
use tokio::time::MissedTickBehavior;

/// The throughput stream, its subject, and the jetfn function reading it.
const BENCH_STREAM: &str = "BENCH";
const BENCH_SUBJECT: &str = "bench.events";
const NOOP: &str = "bench_noop";

/// The latency stream, its two subjects (one per contender) and the jetfn function.
const LAT_STREAM: &str = "LAT";
const LAT_JETFN_SUBJECT: &str = "lat.jetfn";
const LAT_RAW_SUBJECT: &str = "lat.raw";
const LATENCY: &str = "bench_latency";

/// How many messages async-nats' `messages()` asks for per pull request: raw's depth of
/// messages in flight, and the jetfn function's `max_workers` by default, for the same depth.
const RAW_PULL_BATCH: u32 = 200;

/// The size of every payload.
const PAYLOAD_BYTES: usize = 128;

// --- the jetfn functions ----------------------------------------------------------------------

/// Completions of [`bench_noop`] in the current run.
static HANDLED: AtomicU64 = AtomicU64::new(0);
/// When [`bench_noop`] first ran in the current run, in nanoseconds since [`BASE`] (0 = not yet).
static FIRST_HANDLED: AtomicU64 = AtomicU64::new(0);

#[event_handler(subject = "bench.events", stream = "BENCH", max_ack_pending = 20000)]
async fn bench_noop(
    _ctx: Context,
    _event: Event<serde::de::IgnoredAny>,
) -> Result<(), HandlerError> {
    if FIRST_HANDLED.load(Ordering::Relaxed) == 0 {
        let _ =
            FIRST_HANDLED.compare_exchange(0, now_nanos(), Ordering::Relaxed, Ordering::Relaxed);
    }
    HANDLED.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// A latency probe: its send time in nanoseconds since [`BASE`] (the padding is ignored).
#[derive(Deserialize)]
struct Stamp {
    t: u64,
}

/// Publish-to-handler latencies of [`bench_latency`], in nanoseconds.
static LATENCIES: Mutex<Vec<u64>> = Mutex::new(Vec::new());

#[event_handler(subject = "lat.jetfn", stream = "LAT", max_ack_pending = 20000)]
async fn bench_latency(_ctx: Context, event: Event<Stamp>) -> Result<(), HandlerError> {
    let latency = now_nanos().saturating_sub(event.data.t);
    LATENCIES.lock().expect("latencies lock").push(latency);
    Ok(())
}

// --- settings ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Settings {
    full: bool,
    messages: u64,
    runs: usize,
    latency_messages: u64,
    rate: u64,
    max_workers: Option<u32>,
    max_ack_pending: u32,
    only: Option<Contender>,
    extra: Vec<(String, String)>,
}

/// One side of the throughput comparison, to run alone (for profiling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    Raw,
    Jetfn,
}

impl Settings {
    /// `--bench` (what `cargo bench` passes) selects the full run; env variables, then
    /// arguments, override the sizes.
    fn from_env_and_args() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let full = args.iter().any(|a| a == "--bench");
        let mut settings = if full {
            Self {
                full,
                messages: 200_000,
                runs: 3,
                latency_messages: 20_000,
                rate: 2_000,
                max_workers: Some(RAW_PULL_BATCH),
                max_ack_pending: 20_000,
                only: None,
                extra: Vec::new(),
            }
        } else {
            Self {
                full,
                messages: 2_000,
                runs: 1,
                latency_messages: 500,
                rate: 2_000,
                max_workers: Some(RAW_PULL_BATCH),
                max_ack_pending: 20_000,
                only: None,
                extra: Vec::new(),
            }
        };
        let knob = |env: &str, arg: &str| -> Option<String> {
            let from_arg = args
                .iter()
                .position(|a| a == arg)
                .and_then(|i| args.get(i + 1).cloned());
            from_arg.or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()))
        };
        fn number<T: std::str::FromStr>(name: &str, text: String) -> T {
            text.trim()
                .replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("{name}: not a number: {text:?}"))
        }
        if let Some(v) = knob("JETFN_BENCH_MESSAGES", "--messages") {
            settings.messages = number("JETFN_BENCH_MESSAGES", v);
        }
        if let Some(v) = knob("JETFN_BENCH_RUNS", "--runs") {
            settings.runs = number("JETFN_BENCH_RUNS", v);
        }
        if let Some(v) = knob("JETFN_BENCH_LATENCY_MESSAGES", "--latency-messages") {
            settings.latency_messages = number("JETFN_BENCH_LATENCY_MESSAGES", v);
        }
        if let Some(v) = knob("JETFN_BENCH_RATE", "--rate") {
            settings.rate = number("JETFN_BENCH_RATE", v);
        }
        if let Some(v) = knob("JETFN_BENCH_MAX_WORKERS", "--max-workers") {
            settings.max_workers = (v != "default").then(|| number("JETFN_BENCH_MAX_WORKERS", v));
        }
        if let Some(v) = knob("JETFN_BENCH_MAX_ACK_PENDING", "--max-ack-pending") {
            settings.max_ack_pending = number("JETFN_BENCH_MAX_ACK_PENDING", v);
        }
        if let Some(v) = knob("JETFN_BENCH_CONFIG", "--config") {
            settings.extra = v
                .split(',')
                .filter(|pair| !pair.trim().is_empty())
                .map(|pair| match pair.split_once('=') {
                    Some((key, value)) => (key.trim().to_owned(), value.trim().to_owned()),
                    None => panic!("JETFN_BENCH_CONFIG: expected KEY=VALUE, got {pair:?}"),
                })
                .collect();
        }
        if let Some(v) = knob("JETFN_BENCH_ONLY", "--only") {
            settings.only = match v.as_str() {
                "raw" => Some(Contender::Raw),
                "jetfn" => Some(Contender::Jetfn),
                _ => panic!("JETFN_BENCH_ONLY: expected `raw` or `jetfn`, got {v:?}"),
            };
        }
        assert!(
            settings.messages > 0,
            "JETFN_BENCH_MESSAGES must be above 0"
        );
        assert!(settings.runs > 0, "JETFN_BENCH_RUNS must be above 0");
        assert!(settings.rate > 0, "JETFN_BENCH_RATE must be above 0");
        settings
    }

    /// How long one phase may take before the benchmark gives up.
    fn patience(&self, messages: u64) -> Duration {
        Duration::from_secs(60 + messages / 1_000)
    }
}

// --- main -------------------------------------------------------------------------------------

fn main() {
    let settings = Settings::from_env_and_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // As in production: the log subscriber with the OpenTelemetry layer, every delivery span
    // exported over OTLP/HTTP to a sink in this process (JETFN_BENCH_TRACING=local: spans made,
    // not exported; 0: no subscriber at all).
    let tracing = std::env::var("JETFN_BENCH_TRACING").unwrap_or_else(|_| "export".to_owned());
    let sink = (tracing == "export").then(|| runtime.block_on(OtlpSink::start()));
    let telemetry = (tracing != "0").then(|| {
        let mut vars = vec![("JETFN_LOG_FORMAT".to_owned(), "text".to_owned())];
        if let Some(sink) = &sink {
            vars.push(("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), sink.endpoint()));
            vars.push((
                "OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(),
                "http/protobuf".to_owned(),
            ));
        }
        let config = Config::from_vars(vars).expect("config");
        runtime.block_on(async { jetfn::telemetry::init(&config) })
    });
    println!(
        "tracing and metrics: {}",
        match (&telemetry, &sink) {
            (Some(_), Some(_)) => "on, spans exported over OTLP/HTTP to a local sink",
            (Some(_), None) => "on, spans made but not exported",
            (None, _) => "metrics only",
        }
    );
    runtime.block_on(bench(settings));
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    if let Some(sink) = sink {
        println!("{}", sink.report());
    }
}

/// An OTLP/HTTP receiver that answers every request with 200 and counts what it got.
struct OtlpSink {
    addr: std::net::SocketAddr,
    received: std::sync::Arc<(AtomicU64, AtomicU64)>,
}

impl OtlpSink {
    async fn start() -> Self {
        let received = std::sync::Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let counts = received.clone();
        let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
            let counts = counts.clone();
            async move {
                counts.0.fetch_add(1, Ordering::Relaxed);
                counts.1.fetch_add(body.len() as u64, Ordering::Relaxed);
                axum::http::StatusCode::OK
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the OTLP sink");
        let addr = listener.local_addr().expect("sink address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, received }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn report(&self) -> String {
        format!(
            "OTLP sink: {} export requests, {} bytes",
            self.received.0.load(Ordering::Relaxed),
            self.received.1.load(Ordering::Relaxed)
        )
    }
}

async fn bench(settings: Settings) {
    let _ = now_nanos(); // fix the time base
    for id in [0, 123_456, u64::MAX] {
        serde_json::from_str::<serde::de::IgnoredAny>(&fixed_payload(id)).expect("a JSON payload");
        let stamp: Stamp = serde_json::from_str(&stamp_payload(id)).expect("a JSON probe");
        assert_eq!(stamp.t, id);
    }
    let server = NatsServer::start();
    let url = server.url();
    let control = server.client().await;
    let js = jetstream::new(control.clone());
    let mode = if settings.full {
        "full"
    } else {
        "smoke (no --bench)"
    };
    println!("jetfn throughput benchmark, {mode}: {settings:?}");
    println!("nats-server at {url}");

    // --- throughput ---------------------------------------------------------------------------
    create_stream(&js, BENCH_STREAM, "bench.>").await;
    let started = Instant::now();
    publish_fixed(&js, BENCH_SUBJECT, settings.messages).await;
    let stored = js
        .get_stream(BENCH_STREAM)
        .await
        .expect("bench stream")
        .info()
        .await
        .expect("bench stream info")
        .state
        .messages;
    assert_eq!(
        stored, settings.messages,
        "the stream holds every published message"
    );
    let elapsed = started.elapsed();
    println!(
        "published {} x {PAYLOAD_BYTES} B in {:.2} s ({:.0} msg/s)",
        settings.messages,
        elapsed.as_secs_f64(),
        rate(settings.messages, elapsed)
    );

    let overrides = jetfn_overrides(&settings);
    let mut raw_rates = Vec::new();
    let mut jetfn_rates = Vec::new();
    let mut jetfn_cold_rates = Vec::new();
    for run in 1..=settings.runs {
        if settings.only != Some(Contender::Jetfn) {
            let cpu = process_cpu();
            let load = ServerLoad::now(&server).await;
            let raw = raw_throughput(&url, &js, &settings, run).await;
            println!(
                "run {run}: raw async-nats {:>9.0} msg/s ({:.3} s from the first pull; {}; {})",
                rate(settings.messages, raw),
                raw.as_secs_f64(),
                cpu_per_message(cpu, settings.messages),
                load.since(&server, settings.messages).await,
            );
            raw_rates.push(rate(settings.messages, raw));
        }
        if settings.only != Some(Contender::Raw) {
            let cpu = process_cpu();
            let load = ServerLoad::now(&server).await;
            let jetfn = jetfn_throughput(&url, &js, &settings, &overrides).await;
            println!(
                "run {run}: jetfn        {:>9.0} msg/s ({:.3} s from the first handler run; {}; {}; \
                 workers at the end: {}; with the {:.1} ms from start() to it: {:.0} msg/s)",
                rate(settings.messages, jetfn.steady),
                jetfn.steady.as_secs_f64(),
                cpu_per_message(cpu, settings.messages),
                load.since(&server, settings.messages).await,
                jetfn.workers.as_deref().unwrap_or("n/a"),
                jetfn.startup.as_secs_f64() * 1e3,
                rate(settings.messages, jetfn.startup + jetfn.steady),
            );
            jetfn_rates.push(rate(settings.messages, jetfn.steady));
            jetfn_cold_rates.push(rate(settings.messages, jetfn.startup + jetfn.steady));
        }
    }
    let raw_median = median(&mut raw_rates);
    let jetfn_median = median(&mut jetfn_rates);
    let jetfn_cold_median = median(&mut jetfn_cold_rates);

    // --- latency ------------------------------------------------------------------------------
    let latency = if settings.latency_messages > 0 {
        create_stream(&js, LAT_STREAM, "lat.>").await;
        let jetfn = jetfn_latency(&url, &js, &settings).await;
        println!("latency jetfn: {}", jetfn.line());
        let raw = raw_latency(&url, &js, &settings).await;
        println!("latency raw:   {}", raw.line());
        Some((jetfn, raw))
    } else {
        None
    };

    // --- summary ------------------------------------------------------------------------------
    let workers = settings
        .max_workers
        .map_or_else(|| "default".to_owned(), |w| w.to_string());
    println!();
    println!("==== summary ====");
    println!(
        "throughput (N={}, {PAYLOAD_BYTES} B, {} runs, jetfn max_workers={workers}, max_ack_pending={}): \
         raw async-nats median {raw_median:.0} msg/s, jetfn median {jetfn_median:.0} msg/s, ratio jetfn/raw = {:.2} \
         (counting jetfn's start-up too: {jetfn_cold_median:.0} msg/s, ratio {:.2})",
        settings.messages,
        settings.runs,
        settings.max_ack_pending,
        jetfn_median / raw_median,
        jetfn_cold_median / raw_median,
    );
    if let Some((jetfn, raw)) = latency {
        println!(
            "latency at {} msg/s ({} msgs): jetfn {} | raw {}",
            settings.rate,
            settings.latency_messages,
            jetfn.short(),
            raw.short()
        );
    }
    control.flush().await.expect("flush");
    drop(server);
}

// --- throughput ---------------------------------------------------------------------------------

/// (a) A fresh durable pull consumer, `messages()`, one `ack()` per message; from the first
/// pull to the server having no ack pending.
async fn raw_throughput(
    url: &str,
    control: &jetstream::Context,
    settings: &Settings,
    run: usize,
) -> Duration {
    let client = async_nats::connect(url).await.expect("connect");
    let js = jetstream::new(client.clone());
    let stream = js.get_stream(BENCH_STREAM).await.expect("bench stream");
    let durable = format!("raw_{run}");
    let consumer = raw_consumer(&stream, BENCH_SUBJECT, &durable, settings).await;

    let work = async {
        let started = Instant::now();
        let mut messages = consumer.messages().await.expect("pull");
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
        wait_all_acked(control, BENCH_STREAM, &durable).await;
        started.elapsed()
    };
    let elapsed = tokio::time::timeout(settings.patience(settings.messages), work)
        .await
        .expect("raw run did not finish in time");
    stream
        .delete_consumer(&durable)
        .await
        .expect("delete raw consumer");
    elapsed
}

/// A fresh durable pull consumer of `subject` for raw async-nats: explicit acks, from the start.
async fn raw_consumer(
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

/// The per-function overrides given to the runtime, as `JETFN__FUNCTIONS__<NAME>__<KEY>`.
fn jetfn_overrides(settings: &Settings) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for function in [NOOP, LATENCY] {
        let key = |k: &str| format!("JETFN__FUNCTIONS__{}__{k}", function.to_uppercase());
        vars.push((key("MAX_ACK_PENDING"), settings.max_ack_pending.to_string()));
        if let Some(workers) = settings.max_workers {
            vars.push((key("MAX_WORKERS"), workers.to_string()));
        }
    }
    vars.extend(settings.extra.iter().cloned());
    vars
}

async fn start_runtime(url: &str, function: &str, overrides: &[(String, String)]) -> RuntimeHandle {
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
    runtime.start().await.expect("runtime starts")
}

/// One jetfn throughput run.
struct JetfnRun {
    /// The function's `jetfn_workers` gauge at the end of the run, from `/metrics`.
    workers: Option<String>,
    /// From `start()` to the first handler run: connecting and binding.
    startup: Duration,
    /// From the first handler run to N handled and no ack pending.
    steady: Duration,
}

/// (b) The runtime with a no-op handler on a fresh durable, until N handled and no ack pending.
async fn jetfn_throughput(
    url: &str,
    control: &jetstream::Context,
    settings: &Settings,
    overrides: &[(String, String)],
) -> JetfnRun {
    HANDLED.store(0, Ordering::SeqCst);
    FIRST_HANDLED.store(0, Ordering::SeqCst);
    let started = now_nanos();
    let handle = start_runtime(url, NOOP, overrides).await;
    let work = async {
        // (handled, when that count was reached, whether this pause was reported)
        let mut last = (0, Instant::now(), false);
        let mut stalled = Duration::ZERO;
        loop {
            let handled = HANDLED.load(Ordering::Relaxed);
            if handled >= settings.messages {
                break;
            }
            if handled != last.0 {
                if last.2 {
                    stalled += last.1.elapsed();
                }
                last = (handled, Instant::now(), false);
            } else if !last.2 && handled > 0 && last.1.elapsed() >= STALL {
                report_stall(control, handled, last.1.elapsed()).await;
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
        wait_all_acked(control, BENCH_STREAM, NOOP).await;
        now_nanos()
    };
    let finished = tokio::time::timeout(settings.patience(settings.messages), work)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "jetfn run did not finish in time: {} of {} handled",
                HANDLED.load(Ordering::SeqCst),
                settings.messages
            )
        });
    let workers = workers_gauge(&handle, NOOP).await;
    handle.stop().await;
    let handled = HANDLED.load(Ordering::SeqCst);
    assert_eq!(
        handled, settings.messages,
        "every message handled exactly once"
    );
    let first = FIRST_HANDLED.load(Ordering::SeqCst);
    control
        .get_stream(BENCH_STREAM)
        .await
        .expect("bench stream")
        .delete_consumer(NOOP)
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
async fn report_stall(control: &jetstream::Context, handled: u64, idle: Duration) {
    let info = async {
        let mut consumer: consumer::PullConsumer = control
            .get_stream(BENCH_STREAM)
            .await
            .ok()?
            .get_consumer(NOOP)
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
async fn wait_all_acked(js: &jetstream::Context, stream: &str, durable: &str) {
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

// --- latency ------------------------------------------------------------------------------------

/// The jetfn runtime handles `lat.jetfn` while a paced publisher sends to it.
async fn jetfn_latency(url: &str, control: &jetstream::Context, settings: &Settings) -> Latencies {
    let capacity = usize::try_from(settings.latency_messages).expect("size");
    {
        let mut latencies = LATENCIES.lock().expect("latencies lock");
        latencies.clear();
        latencies.reserve(capacity);
    }
    let handle = start_runtime(url, LATENCY, &jetfn_overrides(settings)).await;
    assert!(
        handle.wait_ready(Duration::from_secs(20)).await,
        "runtime not ready"
    );
    let publisher = async_nats::connect(url).await.expect("connect");
    let done = async {
        paced_publish(&publisher, LAT_JETFN_SUBJECT, settings).await;
        while LATENCIES.lock().expect("latencies lock").len() < capacity {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        wait_all_acked(control, LAT_STREAM, LATENCY).await;
    };
    tokio::time::timeout(
        settings.patience(settings.latency_messages) + pacing(settings),
        done,
    )
    .await
    .expect("jetfn latency phase did not finish in time");
    handle.stop().await;
    let samples = std::mem::take(&mut *LATENCIES.lock().expect("latencies lock"));
    assert_eq!(
        samples.len(),
        capacity,
        "every latency probe handled exactly once"
    );
    Latencies::new(samples)
}

/// A raw pull consumer (`messages()`, decode the stamp, ack) on `lat.raw` while a paced publisher
/// sends to it.
async fn raw_latency(url: &str, control: &jetstream::Context, settings: &Settings) -> Latencies {
    let capacity = usize::try_from(settings.latency_messages).expect("size");
    let client = async_nats::connect(url).await.expect("connect");
    let js = jetstream::new(client.clone());
    let stream = js.get_stream(LAT_STREAM).await.expect("latency stream");
    let durable = "raw_latency";
    let consumer = raw_consumer(&stream, LAT_RAW_SUBJECT, durable, settings).await;
    let mut messages = consumer.messages().await.expect("pull");
    let reader = tokio::spawn(async move {
        let mut samples = Vec::with_capacity(capacity);
        while samples.len() < capacity {
            let message = messages
                .next()
                .await
                .expect("the pull stream ended")
                .expect("pull error");
            let stamp: Stamp = serde_json::from_slice(&message.payload).expect("a latency probe");
            samples.push(now_nanos().saturating_sub(stamp.t));
            message.ack().await.expect("ack");
        }
        client.flush().await.expect("flush");
        samples
    });
    let publisher = async_nats::connect(url).await.expect("connect");
    let done = async {
        paced_publish(&publisher, LAT_RAW_SUBJECT, settings).await;
        let samples = reader.await.expect("raw latency reader");
        wait_all_acked(control, LAT_STREAM, durable).await;
        samples
    };
    let samples = tokio::time::timeout(
        settings.patience(settings.latency_messages) + pacing(settings),
        done,
    )
    .await
    .expect("raw latency phase did not finish in time");
    stream
        .delete_consumer(durable)
        .await
        .expect("delete raw latency consumer");
    Latencies::new(samples)
}

/// How long the paced publisher runs.
fn pacing(settings: &Settings) -> Duration {
    Duration::from_secs_f64(settings.latency_messages as f64 / settings.rate as f64)
}

/// Publishes `latency_messages` probes to `subject` at `rate` per second (core NATS publishes
/// into the stream's subject), each carrying its send time.
async fn paced_publish(client: &async_nats::Client, subject: &'static str, settings: &Settings) {
    let period = Duration::from_secs_f64(1.0 / settings.rate as f64);
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    for _ in 0..settings.latency_messages {
        ticks.tick().await;
        let payload = stamp_payload(now_nanos());
        client
            .publish(subject, payload.into())
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
}

/// Sorted latencies in nanoseconds.
struct Latencies(Vec<u64>);

impl Latencies {
    fn new(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        Self(samples)
    }

    /// Nearest-rank percentile, in microseconds.
    fn percentile(&self, p: f64) -> f64 {
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.0.len()) - 1;
        self.0[index] as f64 / 1e3
    }

    fn max(&self) -> f64 {
        self.0.last().copied().unwrap_or(0) as f64 / 1e3
    }

    fn line(&self) -> String {
        format!(
            "n={} p50 {:.0} us, p90 {:.0} us, p99 {:.0} us, max {:.0} us",
            self.0.len(),
            self.percentile(50.0),
            self.percentile(90.0),
            self.percentile(99.0),
            self.max()
        )
    }

    fn short(&self) -> String {
        format!(
            "p50 {:.0}us p90 {:.0}us p99 {:.0}us max {:.0}us",
            self.percentile(50.0),
            self.percentile(90.0),
            self.percentile(99.0),
            self.max()
        )
    }
}

// --- helpers ------------------------------------------------------------------------------------

/// The time base shared by publishers and handlers.
static BASE: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since [`BASE`], at least 1.
fn now_nanos() -> u64 {
    let elapsed = BASE.get_or_init(Instant::now).elapsed();
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// This process's CPU time (all threads, user + system), when `/proc/self/stat` tells it.
fn process_cpu() -> Option<Duration> {
    cpu_of("self")
}

/// The CPU time of process `pid` (a number or `self`), when `/proc/<pid>/stat` tells it.
fn cpu_of(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every mainstream Linux.
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time of this process spent since `before`, per message, as text.
fn cpu_per_message(before: Option<Duration>, messages: u64) -> String {
    match (before, process_cpu()) {
        (Some(before), Some(after)) => format!(
            "{:.1} us client CPU/msg",
            after.saturating_sub(before).as_secs_f64() * 1e6 / messages as f64
        ),
        _ => "client CPU n/a".to_owned(),
    }
}

/// The server's CPU time and message counters (`/varz` `in_msgs`, `out_msgs`).
#[derive(Debug, Clone, Copy)]
struct ServerLoad {
    cpu: Option<Duration>,
    in_msgs: u64,
    out_msgs: u64,
}

impl ServerLoad {
    async fn now(server: &NatsServer) -> Self {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.monitor_port()));
        let varz = jetfn::testing::http_get(addr, "/varz")
            .await
            .ok()
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok());
        let counter = |name: &str| {
            varz.as_ref()
                .and_then(|v| v.get(name))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        Self {
            cpu: server.pid().and_then(|pid| cpu_of(&pid.to_string())),
            in_msgs: counter("in_msgs"),
            out_msgs: counter("out_msgs"),
        }
    }

    /// What the server did since `self`, per handled message, as text.
    async fn since(self, server: &NatsServer, messages: u64) -> String {
        let after = Self::now(server).await;
        let per = |n: u64| n as f64 / messages as f64;
        let cpu = match (self.cpu, after.cpu) {
            (Some(before), Some(after)) => format!(
                "{:.1} us server CPU/msg",
                after.saturating_sub(before).as_secs_f64() * 1e6 / messages as f64
            ),
            _ => "server CPU n/a".to_owned(),
        };
        format!(
            "{cpu}, server in {:.2} / out {:.2} msgs per msg",
            per(after.in_msgs.saturating_sub(self.in_msgs)),
            per(after.out_msgs.saturating_sub(self.out_msgs)),
        )
    }
}

async fn create_stream(js: &jetstream::Context, name: &str, subjects: &str) {
    js.create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![subjects.to_owned()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("create stream {name}: {e}"));
}

/// `{"id":<id>,"pad":"xx..."}`, exactly [`PAYLOAD_BYTES`] long.
fn fixed_payload(id: u64) -> String {
    let head = format!(r#"{{"id":{id},"pad":""#);
    let pad = PAYLOAD_BYTES - head.len() - 2;
    let payload = format!("{head}{}\"}}", "x".repeat(pad));
    assert_eq!(payload.len(), PAYLOAD_BYTES);
    payload
}

/// `{"t":<nanos>,"pad":"xx..."}`, exactly [`PAYLOAD_BYTES`] long.
fn stamp_payload(nanos: u64) -> String {
    let head = format!(r#"{{"t":{nanos},"pad":""#);
    let pad = PAYLOAD_BYTES - head.len() - 2;
    let payload = format!("{head}{}\"}}", "x".repeat(pad));
    assert_eq!(payload.len(), PAYLOAD_BYTES);
    payload
}

/// Publishes `count` messages through JetStream, awaiting the acks in batches of 1,000.
async fn publish_fixed(js: &jetstream::Context, subject: &'static str, count: u64) {
    const BATCH: u64 = 1_000;
    let mut acks = Vec::with_capacity(BATCH as usize);
    for id in 0..count {
        let ack = js
            .publish(subject, fixed_payload(id).into())
            .await
            .expect("publish");
        acks.push(ack);
        if acks.len() as u64 == BATCH || id + 1 == count {
            for ack in
                futures::future::join_all(acks.drain(..).map(std::future::IntoFuture::into_future))
                    .await
            {
                ack.expect("publish ack");
            }
        }
    }
}

fn rate(messages: u64, elapsed: Duration) -> f64 {
    messages as f64 / elapsed.as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}
