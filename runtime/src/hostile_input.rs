//! Property tests on hostile input through the pure functions a delivery passes: decoding
//! (JSON, CloudEvents envelopes), dead-letter header building and fitting, and the header
//! handling of a replay. Each target runs 10,000 generated cases; none may panic, and a dead
//! letter must keep the payload and the original headers exactly.

use std::sync::Arc;
use std::time::SystemTime;

use async_nats::HeaderMap;
use bytes::Bytes;
use proptest::prelude::*;

use crate::codec::{Incoming, Json, Payload};
use crate::dlq::{self, headers as h, DeadLetter, Provenance};
use crate::handler::{Event, EventMeta, FailureKind, HandlerError};
use crate::policy::DeadLetterKind;

const CASES: u32 = 10_000;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        // Failures are reported with the case; no regression files in the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn incoming(payload: Vec<u8>, id: Option<String>, headers: HeaderMap) -> Incoming {
    Incoming {
        payload: Bytes::from(payload),
        meta: EventMeta {
            subject: "hostile.input".into(),
            id,
            headers,
            stream: Arc::from("HOSTILE"),
            stream_sequence: 1,
            attempt: 1,
            published: SystemTime::UNIX_EPOCH,
        },
    }
}

/// `unit` repeated to at least 4 KiB (cheap to generate, unlike 4,096 random characters).
fn four_kib(unit: &'static str) -> impl Strategy<Value = String> {
    proptest::string::string_regex(unit)
        .expect("a valid pattern")
        .prop_map(|unit| unit.repeat(4096 / unit.len().max(1) + 1))
}

/// Header names NATS allows (printable ASCII but `:`), other than the ones a dead letter owns.
fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[!-9;-~]{1,24}",
        1 => Just("traceparent".to_owned()),
        1 => four_kib("[A-Za-z]{1,8}"),
    ]
    .prop_filter("owned by the dead letter", |name| {
        let lower = name.to_ascii_lowercase();
        !lower.starts_with("jetfn-") && lower != "nats-msg-id"
    })
}

/// Header values NATS allows: anything without CR or LF; empty, non-ASCII, 4 KiB.
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[^\r\n]{0,40}",
        1 => Just(String::new()),
        1 => four_kib("[a-zé€😀 ]{1,8}"),
        1 => four_kib("[^\r\n]{1,8}"),
    ]
}

fn original_headers() -> impl Strategy<Value = Vec<(String, Vec<String>)>> {
    proptest::collection::vec(
        (
            header_name(),
            proptest::collection::vec(header_value(), 1..3),
        ),
        0..4,
    )
    .prop_map(|mut headers| {
        // One entry per name (case-insensitively: NATS header names are compared as given, but
        // a replay compares `Nats-Msg-Id` without case).
        let mut seen = std::collections::BTreeSet::new();
        headers.retain(|(name, _)| seen.insert(name.clone()));
        headers
    })
}

fn header_map(headers: &[(String, Vec<String>)], id: Option<&str>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, values) in headers {
        for value in values {
            map.append(name.as_str(), value.as_str());
        }
    }
    if let Some(id) = id {
        map.insert(async_nats::header::NATS_MESSAGE_ID, id);
    }
    map
}

fn values(map: &HeaderMap, name: &str) -> Vec<String> {
    map.get_all(name).map(|v| v.as_str().to_owned()).collect()
}

fn kind() -> impl Strategy<Value = DeadLetterKind> {
    prop_oneof![
        Just(DeadLetterKind::Permanent),
        Just(DeadLetterKind::Decode),
        Just(DeadLetterKind::Exhausted),
        Just(DeadLetterKind::Crashed),
    ]
}

/// Arbitrary JSON values, a few levels deep.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        // Quarters: exact in binary, so they survive serde_json's float parsing unchanged.
        any::<i32>().prop_map(|i| serde_json::Value::from(f64::from(i) / 4.0)),
        any::<String>().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

/// The JSON codec's decoding, its failure as the handler sees it.
fn decode_json(incoming: Incoming) -> Result<Event<serde_json::Value>, HandlerError> {
    <serde_json::Value as Payload<Json>>::decode(incoming).map_err(HandlerError::decode)
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes: decoding never panics; a failure is a `Decode` error.
    #[test]
    fn decoding_any_bytes_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
        match decode_json(incoming(payload.clone(), None, HeaderMap::new())) {
            Ok(event) => {
                let plain = serde_json::from_slice::<serde_json::Value>(&payload);
                let envelope = plain.as_ref().ok().and_then(|v| v.get("specversion")).is_some();
                if !envelope {
                    prop_assert_eq!(Some(&event.data), plain.as_ref().ok());
                }
            }
            Err(error) => prop_assert_eq!(error.kind(), FailureKind::Decode),
        }
    }

    /// Any bytes that mention `specversion` (the envelope path).
    #[test]
    fn decoding_envelope_like_bytes_never_panics(
        prefix in proptest::collection::vec(any::<u8>(), 0..64),
        suffix in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut payload = prefix;
        payload.extend_from_slice(br#"{"specversion":"1.0","data":"#);
        payload.extend(suffix);
        if let Err(error) = decode_json(incoming(payload, None, HeaderMap::new())) {
            prop_assert_eq!(error.kind(), FailureKind::Decode);
        }
    }

    /// CloudEvents envelopes with any `data` and `id`: `data` is unwrapped, the id taken unless
    /// the message has a `Nats-Msg-Id`.
    #[test]
    fn cloud_events_are_unwrapped(
        // `"data": null` reads as no data (DecodeError::MissingData): not generated here.
        data in json().prop_filter("not null", |data| !data.is_null()),
        id in any::<String>(),
        msg_id in proptest::option::of("[^\r\n]{1,16}"),
        extra in proptest::collection::btree_map("[a-z]{1,8}", json(), 0..3),
    ) {
        let mut envelope = serde_json::Map::new();
        for (key, value) in extra {
            envelope.insert(key, value);
        }
        envelope.insert("specversion".into(), "1.0".into());
        envelope.insert("id".into(), id.clone().into());
        envelope.insert("data".into(), data.clone());
        let payload = serde_json::to_vec(&envelope).expect("serializable");
        let event = decode_json(incoming(payload, msg_id.clone(), HeaderMap::new()))
            .expect("an envelope with data decodes");
        prop_assert_eq!(&event.data, &data);
        prop_assert_eq!(event.id(), Some(msg_id.as_deref().unwrap_or(&id)));
    }

    /// Dead-letter headers keep every original header and value, add provenance with a
    /// header-safe error, and a replay gets back exactly the original headers.
    #[test]
    fn dead_letters_keep_the_original_headers_and_replay_restores_them(
        original in original_headers(),
        id in proptest::option::of("[^\r\n]{1,64}"),
        error in prop_oneof![any::<String>(), four_kib("\\PC{1,8}"), Just(String::new())],
        kind in kind(),
        subject in "[a-z0-9_]{1,16}(\\.[a-z0-9_*]{1,16}){0,4}",
        sequence in any::<u64>(),
        deliveries in any::<u64>(),
    ) {
        let map = header_map(&original, id.as_deref());
        let from = Provenance {
            function: "hostile",
            subject: &subject,
            stream: "HOSTILE",
            stream_sequence: sequence,
            deliveries,
        };
        let dead = dlq::dead_letter_headers(Some(&map), &from, kind, &error);
        for (name, vals) in &original {
            prop_assert_eq!(&values(&dead, name), vals);
        }
        let stored_error = dead.get(h::ERROR).map(|v| v.as_str().to_owned()).unwrap_or_default();
        prop_assert!(stored_error.len() <= 1024);
        prop_assert!(!stored_error.chars().any(char::is_control));
        prop_assert_eq!(dead.get(h::ERROR_KIND).map(|v| v.as_str()), Some(kind.as_str()));
        prop_assert_eq!(
            dead.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.as_str().to_owned()),
            Some(format!("dlq:HOSTILE:{sequence}"))
        );
        prop_assert_eq!(dead.get(h::ORIGINAL_MSG_ID).map(|v| v.as_str()), id.as_deref());

        let letter = DeadLetter {
            sequence: 1,
            stream: dlq::DLQ_STREAM.to_owned(),
            payload: Bytes::new(),
            headers: dead,
        };
        let replayed = letter.original_headers();
        let mut expected = header_map(&original, None);
        if let Some(id) = &id {
            expected.insert("Jetfn-Replayed-From-Msg-Id", id.as_str());
        }
        prop_assert_eq!(replayed.len(), expected.len());
        for (name, _) in expected.iter() {
            let name: &str = name.as_ref();
            prop_assert_eq!(values(&replayed, name), values(&expected, name));
        }
    }

    /// Fitting a dead letter under `max_payload` only ever cuts `Jetfn-Error`, on a character
    /// boundary, and says when even that is not enough.
    #[test]
    fn fitting_a_dead_letter_cuts_only_the_error(
        original in original_headers(),
        error in prop_oneof![Just(String::new()), "\\PC{0,16}", four_kib("\\PC{1,8}")],
        payload_len in 0usize..(64 * 1024),
        max_payload in 0usize..(64 * 1024),
    ) {
        let map = header_map(&original, None);
        let from = Provenance {
            function: "hostile",
            subject: "hostile.input",
            stream: "HOSTILE",
            stream_sequence: 9,
            deliveries: 1,
        };
        let mut dead = dlq::dead_letter_headers(Some(&map), &from, DeadLetterKind::Exhausted, &error);
        let before = dead.clone();
        match dlq::fit(&mut dead, payload_len, max_payload) {
            Ok(()) => prop_assert!(dlq::wire_len(&dead) + payload_len <= max_payload),
            Err(size) => prop_assert!(size > max_payload),
        }
        let cut = dead.get(h::ERROR).map(|v| v.as_str().to_owned()).unwrap_or_default();
        let full = before.get(h::ERROR).map(|v| v.as_str().to_owned()).unwrap_or_default();
        prop_assert!(full.starts_with(&cut));
        for (name, vals) in before.iter() {
            let name: &str = name.as_ref();
            if name != h::ERROR {
                let vals: Vec<String> = vals.iter().map(|v| v.as_str().to_owned()).collect();
                prop_assert_eq!(values(&dead, name), vals);
            }
        }
    }
}

#[test]
fn the_wire_length_matches_what_async_nats_sends() {
    // async-nats refuses a message whose headers plus payload exceed max_payload by this same
    // count ("NATS/1.0\r\n" + "name: value\r\n" per value + "\r\n").
    let mut map = HeaderMap::new();
    map.append("A", "1");
    map.append("A", "22");
    map.insert("Bee", "");
    assert_eq!(
        dlq::wire_len(&map),
        "NATS/1.0\r\n".len() + "A: 1\r\n".len() + "A: 22\r\n".len() + "Bee: \r\n".len() + 2
    );
}
