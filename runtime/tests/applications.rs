//! Applications against a real nats-server: state from `App::state` and startup hooks, the
//! lifecycle (readiness during a slow hook, a failing hook, a missing state type, shutdown
//! hooks), middleware (`from_fn`, tower's `ConcurrencyLimitLayer`) and payload validation.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use jetfn::middleware::{from_fn, Next};
use jetfn::testing::{http_get, NatsServer};
use jetfn::{
    event_handler, request_handler, App, Call, Context, Event, HandlerError, Registry, Request,
    Runtime, RuntimeError, Startup, State,
};

use common::{config, header, messages, stored, PATIENCE};

/// A shared resource: the test checks every handler saw the same one.
#[derive(Debug)]
struct Counter {
    seen: AtomicUsize,
}

/// Made by a startup hook from an earlier value.
struct Ledger {
    bucket: jetstream::kv::Store,
    counter: State<Counter>,
}

#[derive(serde::Deserialize)]
struct Entry {
    key: String,
}

static POINTERS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

#[event_handler(subject = "apps.state.record")]
async fn app_record(
    _ctx: Context,
    event: Event<Entry>,
    counter: State<Counter>,
    ledger: State<Ledger>,
) -> Result<(), HandlerError> {
    counter.seen.fetch_add(1, Ordering::SeqCst);
    if let Ok(mut pointers) = POINTERS.lock() {
        pointers.push(Arc::as_ptr(counter.arc()) as usize);
        pointers.push(Arc::as_ptr(ledger.counter.arc()) as usize);
    }
    ledger
        .bucket
        .put(&event.data.key, "seen".into())
        .await
        .map_err(HandlerError::retryable)?;
    Ok(())
}

fn runtime(url: &str, functions: &str, extra: &[(&str, &str)], app: App) -> Runtime {
    common::init_logs();
    let registry = Registry::collect().expect("registry");
    Runtime::new(config(url, functions, extra), &registry)
        .expect("functions")
        .app(app)
}

async fn consumer_exists(js: &jetstream::Context, stream: &str, name: &str) -> bool {
    match js.get_stream(stream).await {
        Ok(stream) => stream.consumer_info(name).await.is_ok(),
        Err(_) => false,
    }
}

#[tokio::test]
async fn state_from_app_and_startup_hooks_reaches_handlers_shared() {
    let server = NatsServer::start();
    let app = App::new()
        .state(Counter {
            seen: AtomicUsize::new(0),
        })
        .on_startup(|start: Startup| async move {
            let bucket = start
                .jetstream()
                .create_key_value(jetstream::kv::Config {
                    bucket: "APP_LEDGER".to_owned(),
                    ..Default::default()
                })
                .await?;
            let counter = start
                .state::<Counter>()
                .ok_or("no Counter before the hook")?;
            Ok(Ledger { bucket, counter })
        });
    let handle = runtime(&server.url(), "app_record", &[], app)
        .start()
        .await
        .expect("starts");
    assert!(handle.wait_ready(PATIENCE).await, "ready");
    let js = jetstream::new(server.client().await);
    common::publish_all(
        &js,
        "apps.state.record",
        (0..5).map(|i| format!(r#"{{"key":"k{i}"}}"#)),
    )
    .await;
    let kv = js.get_key_value("APP_LEDGER").await.expect("bucket");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for i in 0..5 {
        loop {
            if kv.get(format!("k{i}")).await.expect("kv get").is_some() {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "k{i} never written");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    handle.stop().await;
    let pointers = POINTERS.lock().expect("lock").clone();
    assert_eq!(pointers.len(), 10, "two per handled message");
    assert!(
        pointers.windows(2).all(|pair| pair[0] == pair[1]),
        "one Counter shared by every call and by the hook's Ledger: {pointers:?}"
    );
}

#[event_handler(subject = "apps.slow.start")]
async fn app_slow_start(_ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

#[tokio::test]
async fn not_ready_while_a_startup_hook_runs_and_nothing_bound_before_it_ends() {
    let server = NatsServer::start();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let (running, hook_runs) = tokio::sync::oneshot::channel::<()>();
    let app = App::new().on_startup(|_start: Startup| async move {
        let _ = running.send(());
        released.await?;
        Ok(())
    });
    let handle = runtime(&server.url(), "app_slow_start", &[], app)
        .start()
        .await
        .expect("starts");
    let addr = handle.http_addr();
    // Connected (hooks run only then), the hook still waiting: alive, not ready, nothing bound.
    let js = jetstream::new(server.client().await);
    tokio::time::timeout(PATIENCE, hook_runs)
        .await
        .expect("the hook runs")
        .expect("the hook signals");
    assert_eq!(http_get(addr, "/health").await.expect("get").0, 200);
    assert_eq!(http_get(addr, "/ready").await.expect("get").0, 503);
    assert!(!consumer_exists(&js, "APPS", "app_slow_start").await);
    release.send(()).expect("hook waiting");
    assert!(
        handle.wait_ready(PATIENCE).await,
        "ready once the hook returned"
    );
    assert_eq!(http_get(addr, "/ready").await.expect("get").0, 200);
    assert!(consumer_exists(&js, "APPS", "app_slow_start").await);
    handle.stop().await;
}

#[tokio::test]
async fn a_failing_startup_hook_stops_the_runtime_before_anything_binds() {
    let server = NatsServer::start();
    let app = App::new()
        .on_startup(|_start: Startup| async move { Ok(1u8) })
        .on_startup(|_start: Startup| async move {
            Err::<(), _>("the database refused the connection".into())
        });
    let handle = runtime(&server.url(), "app_slow_start", &[], app)
        .start()
        .await
        .expect("starts");
    let error = tokio::time::timeout(PATIENCE, handle.finished())
        .await
        .expect("stops")
        .expect_err("the hook failed");
    assert!(matches!(error, RuntimeError::Startup(_)), "{error:?}");
    assert!(!error.is_config(), "exit 1, not 2");
    assert!(
        error
            .to_string()
            .contains("the database refused the connection"),
        "{error}"
    );
    let js = jetstream::new(server.client().await);
    assert!(!consumer_exists(&js, "APPS", "app_slow_start").await);
}

#[tokio::test]
async fn a_startup_hook_past_the_startup_timeout_stops_the_runtime() {
    let server = NatsServer::start();
    let app = App::new().on_startup(|_start: Startup| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(())
    });
    let handle = runtime(
        &server.url(),
        "app_slow_start",
        &[("JETFN_STARTUP_TIMEOUT", "300ms")],
        app,
    )
    .start()
    .await
    .expect("starts");
    let error = tokio::time::timeout(PATIENCE, handle.finished())
        .await
        .expect("stops")
        .expect_err("timed out");
    assert!(
        error.to_string().contains("JETFN_STARTUP_TIMEOUT"),
        "{error}"
    );
}

#[tokio::test]
async fn a_missing_state_type_is_a_configuration_error_naming_function_place_and_type() {
    let server = NatsServer::start();
    // `app_record` takes State<Counter> and State<Ledger>; only Counter is provided.
    let app = App::new().state(Counter {
        seen: AtomicUsize::new(0),
    });
    let handle = runtime(&server.url(), "app_record", &[], app)
        .start()
        .await
        .expect("starts");
    let error = tokio::time::timeout(PATIENCE, handle.finished())
        .await
        .expect("stops")
        .expect_err("Ledger is missing");
    assert!(error.is_config(), "exit 2: {error:?}");
    let RuntimeError::State(lines) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(line.contains("`app_record`"), "{line}");
    assert!(line.contains("tests/applications.rs:"), "{line}");
    assert!(line.contains("State<applications::Ledger>"), "{line}");
    let js = jetstream::new(server.client().await);
    assert!(!consumer_exists(&js, "APPS", "app_record").await);
}

#[tokio::test]
async fn one_type_provided_twice_is_a_configuration_error() {
    let server = NatsServer::start();
    let app = App::new()
        .state(7u32)
        .on_startup(|_start: Startup| async move { Ok(8u32) });
    let handle = runtime(&server.url(), "app_slow_start", &[], app)
        .start()
        .await
        .expect("starts");
    let error = tokio::time::timeout(PATIENCE, handle.finished())
        .await
        .expect("stops")
        .expect_err("u32 twice");
    assert!(
        error.is_config() && error.to_string().contains("`u32`"),
        "{error}"
    );
}

static SHUTDOWN_SAW: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[tokio::test]
async fn shutdown_hooks_run_after_the_drain_in_reverse_order_with_nats_connected() {
    let server = NatsServer::start();
    let client = server.client().await;
    let mut seen = client.subscribe("apps.shutdown.seen").await.expect("sub");
    let hook = |name: &'static str| {
        move |state: jetfn::AppState| async move {
            let client = state.get::<async_nats::Client>().ok_or("no client")?;
            client.publish("apps.shutdown.seen", name.into()).await?;
            client.flush().await?;
            SHUTDOWN_SAW
                .lock()
                .map_err(|e| e.to_string())?
                .push(name.to_owned());
            Ok(())
        }
    };
    let app = App::new()
        .state(client.clone())
        .on_shutdown(hook("first-added"))
        .on_shutdown(hook("second-added"));
    let handle = runtime(&server.url(), "app_slow_start", &[], app)
        .start()
        .await
        .expect("starts");
    assert!(handle.wait_ready(PATIENCE).await);
    handle.stop().await;
    assert_eq!(
        *SHUTDOWN_SAW.lock().expect("lock"),
        ["second-added", "first-added"]
    );
    use futures::StreamExt;
    for expected in ["second-added", "first-added"] {
        let message = tokio::time::timeout(PATIENCE, seen.next())
            .await
            .expect("published while connected")
            .expect("message");
        assert_eq!(message.payload, expected.as_bytes());
    }
}

// ---- middleware ----

static HANDLED: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[derive(Clone, Debug)]
struct Tenant(String);

#[event_handler(subject = "apps.mw.orders", max_deliver = 3, backoff = "10ms..10ms")]
async fn app_tenant_orders(ctx: Context, event: Event<String>) -> Result<(), HandlerError> {
    let tenant = ctx
        .extension::<Tenant>()
        .map(|t| t.0.clone())
        .unwrap_or_default();
    HANDLED
        .lock()
        .map_err(|e| HandlerError::retryable(e.to_string()))?
        .push(format!("{tenant}:{}", event.data));
    if event.data == "fail" {
        return Err(HandlerError::retryable("downstream refused"));
    }
    Ok(())
}

#[tokio::test]
async fn a_from_fn_layer_rejects_rewrites_hands_values_and_turns_errors_permanent() {
    let server = NatsServer::start();
    let app = App::new().layer(from_fn(|mut call: Call, next: Next| async move {
        let Some(tenant) = call.headers().get("Tenant").map(|v| v.to_string()) else {
            return Err(HandlerError::permanent("no Tenant header"));
        };
        call.extensions_mut().insert(Tenant(tenant));
        // Raw payloads arrive "encrypted" (reversed); the handler sees them decoded.
        let clear: Vec<u8> = call.payload().iter().rev().copied().collect();
        call.set_payload(clear);
        assert_eq!(call.function(), "app_tenant_orders");
        next.run(call)
            .await
            .map_err(|error| HandlerError::permanent(format!("given up: {error}")))
    }));
    let handle = runtime(&server.url(), "app_tenant_orders", &[], app)
        .start()
        .await
        .expect("starts");
    assert!(handle.wait_ready(PATIENCE).await);
    let js = jetstream::new(server.client().await);
    let publish = |tenant: Option<&str>, text: &str| {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(tenant) = tenant {
            headers.insert("Tenant", tenant);
        }
        let body: Vec<u8> = text.bytes().rev().collect();
        let js = js.clone();
        async move {
            js.publish_with_headers("apps.mw.orders", headers, body.into())
                .await
                .expect("publish")
                .await
                .expect("ack");
        }
    };
    publish(Some("acme"), "hello").await;
    publish(None, "rejected").await;
    publish(Some("acme"), "fail").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while stored(&js, "JETFN_DLQ", "jetfn.dlq.app_tenant_orders").await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "two dead letters expected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.stop().await;
    let handled = HANDLED.lock().expect("lock").clone();
    assert_eq!(
        handled,
        ["acme:hello", "acme:fail"],
        "the rejected call never ran; the failing one ran once (made permanent)"
    );
    let letters = messages(&js, "JETFN_DLQ", "jetfn.dlq.app_tenant_orders").await;
    let kinds: Vec<(&str, &str)> = letters
        .iter()
        .map(|m| (header(m, "Jetfn-Error-Kind"), header(m, "Jetfn-Deliveries")))
        .collect();
    assert_eq!(kinds, [("permanent", "1"), ("permanent", "1")]);
    assert_eq!(header(&letters[0], "Jetfn-Error"), "no Tenant header");
    assert_eq!(
        header(&letters[1], "Jetfn-Error"),
        "given up: downstream refused"
    );
}

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MOST: AtomicUsize = AtomicUsize::new(0);
static DONE: AtomicUsize = AtomicUsize::new(0);

#[event_handler(subject = "apps.limited", min_workers = 8, max_workers = 8)]
async fn app_limited(_ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    MOST.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    DONE.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test]
async fn a_concurrency_limit_layer_bounds_an_eight_worker_function_to_two() {
    let server = NatsServer::start();
    let app = App::new().layer(tower::limit::ConcurrencyLimitLayer::new(2));
    let handle = runtime(&server.url(), "app_limited", &[], app)
        .start()
        .await
        .expect("starts");
    assert!(handle.wait_ready(PATIENCE).await);
    let js = jetstream::new(server.client().await);
    common::publish_all(&js, "apps.limited", (0..24).map(|i| format!("\"{i}\""))).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while DONE.load(Ordering::SeqCst) < 24 {
        assert!(tokio::time::Instant::now() < deadline, "not all handled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.stop().await;
    assert_eq!(
        MOST.load(Ordering::SeqCst),
        2,
        "at most 2 at once, and 2 reached"
    );
}

// ---- validation ----

#[derive(serde::Deserialize, validator::Validate)]
struct Signup {
    #[validate(email)]
    email: String,
    #[validate(range(min = 18))]
    age: u32,
}

static SIGNUPS: AtomicUsize = AtomicUsize::new(0);

#[event_handler(subject = "apps.signups")]
async fn app_signup(_ctx: Context, event: Event<Signup>) -> Result<(), HandlerError> {
    assert!(event.data.age >= 18, "never called with an invalid payload");
    SIGNUPS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test]
async fn an_invalid_payload_is_dead_lettered_invalid_naming_the_field_and_never_handled() {
    let server = NatsServer::start();
    let handle = runtime(&server.url(), "app_signup", &[], App::new())
        .start()
        .await
        .expect("starts");
    assert!(handle.wait_ready(PATIENCE).await);
    let js = jetstream::new(server.client().await);
    common::publish_all(
        &js,
        "apps.signups",
        [
            r#"{"email":"a@b.example","age":30}"#.to_owned(),
            r#"{"email":"nope","age":30}"#.to_owned(),
        ],
    )
    .await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while stored(&js, "JETFN_DLQ", "jetfn.dlq.app_signup").await < 1
        || SIGNUPS.load(Ordering::SeqCst) < 1
    {
        assert!(tokio::time::Instant::now() < deadline, "not settled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.stop().await;
    assert_eq!(SIGNUPS.load(Ordering::SeqCst), 1);
    let letters = messages(&js, "JETFN_DLQ", "jetfn.dlq.app_signup").await;
    assert_eq!(letters.len(), 1);
    assert_eq!(header(&letters[0], "Jetfn-Error-Kind"), "invalid");
    assert_eq!(
        header(&letters[0], "Jetfn-Error"),
        "invalid payload: email: email"
    );
}

#[derive(serde::Deserialize, validator::Validate)]
struct Quote {
    #[validate(length(min = 1))]
    sku: String,
}

struct PriceList {
    cents: u64,
}

#[request_handler(subject = "quotes.apps")]
async fn app_quote(
    _ctx: Context,
    req: Request<Quote>,
    prices: State<PriceList>,
) -> Result<String, HandlerError> {
    Ok(format!("{}={}", req.data.sku, prices.cents))
}

#[tokio::test]
async fn a_request_function_takes_state_and_answers_400_to_an_invalid_request() {
    let server = NatsServer::start();
    let app = App::new().state(PriceList { cents: 250 });
    let handle = runtime(&server.url(), "app_quote", &[], app)
        .start()
        .await
        .expect("starts");
    assert!(handle.wait_ready(PATIENCE).await);
    let client = server.client().await;
    let ok = client
        .request("quotes.apps", r#"{"sku":"teapot"}"#.into())
        .await
        .expect("reply");
    assert_eq!(ok.payload, "teapot=250".as_bytes());
    let bad = client
        .request("quotes.apps", r#"{"sku":""}"#.into())
        .await
        .expect("reply");
    let code = bad
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Service-Error-Code"))
        .map(|v| v.to_string());
    assert_eq!(code.as_deref(), Some("400"));
    handle.stop().await;
}
