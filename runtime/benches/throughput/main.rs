//! Throughput and latency of jetfn against raw async-nats, on a fresh local nats-server.
//!
//! ```text
//! cargo bench -p jetfn --features testing --bench throughput
//! ```
//!
//! 1. Throughput: N messages of 128 bytes of JSON are stored in stream `BENCH` once; then, runs
//!    times, each row on a fresh durable consumer, in turn:
//!    - raw async-nats, `messages()` with pull batches of 200 (its default) and of 1,000, one
//!      `ack()` per message;
//!    - RustStream (`ruststream` 0.7.7 + `ruststream-nats` 0.7.1, see `peers.rs`): a per-message
//!      handler (its documented default), and `.batch(1000)` on a current-thread runtime (its
//!      best form);
//!    - jetfn with a no-op handler and default attributes (`max_workers` 16, `prefetch` 5 ms), as
//!      shipped: logs, metrics and a span per delivery, not exported (no `OTEL_*` endpoint set);
//!    - the same with every span exported over OTLP/HTTP (always-on sampler) to a sink on its own
//!      thread of this process that answers 200, whose CPU time is not counted as the client's
//!      (in production the collector is another process);
//!    - jetfn tuned: `max_workers` 256 (`JETFN_BENCH_MAX_WORKERS`);
//!    - jetfn with a no-op batch function, `batch = 100`, default attributes otherwise;
//!    - jetfn at default attributes with one user middleware that only calls the rest of the
//!      stack (`App::layer(from_fn(|call, next| next.run(call)))`): what a layer costs;
//!    - an ordered function (`ordered_by = "subject"`, default attributes) over N more messages
//!      spread on 1,000 subjects `bench.keyed.<k>` (1,000 keys), against the same function
//!      unordered (the same filter `bench.keyed.*`: a wildcard filter over 1,000 subjects costs
//!      the server more per delivery than the literal `bench.events`);
//!    - the same kind of function on `bench.events`: one key, so one message at a time.
//!
//!    Each row gives msg/s, this process's and the server's CPU time per message (`/proc`), and
//!    the server's messages in and out per message (`/varz`); the summary gives the medians and
//!    their ratios to raw and to RustStream. Raw is timed from its first pull, the frameworks
//!    from their first handler run, all until N handled and no ack pending.
//! 2. I/O-bound: a handler awaiting 10 ms at the default `max_workers` (16), against the
//!    Little's-law bound `max_workers / 10 ms` = 1,600 msg/s.
//! 3. Latency: publish-to-handler latency at a fixed publish rate, jetfn then raw async-nats.
//!
//! Without `--bench` (that is, under `cargo test`) it does a small smoke run and checks the
//! counts, so that the benchmark keeps compiling and working.
//!
//! Knobs (environment variable, or the argument in parentheses):
//!
//! | variable | argument | meaning | full / smoke |
//! |---|---|---|---|
//! | `JETFN_BENCH_MESSAGES` | `--messages N` | messages per throughput run | 200000 / 2000 |
//! | `JETFN_BENCH_RUNS` | `--runs N` | runs of each row | 3 / 1 |
//! | `JETFN_BENCH_IO_MESSAGES` | `--io-messages N` | messages of the I/O-bound row (0 = skip) | 4000 / 200 |
//! | `JETFN_BENCH_LATENCY_MESSAGES` | `--latency-messages N` | messages per latency phase (0 = skip) | 20000 / 500 |
//! | `JETFN_BENCH_RATE` | `--rate N` | latency publish rate, msg/s | 2000 / 2000 |
//! | `JETFN_BENCH_MAX_WORKERS` | `--max-workers N` | `max_workers` of the tuned row (`default`: the runtime's) | 256 |
//! | `JETFN_BENCH_MAX_ACK_PENDING` | `--max-ack-pending N` | `max_ack_pending` of every consumer | 20000 |
//! | `JETFN_BENCH_CONFIG` | `--config K=V,K=V` | extra runtime variables, e.g. `JETFN__FUNCTIONS__BENCH_NOOP__PREFETCH=10ms` | none |
//! | `OTEL_BSP_MAX_QUEUE_SIZE` | — | the SDK's span queue (the export row checks that every span arrived) | 65536 |
//! | `JETFN_BENCH_TRACING` | — | `on`: the production log + OpenTelemetry subscriber (spans exported in the export row only); `0`: no subscriber, no export row | `on` |
//! | `JETFN_BENCH_ONLY` | `--only raw\|peer\|jetfn` | run one side of the throughput comparison (profiling) | all |

mod latency;
mod measure;
mod otlp_sink;
mod peers;
mod settings;
mod sides;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use jetfn::testing::NatsServer;
use jetfn::{event_handler, Batch, BatchError, Config, Context, Event, HandlerError};
use serde::Deserialize;

use measure::{
    cpu_per_message, create_stream, median, now_nanos, process_cpu, publish_fixed, publish_keyed,
    rate, ServerLoad,
};
use otlp_sink::OtlpSink;
use peers::{peer_throughput, Peer};
use settings::{Contender, Settings};
use sides::{jetfn_overrides, jetfn_throughput, raw_throughput};

/// The throughput stream, its subjects, and the jetfn functions reading them.
const BENCH_STREAM: &str = "BENCH";
const BENCH_SUBJECT: &str = "bench.events";
const IO_SUBJECT: &str = "bench.io";
const NOOP: &str = "bench_noop";
const BATCH: &str = "bench_batch";
const ORDERED: &str = "bench_ordered";
const ORDERED_ONE: &str = "bench_ordered_one";
const KEYED: &str = "bench_keyed";
/// Keys of the ordered row.
const ORDERED_KEYS: u64 = 1_000;
const IO: &str = "bench_io";

/// The latency stream, its two subjects (one per contender) and the jetfn function.
const LAT_STREAM: &str = "LAT";
const LAT_JETFN_SUBJECT: &str = "lat.jetfn";
const LAT_RAW_SUBJECT: &str = "lat.raw";
const LATENCY: &str = "bench_latency";

/// async-nats' default pull batch of `messages()`, and the larger one of the second raw row.
const RAW_PULL_BATCH: usize = 200;
const RAW_LARGE_BATCH: usize = 1_000;

/// The batch of RustStream's best row.
const PEER_BATCH: usize = 1_000;

/// `max_workers` of the tuned jetfn row.
const TUNED_WORKERS: u32 = 256;

/// The runtime's default `max_workers`, and what the I/O-bound handler awaits.
const DEFAULT_WORKERS: u32 = 16;
const IO_WAIT: Duration = Duration::from_millis(10);

/// The size of every payload.
const PAYLOAD_BYTES: usize = 128;

// --- the jetfn functions ----------------------------------------------------------------------

/// Completions of the throughput function running in the current row.
static HANDLED: AtomicU64 = AtomicU64::new(0);
/// When it first ran in the current row, in nanoseconds since the time base (0 = not yet).
static FIRST_HANDLED: AtomicU64 = AtomicU64::new(0);

fn count_handled() {
    if FIRST_HANDLED.load(Ordering::Relaxed) == 0 {
        let _ =
            FIRST_HANDLED.compare_exchange(0, now_nanos(), Ordering::Relaxed, Ordering::Relaxed);
    }
    HANDLED.fetch_add(1, Ordering::Relaxed);
}

#[event_handler(subject = "bench.events", stream = "BENCH")]
async fn bench_noop(
    _ctx: Context,
    _event: Event<serde::de::IgnoredAny>,
) -> Result<(), HandlerError> {
    count_handled();
    Ok(())
}

#[event_handler(subject = "bench.keyed.*", stream = "BENCH", ordered_by = "subject")]
async fn bench_ordered(
    _ctx: Context,
    _event: Event<serde::de::IgnoredAny>,
) -> Result<(), HandlerError> {
    count_handled();
    Ok(())
}

#[event_handler(subject = "bench.keyed.*", stream = "BENCH")]
async fn bench_keyed(
    _ctx: Context,
    _event: Event<serde::de::IgnoredAny>,
) -> Result<(), HandlerError> {
    count_handled();
    Ok(())
}

#[event_handler(subject = "bench.events", stream = "BENCH", ordered_by = "subject")]
async fn bench_ordered_one(
    _ctx: Context,
    _event: Event<serde::de::IgnoredAny>,
) -> Result<(), HandlerError> {
    count_handled();
    Ok(())
}

#[event_handler(subject = "bench.events", stream = "BENCH", batch = 100)]
async fn bench_batch(_ctx: Context, batch: Batch<serde::de::IgnoredAny>) -> Result<(), BatchError> {
    for _ in &batch {
        count_handled();
    }
    Ok(())
}

#[event_handler(subject = "bench.io", stream = "BENCH")]
async fn bench_io(_ctx: Context, _event: Event<serde::de::IgnoredAny>) -> Result<(), HandlerError> {
    tokio::time::sleep(IO_WAIT).await;
    count_handled();
    Ok(())
}

/// A latency probe: its send time in nanoseconds since the time base (the padding is ignored).
#[derive(Deserialize)]
struct Stamp {
    t: u64,
}

/// Publish-to-handler latencies of [`bench_latency`], in nanoseconds.
static LATENCIES: Mutex<Vec<u64>> = Mutex::new(Vec::new());

#[event_handler(subject = "lat.jetfn", stream = "LAT")]
async fn bench_latency(_ctx: Context, event: Event<Stamp>) -> Result<(), HandlerError> {
    let latency = now_nanos().saturating_sub(event.data.t);
    LATENCIES.lock().expect("latencies lock").push(latency);
    Ok(())
}

/// The span queue of the export row: the SDK's default (2,048) drops a few per cent of the spans
/// at this rate (the sink counts them), and the row is meant to export every span.
const SPAN_QUEUE: &str = "65536";

fn main() {
    // Before any thread exists (the SDK reads it when a tracer provider is built).
    if std::env::var_os("OTEL_BSP_MAX_QUEUE_SIZE").is_none() {
        std::env::set_var("OTEL_BSP_MAX_QUEUE_SIZE", SPAN_QUEUE);
    }
    let settings = Settings::from_env_and_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // As in production: the log subscriber with the OpenTelemetry layer, a span per delivery
    // (not exported, but in the export row; JETFN_BENCH_TRACING=0: no subscriber at all).
    let tracing = std::env::var("JETFN_BENCH_TRACING").unwrap_or_else(|_| "on".to_owned());
    let tracing = (tracing != "0").then(|| Tracing {
        sink: OtlpSink::start(),
    });
    let telemetry = tracing
        .as_ref()
        .map(|tracing| runtime.block_on(async { tracing.local() }));
    println!(
        "tracing and metrics: {}",
        match &tracing {
            Some(_) => "on; spans exported over OTLP/HTTP to a local sink in the export row",
            None => "metrics only",
        }
    );
    runtime.block_on(bench(settings, tracing.as_ref()));
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    if let Some(tracing) = tracing {
        println!("{}", tracing.sink.report());
    }
}

/// The log + OpenTelemetry subscriber, and the sink spans are exported to in the export row.
struct Tracing {
    sink: OtlpSink,
}

impl Tracing {
    /// Telemetry as shipped without an OTLP endpoint: spans made, not exported.
    fn local(&self) -> jetfn::Telemetry {
        self.init(false)
    }

    /// Every span exported over OTLP/HTTP to the sink.
    fn export(&self) -> jetfn::Telemetry {
        self.init(true)
    }

    /// Installs the subscriber (once) and a tracer provider, which the runtimes started
    /// afterwards use.
    fn init(&self, export: bool) -> jetfn::Telemetry {
        let mut vars = vec![("JETFN_LOG_FORMAT".to_owned(), "text".to_owned())];
        if export {
            vars.push((
                "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
                self.sink.endpoint(),
            ));
            vars.push((
                "OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(),
                "http/protobuf".to_owned(),
            ));
        }
        let config = Config::from_vars(vars).expect("config");
        jetfn::Telemetry::init(&config)
    }
}
/// The CPU time one run took, per message: this process's and the server's.
struct Cpu {
    client: Option<f64>,
    server: Option<f64>,
    text: String,
}

impl std::fmt::Display for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Runs `work` (one run of a row over `n` messages) and measures its CPU time.
async fn measured<T>(
    server: &NatsServer,
    n: u64,
    work: impl std::future::Future<Output = T>,
) -> (T, Cpu) {
    let cpu = process_cpu();
    let load = ServerLoad::now(server).await;
    let output = work.await;
    let (client, client_text) = cpu_per_message(cpu, n);
    let (server_cpu, server_text) = load.since(server, n).await;
    let text = format!("{client_text}; {server_text}");
    (
        output,
        Cpu {
            client,
            server: server_cpu,
            text,
        },
    )
}

/// One row of the throughput table: the rates and CPU figures of its runs.
#[derive(Default)]
struct Row {
    rates: Vec<f64>,
    client: Vec<f64>,
    server: Vec<f64>,
}

impl Row {
    fn push(&mut self, rate: f64, client: Option<f64>, server: Option<f64>) {
        self.rates.push(rate);
        self.client.extend(client);
        self.server.extend(server);
    }

    /// The row's medians, with its rate against raw, raw batch 1000, RustStream and its best.
    fn line(&mut self, name: &str, against: [f64; 4]) -> String {
        let rate = median(&mut self.rates);
        let [raw, raw_large, peer, peer_best] = against.map(|base| rate / base);
        format!(
            "| {name:<38} | {rate:>9.0} | {raw:>5.2} | {raw_large:>5.2} | {peer:>5.2} | {peer_best:>5.2} | {:>6.1} | {:>6.1} |",
            median(&mut self.client),
            median(&mut self.server),
        )
    }
}

async fn bench(settings: Settings, tracing: Option<&Tracing>) {
    let _ = now_nanos(); // fix the time base
    for id in [0, 123_456, u64::MAX] {
        let payload = measure::fixed_payload(id);
        serde_json::from_str::<serde::de::IgnoredAny>(&payload).expect("a JSON payload");
        let stamp: Stamp = serde_json::from_str(&measure::stamp_payload(id)).expect("a JSON probe");
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
    let elapsed = started.elapsed();
    let keyed = |id| format!("bench.keyed.{}", id % ORDERED_KEYS);
    publish_keyed(&js, keyed, settings.messages).await;
    println!(
        "published {} x {PAYLOAD_BYTES} B in {:.2} s ({:.0} msg/s)",
        settings.messages,
        elapsed.as_secs_f64(),
        rate(settings.messages, elapsed)
    );

    let n = settings.messages;
    let mut rows: [Row; 12] = Default::default();
    let names = [
        "raw async-nats, batch 200 (default)",
        "raw async-nats, batch 1000",
        "RustStream, per message (default)",
        "RustStream, batch 1000, current-thread",
        "jetfn, default attributes",
        "jetfn, default, every span exported",
        "jetfn, tuned",
        "jetfn, batch function (batch = 100)",
        "jetfn, default + one no-op from_fn layer",
        "jetfn, ordered_by subject, 1,000 keys",
        "jetfn, ordered_by subject, one key",
        "jetfn, bench.keyed.* unordered (default)",
    ];
    for run in 1..=settings.runs {
        if settings.runs_side(Contender::Raw) {
            for (row, batch) in [(0, RAW_PULL_BATCH), (1, RAW_LARGE_BATCH)] {
                let durable = format!("raw_{batch}_{run}");
                let (took, cpu) = measured(&server, n, async {
                    raw_throughput(&url, &js, &settings, BENCH_SUBJECT, &durable, batch).await
                })
                .await;
                println!(
                    "run {run}: {:<38} {:>9.0} msg/s ({:.3} s; {cpu})",
                    names[row],
                    rate(n, took),
                    took.as_secs_f64(),
                );
                rows[row].push(rate(n, took), cpu.client, cpu.server);
            }
        }
        if settings.runs_side(Contender::Peer) {
            for (row, peer) in [(2, Peer::Default), (3, Peer::Batch(PEER_BATCH))] {
                let durable = format!("peer_{row}_{run}");
                let (took, cpu) = measured(&server, n, async {
                    peer_throughput(&url, &js, &settings, &durable, peer).await
                })
                .await;
                println!(
                    "run {run}: {:<38} {:>9.0} msg/s ({:.3} s from the first handler run; {cpu})",
                    names[row],
                    rate(n, took),
                    took.as_secs_f64(),
                );
                rows[row].push(rate(n, took), cpu.client, cpu.server);
            }
        }
        if settings.runs_side(Contender::Jetfn) {
            for (row, function, workers, export, layered) in [
                (4, NOOP, None, None, false),
                (8, NOOP, None, None, true),
                (5, NOOP, None, tracing, false),
                (6, NOOP, settings.max_workers, None, false),
                (7, BATCH, None, None, false),
                (11, KEYED, None, None, false),
                (9, ORDERED, None, None, false),
                (10, ORDERED_ONE, None, None, false),
            ] {
                if row == 5 && tracing.is_none() {
                    continue;
                }
                let overrides = jetfn_overrides(&settings, function, workers);
                let spans_before = export.map(|tracing| tracing.sink.spans());
                let exporting = export.map(Tracing::export);
                let (jetfn, cpu) = measured(&server, n, async {
                    let jetfn =
                        jetfn_throughput(&url, &js, &settings, function, n, &overrides, layered)
                            .await;
                    if let Some(exporting) = exporting {
                        // What is still buffered is exported (and counted) before the CPU is
                        // read; then back to spans made but not exported for the other rows.
                        tokio::task::block_in_place(|| exporting.shutdown());
                        drop(export.map(Tracing::local));
                    }
                    jetfn
                })
                .await;
                println!(
                    "run {run}: {:<38} {:>9.0} msg/s ({:.3} s from the first handler run, {:.1} ms \
                     start-up before it; {cpu}; workers at the end: {})",
                    names[row],
                    rate(n, jetfn.steady),
                    jetfn.steady.as_secs_f64(),
                    jetfn.startup.as_secs_f64() * 1e3,
                    jetfn.workers.as_deref().unwrap_or("n/a"),
                );
                rows[row].push(rate(n, jetfn.steady), cpu.client, cpu.server);
                if let (Some(tracing), Some(before)) = (export, spans_before) {
                    let spans = tracing.sink.spans() - before;
                    println!("       spans received by the OTLP sink: {spans} of {n}");
                    assert_eq!(spans, n, "every span exported");
                }
            }
        }
    }

    // --- I/O-bound ------------------------------------------------------------------------------
    let io = if settings.io_messages > 0 && settings.runs_side(Contender::Jetfn) {
        publish_fixed(&js, IO_SUBJECT, settings.io_messages).await;
        let overrides = jetfn_overrides(&settings, IO, None);
        let run = jetfn_throughput(
            &url,
            &js,
            &settings,
            IO,
            settings.io_messages,
            &overrides,
            false,
        )
        .await;
        let measured = rate(settings.io_messages, run.steady);
        let bound = f64::from(DEFAULT_WORKERS) / IO_WAIT.as_secs_f64();
        println!(
            "I/O-bound: {} messages, handler awaiting {IO_WAIT:?}, default max_workers \
             {DEFAULT_WORKERS}: {measured:.0} msg/s against the bound {bound:.0} msg/s",
            settings.io_messages
        );
        Some((measured, bound))
    } else {
        None
    };

    // --- latency ------------------------------------------------------------------------------
    let latency = if settings.latency_messages > 0 {
        create_stream(&js, LAT_STREAM, "lat.>").await;
        let jetfn = latency::jetfn_latency(&url, &js, &settings).await;
        println!("latency jetfn: {}", jetfn.line());
        let raw = latency::raw_latency(&url, &js, &settings).await;
        println!("latency raw:   {}", raw.line());
        Some((jetfn, raw))
    } else {
        None
    };

    // --- summary ------------------------------------------------------------------------------
    println!();
    println!(
        "==== summary: N={n} x {PAYLOAD_BYTES} B, medians of {} runs, max_ack_pending={} ====",
        settings.runs, settings.max_ack_pending
    );
    let raw = median(&mut rows[0].rates.clone());
    let raw_large = median(&mut rows[1].rates.clone());
    let peer = median(&mut rows[2].rates.clone());
    let peer_best = median(&mut rows[3].rates.clone());
    println!(
        "| {:<38} | {:>9} | {:>5} | {:>5} | {:>5} | {:>5} | {:>6} | {:>6} |",
        "consumer", "msg/s", "/raw", "/1000", "/rs", "/rs b", "cli µs", "srv µs"
    );
    for (row, name) in rows.iter_mut().zip(names) {
        if !row.rates.is_empty() {
            println!("{}", row.line(name, [raw, raw_large, peer, peer_best]));
        }
    }
    let (ordered, unordered) = (
        median(&mut rows[9].rates.clone()),
        median(&mut rows[11].rates.clone()),
    );
    if ordered.is_finite() && unordered.is_finite() {
        println!(
            "ordered (1,000 keys) / the same function unordered: {:.2}; one key (serial): {:.0} msg/s",
            ordered / unordered,
            median(&mut rows[10].rates.clone())
        );
    }
    if let Some((measured, bound)) = io {
        println!(
            "I/O-bound (10 ms handler, max_workers 16): {measured:.0} msg/s, {:.2} of the Little's-law bound {bound:.0} msg/s",
            measured / bound
        );
    }
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
