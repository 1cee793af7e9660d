//! OTLP/protobuf encoding of a batch of spans, written straight from the SDK's `SpanData` into
//! the request body: an `ExportTraceServiceRequest` with one `ResourceSpans` and a `ScopeSpans`
//! per instrumentation scope, the message `opentelemetry-proto` would build (the tests decode
//! both and compare), without building that message first. The generic path converts every
//! span into owned protobuf structs (a `String` per attribute key and value, a `Vec` per id),
//! encodes them, then frees them all: most of an exported span's cost.
//!
//! Field numbers are those of `opentelemetry/proto/trace/v1/trace.proto`,
//! `common/v1/common.proto` and `resource/v1/resource.proto`, written in ascending order (as
//! prost does: the bytes are the same).

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::Resource;

/// `SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK` and `..._IS_REMOTE_MASK`.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// The encoded `Resource` message of the spans' resource, and its schema URL: made once, copied
/// into every request.
#[derive(Debug, Clone, Default)]
pub(crate) struct EncodedResource {
    message: Vec<u8>,
    schema_url: String,
}

impl EncodedResource {
    pub(crate) fn new(resource: &Resource) -> Self {
        let mut message = Vec::new();
        for (key, value) in resource.iter() {
            wire::message(&mut message, 1, |buf| key_value(buf, key.as_str(), value));
        }
        Self {
            message,
            schema_url: resource.schema_url().unwrap_or_default().to_owned(),
        }
    }
}

/// The body of an OTLP/HTTP trace export of `spans` (`application/x-protobuf`).
pub(crate) fn request(resource: &EncodedResource, spans: &[SpanData]) -> Vec<u8> {
    // Spans grouped by scope, in order of first appearance; a batch has one or two scopes.
    let mut scopes: Vec<(&InstrumentationScope, Vec<&SpanData>)> = Vec::new();
    for span in spans {
        let scope = &span.instrumentation_scope;
        match scopes.iter_mut().find(|(known, _)| *known == scope) {
            Some((_, members)) => members.push(span),
            None => scopes.push((scope, vec![span])),
        }
    }
    let mut buf = Vec::with_capacity(64 + spans.len() * 320);
    // ExportTraceServiceRequest.resource_spans
    wire::message(&mut buf, 1, |buf| {
        // ResourceSpans.resource
        wire::bytes_always(buf, 1, &resource.message);
        for (scope, members) in &scopes {
            // ResourceSpans.scope_spans
            wire::message(buf, 2, |buf| {
                // ScopeSpans.scope
                wire::message(buf, 1, |buf| instrumentation_scope(buf, scope));
                for span in members {
                    // ScopeSpans.spans
                    wire::message(buf, 2, |buf| encode_span(buf, span));
                }
                wire::string(buf, 3, scope.schema_url().unwrap_or_default());
            });
        }
        wire::string(buf, 3, &resource.schema_url);
    });
    buf
}

fn instrumentation_scope(buf: &mut Vec<u8>, scope: &InstrumentationScope) {
    wire::string(buf, 1, scope.name());
    wire::string(buf, 2, scope.version().unwrap_or_default());
    for attribute in scope.attributes() {
        wire::message(buf, 3, |buf| attribute_key_value(buf, attribute));
    }
}

fn encode_span(buf: &mut Vec<u8>, span: &SpanData) {
    let context = &span.span_context;
    wire::bytes(buf, 1, &context.trace_id().to_bytes());
    wire::bytes(buf, 2, &context.span_id().to_bytes());
    trace_state(buf, 3, context);
    if span.parent_span_id != opentelemetry::trace::SpanId::INVALID {
        wire::bytes(buf, 4, &span.parent_span_id.to_bytes());
    }
    wire::string(buf, 5, &span.name);
    wire::uint(buf, 6, kind(&span.span_kind));
    wire::fixed64(buf, 7, nanos(span.start_time));
    wire::fixed64(buf, 8, nanos(span.end_time));
    for attribute in &span.attributes {
        wire::message(buf, 9, |buf| attribute_key_value(buf, attribute));
    }
    wire::uint(buf, 10, u64::from(span.dropped_attributes_count));
    for event in span.events.iter() {
        wire::message(buf, 11, |buf| {
            wire::fixed64(buf, 1, nanos(event.timestamp));
            wire::string(buf, 2, &event.name);
            for attribute in &event.attributes {
                wire::message(buf, 3, |buf| attribute_key_value(buf, attribute));
            }
            wire::uint(buf, 4, u64::from(event.dropped_attributes_count));
        });
    }
    wire::uint(buf, 12, u64::from(span.events.dropped_count));
    for link in span.links.iter() {
        wire::message(buf, 13, |buf| {
            let context = &link.span_context;
            wire::bytes(buf, 1, &context.trace_id().to_bytes());
            wire::bytes(buf, 2, &context.span_id().to_bytes());
            trace_state(buf, 3, context);
            for attribute in &link.attributes {
                wire::message(buf, 4, |buf| attribute_key_value(buf, attribute));
            }
            wire::uint(buf, 5, u64::from(link.dropped_attributes_count));
            wire::fixed32(buf, 6, flags(context, context.is_remote()));
        });
    }
    wire::uint(buf, 14, u64::from(span.links.dropped_count));
    // Status (always present, as the generic path sends it).
    wire::message(buf, 15, |buf| {
        let code = match &span.status {
            Status::Unset => 0,
            Status::Ok => 1,
            Status::Error { description } => {
                wire::string(buf, 2, description);
                2
            }
        };
        wire::uint(buf, 3, code);
    });
    wire::fixed32(buf, 16, flags(context, span.parent_span_is_remote));
}

/// `trace_state` as its W3C header, when there is one (no allocation for the usual empty one).
fn trace_state(buf: &mut Vec<u8>, field: u32, context: &SpanContext) {
    let state = context.trace_state();
    if *state != opentelemetry::trace::TraceState::NONE {
        wire::string(buf, field, &state.header());
    }
}

/// W3C trace flags plus the OTLP "is remote" bits.
fn flags(context: &SpanContext, remote: bool) -> u32 {
    let mut flags = u32::from(context.trace_flags().to_u8()) | HAS_IS_REMOTE;
    if remote {
        flags |= IS_REMOTE;
    }
    flags
}

/// `Span.SpanKind`.
fn kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    })
}

fn attribute_key_value(buf: &mut Vec<u8>, attribute: &KeyValue) {
    key_value(buf, attribute.key.as_str(), &attribute.value);
}

/// `KeyValue { key, value: AnyValue }`.
fn key_value(buf: &mut Vec<u8>, key: &str, value: &Value) {
    wire::string(buf, 1, key);
    wire::message(buf, 2, |buf| any_value(buf, value));
}

/// The `AnyValue` oneof: the set member is written even when it holds its default.
fn any_value(buf: &mut Vec<u8>, value: &Value) {
    match value {
        Value::String(text) => wire::bytes_always(buf, 1, text.as_str().as_bytes()),
        Value::Bool(flag) => wire::uint_always(buf, 2, u64::from(*flag)),
        Value::I64(number) => wire::int64_always(buf, 3, *number),
        Value::F64(number) => wire::double_always(buf, 4, *number),
        Value::Array(array) => wire::message(buf, 5, |buf| array_value(buf, array)),
        // A kind of value added to the API later: its text.
        other => wire::bytes_always(buf, 1, other.as_str().as_bytes()),
    }
}

/// `ArrayValue { values: repeated AnyValue }`.
fn array_value(buf: &mut Vec<u8>, array: &Array) {
    let mut each = |value: Value| wire::message(buf, 1, |buf| any_value(buf, &value));
    match array {
        Array::Bool(values) => values.iter().for_each(|v| each(Value::Bool(*v))),
        Array::I64(values) => values.iter().for_each(|v| each(Value::I64(*v))),
        Array::F64(values) => values.iter().for_each(|v| each(Value::F64(*v))),
        Array::String(values) => values.iter().for_each(|v| each(Value::String(v.clone()))),
        other => each(Value::String(other.to_string().into())),
    }
}

/// Protocol buffers' wire format: proto3 scalars are left out when they hold their default,
/// except where the caller says `_always` (a oneof member, a message's bytes).
mod wire {
    const VARINT: u64 = 0;
    const FIXED64: u64 = 1;
    const LENGTH_DELIMITED: u64 = 2;
    const FIXED32: u64 = 5;

    fn varint(buf: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            buf.push((value as u8) | 0x80);
            value >>= 7;
        }
        buf.push(value as u8);
    }

    fn key(buf: &mut Vec<u8>, field: u32, wire_type: u64) {
        varint(buf, (u64::from(field) << 3) | wire_type);
    }

    pub(super) fn bytes_always(buf: &mut Vec<u8>, field: u32, data: &[u8]) {
        key(buf, field, LENGTH_DELIMITED);
        varint(buf, data.len() as u64);
        buf.extend_from_slice(data);
    }

    pub(super) fn bytes(buf: &mut Vec<u8>, field: u32, data: &[u8]) {
        if !data.is_empty() {
            bytes_always(buf, field, data);
        }
    }

    pub(super) fn string(buf: &mut Vec<u8>, field: u32, text: &str) {
        bytes(buf, field, text.as_bytes());
    }

    pub(super) fn uint_always(buf: &mut Vec<u8>, field: u32, value: u64) {
        key(buf, field, VARINT);
        varint(buf, value);
    }

    pub(super) fn uint(buf: &mut Vec<u8>, field: u32, value: u64) {
        if value != 0 {
            uint_always(buf, field, value);
        }
    }

    /// An `int64`: negative numbers as their two's complement, ten bytes.
    pub(super) fn int64_always(buf: &mut Vec<u8>, field: u32, value: i64) {
        uint_always(buf, field, value as u64);
    }

    pub(super) fn double_always(buf: &mut Vec<u8>, field: u32, value: f64) {
        key(buf, field, FIXED64);
        buf.extend_from_slice(&value.to_le_bytes());
    }

    pub(super) fn fixed64(buf: &mut Vec<u8>, field: u32, value: u64) {
        if value != 0 {
            key(buf, field, FIXED64);
            buf.extend_from_slice(&value.to_le_bytes());
        }
    }

    pub(super) fn fixed32(buf: &mut Vec<u8>, field: u32, value: u32) {
        if value != 0 {
            key(buf, field, FIXED32);
            buf.extend_from_slice(&value.to_le_bytes());
        }
    }

    /// An embedded message (always written, even when empty): `body` writes its fields at the
    /// end of `buf`, then the key and the length are moved in front of them.
    pub(super) fn message(buf: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
        let start = buf.len();
        body(buf);
        let len = (buf.len() - start) as u64;
        let mut head = [0u8; 20];
        let mut used = 0;
        for mut value in [(u64::from(field) << 3) | LENGTH_DELIMITED, len] {
            while value >= 0x80 {
                head[used] = (value as u8) | 0x80;
                used += 1;
                value >>= 7;
            }
            head[used] = value as u8;
            used += 1;
        }
        buf.extend_from_slice(&head[..used]);
        buf[start..].rotate_right(used);
    }
}

#[cfg(test)]
mod tests;
