//! Payload codecs against a real nats-server: bytes and text arrive exactly as published,
//! `publish_bytes` outputs arrive byte-exact with the derived `Nats-Msg-Id` (one index sequence
//! with `publish`), and what does not decode is dead-lettered as `decode` with its payload
//! byte-for-byte.

mod common;

use std::sync::Mutex;

use async_nats::jetstream;
use bytes::Bytes;
use common::{consumer_counts, header, messages, start, stored, PATIENCE};
use jetfn::testing::{eventually, NatsServer, TestApp};
use jetfn::DeadLetterHeaders as h;
use jetfn::{event_handler, Context, Event, HandlerError};
use rand::RngCore;

async fn publish(js: &jetstream::Context, subject: &str, payload: impl Into<Bytes>) {
    js.publish(subject.to_owned(), payload.into())
        .await
        .expect("publish")
        .await
        .expect("publish ack");
}

/// Waits until `count` dead letters of `function` are stored, and returns them.
async fn dead_letters(
    js: &jetstream::Context,
    function: &str,
    count: u64,
) -> Vec<async_nats::Message> {
    let subject = format!("jetfn.dlq.{function}");
    assert!(
        eventually(PATIENCE, || async {
            stored(js, "JETFN_DLQ", &subject).await == count
        })
        .await,
        "{count} dead letter(s) on {subject}"
    );
    messages(js, "JETFN_DLQ", &subject).await
}

// --- bytes: as is, and copied out with publish_bytes ----------------------------------------

static RAW: Mutex<Vec<Bytes>> = Mutex::new(Vec::new());

#[event_handler(subject = "rawin.files")]
async fn copy_bytes(ctx: Context, event: Event<Bytes>) -> Result<(), HandlerError> {
    RAW.lock().expect("lock").push(event.data.clone());
    ctx.publish_bytes("rawout.files", event.data).await?;
    ctx.publish("rawout.files", &"then JSON").await?;
    ctx.publish_bytes("rawout.files", vec![0xffu8, 0xfe])
        .await?;
    Ok(())
}

#[tokio::test]
async fn random_bytes_arrive_exactly_and_publish_bytes_sends_them_exactly() {
    let server = NatsServer::start();
    let runtime = start(&server, "copy_bytes", &[]).await;
    let js = jetstream::new(server.client().await);
    let mut payload = vec![0u8; 4096];
    rand::rng().fill_bytes(&mut payload);
    payload[0] = 0xff; // never valid UTF-8, whatever the rest is
    publish(&js, "rawin.files", payload.clone()).await;

    assert!(
        eventually(PATIENCE, || async {
            // The handler creates the stream with its first output.
            js.get_stream("RAWOUT").await.is_ok()
                && stored(&js, "RAWOUT", "rawout.files").await == 3
        })
        .await
    );
    assert_eq!(*RAW.lock().expect("lock"), [Bytes::from(payload.clone())]);
    let outputs = messages(&js, "RAWOUT", "rawout.files").await;
    let bodies: Vec<&[u8]> = outputs.iter().map(|m| m.payload.as_ref()).collect();
    assert_eq!(
        bodies,
        [&payload[..], &b"\"then JSON\""[..], &[0xff, 0xfe][..]]
    );
    let ids: Vec<&str> = outputs.iter().map(|m| header(m, "Nats-Msg-Id")).collect();
    assert_eq!(
        ids,
        [
            "jetfn:copy_bytes:RAWIN:1:0",
            "jetfn:copy_bytes:RAWIN:1:1",
            "jetfn:copy_bytes:RAWIN:1:2"
        ],
        "one index sequence across publish and publish_bytes"
    );
    assert_eq!(consumer_counts(&js, "RAWIN", "copy_bytes").await, (0, 0));
    runtime.stop().await;
}

// --- text: as is, or dead-lettered when not UTF-8 -------------------------------------------

static TEXT: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[event_handler(subject = "text.lines")]
async fn read_text(_ctx: Context, event: Event<String>) -> Result<(), HandlerError> {
    TEXT.lock().expect("lock").push(event.data);
    Ok(())
}

#[tokio::test]
async fn text_arrives_as_is_and_non_utf8_text_is_dead_lettered_byte_for_byte() {
    // On `TestApp`: each publish returns once its outcome is final, so nothing is polled.
    let app = TestApp::new().functions(["read_text"]).start().await;
    let quoted = r#"she said "hi" {"not": json} \n ✓"#;
    let latin1: &[u8] = b"caf\xe9 cr\xe8me \"br\xfbl\xe9e\"";
    assert!(app.publish_bytes("text.lines", quoted).await.is_acked());
    let settled = app.publish_bytes("text.lines", latin1).await;
    assert_eq!(
        (settled.dead_letter_kind(), settled.attempts()),
        (Some("decode"), 1)
    );
    let json = "\"a JSON string stays quoted\"";
    assert!(app.publish_bytes("text.lines", json).await.is_acked());

    let letters = app.dead_letters("read_text").await;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].payload().as_ref(),
        latin1,
        "payload byte-for-byte"
    );
    assert_eq!(letters[0].header(h::DELIVERIES), "1");
    assert_eq!(*TEXT.lock().expect("lock"), [quoted, json]);
}

// --- protobuf: decoded, or dead-lettered when garbage ---------------------------------------

#[cfg(feature = "protobuf")]
mod protobuf {
    use super::*;
    use jetfn::Protobuf;
    use prost::Message;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Reading {
        #[prost(string, tag = "1")]
        sensor: String,
        #[prost(double, tag = "2")]
        value: f64,
    }

    static READINGS: Mutex<Vec<Reading>> = Mutex::new(Vec::new());

    #[event_handler(subject = "proto.readings")]
    async fn record_reading(
        _ctx: Context,
        event: Event<Protobuf<Reading>>,
    ) -> Result<(), HandlerError> {
        READINGS.lock().expect("lock").push(event.data.0);
        Ok(())
    }

    #[tokio::test]
    async fn protobuf_decodes_and_garbage_is_dead_lettered_byte_for_byte() {
        let server = NatsServer::start();
        let runtime = start(&server, "record_reading", &[]).await;
        let js = jetstream::new(server.client().await);
        let reading = Reading {
            sensor: "t-1".into(),
            value: 21.5,
        };
        // A field header announcing a 127-byte string that is not there.
        let garbage: &[u8] = &[0x0a, 0x7f, 0xff, 0x00, 0x13];
        publish(&js, "proto.readings", reading.encode_to_vec()).await;
        publish(&js, "proto.readings", garbage).await;

        let letters = dead_letters(&js, "record_reading", 1).await;
        assert_eq!(
            letters[0].payload.as_ref(),
            garbage,
            "payload byte-for-byte"
        );
        assert_eq!(header(&letters[0], h::ERROR_KIND), "decode");
        assert!(
            header(&letters[0], h::ERROR).contains("Reading"),
            "{}",
            header(&letters[0], h::ERROR)
        );
        assert!(
            eventually(PATIENCE, || async {
                READINGS.lock().expect("lock").len() == 1
            })
            .await
        );
        assert_eq!(*READINGS.lock().expect("lock"), [reading]);
        runtime.stop().await;
    }
}
