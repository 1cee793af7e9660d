//! Delivery policy against a real nats-server. Every test checks that nothing is lost: each
//! published message ends acked after success or stored in the dead-letter stream.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream;
use common::{consumer_counts, header, publish_all, start, stored, PATIENCE};
use jetfn::testing::{eventually, NatsServer};
use jetfn::DeadLetterHeaders as h;
use jetfn::{event_handler, Context, Event, HandlerError};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Job {
    id: u32,
}

/// Every message stored on `subject` in `JETFN_DLQ`, oldest first.
async fn dead_letters(js: &jetstream::Context, subject: &str) -> Vec<async_nats::Message> {
    common::messages(js, "JETFN_DLQ", subject).await
}

// --- exhausted: one dead letter with every header and the untouched payload -----------------

static EXHAUSTED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[event_handler(subject = "exh.jobs", max_deliver = 3, backoff = "50ms..100ms")]
async fn exhausts(_ctx: Context, event: Event<Job>) -> Result<(), HandlerError> {
    EXHAUSTED.lock().expect("lock").push(event.attempt());
    Err(HandlerError::retryable(format!(
        "job {} failed",
        event.data.id
    )))
}

#[tokio::test]
async fn exhausted_deliveries_make_one_dead_letter_with_full_provenance() {
    let server = NatsServer::start();
    let runtime = start(&server, "exhausts", &[]).await;
    let js = jetstream::new(server.client().await);
    let payload = r#"{"id": 7,   "extra": "kept as is"}"#;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    );
    headers.insert("Nats-Msg-Id", "job-7");
    js.publish_with_headers("exh.jobs", headers, payload.into())
        .await
        .expect("publish")
        .await
        .expect("ack");

    let subject = "jetfn.dlq.exhausts";
    assert!(
        eventually(PATIENCE, || async {
            stored(&js, "JETFN_DLQ", subject).await == 1
        })
        .await
    );
    assert_eq!(*EXHAUSTED.lock().expect("lock"), [1, 2, 3]);
    let letters = dead_letters(&js, subject).await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(
        letter.payload.as_ref(),
        payload.as_bytes(),
        "payload untouched"
    );
    assert_eq!(
        header(letter, "traceparent"),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert_eq!(header(letter, h::FUNCTION), "exhausts");
    assert_eq!(header(letter, h::SUBJECT), "exh.jobs");
    assert_eq!(header(letter, h::STREAM), "EXH");
    assert_eq!(header(letter, h::STREAM_SEQ), "1");
    assert_eq!(header(letter, h::DELIVERIES), "3");
    assert_eq!(header(letter, h::ERROR), "job 7 failed");
    assert_eq!(header(letter, h::ERROR_KIND), "exhausted");
    assert_eq!(header(letter, h::ORIGINAL_MSG_ID), "job-7");
    assert_eq!(header(letter, "Nats-Msg-Id"), "dlq:EXH:1");
    assert!(!header(letter, h::FAILED_AT).is_empty());
    assert_eq!(
        consumer_counts(&js, "EXH", "exhausts").await,
        (0, 0),
        "original acked"
    );
    runtime.stop().await;
}

// --- permanent and undecodable: dead-lettered at attempt 1 -----------------------------------

static PERMANENT: Mutex<Vec<(u32, u32)>> = Mutex::new(Vec::new());

#[event_handler(subject = "perm.jobs")]
async fn refuses_odd_jobs(_ctx: Context, event: Event<Job>) -> Result<(), HandlerError> {
    PERMANENT
        .lock()
        .expect("lock")
        .push((event.data.id, event.attempt()));
    if event.data.id % 2 == 1 {
        return Err(HandlerError::permanent("odd jobs are refused"));
    }
    Ok(())
}

#[tokio::test]
async fn permanent_errors_and_undecodable_payloads_are_dead_lettered_at_once() {
    let server = NatsServer::start();
    let runtime = start(&server, "refuses_odd_jobs", &[]).await;
    let js = jetstream::new(server.client().await);
    let payloads = [
        r#"{"id":1}"#,
        r#"{"id":2}"#,
        "not json at all",
        r#"{"id":"three"}"#,
        r#"{"id":4}"#,
    ];
    publish_all(&js, "perm.jobs", payloads.iter().map(|p| (*p).to_owned())).await;

    let subject = "jetfn.dlq.refuses_odd_jobs";
    assert!(
        eventually(PATIENCE, || async {
            stored(&js, "JETFN_DLQ", subject).await == 3
        })
        .await
    );
    assert!(
        eventually(PATIENCE, || async {
            consumer_counts(&js, "PERM", "refuses_odd_jobs").await == (0, 0)
        })
        .await
    );
    let mut ran = PERMANENT.lock().expect("lock").clone();
    ran.sort();
    assert_eq!(
        ran,
        [(1, 1), (2, 1), (4, 1)],
        "each ran once; undecodable ones never reached the handler"
    );
    let letters = dead_letters(&js, subject).await;
    let kinds: BTreeMap<String, (String, String)> = letters
        .iter()
        .map(|l| {
            let payload = String::from_utf8_lossy(&l.payload).into_owned();
            (
                payload,
                (
                    header(l, h::ERROR_KIND).to_owned(),
                    header(l, h::DELIVERIES).to_owned(),
                ),
            )
        })
        .collect();
    assert_eq!(
        kinds[r#"{"id":1}"#],
        ("permanent".to_owned(), "1".to_owned())
    );
    assert_eq!(
        kinds["not json at all"],
        ("decode".to_owned(), "1".to_owned())
    );
    assert_eq!(
        kinds[r#"{"id":"three"}"#],
        ("decode".to_owned(), "1".to_owned())
    );
    runtime.stop().await;
}

// --- panics: retried, then dead-lettered; other messages unaffected ----------------------------

static PANICS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static CALM: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[event_handler(
    subject = "panic.jobs",
    max_deliver = 3,
    backoff = "50ms..100ms",
    max_workers = 4
)]
async fn panics_on_job_zero(_ctx: Context, event: Event<Job>) -> Result<(), HandlerError> {
    if event.data.id == 0 {
        PANICS.lock().expect("lock").push(event.attempt());
        panic!("job zero is cursed");
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    CALM.lock().expect("lock").push(event.data.id);
    Ok(())
}

#[tokio::test]
async fn a_panicking_handler_is_retried_then_dead_lettered_and_harms_nothing_else() {
    let server = NatsServer::start();
    let runtime = start(&server, "panics_on_job_zero", &[]).await;
    let js = jetstream::new(server.client().await);
    publish_all(
        &js,
        "panic.jobs",
        (0..50).map(|i| format!(r#"{{"id":{i}}}"#)),
    )
    .await;

    let subject = "jetfn.dlq.panics_on_job_zero";
    assert!(
        eventually(PATIENCE, || async {
            stored(&js, "JETFN_DLQ", subject).await == 1
        })
        .await
    );
    assert!(
        eventually(PATIENCE, || async {
            CALM.lock().expect("lock").len() == 49
        })
        .await
    );
    assert!(
        eventually(PATIENCE, || async {
            consumer_counts(&js, "PANIC", "panics_on_job_zero").await == (0, 0)
        })
        .await
    );
    assert_eq!(*PANICS.lock().expect("lock"), [1, 2, 3]);
    let letter = &dead_letters(&js, subject).await[0];
    assert_eq!(
        header(letter, h::ERROR),
        "handler panicked: job zero is cursed"
    );
    assert!(runtime.is_ready(), "the runtime is unharmed");
    runtime.stop().await;
}

// --- a handler running 3 x ack_wait is processed once -----------------------------------------

static LONG: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[event_handler(subject = "long.jobs", ack_wait = "1s", timeout = "10s")]
async fn takes_three_ack_waits(_ctx: Context, event: Event<Job>) -> Result<(), HandlerError> {
    LONG.lock().expect("lock").push(event.attempt());
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(())
}

#[tokio::test]
async fn a_long_handler_is_kept_alive_and_runs_once() {
    let server = NatsServer::start();
    let runtime = start(&server, "takes_three_ack_waits", &[]).await;
    let js = jetstream::new(server.client().await);
    publish_all(&js, "long.jobs", [r#"{"id":1}"#.to_owned()]).await;

    assert!(
        eventually(PATIENCE, || async {
            consumer_counts(&js, "LONG", "takes_three_ack_waits").await == (0, 0)
        })
        .await
    );
    // Past another ack_wait: a redelivery would show now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        *LONG.lock().expect("lock"),
        [1],
        "never redelivered mid-work"
    );
    runtime.stop().await;
}

// --- timeouts are retryable failures ----------------------------------------------------------

static SLOW: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[event_handler(
    subject = "slow.jobs",
    timeout = "200ms",
    backoff = "50ms..50ms",
    max_deliver = 2
)]
async fn too_slow(_ctx: Context, event: Event<Job>) -> Result<(), HandlerError> {
    SLOW.lock().expect("lock").push(event.attempt());
    tokio::time::sleep(Duration::from_secs(30)).await;
    Ok(())
}

#[tokio::test]
async fn a_handler_past_its_timeout_is_cancelled_retried_and_dead_lettered() {
    let server = NatsServer::start();
    let runtime = start(&server, "too_slow", &[]).await;
    let js = jetstream::new(server.client().await);
    publish_all(&js, "slow.jobs", [r#"{"id":1}"#.to_owned()]).await;

    let subject = "jetfn.dlq.too_slow";
    assert!(
        eventually(PATIENCE, || async {
            stored(&js, "JETFN_DLQ", subject).await == 1
        })
        .await
    );
    assert_eq!(*SLOW.lock().expect("lock"), [1, 2]);
    let letter = &dead_letters(&js, subject).await[0];
    assert_eq!(header(letter, h::ERROR), "handler timed out after 200ms");
    runtime.stop().await;
}
