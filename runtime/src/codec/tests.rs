use super::*;
use std::time::SystemTime;

#[derive(Debug, Deserialize, PartialEq)]
struct Order {
    order_id: String,
}

fn incoming(payload: &[u8], id: Option<&str>) -> Incoming {
    Incoming {
        payload: Bytes::copy_from_slice(payload),
        meta: EventMeta {
            subject: "orders.created".into(),
            id: id.map(str::to_owned),
            headers: Default::default(),
            stream: "ORDERS".into(),
            stream_sequence: 7,
            attempt: 1,
            published: SystemTime::UNIX_EPOCH,
        },
    }
}

fn json<T: Payload<Json>>(payload: &str, id: Option<&str>) -> Result<Event<T>, DecodeError> {
    T::decode(incoming(payload.as_bytes(), id))
}

#[test]
fn plain_json() {
    let event = json::<Order>(r#"{"order_id":"o-1"}"#, None).expect("decodes");
    assert_eq!(event.data.order_id, "o-1");
    assert_eq!(event.id(), None);
    assert_eq!(event.stream_sequence(), 7);
}

#[test]
fn cloud_event_is_unwrapped_and_gives_its_id() {
    let payload = r#"{"specversion":"1.0","id":"ce-9","type":"shop.order.created",
        "source":"/shop","data":{"order_id":"o-2"}}"#;
    let event = json::<Order>(payload, None).expect("decodes");
    assert_eq!(event.data.order_id, "o-2");
    assert_eq!(event.id(), Some("ce-9"));
}

#[test]
fn nats_msg_id_wins_over_cloud_event_id() {
    let payload = r#"{"specversion":"1.0","id":"ce-9","data":{"order_id":"o-2"}}"#;
    let event = json::<Order>(payload, Some("m-1")).expect("decodes");
    assert_eq!(event.id(), Some("m-1"));
}

#[test]
fn a_payload_field_named_specversion_inside_data_is_not_an_envelope() {
    #[derive(Debug, Deserialize)]
    struct Wrapper {
        inner: serde_json::Value,
    }
    let payload = r#"{"inner":{"specversion":"1.0"}}"#;
    let event = json::<Wrapper>(payload, None).expect("decodes");
    assert_eq!(event.data.inner["specversion"], "1.0");
}

#[test]
fn bad_payloads_are_decode_errors() {
    let cases = [
        ("not json", "Json"),
        (r#"{"order":1}"#, "Json"),
        (r#"{"specversion":"1.0","id":"x"}"#, "MissingData"),
    ];
    for (payload, expected) in cases {
        let error = json::<Order>(payload, None).expect_err(payload);
        let kind = match error {
            DecodeError::Json { .. } => "Json",
            DecodeError::MissingData => "MissingData",
            _ => "other",
        };
        assert_eq!(kind, expected, "{payload}");
    }
}

#[test]
fn a_json_string_payload_is_still_json_through_the_json_codec() {
    // `String` is `DeserializeOwned` too: only `#[event_handler]`'s choice makes it text.
    let event = json::<String>(r#""quoted""#, None).expect("decodes");
    assert_eq!(event.data, "quoted");
}

#[test]
fn bytes_are_kept_as_they_are() {
    let payload = [0xff, 0x00, 0xfe, b'"', 0x80];
    let event = <Bytes as Payload<Raw>>::decode(incoming(&payload, None)).expect("never fails");
    assert_eq!(event.data.as_ref(), payload);
    assert_eq!(event.subject(), "orders.created");
}

#[test]
fn text_is_kept_as_it_is_and_must_be_utf8() {
    let text = r#"say "hi", {not json} ✓"#;
    let event = <String as Payload<Text>>::decode(incoming(text.as_bytes(), None)).expect("UTF-8");
    assert_eq!(event.data, text);
    let error = <String as Payload<Text>>::decode(incoming(b"caf\xe9", None)).expect_err("latin-1");
    assert!(matches!(error, DecodeError::Utf8(_)), "{error:?}");
}

#[cfg(feature = "protobuf")]
#[test]
fn protobuf_decodes_and_rejects_garbage() {
    use prost::Message;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Reading {
        #[prost(string, tag = "1")]
        sensor: String,
        #[prost(double, tag = "2")]
        value: f64,
    }
    let reading = Reading {
        sensor: "t-1".into(),
        value: 21.5,
    };
    let decode = |payload: &[u8]| {
        <crate::Protobuf<Reading> as Payload<Proto>>::decode(incoming(payload, None))
    };
    let event = decode(&reading.encode_to_vec()).expect("decodes");
    assert_eq!(event.data.0, reading);
    let error = decode(&[0xff, 0xff, 0xff]).expect_err("garbage");
    assert!(matches!(error, DecodeError::Protobuf { .. }), "{error:?}");
}

#[test]
fn content_types_per_codec() {
    assert_eq!(Json::KIND.content_type(), "application/json");
    assert_eq!(Text::KIND.content_type(), "text/plain");
    assert_eq!(Raw::KIND.content_type(), "application/octet-stream");
    assert_eq!(Proto::KIND.content_type(), "application/x-protobuf");
}
