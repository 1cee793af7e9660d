//! Shared helpers of the integration tests: a runtime on a real nats-server.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use jetfn::testing::NatsServer;
use jetfn::{Config, Registry, Runtime, RuntimeHandle};

/// How long a test waits for something that should take milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The runtime's configuration for `functions` against `server`, plus `extra` variables.
pub fn config(url: &str, functions: &str, extra: &[(&str, &str)]) -> Config {
    let mut vars = vec![
        ("NATS_URL".to_owned(), url.to_owned()),
        ("JETFN_FUNCTIONS".to_owned(), functions.to_owned()),
        ("JETFN_HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("JETFN_SHUTDOWN_TIMEOUT".to_owned(), "5s".to_owned()),
    ];
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Config::from_vars(vars).expect("valid test configuration")
}

/// Starts the runtime with `functions` and waits until it is ready.
pub async fn start(server: &NatsServer, functions: &str, extra: &[(&str, &str)]) -> RuntimeHandle {
    let handle = start_unready(&server.url(), functions, extra).await;
    assert!(
        handle.wait_ready(PATIENCE).await,
        "runtime not ready within {PATIENCE:?}"
    );
    handle
}

/// Starts the runtime without waiting for readiness.
pub async fn start_unready(url: &str, functions: &str, extra: &[(&str, &str)]) -> RuntimeHandle {
    init_logs();
    let registry = Registry::collect().expect("registry");
    let runtime = Runtime::new(config(url, functions, extra), &registry).expect("functions");
    runtime.start().await.expect("runtime starts")
}

/// Publishes JSON through JetStream and waits for each ack.
pub async fn publish_all(
    js: &jetstream::Context,
    subject: &str,
    payloads: impl IntoIterator<Item = String>,
) {
    for payload in payloads {
        js.publish(subject.to_owned(), payload.into())
            .await
            .expect("publish")
            .await
            .expect("publish ack");
    }
}

/// The consumer's pending and ack-pending counts.
pub async fn consumer_counts(
    js: &jetstream::Context,
    stream: &str,
    consumer: &str,
) -> (u64, usize) {
    let mut consumer: jetstream::consumer::PullConsumer = js
        .get_stream(stream)
        .await
        .expect("stream")
        .get_consumer(consumer)
        .await
        .expect("consumer");
    let info = consumer.info().await.expect("consumer info");
    (info.num_pending, info.num_ack_pending)
}

/// How many messages `stream` holds on `subject` (none while the stream does not exist: a test
/// may delete and re-create it under a running poll; any other error fails the test, so that a
/// count of 0 means none).
pub async fn stored(js: &jetstream::Context, name: &str, subject: &str) -> u64 {
    use jetstream::context::GetStreamErrorKind;
    let stream = match js.get_stream(name).await {
        Ok(stream) => stream,
        Err(error) => match error.kind() {
            GetStreamErrorKind::JetStream(e)
                if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                return 0
            }
            _ => panic!("stream {name}: {error}"),
        },
    };
    let info = match stream.info_with_subjects(subject).await {
        Ok(info) => info,
        Err(error) if is_stream_not_found(&error) => return 0,
        Err(error) => panic!("stream info of {name}: {error}"),
    };
    let subjects: Vec<_> = info.collect().await;
    // An error in the listing fails the test: dropped, it would read as fewer messages.
    subjects
        .into_iter()
        .map(|entry| entry.expect("subject count"))
        .filter(|(s, _)| s == subject)
        .map(|(_, count)| count as u64)
        .sum()
}

/// Whether a JetStream request failed because the stream does not exist (deleted under it).
fn is_stream_not_found(error: &async_nats::jetstream::context::RequestError) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<jetstream::Error>())
        .is_some_and(|e| e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Every message stored on `subject` in `stream`, oldest first.
pub async fn messages(
    js: &jetstream::Context,
    stream: &str,
    subject: &str,
) -> Vec<async_nats::Message> {
    let stream = js.get_stream(stream).await.expect("stream");
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            filter_subject: subject.to_owned(),
            ..Default::default()
        })
        .await
        .expect("consumer");
    let count = consumer.cached_info().num_pending as usize;
    let mut batch = consumer
        .fetch()
        .max_messages(count.max(1))
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .expect("fetch");
    let mut found = Vec::new();
    while let Some(message) = batch.next().await {
        found.push(message.expect("message").message);
    }
    found
}

pub fn header<'a>(message: &'a async_nats::Message, name: &str) -> &'a str {
    message
        .headers
        .as_ref()
        .and_then(|headers| headers.get(name))
        .map_or("", |value| value.as_str())
}
