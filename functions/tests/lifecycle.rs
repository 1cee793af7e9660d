//! A user's binary built on `jetfn::App` (`src/bin/lifecycle.rs`), run as a user runs it against
//! a real nats-server: a failing startup hook exits 1 naming its error, a missing state exits 2
//! naming function, place and type, neither binds anything; `/ready` is 503 while a slow hook
//! runs; the hook's state reaches the handler; SIGTERM runs the shutdown hook with NATS still
//! connected and exits 0.

mod common;

use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use jetfn::testing::{http_get, NatsServer};

use common::{exit_status, free_addr, sigterm, PATIENCE};

const LIFECYCLE: &str = env!("CARGO_BIN_EXE_lifecycle");

fn lifecycle(url: &str, hook: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(LIFECYCLE);
    command
        .arg("run")
        .env_clear()
        .env("NATS_URL", url)
        .env("JETFN_HTTP_ADDR", free_addr().to_string())
        .env("LIFECYCLE_HOOK", hook)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn consumers(server: &NatsServer) -> usize {
    let js = async_nats::jetstream::new(server.client().await);
    match js.get_stream("LIFECYCLE").await {
        Ok(mut stream) => stream.info().await.map_or(0, |i| i.state.consumer_count),
        Err(_) => 0,
    }
}

#[tokio::test]
async fn a_failing_startup_hook_exits_1_naming_its_error_and_binds_nothing() {
    let server = NatsServer::start();
    let output = tokio::time::timeout(PATIENCE, lifecycle(&server.url(), "fail").output())
        .await
        .expect("exits")
        .expect("runs");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("jetfn: "))
        .collect();
    assert_eq!(
        errors,
        ["jetfn: startup hook 2 failed: the database refused the connection"],
        "{stderr}"
    );
    assert_eq!(consumers(&server).await, 0);
}

#[tokio::test]
async fn a_missing_state_exits_2_naming_function_place_and_type() {
    let server = NatsServer::start();
    let output = tokio::time::timeout(PATIENCE, lifecycle(&server.url(), "none").output())
        .await
        .expect("exits")
        .expect("runs");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let gaps: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("jetfn: function"))
        .collect();
    assert_eq!(gaps.len(), 1, "{stderr}");
    assert!(
        gaps[0].contains("`greet` (functions/src/bin/lifecycle.rs:"),
        "{stderr}"
    );
    assert!(gaps[0].contains("State<lifecycle::Greeting>"), "{stderr}");
    assert_eq!(consumers(&server).await, 0);
}

#[tokio::test]
async fn not_ready_during_a_slow_hook_then_serves_and_sigterm_runs_the_shutdown_hook() {
    let server = NatsServer::start();
    let client = server.client().await;
    let mut waiting = client.subscribe("lifecycle.waiting").await.expect("sub");
    let mut stopped = client.subscribe("lifecycle.stopped").await.expect("sub");
    let addr = free_addr();
    let mut command = lifecycle(&server.url(), "slow");
    command.env("JETFN_HTTP_ADDR", addr.to_string());
    let mut child = command.stderr(Stdio::null()).spawn().expect("spawn");
    tokio::time::timeout(PATIENCE, waiting.next())
        .await
        .expect("the hook runs");
    assert_eq!(http_get(addr, "/health").await.expect("get").0, 200);
    assert_eq!(http_get(addr, "/ready").await.expect("get").0, 503);
    assert_eq!(
        consumers(&server).await,
        0,
        "nothing bound before the hooks end"
    );
    client.publish("lifecycle.go", "".into()).await.expect("go");
    assert!(common::ready(addr).await, "ready after the hook");
    let js = async_nats::jetstream::new(client.clone());
    js.publish("lifecycle.greet", "ada".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    let stream = js.get_stream("LIFECYCLE").await.expect("stream");
    let mut greeted = None;
    for _ in 0..400 {
        if let Ok(message) = stream
            .get_last_raw_message_by_subject("lifecycle.greeted")
            .await
        {
            greeted = Some(String::from_utf8_lossy(&message.payload).into_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        greeted.as_deref(),
        Some("\"hello ada\""),
        "the hook's state reached the handler"
    );
    sigterm(&child);
    let bye = tokio::time::timeout(PATIENCE, stopped.next())
        .await
        .expect("the shutdown hook published")
        .expect("message");
    assert_eq!(bye.payload, "bye".as_bytes());
    let status = exit_status(&mut child).await;
    assert!(status.success(), "SIGTERM exits 0: {status}");
}
