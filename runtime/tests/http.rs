//! `/health`, `/ready`, `/metrics` and `/functions` against a real nats-server.

mod common;

use common::{publish_all, start, start_unready, PATIENCE};
use jetfn::testing::{eventually, http_get, NatsServer};
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "ready.orders.created")]
async fn ready_probe(_ctx: Context, _event: Event<serde_json::Value>) -> Result<(), HandlerError> {
    Ok(())
}

#[event_handler(subject = "metrics.orders.created")]
async fn metered(_ctx: Context, event: Event<serde_json::Value>) -> Result<(), HandlerError> {
    if event.data["fail"] == true {
        return Err(HandlerError::permanent("refused"));
    }
    Ok(())
}

#[tokio::test]
async fn ready_is_503_until_the_consumer_is_bound_then_200() {
    let mut server = NatsServer::start();
    server.stop();
    let runtime = start_unready(&server.url(), "ready_probe", &[]).await;
    let addr = runtime.http_addr();

    let (status, body) = http_get(addr, "/ready").await.expect("GET /ready");
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["connected"], false);
    assert_eq!(body["functions"][0]["name"], "ready_probe");
    assert_eq!(body["functions"][0]["bound"], false);
    assert_eq!(http_get(addr, "/health").await.expect("GET /health").0, 200);

    server.restart();
    assert!(
        eventually(PATIENCE, || async {
            http_get(addr, "/ready").await.map(|r| r.0).ok() == Some(200)
        })
        .await,
        "ready after the server came up"
    );
    let (_, body) = http_get(addr, "/ready").await.expect("GET /ready");
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["functions"][0]["bound"], true);
    assert_eq!(body["functions"][0]["stream"], "READY");

    runtime.shutdown();
    assert!(!runtime.is_ready(), "draining is not ready");
    runtime.wait().await;
}

#[tokio::test]
async fn metrics_and_functions_report_outcomes() {
    let server = NatsServer::start();
    let runtime = start(&server, "metered", &[]).await;
    let addr = runtime.http_addr();
    let js = async_nats::jetstream::new(server.client().await);
    publish_all(
        &js,
        "metrics.orders.created",
        [
            "{}".to_owned(),
            "{}".to_owned(),
            r#"{"fail":true}"#.to_owned(),
        ],
    )
    .await;

    let metric = |text: &str, line: &str| text.lines().any(|l| l == line);
    assert!(
        eventually(PATIENCE, || async {
            let (_, text) = http_get(addr, "/metrics").await.expect("GET /metrics");
            metric(
                &text,
                r#"jetfn_messages_total{function="metered",outcome="ack"} 2"#,
            ) && metric(
                &text,
                r#"jetfn_messages_total{function="metered",outcome="dlq"} 1"#,
            )
        })
        .await,
        "{}",
        http_get(addr, "/metrics").await.expect("GET").1
    );
    let (_, text) = http_get(addr, "/metrics").await.expect("GET /metrics");
    assert!(metric(&text, "jetfn_nats_connected 1"), "{text}");
    assert!(
        metric(
            &text,
            r#"jetfn_handler_duration_seconds_count{function="metered"} 3"#
        ),
        "{text}"
    );
    assert!(
        metric(&text, r#"jetfn_in_flight{function="metered"} 0"#),
        "{text}"
    );

    let (status, body) = http_get(addr, "/functions").await.expect("GET /functions");
    assert_eq!(status, 200);
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body[0]["name"], "metered");
    assert_eq!(body[0]["max_deliver"], 5);
    assert_eq!(body[0]["backoff"], "1s..60s", "as the docs write it");
    assert_eq!(body[0]["acked"], 2);
    assert_eq!(body[0]["dead_lettered"], 1);
    runtime.stop().await;
}
