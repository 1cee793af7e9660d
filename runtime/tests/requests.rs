//! Request functions against a real nats-server: replies, each error code, timeouts, panics,
//! concurrency bounds, the `$SRV` discovery protocol (parsed with async-nats's own `service`
//! types, as `nats micro` reads it), readiness, metrics, and no failed request while one of two
//! pods drains.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::service::{Info, PingResponse, Stats};
use bytes::Bytes;
use jetfn::testing::{http_get, NatsServer};
use jetfn::{request_handler, Context, HandlerError, Request};

use common::{start, PATIENCE};

#[derive(serde::Deserialize)]
struct StockQuery {
    sku: String,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct StockLevel {
    sku: String,
    available: u32,
}

#[request_handler(subject = "test.req.stock")]
async fn req_stock(_ctx: Context, req: Request<StockQuery>) -> Result<StockLevel, HandlerError> {
    match req.data.sku.as_str() {
        "gone" => Err(HandlerError::permanent("no such sku")),
        "flaky" => Err(HandlerError::retryable("warehouse unreachable")),
        "boom" => panic!("the handler panicked on purpose"),
        sku => Ok(StockLevel {
            sku: sku.to_owned(),
            available: 7,
        }),
    }
}

#[request_handler(subject = "test.req.echo")]
async fn req_echo(_ctx: Context, req: Request<String>) -> Result<String, HandlerError> {
    Ok(format!("{} on {}", req.data, req.subject()))
}

#[request_handler(subject = "test.req.bytes")]
async fn req_bytes(_ctx: Context, req: Request<Bytes>) -> Result<Bytes, HandlerError> {
    Ok(req.data)
}

#[request_handler(subject = "test.req.slow", timeout = "200ms")]
async fn req_slow(_ctx: Context, _req: Request<Bytes>) -> Result<(), HandlerError> {
    tokio::time::sleep(Duration::from_secs(5)).await;
    Ok(())
}

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MOST: AtomicUsize = AtomicUsize::new(0);

#[request_handler(subject = "test.req.bounded", max_workers = 2)]
async fn req_bounded(_ctx: Context, _req: Request<Bytes>) -> Result<(), HandlerError> {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    MOST.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    Ok(())
}

#[request_handler(subject = "test.req.work")]
async fn req_work(_ctx: Context, req: Request<String>) -> Result<String, HandlerError> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(req.data)
}

fn error_of(message: &async_nats::Message) -> Option<(String, String)> {
    let headers = message.headers.as_ref()?;
    Some((
        headers.get("Nats-Service-Error-Code")?.to_string(),
        headers.get("Nats-Service-Error")?.to_string(),
    ))
}

async fn ask(client: &async_nats::Client, subject: &str, body: &str) -> async_nats::Message {
    client
        .request(subject.to_owned(), body.to_owned().into())
        .await
        .expect("a reply")
}

#[tokio::test]
async fn replies_and_error_codes() {
    let server = NatsServer::start();
    let runtime = start(&server, "req_stock,req_echo,req_bytes,req_slow", &[]).await;
    let client = async_nats::connect(server.url()).await.expect("connect");

    let reply = ask(&client, "test.req.stock", r#"{"sku":"apple"}"#).await;
    assert_eq!(error_of(&reply), None);
    let level: StockLevel = serde_json::from_slice(&reply.payload).expect("JSON reply");
    assert_eq!(
        level,
        StockLevel {
            sku: "apple".into(),
            available: 7
        }
    );

    let reply = ask(&client, "test.req.echo", "hello").await;
    assert_eq!(
        &reply.payload[..],
        b"hello on test.req.echo",
        "String sent as is"
    );
    let reply = ask(&client, "test.req.bytes", "\u{1}raw").await;
    assert_eq!(&reply.payload[..], b"\x01raw", "Bytes sent as is");

    for (body, code, contains) in [
        (r#"{"sku":"gone"}"#, "400", "no such sku"),
        (r#"{"nope":1}"#, "400", "not valid JSON"),
        (r#"{"sku":"flaky"}"#, "500", "warehouse unreachable"),
        (r#"{"sku":"boom"}"#, "500", "panicked"),
    ] {
        let reply = ask(&client, "test.req.stock", body).await;
        let (got, message) = error_of(&reply).expect("error headers");
        assert_eq!(got, code, "{body}: {message}");
        assert!(message.contains(contains), "{body}: {message}");
        assert!(reply.payload.is_empty(), "an error reply has an empty body");
    }

    let started = Instant::now();
    let reply = ask(&client, "test.req.slow", "").await;
    let (code, message) = error_of(&reply).expect("error headers");
    assert_eq!(code, "504", "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at the timeout"
    );

    // A panic took nothing down: the function still answers.
    let reply = ask(&client, "test.req.stock", r#"{"sku":"pear"}"#).await;
    assert_eq!(error_of(&reply), None);

    let (_, metrics) = http_get(runtime.http_addr(), "/metrics")
        .await
        .expect("GET /metrics");
    assert!(
        metrics.contains(r#"jetfn_requests_total{function="req_stock",outcome="ok"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"jetfn_requests_total{function="req_stock",outcome="error"} 4"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"jetfn_handler_duration_seconds_count{function="req_stock"} 6"#),
        "{metrics}"
    );
    let (status, ready) = http_get(runtime.http_addr(), "/ready")
        .await
        .expect("GET /ready");
    assert_eq!(status, 200, "{ready}");
    assert!(
        ready.contains(r#""name":"req_stock","subject":"test.req.stock","subscribed":true"#),
        "{ready}"
    );
    // `/functions` lists request functions too, with their outcome counts.
    let (status, functions) = http_get(runtime.http_addr(), "/functions")
        .await
        .expect("GET /functions");
    assert_eq!(status, 200, "{functions}");
    let functions: serde_json::Value = serde_json::from_str(&functions).expect("JSON");
    let stock = functions
        .as_array()
        .and_then(|all| all.iter().find(|f| f["name"] == "req_stock"))
        .unwrap_or_else(|| panic!("req_stock in {functions}"));
    assert_eq!(stock["kind"], "request");
    assert_eq!(stock["subject"], "test.req.stock");
    assert_eq!(stock["timeout"], "5s", "{stock}");
    assert_eq!(
        (stock["ok"].as_u64(), stock["error"].as_u64()),
        (Some(2), Some(4))
    );
    runtime.stop().await;
}

#[tokio::test]
async fn max_workers_bounds_concurrent_requests() {
    let server = NatsServer::start();
    let runtime = start(&server, "req_bounded", &[]).await;
    let client = async_nats::connect(server.url()).await.expect("connect");
    let requests = (0..8).map(|_| {
        let client = client.clone();
        async move { ask(&client, "test.req.bounded", "").await }
    });
    let started = Instant::now();
    let replies = futures::future::join_all(requests).await;
    assert!(replies.iter().all(|r| error_of(r).is_none()));
    assert_eq!(MOST.load(Ordering::SeqCst), 2, "max_workers = 2");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "8 requests of 100ms, 2 at a time"
    );
    runtime.stop().await;
}

#[tokio::test]
async fn discovery_answers_as_nats_micro_reads_it() {
    let server = NatsServer::start();
    let runtime = start(&server, "req_stock,req_echo", &[]).await;
    let client = async_nats::connect(server.url()).await.expect("connect");
    let _ = ask(&client, "test.req.stock", r#"{"sku":"apple"}"#).await;
    let _ = ask(&client, "test.req.stock", r#"{"sku":"gone"}"#).await;

    let ping: PingResponse =
        serde_json::from_slice(&ask(&client, "$SRV.PING", "").await.payload).expect("ping");
    assert_eq!(ping.kind, "io.nats.micro.v1.ping_response");
    assert_eq!(ping.version, env!("CARGO_PKG_VERSION"));
    let name = ping.name.clone();
    assert!(
        name.starts_with("requests"),
        "named after the binary: {name}"
    );

    let info: Info =
        serde_json::from_slice(&ask(&client, &format!("$SRV.INFO.{name}"), "").await.payload)
            .expect("info");
    assert_eq!(info.kind, "io.nats.micro.v1.info_response");
    assert_eq!(info.id, ping.id);
    let mut endpoints: Vec<_> = info
        .endpoints
        .iter()
        .map(|e| (e.name.as_str(), e.subject.as_str(), e.queue_group.as_str()))
        .collect();
    endpoints.sort_unstable();
    assert_eq!(
        endpoints,
        [
            ("req_echo", "test.req.echo", "jetfn"),
            ("req_stock", "test.req.stock", "jetfn"),
        ]
    );

    let stats: Stats = serde_json::from_slice(
        &ask(&client, &format!("$SRV.STATS.{name}.{}", ping.id), "")
            .await
            .payload,
    )
    .expect("stats");
    assert_eq!(stats.kind, "io.nats.micro.v1.stats_response");
    let stock = stats
        .endpoints
        .iter()
        .find(|e| e.name == "req_stock")
        .expect("req_stock stats");
    assert_eq!((stock.requests, stock.errors), (2, 1));
    let last = stock.last_error.as_ref().expect("last error");
    assert_eq!(last.code, 400);
    assert!(last.status.contains("no such sku"), "{}", last.status);
    runtime.stop().await;
}

#[tokio::test]
async fn no_request_fails_while_one_of_two_pods_drains() {
    let server = NatsServer::start();
    let first = start(&server, "req_work", &[]).await;
    let second = start(&server, "req_work", &[]).await;
    let client = async_nats::connect(server.url()).await.expect("connect");
    let failures = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let senders: Vec<_> = (0..8)
        .map(|n| {
            let (client, failures, answered, stop) = (
                client.clone(),
                failures.clone(),
                answered.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.is_cancelled() {
                    let body = format!("{n}-{i}");
                    match client
                        .request("test.req.work".to_owned(), body.clone().into())
                        .await
                    {
                        Ok(reply) if reply.payload == body.as_bytes() => {
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(reply) => {
                            eprintln!("unexpected reply {:?}", reply.headers);
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(error) => {
                            eprintln!("request failed: {error}");
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    i += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = answered.load(Ordering::SeqCst);
    first.stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    for sender in senders {
        sender.await.expect("sender");
    }
    let total = answered.load(Ordering::SeqCst);
    println!(
        "answered {before} before the drain, {total} in all; {} failed",
        failures.load(Ordering::SeqCst)
    );
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    assert!(total > before, "the second pod kept answering");
    second.stop().await;
    let _ = PATIENCE;
}

// --- a request subject a stream would capture -----------------------------------------------

#[jetfn::event_handler(subject = "capt.orders.created")]
async fn capt_orders(_ctx: Context, _event: jetfn::Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

#[request_handler(subject = "capt.stock.check")]
async fn capt_stock(_ctx: Context, _req: Request<String>) -> Result<String, HandlerError> {
    Ok("in stock".to_owned())
}

/// The stream jetfn would create for `capt_orders` (`CAPT`, `capt.>`) captures `capt_stock`'s
/// subject: every caller would get that stream's publish ack instead of a reply. The runtime
/// refuses to start, whichever of the two a pod selects (before, it started and answered
/// nothing).
#[test]
fn a_request_subject_an_auto_created_stream_would_capture_refuses_to_start() {
    let registry = jetfn::Registry::collect().expect("registry");
    for selected in ["capt_stock", "capt_orders", "capt_orders,capt_stock"] {
        let config = common::config("nats://127.0.0.1:1", selected, &[]);
        let error = jetfn::Runtime::new(config, &registry)
            .expect_err("a captured request subject is refused")
            .to_string();
        for part in [
            "JETFN_AUTO_CREATE_STREAMS",
            "`CAPT` (capt.>)",
            "`capt.stock.check`",
        ] {
            assert!(error.contains(part), "{selected}: {error}");
        }
        assert_eq!(error.lines().count(), 1, "{error}");
    }
    // Streams made by hand (no auto-creation): the operator chose their subjects.
    let config = common::config(
        "nats://127.0.0.1:1",
        "capt_stock",
        &[("JETFN_AUTO_CREATE_STREAMS", "false")],
    );
    assert!(jetfn::Runtime::new(config, &registry).is_ok());
    // Functions that conflict with neither are not held back by the pair.
    let config = common::config("nats://127.0.0.1:1", "req_stock", &[]);
    assert!(jetfn::Runtime::new(config, &registry).is_ok());
}
