//! Dead-letter tooling against a real nats-server: list, replay, and a replay cut off half-way.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use async_nats::jetstream;
use common::{consumer_counts, publish_all, start, stored, PATIENCE};
use jetfn::dlq::headers as h;
use jetfn::testing::{eventually, NatsServer};
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

    let letters = jetfn::dlq::list(&js, dlq, None).await.expect("list");
    assert_eq!(letters.len(), 3);
    for (letter, seq) in letters.iter().zip(1..) {
        assert_eq!(letter.header(h::ERROR_KIND), "permanent");
        assert_eq!(letter.header(h::DELIVERIES), "1");
        assert_eq!(letter.header(h::STREAM_SEQ), seq.to_string());
        assert_eq!(letter.payload, format!(r#"{{"id":{seq}}}"#).as_bytes());
    }
    assert_eq!(
        jetfn::dlq::list(&js, dlq, Some(2))
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
    let replayed = jetfn::dlq::replay(&js, dlq, None).await.expect("replay");
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
