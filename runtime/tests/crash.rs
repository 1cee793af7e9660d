//! A message whose handler kills the process on every delivery is dead-lettered as `crashed`,
//! exactly once, by a later process, from the server's MAX_DELIVERIES advisory.
//! One advisory consumer per pod serves all its functions, each advisory going to its function.
//!
//! The test runs its own binary again as the child process (`crash_child` below, an ignored
//! test that only does anything when the parent sets `JETFN_CRASH_CHILD_URL`).

mod common;

use std::process::Stdio;
use std::time::Duration;

use async_nats::jetstream;
use common::{stored, PATIENCE};
use jetfn::testing::{eventually, NatsServer};
use jetfn::DeadLetterHeaders as h;
use jetfn::{event_handler, Context, Event, HandlerError};

const CHILD_URL: &str = "JETFN_CRASH_CHILD_URL";

#[derive(serde::Deserialize)]
struct Job {
    poison: bool,
}

#[event_handler(subject = "crash.jobs", max_deliver = 3, ack_wait = "1s")]
async fn dies_on_poison(_ctx: Context, event: Event<Job>) -> Result<(), HandlerError> {
    if event.data.poison {
        std::process::abort();
    }
    Ok(())
}

#[test]
#[ignore = "the child process of a_message_that_kills_every_process_is_dead_lettered_as_crashed_once"]
fn crash_child() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    tokio.block_on(async {
        let runtime = common::start_unready(&url, "dies_on_poison", &[]).await;
        // Runs until it aborts or the parent kills it; never longer than a minute.
        tokio::time::sleep(Duration::from_secs(60)).await;
        runtime.stop().await;
    });
}

fn spawn_child(url: &str) -> tokio::process::Child {
    tokio::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_URL, url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the child")
}

/// The stream the crashing functions read (`crash.>`).
async fn crash_stream(js: &jetstream::Context) {
    js.get_or_create_stream(jetstream::stream::Config {
        name: "CRASH".to_owned(),
        subjects: vec!["crash.>".to_owned()],
        ..Default::default()
    })
    .await
    .expect("stream");
}

#[tokio::test]
async fn a_message_that_kills_every_process_is_dead_lettered_as_crashed_once() {
    let server = NatsServer::start();
    let js = jetstream::new(server.client().await);
    crash_stream(&js).await;
    js.publish("crash.jobs", r#"{"poison":true}"#.into())
        .await
        .expect("publish")
        .await
        .expect("ack");

    // Each child takes the poison message and dies; the server redelivers it after ack_wait.
    let mut crashes = 0;
    let mut child = spawn_child(&server.url());
    let dlq = "jetfn.dlq.dies_on_poison";
    let dead_lettered = eventually(PATIENCE * 2, || {
        let exited = matches!(child.try_wait(), Ok(Some(_)));
        if exited {
            crashes += 1;
            child = spawn_child(&server.url());
        }
        let js = js.clone();
        async move {
            js.get_stream("JETFN_DLQ").await.is_ok() && stored(&js, "JETFN_DLQ", dlq).await >= 1
        }
    })
    .await;
    assert!(dead_lettered, "dead-lettered after {crashes} crashes");
    assert_eq!(crashes, 3, "one crash per allowed delivery");

    // Exactly once: nothing more arrives, even with the process still running.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stored(&js, "JETFN_DLQ", dlq).await, 1);
    let letter = jetfn::DeadLetter::list(&js, dlq, None)
        .await
        .expect("list")
        .remove(0);
    assert_eq!(letter.header(h::ERROR_KIND), "crashed");
    assert_eq!(letter.header(h::DELIVERIES), "3");
    assert_eq!(letter.header(h::STREAM), "CRASH");
    assert_eq!(letter.header(h::STREAM_SEQ), "1");
    assert_eq!(letter.payload.as_ref(), br#"{"poison":true}"#);
    assert!(
        matches!(child.try_wait(), Ok(None)),
        "the last process is alive"
    );
    child.kill().await.expect("kill");
}

#[event_handler(subject = "crash.second")]
async fn second_crasher(_ctx: Context, _event: Event<Job>) -> Result<(), HandlerError> {
    Ok(())
}

/// A MAX_DELIVERIES advisory as the server raises it.
async fn raise_advisory(js: &jetstream::Context, stream: &str, consumer: &str, seq: u64) {
    let advisory = serde_json::json!({
        "type": "io.nats.jetstream.advisory.v1.max_deliver",
        "stream": stream,
        "consumer": consumer,
        "stream_seq": seq,
        "deliveries": 3,
    });
    js.publish(
        format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}"),
        advisory.to_string().into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored in the advisory stream");
}

/// Stores `payload` on `subject` (no function consumes it); returns its stream sequence.
async fn store(js: &jetstream::Context, subject: &str, payload: &'static str) -> u64 {
    js.publish(subject.to_owned(), payload.into())
        .await
        .expect("publish")
        .await
        .expect("ack")
        .sequence
}

#[tokio::test]
async fn an_advisory_consumer_kept_for_ever_by_an_older_jetfn_is_given_the_stream_s_lifetime() {
    let server = NatsServer::start();
    let js = jetstream::new(server.client().await);
    let name = jetfn::DeadLetter::advisory_consumer(["dies_on_poison"]);
    let advisories = js
        .create_stream(jetstream::stream::Config {
            name: jetfn::DeadLetter::ADVISORY_STREAM.to_owned(),
            subjects: vec!["$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>".to_owned()],
            max_age: Duration::from_secs(7 * 24 * 3600),
            ..Default::default()
        })
        .await
        .expect("advisory stream");
    advisories
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.*.dies_on_poison"
                .to_owned(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("an advisory consumer without an inactive threshold");
    crash_stream(&js).await;

    let runtime = common::start(&server, "dies_on_poison", &[]).await;
    // The pod binds its advisory consumer in the background, once ready or soon after.
    let given = eventually(PATIENCE, || async {
        let mut consumer: jetstream::consumer::PullConsumer =
            advisories.get_consumer(&name).await.expect("consumer");
        let info = consumer.info().await.expect("info");
        info.config.inactive_threshold == Duration::from_secs(7 * 24 * 3600)
    })
    .await;
    assert!(
        given,
        "the consumer lives as long as the stream keeps advisories"
    );
    let consumer: jetstream::consumer::PullConsumer =
        advisories.get_consumer(&name).await.expect("consumer");
    assert_eq!(
        consumer.cached_info().config.filter_subject,
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.*.dies_on_poison",
        "the rest of its configuration is kept"
    );
    runtime.stop().await;
}

#[tokio::test]
async fn one_advisory_consumer_per_pod_dead_letters_each_function_s_advisories() {
    let server = NatsServer::start();
    let js = jetstream::new(server.client().await);
    for (name, subjects) in [("CRASH", "crash.>"), ("ELSEWHERE", "elsewhere.>")] {
        js.get_or_create_stream(jetstream::stream::Config {
            name: name.to_owned(),
            subjects: vec![subjects.to_owned()],
            ..Default::default()
        })
        .await
        .expect("stream");
    }
    let runtime = common::start(&server, "dies_on_poison,second_crasher", &[]).await;
    let first = store(&js, "crash.kept", r#"{"poison":true,"n":1}"#).await;
    let second = store(&js, "crash.kept", r#"{"poison":true,"n":2}"#).await;
    // A consumer of another stream that shares a function's name: not this pod's.
    let foreign = store(&js, "elsewhere.jobs", r#"{"poison":true,"n":3}"#).await;
    raise_advisory(&js, "CRASH", "dies_on_poison", first).await;
    raise_advisory(&js, "CRASH", "second_crasher", second).await;
    raise_advisory(&js, "ELSEWHERE", "dies_on_poison", foreign).await;

    let mut advisories = js
        .get_stream(jetfn::DeadLetter::ADVISORY_STREAM)
        .await
        .expect("advisory stream");
    let name = jetfn::DeadLetter::advisory_consumer(["second_crasher", "dies_on_poison"]);
    let handled = eventually(PATIENCE, || async {
        let mut consumer: jetstream::consumer::PullConsumer = advisories
            .get_consumer(&name)
            .await
            .expect("the pod's advisory consumer");
        let info = consumer.info().await.expect("info");
        info.delivered.stream_sequence >= 3 && info.num_ack_pending == 0 && info.num_pending == 0
    })
    .await;
    assert!(handled, "every advisory was handled");
    let info = advisories.info().await.expect("advisory stream info");
    assert_eq!(
        info.state.consumer_count, 1,
        "one advisory consumer for the pod"
    );
    let kept = info.config.max_age;
    let consumer: jetstream::consumer::PullConsumer =
        advisories.get_consumer(&name).await.expect("consumer");
    assert_eq!(
        consumer.cached_info().config.inactive_threshold,
        kept,
        "the consumer of a set no pod runs any more goes with the advisories it could read"
    );

    for (function, payload) in [
        ("dies_on_poison", r#"{"poison":true,"n":1}"#),
        ("second_crasher", r#"{"poison":true,"n":2}"#),
    ] {
        let dlq = format!("jetfn.dlq.{function}");
        let letters = jetfn::DeadLetter::list(&js, &dlq, None)
            .await
            .expect("list");
        assert_eq!(letters.len(), 1, "{function}: one dead letter");
        assert_eq!(letters[0].header(h::ERROR_KIND), "crashed");
        assert_eq!(letters[0].header(h::FUNCTION), function);
        assert_eq!(letters[0].header(h::STREAM), "CRASH");
        assert_eq!(letters[0].payload.as_ref(), payload.as_bytes());
    }
    runtime.stop().await;
}
