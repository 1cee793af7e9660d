//! Payloads at the server's `max_payload`: one just under it is handled, or dead-lettered
//! byte-exact with its original headers (and replayed with them); an output over it fails the handler at once with a
//! retryable `PublishError` (`MaxPayloadExceeded`), never a hang.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::{consumer_counts, start, stored, PATIENCE};
use jetfn::DeadLetterHeaders as h;

use jetfn::testing::{eventually, NatsServer};
use jetfn::{event_handler, Context, Event, HandlerError, PublishError};

/// Room left under max_payload for the original headers and the dead letter's provenance.
const HEADROOM: usize = 8 * 1024;

static BIG_SEEN: Mutex<Vec<usize>> = Mutex::new(Vec::new());

#[event_handler(subject = "big.inputs")]
async fn takes_big_inputs(
    _ctx: Context,
    event: Event<serde_json::Value>,
) -> Result<(), HandlerError> {
    let blob = event.data["blob"].as_str().map_or(0, str::len);
    BIG_SEEN.lock().expect("lock").push(blob);
    Ok(())
}

fn original_headers() -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("X-Empty", "");
    headers.insert("X-Unicode", "zé€ 😀 ünïcödé");
    headers.insert("X-Four-KiB", "ab".repeat(2048).as_str());
    headers.insert("Nats-Msg-Id", "big-1");
    headers
}

#[tokio::test]
async fn a_payload_just_under_max_payload_is_handled_or_dead_lettered_byte_exact() {
    let server = NatsServer::start();
    let runtime = start(&server, "takes_big_inputs", &[]).await;
    let client = server.client().await;
    let max_payload = client.server_info().max_payload;
    let js = jetstream::new(client);
    let size = max_payload - HEADROOM;

    // JSON: handled.
    let blob = "x".repeat(size - r#"{"blob":""}"#.len());
    let json = format!(r#"{{"blob":"{blob}"}}"#);
    assert_eq!(json.len(), size);
    js.publish("big.inputs", json.into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    assert!(
        eventually(PATIENCE, || async {
            BIG_SEEN.lock().expect("lock").as_slice() == [blob.len()]
        })
        .await,
        "the big JSON payload is handled"
    );

    // Not JSON, every byte value: dead-lettered (`decode`) as it came.
    let bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 256) as u8).collect();
    js.publish_with_headers("big.inputs", original_headers(), bytes.clone().into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    let dlq = "jetfn.dlq.takes_big_inputs";
    assert!(
        eventually(PATIENCE, || async {
            stored(&js, "JETFN_DLQ", dlq).await == 1
        })
        .await,
        "dead-lettered"
    );
    let letters = jetfn::DeadLetter::list(&js, dlq, None).await.expect("list");
    let letter = &letters[0];
    assert_eq!(letter.header(h::ERROR_KIND), "decode");
    assert!(letter.payload == bytes, "the payload is byte-exact");
    let original = original_headers();
    for name in ["X-Empty", "X-Unicode", "X-Four-KiB"] {
        assert_eq!(
            letter.header(name),
            original.get(name).expect("set").as_str(),
            "{name}"
        );
    }
    assert_eq!(letter.header(h::ORIGINAL_MSG_ID), "big-1");
    let first_seq = letter.header(h::STREAM_SEQ).to_owned();

    // Replayed over the wire: the original headers and payload come back as they were (and, still
    // not JSON, it is dead-lettered again, byte-exact again).
    assert_eq!(
        jetfn::DeadLetter::replay(&js, dlq, None)
            .await
            .expect("replay"),
        1
    );
    assert!(
        eventually(PATIENCE, || async {
            let letters = jetfn::DeadLetter::list(&js, dlq, None).await.expect("list");
            letters.len() == 1 && letters[0].header(h::STREAM_SEQ) != first_seq
        })
        .await,
        "dead-lettered again after the replay"
    );
    let again = &jetfn::DeadLetter::list(&js, dlq, None).await.expect("list")[0];
    assert!(again.payload == bytes, "byte-exact after a replay");
    for name in ["X-Empty", "X-Unicode", "X-Four-KiB"] {
        assert_eq!(
            again.header(name),
            original.get(name).expect("set").as_str(),
            "{name} after a replay"
        );
    }
    assert_eq!(again.header("Jetfn-Replayed-From-Msg-Id"), "big-1");
    assert!(
        eventually(PATIENCE, || async {
            consumer_counts(&js, "BIG", "takes_big_inputs").await == (0, 0)
        })
        .await
    );
    runtime.stop().await;
}

// --- an output over max_payload --------------------------------------------------------------------

static OVERSIZED_CALLS: AtomicU32 = AtomicU32::new(0);
/// How long each oversized publish took to fail, and whether it was `MaxPayloadExceeded`.
static OVERSIZED_FAILURES: Mutex<Vec<(Duration, bool)>> = Mutex::new(Vec::new());

#[event_handler(
    subject = "oversized.requests",
    max_deliver = 2,
    backoff = "100ms..200ms"
)]
async fn publishes_too_much(
    ctx: Context,
    _event: Event<serde_json::Value>,
) -> Result<(), HandlerError> {
    OVERSIZED_CALLS.fetch_add(1, Ordering::SeqCst);
    let max_payload = ctx.jetstream().client().server_info().max_payload;
    let huge = "y".repeat(max_payload + 1);
    let started = Instant::now();
    let result = ctx.publish("oversized.outputs", &huge).await;
    let exceeded = matches!(
        &result,
        Err(PublishError::Publish { source, .. })
            if source.kind() == jetstream::context::PublishErrorKind::MaxPayloadExceeded
    );
    OVERSIZED_FAILURES
        .lock()
        .expect("lock")
        .push((started.elapsed(), exceeded));
    result?;
    Ok(())
}

#[tokio::test]
async fn an_output_over_max_payload_fails_at_once_and_is_retried() {
    let server = NatsServer::start();
    let runtime = start(&server, "publishes_too_much", &[]).await;
    let js = jetstream::new(server.client().await);
    js.publish("oversized.requests", "{}".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    let dlq = "jetfn.dlq.publishes_too_much";
    assert!(
        eventually(PATIENCE, || async {
            stored(&js, "JETFN_DLQ", dlq).await == 1
        })
        .await,
        "dead-lettered after its retries"
    );
    assert_eq!(OVERSIZED_CALLS.load(Ordering::SeqCst), 2, "retried once");
    let failures = OVERSIZED_FAILURES.lock().expect("lock").clone();
    assert_eq!(failures.len(), 2);
    for (took, exceeded) in &failures {
        assert!(exceeded, "PublishError::Publish with MaxPayloadExceeded");
        assert!(
            *took < Duration::from_secs(1),
            "failed at once, took {took:?}"
        );
    }
    println!(
        "an output over max_payload fails in {:?} and {:?}",
        failures[0].0, failures[1].0
    );
    let letters = jetfn::DeadLetter::list(&js, dlq, None).await.expect("list");
    assert_eq!(letters[0].header(h::ERROR_KIND), "exhausted");
    assert!(
        letters[0].header(h::ERROR).contains("max payload"),
        "{}",
        letters[0].header(h::ERROR)
    );
    assert_eq!(stored(&js, "OVERSIZED", "oversized.outputs").await, 0);
    runtime.stop().await;
}

// --- a payload that leaves no room for the dead letter's provenance --------------------------------

#[event_handler(subject = "huge.inputs", max_deliver = 2, backoff = "100ms..200ms")]
async fn gets_huge_inputs(
    _ctx: Context,
    _event: Event<serde_json::Value>,
) -> Result<(), HandlerError> {
    Ok(())
}

#[tokio::test]
async fn a_payload_too_big_to_dead_letter_stays_in_its_stream() {
    let server = NatsServer::start();
    let runtime = start(&server, "gets_huge_inputs", &[]).await;
    let client = server.client().await;
    let max_payload = client.server_info().max_payload;
    let js = jetstream::new(client);
    // Not JSON (a decode failure, to be dead-lettered), 64 bytes under max_payload: no room
    // for the provenance headers.
    let bytes: Vec<u8> = (0..max_payload - 64).map(|i| (i % 251) as u8).collect();
    let ack = js
        .publish("huge.inputs", bytes.clone().into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    // Both deliveries fail to dead-letter, then the advisory path tries and gives up too.
    let advisory_consumer = jetfn::DeadLetter::advisory_consumer(["gets_huge_inputs"]);
    let advisories = js
        .get_stream(jetfn::DeadLetter::ADVISORY_STREAM)
        .await
        .expect("advisory stream");
    assert!(
        eventually(PATIENCE, || async {
            let mut consumer: jetstream::consumer::PullConsumer = advisories
                .get_consumer(&advisory_consumer)
                .await
                .expect("advisory consumer");
            let info = consumer.info().await.expect("info");
            info.delivered.stream_sequence >= 1
                && info.num_ack_pending == 0
                && info.num_pending == 0
        })
        .await,
        "the MAX_DELIVERIES advisory was handled"
    );
    assert_eq!(
        consumer_counts(&js, "HUGE", "gets_huge_inputs").await,
        (0, 0),
        "no more deliveries"
    );
    assert_eq!(
        stored(&js, "JETFN_DLQ", "jetfn.dlq.gets_huge_inputs").await,
        0,
        "no dead letter could be stored"
    );
    let kept = js
        .get_stream("HUGE")
        .await
        .expect("stream")
        .get_raw_message(ack.sequence)
        .await
        .expect("the message is still in its stream");
    assert!(kept.payload == bytes, "unchanged");
    assert!(runtime.is_ready(), "the runtime carries on");
    runtime.stop().await;
}
