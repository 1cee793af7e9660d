//! A message whose handler kills the process on every delivery is dead-lettered as `crashed`,
//! exactly once, by a later process, from the server's MAX_DELIVERIES advisory.
//!
//! The test runs its own binary again as the child process (`crash_child` below, an ignored
//! test that only does anything when the parent sets `JETFN_CRASH_CHILD_URL`).

mod common;

use std::process::Stdio;
use std::time::Duration;

use async_nats::jetstream;
use common::{stored, PATIENCE};
use jetfn::dlq::headers as h;
use jetfn::testing::{eventually, NatsServer};
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

#[tokio::test]
async fn a_message_that_kills_every_process_is_dead_lettered_as_crashed_once() {
    let server = NatsServer::start();
    let js = jetstream::new(server.client().await);
    js.get_or_create_stream(jetstream::stream::Config {
        name: "CRASH".to_owned(),
        subjects: vec!["crash.>".to_owned()],
        ..Default::default()
    })
    .await
    .expect("stream");
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
    let letter = jetfn::dlq::list(&js, dlq, None)
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
