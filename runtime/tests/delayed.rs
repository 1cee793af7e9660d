//! Delayed outputs against a real nats-server: stored once across a handler retry, delivered
//! no earlier than due, delivered after the target stream was unavailable at due time, bad
//! arguments are errors.

mod common;

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, stream};
use jetfn::testing::{eventually, NatsServer};
use jetfn::{event_handler, Context, Event, HandlerError, PublishError};

use common::{publish_all, start, stored, PATIENCE};

/// When each delayed output was asked for to be due.
static DUE: Mutex<Vec<SystemTime>> = Mutex::new(Vec::new());

#[event_handler(subject = "delaytest.in", backoff = "100ms..100ms")]
async fn delay_retried(ctx: Context, event: Event<String>) -> Result<(), HandlerError> {
    let due = SystemTime::now() + Duration::from_secs(2);
    DUE.lock().expect("lock").push(due);
    ctx.publish_at("delayout.reminders", &event.data, due)
        .await?;
    if event.attempt() == 1 {
        return Err(HandlerError::retryable(
            "fails after storing its delayed output",
        ));
    }
    Ok(())
}

static ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[event_handler(subject = "delaytest.bad")]
async fn delay_bad_arguments(ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    for result in [
        ctx.publish_after("delayout.x", &1, Duration::from_millis(500))
            .await,
        ctx.publish_at(
            "delayout.x",
            &1,
            SystemTime::now() - Duration::from_secs(60),
        )
        .await,
        ctx.publish_after("delayout.*", &1, Duration::from_secs(5))
            .await,
    ] {
        match result {
            Err(error @ PublishError::Delay { .. }) => {
                ERRORS.lock().expect("lock").push(error.to_string())
            }
            other => panic!("expected a Delay error, got {other:?}"),
        }
    }
    Ok(())
}

#[event_handler(subject = "delaytest.late")]
async fn delay_late_target(ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    ctx.publish_after("laterstream.out", &"hello", Duration::from_secs(1))
        .await?;
    Ok(())
}

async fn target_stream(js: &jetstream::Context, name: &str, subject: &str) {
    js.get_or_create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![subject.to_owned()],
        ..Default::default()
    })
    .await
    .expect("stream");
}

#[tokio::test]
async fn stored_once_across_a_retry_and_delivered_no_earlier_than_due() {
    let server = NatsServer::start();
    let js = jetstream::new(async_nats::connect(server.url()).await.expect("connect"));
    target_stream(&js, "DELAYOUT", "delayout.>").await;
    let runtime = start(&server, "delay_retried", &[]).await;
    publish_all(&js, "delaytest.in", [r#""remind me""#.to_owned()]).await;
    let retried = eventually(PATIENCE, || async { DUE.lock().expect("lock").len() >= 2 }).await;
    assert!(retried, "the handler ran twice");
    // Both attempts asked for it; one schedule is stored.
    let schedules = js.get_stream("JETFN_SCHEDULES").await.expect("stream");
    let held: usize = {
        use futures::StreamExt;
        let info = schedules
            .info_with_subjects("jetfn.delay.>")
            .await
            .expect("stream info");
        let subjects: Vec<_> = info.collect().await;
        subjects
            .into_iter()
            .map(|entry| entry.expect("subject count").1)
            .sum()
    };
    assert_eq!(held, 1, "one delayed output stored across the retry");
    let delivered = eventually(PATIENCE, || async {
        stored(&js, "DELAYOUT", "delayout.reminders").await >= 1
    })
    .await;
    assert!(delivered, "delivered when due");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stored(&js, "DELAYOUT", "delayout.reminders").await,
        1,
        "once"
    );
    let message = js
        .get_stream("DELAYOUT")
        .await
        .expect("stream")
        .get_last_raw_message_by_subject("delayout.reminders")
        .await
        .expect("message");
    // The handler's `String` is the text `"remind me"`; `publish_at` wrote it as JSON.
    let expected = serde_json::to_vec(r#""remind me""#).expect("JSON");
    assert_eq!(
        &message.payload[..],
        &expected[..],
        "the payload as published"
    );
    let first_due = DUE.lock().expect("lock")[0];
    let first_due = humantime::format_rfc3339_millis(first_due).to_string();
    let stored_at: SystemTime = message.time.into();
    println!(
        "asked due at {first_due}, stored in the target at {}",
        humantime::format_rfc3339_millis(stored_at),
    );
    let due_floor = DUE.lock().expect("lock")[0] - Duration::from_millis(1);
    assert!(stored_at >= due_floor, "no earlier than due");
    runtime.stop().await;
}

#[tokio::test]
async fn bad_arguments_are_errors() {
    let server = NatsServer::start();
    let js = jetstream::new(async_nats::connect(server.url()).await.expect("connect"));
    let runtime = start(&server, "delay_bad_arguments", &[]).await;
    publish_all(&js, "delaytest.bad", [r#""x""#.to_owned()]).await;
    let seen = eventually(PATIENCE, || async {
        ERRORS.lock().expect("lock").len() == 3
    })
    .await;
    assert!(seen, "three errors");
    let errors = ERRORS.lock().expect("lock").clone();
    assert!(errors[0].contains("at least 1 s ahead"), "{errors:?}");
    assert!(errors[1].contains("at least 1 s ahead"), "{errors:?}");
    assert!(errors[2].contains("wildcard"), "{errors:?}");
    runtime.stop().await;
}

#[tokio::test]
async fn delivered_after_the_target_stream_was_unavailable_when_due() {
    let server = NatsServer::start();
    let js = jetstream::new(async_nats::connect(server.url()).await.expect("connect"));
    // No stream is created for the target: it stays unavailable until the test makes it.
    target_stream(&js, "DELAYTEST", "delaytest.>").await;
    let runtime = start(
        &server,
        "delay_late_target",
        &[("JETFN_AUTO_CREATE_STREAMS", "false")],
    )
    .await;
    publish_all(&js, "delaytest.late", [r#""x""#.to_owned()]).await;
    // Due in a second; no stream captures `laterstream.out` until three seconds later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    target_stream(&js, "LATERSTREAM", "laterstream.>").await;
    let delivered = eventually(PATIENCE, || async {
        stored(&js, "LATERSTREAM", "laterstream.out").await == 1
    })
    .await;
    assert!(delivered, "forwarded once the stream exists");
    runtime.stop().await;
}
