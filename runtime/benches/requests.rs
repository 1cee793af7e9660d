//! Request round trip: a bare async-nats responder against a jetfn request function, on a fresh
//! local nats-server, one request at a time from one client (latency, not throughput).
//!
//! ```text
//! cargo bench -p jetfn --features testing --bench requests
//! ```
//!
//! Both sides answer the same 64-byte JSON payload with a small JSON reply: the raw responder
//! decodes and encodes with serde_json in a `queue_subscribe` loop; jetfn runs a
//! `#[request_handler]` as in production (span, metrics, semaphore, a task per request). The
//! requests alternate between the two sides in rounds so that both see the same machine
//! load. Prints p50 / p99 of each and the jetfn / raw ratio at p50.
//!
//! Without `--bench` (under `cargo test`) it does a small smoke run.
//! `JETFN_BENCH_REQUESTS` sets the number of requests per side (full 20000, smoke 200).

use std::time::{Duration, Instant};

use futures::StreamExt;
use jetfn::testing::NatsServer;
use jetfn::{request_handler, Config, Context, HandlerError, Registry, Request, Runtime};

#[derive(serde::Deserialize, serde::Serialize)]
struct Query {
    sku: String,
    quantity: u32,
    note: String,
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Level {
    sku: String,
    available: u32,
}

#[request_handler(subject = "bench.req.jetfn")]
async fn bench_request(_ctx: Context, req: Request<Query>) -> Result<Level, HandlerError> {
    Ok(Level {
        sku: req.data.sku,
        available: req.data.quantity + 1,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let requests: usize = match std::env::var("JETFN_BENCH_REQUESTS") {
        Err(_) => {
            if full {
                20_000
            } else {
                200
            }
        }
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("JETFN_BENCH_REQUESTS: not a number: {v:?}")),
    };
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    tokio.block_on(run(requests));
}

async fn run(requests: usize) {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.expect("connect");

    // The bare responder, on a connection of its own like the runtime's.
    let responder = async_nats::connect(server.url()).await.expect("connect");
    let mut subscriber = responder
        .queue_subscribe("bench.req.raw", "raw".to_owned())
        .await
        .expect("subscribe");
    let raw = tokio::spawn({
        let responder = responder.clone();
        async move {
            while let Some(message) = subscriber.next().await {
                let Some(reply) = message.reply else { continue };
                let query: Query = serde_json::from_slice(&message.payload).expect("query");
                let level = Level {
                    sku: query.sku,
                    available: query.quantity + 1,
                };
                let body = serde_json::to_vec(&level).expect("encode");
                responder.publish(reply, body.into()).await.expect("reply");
            }
        }
    });
    responder.flush().await.expect("flush");

    let config = Config::from_vars([
        ("NATS_URL", server.url()),
        ("JETFN_FUNCTIONS", "bench_request".to_owned()),
        ("JETFN_HTTP_ADDR", "127.0.0.1:0".to_owned()),
    ])
    .expect("config");
    let registry = Registry::collect().expect("registry");
    let runtime = Runtime::new(config, &registry)
        .expect("runtime")
        .start()
        .await
        .expect("start");
    assert!(runtime.wait_ready(Duration::from_secs(20)).await, "ready");

    let body = serde_json::to_vec(&Query {
        sku: "kettle".to_owned(),
        quantity: 3,
        note: "x".repeat(24),
    })
    .expect("encode");
    let ask = |subject: &'static str| {
        let (client, body) = (client.clone(), body.clone());
        async move {
            let started = Instant::now();
            let reply = client.request(subject, body.into()).await.expect("a reply");
            assert!(reply.headers.is_none(), "not an error reply");
            started.elapsed()
        }
    };
    // Warm-up.
    for _ in 0..requests.min(500) {
        ask("bench.req.raw").await;
        ask("bench.req.jetfn").await;
    }
    let (mut raw_times, mut jetfn_times) = (Vec::new(), Vec::new());
    for _ in 0..requests {
        raw_times.push(ask("bench.req.raw").await);
        jetfn_times.push(ask("bench.req.jetfn").await);
    }
    raw_times.sort_unstable();
    jetfn_times.sort_unstable();
    let (raw50, raw99) = (percentile(&raw_times, 0.5), percentile(&raw_times, 0.99));
    let (jet50, jet99) = (
        percentile(&jetfn_times, 0.5),
        percentile(&jetfn_times, 0.99),
    );
    println!("request round trip, {requests} requests per side, one at a time");
    println!("{:<24} {:>10} {:>10}", "side", "p50 µs", "p99 µs");
    println!(
        "{:<24} {:>10} {:>10}",
        "raw async-nats",
        raw50.as_micros(),
        raw99.as_micros()
    );
    println!(
        "{:<24} {:>10} {:>10}",
        "jetfn request function",
        jet50.as_micros(),
        jet99.as_micros()
    );
    println!(
        "ratio jetfn / raw at p50: {:.2}",
        jet50.as_secs_f64() / raw50.as_secs_f64()
    );
    runtime.stop().await;
    raw.abort();
}
