//! Selection and authentication against a real nats-server.

mod common;

use common::{config, start, start_unready, PATIENCE};
use jetfn::testing::{http_get, NatsServer};
use jetfn::{event_handler, ConfigError, Context, Event, HandlerError, Registry, Runtime};

#[event_handler(subject = "sel.a")]
async fn selected_a(_ctx: Context, _event: Event<serde_json::Value>) -> Result<(), HandlerError> {
    Ok(())
}

#[event_handler(subject = "sel.b")]
async fn selected_b(_ctx: Context, _event: Event<serde_json::Value>) -> Result<(), HandlerError> {
    Ok(())
}

#[tokio::test]
async fn only_the_selected_functions_get_consumers() {
    let server = NatsServer::start();
    let runtime = start(&server, "selected_b", &[]).await;
    let js = async_nats::jetstream::new(server.client().await);
    let stream = js.get_stream("SEL").await.expect("stream created");
    let consumers: Vec<String> = {
        use futures::TryStreamExt;
        stream.consumer_names().try_collect().await.expect("names")
    };
    assert_eq!(consumers, ["selected_b"]);
    runtime.stop().await;
}

#[test]
fn an_unknown_function_is_a_config_error_listing_the_known_ones() {
    let registry = Registry::collect().expect("registry");
    let error = Runtime::new(
        config("nats://127.0.0.1:1", "selected_a,nope", &[]),
        &registry,
    )
    .expect_err("unknown function");
    let ConfigError::UnknownFunction { name, known, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(name, "nope");
    assert!(
        known.contains("selected_a") && known.contains("selected_b"),
        "{known}"
    );
}

#[tokio::test]
async fn connects_with_user_and_password() {
    let server = NatsServer::builder().user("jet", "s3cret").start();
    let runtime = start(
        &server,
        "selected_a",
        &[("NATS_USER", "jet"), ("NATS_PASSWORD", "s3cret")],
    )
    .await;
    runtime.stop().await;

    let wrong = start_unready(
        &server.url(),
        "selected_a",
        &[("NATS_USER", "jet"), ("NATS_PASSWORD", "nope")],
    )
    .await;
    assert!(
        !wrong.wait_ready(std::time::Duration::from_secs(2)).await,
        "a wrong password must not get ready"
    );
    let (status, body) = http_get(wrong.http_addr(), "/ready")
        .await
        .expect("GET /ready");
    assert_eq!(status, 503);
    assert!(!body.contains("nope"), "the password must not show: {body}");
    wrong.stop().await;
}

#[tokio::test]
async fn connects_with_a_token() {
    let server = NatsServer::builder().token("t0ken-xyz").start();
    let runtime = start(&server, "selected_a", &[("NATS_TOKEN", "t0ken-xyz")]).await;
    assert!(runtime.wait_ready(PATIENCE).await);
    runtime.stop().await;
}
