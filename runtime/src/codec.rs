//! Decoding a delivered message into [`Event<T>`]: JSON, with CloudEvents 1.0 structured
//! envelopes unwrapped.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::handler::{Event, EventMeta, HandlerError};

/// A delivered message before decoding: its payload and everything else about it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub(crate) payload: Bytes,
    pub(crate) meta: EventMeta,
}

/// Why a payload could not become the handler's type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The payload is not JSON of the handler's payload type.
    #[error("payload is not valid JSON for `{type_name}`: {source}")]
    Json {
        /// The handler's payload type.
        type_name: &'static str,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A CloudEvents envelope has no JSON `data`.
    #[error("CloudEvents envelope has no JSON `data` (binary `data_base64` is not supported)")]
    MissingData,
}

/// The fields of a CloudEvents 1.0 structured envelope that matter here.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    specversion: Option<&'a RawValue>,
    id: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

impl Incoming {
    /// Decodes the payload into `Event<T>`; a failure is a [`HandlerError`] of kind `Decode`.
    pub(crate) fn decode<T: DeserializeOwned>(self) -> Result<Event<T>, HandlerError> {
        let Incoming { payload, mut meta } = self;
        let json_error = |source| DecodeError::Json {
            type_name: std::any::type_name::<T>(),
            source,
        };
        let data = match cloud_event(&payload) {
            Some(envelope) => {
                if meta.id.is_none() {
                    meta.id = envelope.id;
                }
                let data = envelope
                    .data
                    .ok_or(DecodeError::MissingData)
                    .map_err(HandlerError::decode)?;
                serde_json::from_str::<T>(data.get())
                    .map_err(json_error)
                    .map_err(HandlerError::decode)?
            }
            None => serde_json::from_slice::<T>(&payload)
                .map_err(json_error)
                .map_err(HandlerError::decode)?,
        };
        Ok(Event::new(data, meta))
    }
}

/// The envelope, when the payload is a JSON object with a `specversion` member.
fn cloud_event(payload: &[u8]) -> Option<Envelope<'_>> {
    // Fast path: a payload that does not mention `specversion` cannot be an envelope.
    const KEY: &[u8] = b"\"specversion\"";
    if !payload.windows(KEY.len()).any(|window| window == KEY) {
        return None;
    }
    let envelope: Envelope<'_> = serde_json::from_slice(payload).ok()?;
    envelope.specversion.map(|_| envelope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::ErrorKind;
    use std::time::SystemTime;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Order {
        order_id: String,
    }

    fn incoming(payload: &str, id: Option<&str>) -> Incoming {
        Incoming {
            payload: Bytes::copy_from_slice(payload.as_bytes()),
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

    #[test]
    fn plain_json() {
        let event = incoming(r#"{"order_id":"o-1"}"#, None)
            .decode::<Order>()
            .expect("decodes");
        assert_eq!(event.data.order_id, "o-1");
        assert_eq!(event.id(), None);
        assert_eq!(event.stream_sequence(), 7);
    }

    #[test]
    fn cloud_event_is_unwrapped_and_gives_its_id() {
        let payload = r#"{"specversion":"1.0","id":"ce-9","type":"shop.order.created",
            "source":"/shop","data":{"order_id":"o-2"}}"#;
        let event = incoming(payload, None).decode::<Order>().expect("decodes");
        assert_eq!(event.data.order_id, "o-2");
        assert_eq!(event.id(), Some("ce-9"));
    }

    #[test]
    fn nats_msg_id_wins_over_cloud_event_id() {
        let payload = r#"{"specversion":"1.0","id":"ce-9","data":{"order_id":"o-2"}}"#;
        let event = incoming(payload, Some("m-1"))
            .decode::<Order>()
            .expect("decodes");
        assert_eq!(event.id(), Some("m-1"));
    }

    #[test]
    fn a_payload_field_named_specversion_inside_data_is_not_an_envelope() {
        #[derive(Debug, Deserialize)]
        struct Wrapper {
            inner: serde_json::Value,
        }
        let payload = r#"{"inner":{"specversion":"1.0"}}"#;
        let event = incoming(payload, None)
            .decode::<Wrapper>()
            .expect("decodes");
        assert_eq!(event.data.inner["specversion"], "1.0");
    }

    #[test]
    fn bad_payloads_are_decode_errors() {
        for payload in [
            "not json",
            r#"{"order":1}"#,
            r#"{"specversion":"1.0","id":"x"}"#,
        ] {
            let error = incoming(payload, None)
                .decode::<Order>()
                .expect_err(payload);
            assert_eq!(error.kind(), ErrorKind::Decode, "{payload}");
        }
    }
}
