//! Decoding a delivered message into [`Event<T>`]: the payload type chooses the codec.
//!
//! | `T` | codec | decoding |
//! |---|---|---|
//! | [`bytes::Bytes`] | [`Raw`] | the payload as is; never fails |
//! | [`String`] | [`Text`] | UTF-8 text as is (not a JSON string) |
//! | [`Protobuf<M>`](crate::Protobuf) (feature `protobuf`) | [`Proto`] | `M::decode` |
//! | any other `T: DeserializeOwned` | [`Json`] | JSON; a CloudEvents 1.0 structured envelope is unwrapped |
//!
//! The choice is made where `#[event_handler]` expands, on the concrete payload type
//! (`jetfn::__private::select`), so a type alias of `String` is text and a user type that
//! happens to be named `Bytes` is JSON. Each codec is a marker type; [`Payload<C>`] is what a
//! payload type implements to be decoded by codec `C`, one message at a time (a batch decodes
//! each of its messages the same way).

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::handler::{Event, EventMeta};

/// A delivered message before decoding: its payload and everything else about it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub(crate) payload: Bytes,
    pub(crate) meta: EventMeta,
}

/// A protobuf payload: `Event<Protobuf<M>>` decodes the message with `M::decode`
/// (cargo feature `protobuf`).
///
/// ```ignore
/// #[derive(Clone, PartialEq, prost::Message)]
/// struct Reading { #[prost(string, tag = "1")] sensor: String }
///
/// #[event_handler(subject = "sensors.readings")]
/// async fn record(ctx: Context, event: Event<Protobuf<Reading>>) -> Result<(), HandlerError> {
///     let reading: &Reading = &event.data.0;
///     Ok(())
/// }
/// ```
#[cfg(feature = "protobuf")]
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Protobuf<M>(pub M);

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
    /// The payload of a `String` handler is not UTF-8.
    #[error("payload is not UTF-8 text: {0}")]
    Utf8(#[from] std::str::Utf8Error),
    /// The payload is not a protobuf encoding of the handler's message type.
    #[cfg(feature = "protobuf")]
    #[error("payload is not a protobuf `{type_name}`: {source}")]
    Protobuf {
        /// The handler's message type.
        type_name: &'static str,
        /// The protobuf error.
        source: prost::DecodeError,
    },
}

/// How a payload is encoded on the wire, as the `asyncapi` command describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadKind {
    /// JSON (codec `Json`).
    Json,
    /// UTF-8 text (codec `Text`).
    Text,
    /// Bytes as they are (codec `Raw`).
    Bytes,
    /// Protobuf (codec `Proto`).
    Protobuf,
}

impl PayloadKind {
    /// The MIME type of the encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            PayloadKind::Json => "application/json",
            PayloadKind::Text => "text/plain",
            PayloadKind::Bytes => "application/octet-stream",
            PayloadKind::Protobuf => "application/x-protobuf",
        }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A codec: one of the marker types `Json`, `Text`, `Raw` and `Proto`.
pub trait Codec: sealed::Sealed + Copy + Send + 'static {
    /// The wire encoding it reads.
    const KIND: PayloadKind;
}

macro_rules! codecs {
    ($($(#[$doc:meta])* $name:ident => $kind:ident,)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;
        impl sealed::Sealed for $name {}
        impl Codec for $name {
            const KIND: PayloadKind = PayloadKind::$kind;
        }
    )*};
}

codecs! {
    /// JSON, CloudEvents structured envelopes unwrapped: any `T: DeserializeOwned`.
    Json => Json,
    /// UTF-8 text as is: `String`.
    Text => Text,
    /// The payload as is: `bytes::Bytes`.
    Raw => Bytes,
    /// Protobuf: `jetfn::Protobuf<M>` (feature `protobuf`).
    #[cfg_attr(not(feature = "protobuf"), allow(dead_code, unreachable_pub))]
    Proto => Protobuf,
}

/// A payload type that codec `C` decodes.
///
/// Implemented for `bytes::Bytes` (`Raw`), `String` (`Text`), `jetfn::Protobuf<M>`
/// (`Proto`) and every `T: DeserializeOwned` (`Json`). `#[event_handler]` picks the codec;
/// there is nothing to implement.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an event payload",
    label = "not `bytes::Bytes`, `String`, `jetfn::Protobuf<M>` or `serde::de::DeserializeOwned`",
    note = "`Protobuf<M>` needs `M: prost::Message + Default`; JSON needs `serde::de::DeserializeOwned`"
)]
pub trait Payload<C: Codec>: Sized + Send + 'static {
    /// Decodes the message into an event of this type.
    fn decode(incoming: Incoming) -> Result<Event<Self>, DecodeError>;
}

impl Payload<Raw> for Bytes {
    fn decode(incoming: Incoming) -> Result<Event<Self>, DecodeError> {
        Ok(Event::from_parts(incoming.payload, incoming.meta))
    }
}

impl Payload<Text> for String {
    fn decode(incoming: Incoming) -> Result<Event<Self>, DecodeError> {
        let text = std::str::from_utf8(&incoming.payload)?.to_owned();
        Ok(Event::from_parts(text, incoming.meta))
    }
}

#[cfg(feature = "protobuf")]
impl<M> Payload<Proto> for Protobuf<M>
where
    M: prost::Message + Default + 'static,
{
    fn decode(incoming: Incoming) -> Result<Event<Self>, DecodeError> {
        let message = M::decode(incoming.payload).map_err(|source| DecodeError::Protobuf {
            type_name: std::any::type_name::<M>(),
            source,
        })?;
        Ok(Event::from_parts(Protobuf(message), incoming.meta))
    }
}

impl<T> Payload<Json> for T
where
    T: DeserializeOwned + Send + 'static,
{
    fn decode(incoming: Incoming) -> Result<Event<Self>, DecodeError> {
        let Incoming { payload, mut meta } = incoming;
        let json_error = |source| DecodeError::Json {
            type_name: std::any::type_name::<T>(),
            source,
        };
        let data = match cloud_event(&payload) {
            Some(envelope) => {
                if meta.id.is_none() {
                    meta.id = envelope.id;
                }
                let data = envelope.data.ok_or(DecodeError::MissingData)?;
                serde_json::from_str::<T>(data.get()).map_err(json_error)?
            }
            None => serde_json::from_slice::<T>(&payload).map_err(json_error)?,
        };
        Ok(Event::from_parts(data, meta))
    }
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

/// The envelope, when the payload is a JSON object with a `specversion` member.
fn cloud_event(payload: &[u8]) -> Option<Envelope<'_>> {
    // Fast path: a payload that does not mention `specversion` cannot be an envelope.
    static KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"specversion\""));
    KEY.find(payload)?;
    let envelope: Envelope<'_> = serde_json::from_slice(payload).ok()?;
    envelope.specversion.map(|_| envelope)
}

#[cfg(test)]
mod tests;
