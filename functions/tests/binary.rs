//! The image's binary, run as a user runs it, against a real nats-server.

mod common;

use common::{free_addr, ready, run, stored, terminate, BINARY, PATIENCE, SHOP_FUNCTIONS};

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use functions::{sample_order, subjects};
use futures::StreamExt;
use jetfn::testing::{eventually, http_get, NatsServer};

#[test]
fn the_registry_holds_every_example_function() {
    let output = run(&["list", "--json"], &[]);
    assert!(output.status.success(), "{output:?}");
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let names = |kind: &str| -> Vec<&str> {
        list.as_array()
            .expect("array")
            .iter()
            .filter(|f| f["kind"] == kind)
            .map(|f| f["name"].as_str().expect("name"))
            .collect()
    };
    assert_eq!(names("event"), SHOP_FUNCTIONS);
    assert_eq!(names("request"), ["check_stock"]);
    let charge = &list[1];
    assert_eq!(charge["subject"], "shop.inventory.reserved");
    assert_eq!(charge["max_deliver"], 6);
    assert_eq!(charge["backoff"], "200ms..5s");
}

#[test]
fn list_writes_backoffs_as_the_docs_do_and_fits_its_columns() {
    let output = run(&["list"], &[]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let reserve = lines
        .iter()
        .find(|line| line.starts_with("reserve_inventory "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(reserve.contains(" 1s..60s "), "{reserve}");
    // Every column starts where its header does: no cell overflows into the next.
    let header = lines[0];
    let column = |name: &str| header.find(name).expect("header");
    for line in lines.iter().skip(1).take_while(|line| !line.is_empty()) {
        for name in ["SUBJECT", "STREAM", "CONSUMER"] {
            let at = column(name);
            assert_eq!(&line[at - 1..at], " ", "{name} in {line:?}\n{stdout}");
        }
    }
}

#[test]
fn dlq_of_a_request_or_unknown_function_says_so_in_one_line() {
    for (function, expected) in [
        (
            "nope",
            "no event function `nope`; the event functions: audit_log,",
        ),
        ("reserve_inventry", "did you mean `reserve_inventory`?"),
        (
            "check_stock",
            "`check_stock` is a request function: it has no dead letters",
        ),
    ] {
        let output = run(&["dlq", "list", function], &[]);
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("JETFN_FUNCTIONS"), "{stderr}");
    }
}

#[test]
fn an_unknown_function_exits_2_with_one_line_listing_the_known_ones() {
    let output = run(
        &["run"],
        &[("JETFN_FUNCTIONS", "reserve_inventory,refund_order")],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("JETFN_FUNCTIONS"), "{stderr}");
    assert!(stderr.contains("`refund_order`"), "{stderr}");
    assert!(
        stderr.contains(
            "audit_log, charge_payment, check_stock, order_status, reserve_inventory, \
             send_notification"
        ),
        "{stderr}"
    );
}

#[test]
fn bad_configuration_exits_2_naming_the_variable() {
    for (var, value) in [
        ("JETFN_SHUTDOWN_TIMEOUT", "soon"),
        ("JETFN__FUNCTIONS__CHARGE_PAYMENT__MAX_DELIVER", "many"),
        ("JETFN_HTTP_ADDR", "everywhere"),
        // Shorter than charge_payment's retry schedule (6 deliveries of up to 30 s).
        ("JETFN__FUNCTIONS__CHARGE_PAYMENT__ONCE_RETENTION", "1m"),
        // A domain is one subject token.
        ("NATS_JS_DOMAIN", "hub.east"),
    ] {
        let output = run(&["run"], &[(var, value)]);
        assert_eq!(output.status.code(), Some(2), "{var}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(var), "{stderr}");
    }
}

/// Publishes sample orders `0..count` and waits for each ack.
async fn place_orders(js: &async_nats::jetstream::Context, count: u64) {
    for n in 0..count {
        let order = serde_json::to_vec(&sample_order(n)).expect("JSON");
        js.publish(subjects::ORDER_CREATED, order.into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
}

#[tokio::test]
async fn orders_flow_through_every_function_and_sigterm_drains() {
    let server = NatsServer::start();
    let addr = free_addr();
    let mut child = spawn_shop(&server.url(), addr, &[]);
    assert!(ready(addr).await, "the binary got ready");

    let js = async_nats::jetstream::new(server.client().await);
    const ORDERS: u64 = 20;
    place_orders(&js, ORDERS).await;
    let count = |subject: &'static str| stored(&js, subject);
    assert!(
        eventually(PATIENCE, || async {
            count(subjects::NOTIFICATION_SENT).await == ORDERS
        })
        .await,
        "every order notified: {}",
        count(subjects::NOTIFICATION_SENT).await
    );
    assert_eq!(
        count(subjects::INVENTORY_RESERVED).await,
        ORDERS,
        "each output stored once"
    );
    assert_eq!(
        count(subjects::PAYMENT_COMPLETED).await,
        ORDERS,
        "each output stored once"
    );
    // audit_log consumes `shop.>` on its own: it may still be catching up with the last events.
    let audited = js.get_key_value("shop_audit").await.expect("audit bucket");
    let recorded = || async {
        let keys: Vec<_> = audited.keys().await.expect("keys").collect().await;
        keys.len() as u64
    };
    assert!(
        eventually(PATIENCE, || async { recorded().await == ORDERS * 4 }).await,
        "audit_log recorded every shop event: {} of {}",
        recorded().await,
        ORDERS * 4
    );

    let pid = child.id().expect("pid").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("exits within the drain budget")
        .expect("status");
    assert!(status.success(), "SIGTERM exits 0: {status}");
}

#[tokio::test]
async fn dlq_list_and_replay_from_the_command_line() {
    let server = NatsServer::start();
    let js = async_nats::jetstream::new(server.client().await);
    let url = server.url();
    let env = [("NATS_URL", url.as_str())];
    // Create the streams and let reserve_inventory dead-letter an order of zero items.
    let addr = free_addr();
    let mut child = spawn_shop(&url, addr, &[("JETFN_FUNCTIONS", "reserve_inventory")]);
    assert!(ready(addr).await, "the binary got ready");
    let mut order = sample_order(1);
    order.data.quantity = 0;
    js.publish(
        subjects::ORDER_CREATED,
        serde_json::to_vec(&order).expect("JSON").into(),
    )
    .await
    .expect("publish")
    .await
    .expect("ack");
    // Any error but a missing stream fails the test (read as 0, it would pass `dead() == 0`).
    let dead = || async {
        use async_nats::jetstream::{context::GetStreamErrorKind, ErrorCode};
        match js.get_stream("JETFN_DLQ").await {
            Ok(mut stream) => stream.info().await.expect("DLQ stream info").state.messages,
            Err(error) => match error.kind() {
                GetStreamErrorKind::JetStream(e)
                    if e.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    0
                }
                _ => panic!("DLQ stream: {error}"),
            },
        }
    };
    assert!(eventually(PATIENCE, || async { dead().await == 1 }).await);
    child.kill().await.expect("kill");

    let output = run(&["dlq", "list", "reserve_inventory"], &env);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].contains("SEQ") && lines[0].contains("KIND"),
        "{stdout}"
    );
    assert!(
        lines[1].contains("permanent") && lines[1].contains("zero items"),
        "{stdout}"
    );

    let output = run(
        &["dlq", "replay", "reserve_inventory", "--limit", "5"],
        &env,
    );
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("replayed 1 dead letter(s)"));
    assert_eq!(dead().await, 0);
    let output = run(&["dlq", "list", "nope"], &env);
    assert_eq!(output.status.code(), Some(2), "unknown function");
    // A request function has no dead letters: before, `dlq list` read the empty subject and
    // printed an empty table with exit 0, as if none had failed.
    for command in ["list", "replay"] {
        let output = run(&["dlq", command, "check_stock"], &env);
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("`check_stock` is a request function"),
            "{stderr}"
        );
    }
}

/// A minimal OTLP/HTTP receiver: answers every POST with 200 and keeps the decoded requests.
async fn otlp_receiver() -> (
    SocketAddr,
    std::sync::Arc<
        std::sync::Mutex<
            Vec<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>,
        >,
    >,
) {
    use prost::Message;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(value) =
                            line.to_ascii_lowercase().strip_prefix("content-length:")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if stream.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    if let Ok(request) = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(body.as_slice()) {
                        sink.lock().expect("lock").push(request);
                    }
                    let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if stream.get_mut().write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, received)
}

#[tokio::test]
async fn spans_reach_an_otlp_http_receiver_as_one_trace_per_order_and_logs_carry_its_ids() {
    let (otlp, received) = otlp_receiver().await;
    let server = NatsServer::start();
    let addr = free_addr();
    let otlp_endpoint = format!("http://{otlp}");
    let mut child = shop_command(
        &server.url(),
        addr,
        &[
            ("JETFN_FUNCTIONS", "reserve_inventory,charge_payment"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp_endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_SERVICE_NAME", "shop-test"),
            ("JETFN_LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ],
    )
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn");
    let logs = stderr_of(&mut child);
    assert!(ready(addr).await, "the binary got ready");
    let js = async_nats::jetstream::new(server.client().await);
    js.publish(
        subjects::ORDER_CREATED,
        serde_json::to_vec(&sample_order(1)).expect("JSON").into(),
    )
    .await
    .expect("publish")
    .await
    .expect("ack");
    let metric = r#"jetfn_messages_total{function="charge_payment",outcome="ack"} 1"#;
    assert!(
        eventually(PATIENCE, || async {
            http_get(addr, "/metrics")
                .await
                .map(|(_, body)| body.contains(metric))
                .unwrap_or(false)
        })
        .await
    );
    // SIGTERM flushes the batch exporter.
    assert!(terminate(&mut child).await.success());

    let spans: Vec<(String, Vec<u8>, String)> = received
        .lock()
        .expect("lock")
        .iter()
        .flat_map(|request| {
            request.resource_spans.iter().flat_map(|resource| {
                let service = resource
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                    .and_then(|kv| kv.value.as_ref())
                    .map(|v| format!("{:?}", v.value))
                    .unwrap_or_default();
                resource.scope_spans.iter().flat_map(move |scope| {
                    let service = service.clone();
                    scope.spans.iter().map(move |span| {
                        (span.name.clone(), span.trace_id.clone(), service.clone())
                    })
                })
            })
        })
        .collect();
    let reserve = spans
        .iter()
        .find(|s| s.0 == "shop.orders.created process")
        .expect("reserve span exported");
    let charges: Vec<_> = spans
        .iter()
        .filter(|s| s.0 == "shop.inventory.reserved process")
        .collect();
    assert!(!charges.is_empty(), "charge span exported: {spans:?}");
    assert!(
        charges.iter().all(|c| c.1 == reserve.1),
        "one trace for the order"
    );

    // The handler's own log line carries the ids of its delivery span, as JSON fields.
    let logs = logs.await.expect("stderr read");
    let reserved: serde_json::Value = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == "inventory reserved")
        .unwrap_or_else(|| panic!("an `inventory reserved` JSON line in:\n{logs}"));
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(reserved["trace_id"], hex(&reserve.1), "{reserved}");
    assert_eq!(
        reserved["span_id"].as_str().map(str::len),
        Some(16),
        "{reserved}"
    );
    assert!(
        reserve.2.contains("shop-test"),
        "service name: {}",
        reserve.2
    );
}

/// Without an OTLP endpoint nothing records the delivery spans (jetfn skips building them), but
/// a delivery still continues the message's trace: its log line and its output carry the
/// message's trace id under a span id of the delivery's own.
#[tokio::test]
async fn without_an_exporter_a_delivery_continues_the_messages_trace_in_logs_and_outputs() {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";
    let server = NatsServer::start();
    let addr = free_addr();
    let mut child = shop_command(
        &server.url(),
        addr,
        &[
            ("JETFN_FUNCTIONS", "reserve_inventory"),
            ("JETFN_LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ],
    )
    .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
    .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    .env_remove("OTEL_TRACES_SAMPLER")
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn");
    let logs = stderr_of(&mut child);
    assert!(ready(addr).await, "the binary got ready");
    let js = async_nats::jetstream::new(server.client().await);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("traceparent", format!("00-{TRACE}-{PARENT}-01").as_str());
    js.publish_with_headers(
        subjects::ORDER_CREATED,
        headers,
        serde_json::to_vec(&sample_order(1)).expect("JSON").into(),
    )
    .await
    .expect("publish")
    .await
    .expect("ack");
    assert!(
        eventually(PATIENCE, || async {
            stored(&js, subjects::INVENTORY_RESERVED).await == 1
        })
        .await,
        "the output stored"
    );
    let output = js
        .stream_by_subject(subjects::INVENTORY_RESERVED)
        .await
        .expect("the output's stream");
    let output = js
        .get_stream(output)
        .await
        .expect("stream")
        .get_last_raw_message_by_subject(subjects::INVENTORY_RESERVED)
        .await
        .expect("the output");
    let traceparent = output
        .headers
        .get("traceparent")
        .map(|value| value.as_str().to_owned())
        .expect("the output carries a traceparent");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(
        (parts[1], parts[3]),
        (TRACE, "01"),
        "the message's trace, sampled: {traceparent}"
    );
    assert_ne!(
        parts[2], PARENT,
        "a span id of the delivery's own: {traceparent}"
    );
    assert_eq!(parts[2].len(), 16, "{traceparent}");

    assert!(terminate(&mut child).await.success());
    let logs = logs.await.expect("stderr read");
    let reserved: serde_json::Value = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == "inventory reserved")
        .unwrap_or_else(|| panic!("an `inventory reserved` JSON line in:\n{logs}"));
    assert_eq!(reserved["trace_id"], TRACE, "{reserved}");
    assert_eq!(
        reserved["span_id"], parts[2],
        "the span the output names: {reserved}"
    );
}

/// Everything `child` writes to its (piped) stderr until it exits.
fn stderr_of(child: &mut tokio::process::Child) -> tokio::task::JoinHandle<String> {
    let mut stderr = child.stderr.take().expect("stderr piped");
    tokio::spawn(async move {
        let mut text = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
        text
    })
}

/// Runs the shop (`functions run`) against `url`, serving HTTP on `addr`, with `env` on top of
/// a payment gateway given room to recover every time (it fails one time in five).
fn spawn_shop(url: &str, addr: SocketAddr, env: &[(&str, &str)]) -> tokio::process::Child {
    shop_command(url, addr, env)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn")
}

/// The shop binary's `run`, its stdout discarded, stderr left to the caller.
fn shop_command(url: &str, addr: SocketAddr, env: &[(&str, &str)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(BINARY);
    command
        .arg("run")
        .env("NATS_URL", url)
        .env("JETFN_HTTP_ADDR", addr.to_string())
        .env_remove("JETFN_FUNCTIONS")
        .env("JETFN__FUNCTIONS__CHARGE_PAYMENT__MAX_DELIVER", "30")
        .env("JETFN__FUNCTIONS__CHARGE_PAYMENT__BACKOFF", "50ms..200ms")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .kill_on_drop(true);
    command
}

/// What a killed process held is redelivered after ack_wait: keep it short.
const SHORT_ACK_WAIT: &[(&str, &str)] = &[
    ("JETFN__FUNCTIONS__AUDIT_LOG__ACK_WAIT", "2s"),
    ("JETFN__FUNCTIONS__CHARGE_PAYMENT__ACK_WAIT", "2s"),
    ("JETFN__FUNCTIONS__RESERVE_INVENTORY__ACK_WAIT", "2s"),
    ("JETFN__FUNCTIONS__SEND_NOTIFICATION__ACK_WAIT", "2s"),
];

#[tokio::test]
async fn kill_9_under_load_then_restart_loses_nothing_and_stores_outputs_once() {
    let server = NatsServer::start();
    let js = async_nats::jetstream::new(server.client().await);
    let addr = free_addr();
    let mut first = spawn_shop(&server.url(), addr, SHORT_ACK_WAIT);
    assert!(ready(addr).await, "the binary got ready");

    const ORDERS: u64 = 300;
    place_orders(&js, ORDERS).await;
    let count = |subject: &'static str| stored(&js, subject);
    // Kill -9 mid-flow.
    assert!(
        eventually(PATIENCE, || async {
            count(subjects::NOTIFICATION_SENT).await >= 30
        })
        .await
    );
    first.start_kill().expect("SIGKILL");
    first.wait().await.expect("killed");
    let at_kill = count(subjects::NOTIFICATION_SENT).await;

    let mut second = spawn_shop(&server.url(), addr, SHORT_ACK_WAIT);
    assert!(
        eventually(PATIENCE * 2, || async {
            count(subjects::NOTIFICATION_SENT).await == ORDERS
        })
        .await,
        "every order notified after the restart: {} of {ORDERS}",
        count(subjects::NOTIFICATION_SENT).await
    );
    println!("kill -9: killed after {at_kill} of {ORDERS} orders; all {ORDERS} completed after the restart");
    assert_eq!(
        count(subjects::INVENTORY_RESERVED).await,
        ORDERS,
        "outputs stored once"
    );
    assert_eq!(
        count(subjects::PAYMENT_COMPLETED).await,
        ORDERS,
        "outputs stored once"
    );
    second.start_kill().expect("kill");
}

/// SIGTERM while no NATS server answers: the drain is bounded by `JETFN_SHUTDOWN_TIMEOUT`
/// whatever the connection state. Before, a pod with a request function logged `draining` and
/// stayed up for good: draining its subscription waited for a server that never answered.
#[tokio::test]
async fn sigterm_with_nats_unreachable_exits_within_the_drain_budget() {
    for functions in ["check_stock", "reserve_inventory", "*"] {
        // A loopback port nothing listens on.
        let nowhere = format!("nats://{}", free_addr());
        let addr = free_addr();
        let mut child = spawn_shop(
            &nowhere,
            addr,
            &[
                ("JETFN_FUNCTIONS", functions),
                ("JETFN_SHUTDOWN_TIMEOUT", "3s"),
            ],
        );
        let serving = eventually(PATIENCE, || async {
            matches!(http_get(addr, "/health").await, Ok((200, _)))
        })
        .await;
        assert!(
            serving,
            "{functions}: /health answers while NATS is unreachable"
        );
        assert!(
            matches!(http_get(addr, "/ready").await, Ok((503, _))),
            "{functions}: not ready without NATS"
        );
        let pid = child.id().expect("pid").to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(killed.success());
        // The budget is 3 s; the deadline only keeps a hang from stalling the suite.
        let signalled = std::time::Instant::now();
        let exited = tokio::time::timeout(PATIENCE, child.wait()).await;
        println!(
            "{functions}: exited {:.1} s after SIGTERM with NATS unreachable (budget 3 s)",
            signalled.elapsed().as_secs_f64()
        );
        let Ok(status) = exited else {
            let _ = child.kill().await;
            panic!("{functions}: still running {PATIENCE:?} after SIGTERM (budget 3 s)");
        };
        assert!(status.expect("status").success(), "{functions}: exit 0");
    }
}
