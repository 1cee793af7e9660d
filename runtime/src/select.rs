//! What `#[event_handler]` chooses on the concrete payload type, where it expands: the codec
//! (`Bytes`, `String`, `Protobuf<M>`, else JSON) and whether there is a JSON Schema (the type
//! implements `schemars::JsonSchema`, cargo feature `schema`).
//!
//! Stable Rust has no specialization, so both choices use autoref specialization: the macro
//! writes `(&&Select::<T>::NEW).codec()`. Method lookup tries the receiver `&&Select<T>` first,
//! where only the specific impls (`&Select<Bytes>`, ...) apply, then `&Select<T>`, where the
//! fallback applies to every `T`. The fallback has no bound, so this never fails to compile:
//! a payload that fits no codec is reported once, by the `T: Payload<C>` bound of `invoke`,
//! on the user's type.

use std::marker::PhantomData;

use bytes::Bytes;

use crate::codec::{Codec, Json, Raw, Text};
use crate::registry::PayloadSpec;

/// A zero-sized stand-in for the payload type `T`, the receiver of the choices.
#[derive(Debug)]
pub struct Select<T: ?Sized>(PhantomData<fn() -> Box<T>>);

impl<T: ?Sized> Select<T> {
    /// The one value.
    pub const NEW: Self = Self(PhantomData);
}

/// The codec of a payload type with a codec of its own (tried first).
pub trait SpecificCodec {
    /// The codec.
    type Codec: Codec;
    /// The codec's value (a marker).
    fn codec(&self) -> Self::Codec;
}

/// JSON, the codec of every other payload type (the fallback).
pub trait JsonCodec {
    /// `Json`.
    fn codec(&self) -> Json;
}

impl SpecificCodec for &Select<Bytes> {
    type Codec = Raw;
    fn codec(&self) -> Raw {
        Raw
    }
}

impl SpecificCodec for &Select<String> {
    type Codec = Text;
    fn codec(&self) -> Text {
        Text
    }
}

// No bound on `M` here: `Protobuf<NotAMessage>` must still choose protobuf, so that the error
// is "`NotAMessage: prost::Message` is not satisfied", not a confusing one about JSON.
#[cfg(feature = "protobuf")]
impl<M> SpecificCodec for &Select<crate::Protobuf<M>> {
    type Codec = crate::codec::Proto;
    fn codec(&self) -> crate::codec::Proto {
        crate::codec::Proto
    }
}

impl<T: ?Sized> JsonCodec for Select<T> {
    fn codec(&self) -> Json {
        Json
    }
}

/// The generator of `T`'s JSON Schema, when `T: schemars::JsonSchema` (tried first).
pub trait WithSchema {
    /// `Some` generator.
    fn schema(&self) -> Option<fn() -> serde_json::Value>;
}

/// No schema (the fallback).
pub trait WithoutSchema {
    /// `None`.
    fn schema(&self) -> Option<fn() -> serde_json::Value> {
        None
    }
}

#[cfg(feature = "schema")]
impl<T: schemars::JsonSchema> WithSchema for &Select<T> {
    fn schema(&self) -> Option<fn() -> serde_json::Value> {
        Some(schema_of::<T>)
    }
}

impl<T: ?Sized> WithoutSchema for Select<T> {}

/// `T`'s JSON Schema, draft 07, with its definitions under `/components/schemas` (where an
/// AsyncAPI document keeps them, so the `$ref`s resolve there).
#[cfg(feature = "schema")]
fn schema_of<T: schemars::JsonSchema>() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft07()
        .with(|settings| settings.definitions_path = "/components/schemas".into())
        .into_generator();
    generator.into_root_schema_for::<T>().to_value()
}

/// The payload's description, from the choices made on it.
pub fn payload_spec<T: ?Sized, C: Codec>(
    _codec: C,
    schema: Option<fn() -> serde_json::Value>,
) -> PayloadSpec {
    PayloadSpec {
        type_name: std::any::type_name::<T>(),
        kind: C::KIND,
        schema,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::PayloadKind;

    // The calls as `#[event_handler]` writes them, on concrete types.
    macro_rules! chosen {
        ($t:ty) => {{
            #[allow(unused_imports)]
            use super::{JsonCodec as _, SpecificCodec as _, WithSchema as _, WithoutSchema as _};
            payload_spec::<$t, _>(
                (&&Select::<$t>::NEW).codec(),
                (&&Select::<$t>::NEW).schema(),
            )
        }};
    }

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Order {
        id: u32,
    }

    /// A type named like one with a codec of its own is still JSON.
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Bytes(Vec<u8>);

    type Line = String;

    #[test]
    fn the_codec_follows_the_type_not_its_name() {
        assert_eq!(chosen!(bytes::Bytes).kind, PayloadKind::Bytes);
        assert_eq!(chosen!(String).kind, PayloadKind::Text);
        assert_eq!(chosen!(Line).kind, PayloadKind::Text);
        assert_eq!(chosen!(std::string::String).kind, PayloadKind::Text);
        assert_eq!(chosen!(Bytes).kind, PayloadKind::Json);
        assert_eq!(chosen!(Order).kind, PayloadKind::Json);
        assert_eq!(chosen!(Vec<String>).kind, PayloadKind::Json);
        assert_eq!(chosen!(serde_json::Value).kind, PayloadKind::Json);
        assert!(chosen!(Order).type_name.ends_with("::Order"));
    }

    #[cfg(feature = "protobuf")]
    #[test]
    fn protobuf_is_chosen_for_the_wrapper() {
        #[derive(Clone, PartialEq, prost::Message)]
        struct Reading {
            #[prost(string, tag = "1")]
            sensor: String,
        }
        assert_eq!(
            chosen!(crate::Protobuf<Reading>).kind,
            PayloadKind::Protobuf
        );
    }

    #[test]
    fn no_schema_without_json_schema() {
        assert!(chosen!(Order).schema.is_none());
    }

    #[cfg(feature = "schema")]
    #[test]
    fn a_schema_when_the_type_implements_json_schema() {
        #[derive(serde::Deserialize, schemars::JsonSchema)]
        #[allow(dead_code)]
        struct Line {
            sku: String,
        }
        #[derive(serde::Deserialize, schemars::JsonSchema)]
        #[allow(dead_code)]
        struct Cart {
            lines: Vec<Line>,
        }
        let schema = chosen!(Cart).schema.expect("Cart: JsonSchema")();
        assert_eq!(schema["title"], "Cart");
        assert_eq!(
            schema["properties"]["lines"]["items"]["$ref"],
            "#/components/schemas/Line"
        );
        assert_eq!(
            schema["components"]["schemas"]["Line"]["properties"]["sku"]["type"],
            "string"
        );
        assert!(chosen!(String).schema.is_some());
    }
}
