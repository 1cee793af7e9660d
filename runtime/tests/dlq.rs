//! Dead-letter tooling against a real nats-server: list, replay, and a replay cut off half-way;
//! a dead letter whose publish fails on the last delivery keeps its real cause.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream;
use common::{consumer_counts, publish_all, start, stored, PATIENCE};
use jetfn::testing::{eventually, NatsServer};
use jetfn::DeadLetterHeaders as h;
use jetfn::{event_handler, Context, Event, HandlerError};

static REJECT: AtomicBool = AtomicBool::new(true);
static ACCEPTED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[derive(serde::Deserialize)]
struct Refund {
    id: u32,
}

#[event_handler(subject = "refund.requested")]
async fn refunds(_ctx: Context, event: Event<Refund>) -> Result<(), HandlerError> {
    if REJECT.load(Ordering::SeqCst) {
        return Err(HandlerError::permanent("refunds are switched off"));
    }
    ACCEPTED.lock().expect("lock").push(event.data.id);
    Ok(())
}

#[tokio::test]
async fn dead_letters_are_listed_and_replayed_once_even_after_an_interrupted_replay() {
    let server = NatsServer::start();
    let runtime = start(&server, "refunds", &[]).await;
    let js = jetstream::new(server.client().await);
    publish_all(
        &js,
        "refund.requested",
        (1..=3).map(|i| format!(r#"{{"id":{i}}}"#)),
    )
    .await;
    let dlq = "jetfn.dlq.refunds";
    assert!(
        eventually(PATIENCE, || async {
            stored(&js, "JETFN_DLQ", dlq).await == 3
        })
        .await
    );

    let letters = jetfn::DeadLetter::list(&js, dlq, None).await.expect("list");
    assert_eq!(letters.len(), 3);
    for (letter, seq) in letters.iter().zip(1..) {
        assert_eq!(letter.header(h::ERROR_KIND), "permanent");
        assert_eq!(letter.header(h::DELIVERIES), "1");
        assert_eq!(letter.header(h::STREAM_SEQ), seq.to_string());
        assert_eq!(letter.payload, format!(r#"{{"id":{seq}}}"#).as_bytes());
    }
    assert_eq!(
        jetfn::DeadLetter::list(&js, dlq, Some(2))
            .await
            .expect("list")
            .len(),
        2
    );

    // A replay that republished the first dead letter and died before deleting it.
    let first = &letters[0];
    let mut headers = first.original_headers();
    headers.insert(
        "Nats-Msg-Id",
        format!("replay:{}:{}", first.stream, first.sequence),
    );
    REJECT.store(false, Ordering::SeqCst);
    js.publish_with_headers("refund.requested", headers, first.payload.clone())
        .await
        .expect("publish")
        .await
        .expect("ack");

    // Run again: everything replays, the first one is not doubled.
    let replayed = jetfn::DeadLetter::replay(&js, dlq, None)
        .await
        .expect("replay");
    assert_eq!(replayed, 3);
    assert!(
        eventually(PATIENCE, || async {
            ACCEPTED.lock().expect("lock").len() >= 3
        })
        .await
    );
    assert!(
        eventually(PATIENCE, || async {
            consumer_counts(&js, "REFUND", "refunds").await == (0, 0)
        })
        .await
    );
    let mut accepted = ACCEPTED.lock().expect("lock").clone();
    accepted.sort();
    assert_eq!(accepted, [1, 2, 3], "each refund handled exactly once");
    assert_eq!(
        stored(&js, "REFUND", "refund.requested").await,
        6,
        "3 originals + 3 replays, none doubled"
    );
    assert_eq!(
        stored(&js, "JETFN_DLQ", dlq).await,
        0,
        "replayed letters are removed"
    );
    runtime.stop().await;
}

// --- the dead-letter stream refuses on the last delivery -------------------------------------------

static GATEWAY_CALLS: AtomicU32 = AtomicU32::new(0);

/// Makes `JETFN_DLQ` refuse every message (`refuse`) or accept them again.
async fn dlq_refuses(js: &jetstream::Context, refuse: bool) {
    let mut stream = js.get_stream("JETFN_DLQ").await.expect("JETFN_DLQ");
    let mut config = stream.info().await.expect("info").config.clone();
    if refuse {
        config.max_bytes = 1;
        config.discard = jetstream::stream::DiscardPolicy::New;
    } else {
        config.max_bytes = -1;
        config.discard = jetstream::stream::DiscardPolicy::Old;
    }
    js.update_stream(config).await.expect("update JETFN_DLQ");
}

#[event_handler(
    subject = "gateway.calls",
    max_deliver = 2,
    backoff = "100ms..400ms",
    ack_wait = "2s"
)]
async fn calls_a_dead_gateway(
    ctx: Context,
    event: Event<serde_json::Value>,
) -> Result<(), HandlerError> {
    GATEWAY_CALLS.fetch_add(1, Ordering::SeqCst);
    if event.attempt() == 2 {
        // The last allowed delivery: the dead letter cannot be stored now.
        dlq_refuses(ctx.jetstream(), true).await;
    }
    Err(HandlerError::retryable("gateway down"))
}

#[tokio::test]
async fn a_dead_letter_refused_on_the_last_delivery_is_stored_later_as_exhausted_once() {
    let server = NatsServer::start();
    let runtime = start(&server, "calls_a_dead_gateway", &[]).await;
    let js = jetstream::new(server.client().await);
    publish_all(&js, "gateway.calls", [r#"{"call":1}"#.to_owned()]).await;
    assert!(
        eventually(PATIENCE, || async {
            GATEWAY_CALLS.load(Ordering::SeqCst) == 2
        })
        .await,
        "two deliveries"
    );
    // Longer than ack_wait: the message is held (in-progress acks), not redelivered, and no
    // advisory turns it into a `crashed` dead letter.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(GATEWAY_CALLS.load(Ordering::SeqCst), 2, "no redelivery");
    assert_eq!(
        consumer_counts(&js, "GATEWAY", "calls_a_dead_gateway").await,
        (0, 1),
        "held by the runtime"
    );
    let dlq = "jetfn.dlq.calls_a_dead_gateway";
    assert_eq!(stored(&js, "JETFN_DLQ", dlq).await, 0, "refused so far");

    dlq_refuses(&js, false).await;
    assert!(
        eventually(PATIENCE, || async {
            stored(&js, "JETFN_DLQ", dlq).await == 1
        })
        .await,
        "stored once the stream accepts again"
    );
    assert!(
        eventually(PATIENCE, || async {
            consumer_counts(&js, "GATEWAY", "calls_a_dead_gateway").await == (0, 0)
        })
        .await,
        "the original is acked"
    );
    // Past ack_wait again: the advisory path has nothing to add.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let letters = jetfn::DeadLetter::list(&js, dlq, None).await.expect("list");
    assert_eq!(letters.len(), 1, "exactly one dead letter");
    assert_eq!(letters[0].header(h::ERROR_KIND), "exhausted");
    assert_eq!(letters[0].header(h::ERROR), "gateway down");
    assert_eq!(letters[0].header(h::DELIVERIES), "2");
    assert_eq!(letters[0].payload, r#"{"call":1}"#.as_bytes());
    assert_eq!(GATEWAY_CALLS.load(Ordering::SeqCst), 2);
    runtime.stop().await;
}

// --- the dead-letter stream is deleted on the last delivery ----------------------------------------

static DELETED_CALLS: AtomicU32 = AtomicU32::new(0);

#[event_handler(
    subject = "ledger.posts",
    max_deliver = 2,
    backoff = "100ms..400ms",
    ack_wait = "2s"
)]
async fn posts_to_a_dead_ledger(
    ctx: Context,
    event: Event<serde_json::Value>,
) -> Result<(), HandlerError> {
    DELETED_CALLS.fetch_add(1, Ordering::SeqCst);
    if event.attempt() == 2 {
        ctx.jetstream()
            .delete_stream("JETFN_DLQ")
            .await
            .expect("delete JETFN_DLQ");
    }
    Err(HandlerError::retryable("ledger down"))
}

#[tokio::test]
async fn a_dead_letter_stream_deleted_on_the_last_delivery_is_made_again_and_gets_it() {
    let server = NatsServer::start();
    let runtime = start(&server, "posts_to_a_dead_ledger", &[]).await;
    let js = jetstream::new(server.client().await);
    publish_all(&js, "ledger.posts", [r#"{"post":1}"#.to_owned()]).await;
    let dlq = "jetfn.dlq.posts_to_a_dead_ledger";
    assert!(
        eventually(PATIENCE, || async {
            js.get_stream("JETFN_DLQ").await.is_ok() && stored(&js, "JETFN_DLQ", dlq).await == 1
        })
        .await,
        "JETFN_DLQ made again, the dead letter stored"
    );
    assert!(
        eventually(PATIENCE, || async {
            consumer_counts(&js, "LEDGER", "posts_to_a_dead_ledger").await == (0, 0)
        })
        .await,
        "the original is acked"
    );
    let letters = jetfn::DeadLetter::list(&js, dlq, None).await.expect("list");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].header(h::ERROR_KIND), "exhausted");
    assert_eq!(letters[0].header(h::ERROR), "ledger down");
    assert_eq!(DELETED_CALLS.load(Ordering::SeqCst), 2);
    runtime.stop().await;
}
