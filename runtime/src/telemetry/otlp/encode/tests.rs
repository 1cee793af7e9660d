//! The direct encoding against `opentelemetry-proto`'s (the generic path of
//! `opentelemetry-otlp`): the same message, decoded field by field, and the same bytes.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use opentelemetry_sdk::Resource;
use proptest::prelude::*;
use prost::Message;

use super::{request, EncodedResource};

/// What `opentelemetry-otlp` sends for `spans`.
fn generic(resource: &Resource, spans: &[SpanData]) -> ExportTraceServiceRequest {
    let resource = ResourceAttributesWithSchema::from(resource);
    ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(spans.to_vec(), &resource),
    }
}

fn assert_same(resource: &Resource, spans: &[SpanData]) {
    let ours = request(&EncodedResource::new(resource), spans);
    let expected = generic(resource, spans);
    let decoded = ExportTraceServiceRequest::decode(ours.as_slice()).expect("decodes");
    assert_eq!(decoded, expected);
    assert_eq!(ours, expected.encode_to_vec(), "byte for byte");
}

fn context(trace: u128, span: u64, state: TraceState, remote: bool) -> SpanContext {
    SpanContext::new(
        TraceId::from(trace),
        SpanId::from(span),
        TraceFlags::SAMPLED,
        remote,
        state,
    )
}

fn span(scope: InstrumentationScope, attributes: Vec<KeyValue>) -> SpanData {
    let start = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
    SpanData {
        span_context: context(
            0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
            0x00f0_67aa_0ba9_02b7,
            TraceState::NONE,
            false,
        ),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Consumer,
        name: Cow::Borrowed("orders.created process"),
        start_time: start,
        end_time: start + Duration::from_micros(42),
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: scope,
    }
}

fn delivery_attributes() -> Vec<KeyValue> {
    vec![
        KeyValue::new("messaging.system", "nats"),
        KeyValue::new("messaging.operation.type", "process"),
        KeyValue::new("messaging.destination.name", "orders.created"),
        KeyValue::new("messaging.consumer.group.name", "on_order"),
        KeyValue::new("messaging.message.delivery_attempt", 1),
        KeyValue::new("messaging.nats.stream", "ORDERS"),
        KeyValue::new("messaging.nats.stream_sequence", 981_723),
    ]
}

#[test]
fn a_delivery_span_as_jetfn_makes_it() {
    let resource = Resource::builder().with_service_name("shop").build();
    let spans: Vec<SpanData> = (0..3)
        .map(|_| {
            span(
                InstrumentationScope::builder("jetfn").build(),
                delivery_attributes(),
            )
        })
        .collect();
    assert_same(&resource, &spans);
}

#[test]
fn every_field_and_kind_of_value() {
    let resource = Resource::builder()
        .with_service_name("shop")
        .with_attribute(KeyValue::new("deployment.environment", "prod"))
        .with_schema_url(
            [KeyValue::new("host.cpus", 2)],
            "https://opentelemetry.io/schemas/1.30.0",
        )
        .build();
    let plain = InstrumentationScope::builder("jetfn").build();
    let rich = InstrumentationScope::builder("user.handler")
        .with_version("1.2.3")
        .with_schema_url("https://example.com/schema")
        .with_attributes([KeyValue::new("scope.attr", true)])
        .build();
    let values = vec![
        KeyValue::new("empty", ""),
        KeyValue::new("text", "ünïcode ✓"),
        KeyValue::new("yes", true),
        KeyValue::new("no", false),
        KeyValue::new("zero", 0),
        KeyValue::new("negative", -42),
        KeyValue::new("min", i64::MIN),
        KeyValue::new("float", 1.5),
        KeyValue::new("float.zero", 0.0),
        KeyValue::new("float.negative.zero", -0.0),
        KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
        KeyValue::new("ints", Value::Array(Array::I64(vec![0, -1, i64::MAX]))),
        KeyValue::new("floats", Value::Array(Array::F64(vec![0.0, -2.5]))),
        KeyValue::new(
            "strings",
            Value::Array(Array::String(vec![
                StringValue::from(""),
                StringValue::from("a"),
            ])),
        ),
        KeyValue::new("no.strings", Value::Array(Array::String(vec![]))),
    ];
    let mut child = span(rich.clone(), values);
    child.parent_span_id = SpanId::from(0x1122_3344_5566_7788);
    child.parent_span_is_remote = true;
    child.span_context = context(
        7,
        9,
        TraceState::from_key_value([("vendor", "x"), ("other", "y")]).expect("trace state"),
        false,
    );
    child.span_kind = SpanKind::Internal;
    child.dropped_attributes_count = 3;
    child.status = Status::error("handler failed: timeout after 30s");
    child.events.events = vec![
        Event::new(
            "retry",
            SystemTime::UNIX_EPOCH + Duration::from_secs(5),
            vec![KeyValue::new("attempt", 2)],
            1,
        ),
        Event::new("", SystemTime::UNIX_EPOCH, vec![], 0),
    ];
    child.events.dropped_count = 4;
    child.links.links = vec![
        Link::new(
            context(1, 2, TraceState::NONE, true),
            vec![KeyValue::new("k", "v")],
            2,
        ),
        Link::with_context(context(3, 4, TraceState::NONE, false)),
    ];
    child.links.dropped_count = 5;
    let mut ok = span(plain.clone(), vec![]);
    ok.status = Status::Ok;
    ok.span_kind = SpanKind::Server;
    let mut others = vec![span(plain.clone(), delivery_attributes()), child, ok];
    for kind in [SpanKind::Client, SpanKind::Producer] {
        let mut other = span(plain.clone(), vec![]);
        other.span_kind = kind;
        others.push(other);
    }
    // Scopes interleaved: grouped by scope in order of first appearance.
    others.push(span(rich, vec![KeyValue::new("late", 1)]));
    others.push(span(plain, vec![]));
    assert_same(&resource, &others);
}

#[test]
fn an_empty_batch() {
    assert_same(&Resource::builder_empty().build(), &[]);
}

fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::I64),
        // NaN never equals itself: the comparison would fail for a correct encoding.
        any::<f64>()
            .prop_filter("not NaN", |f| !f.is_nan())
            .prop_map(Value::F64),
        ".{0,40}".prop_map(|s| Value::String(s.into())),
        proptest::collection::vec(any::<i64>(), 0..5).prop_map(|v| Value::Array(Array::I64(v))),
        proptest::collection::vec(".{0,8}", 0..5).prop_map(|v| Value::Array(Array::String(
            v.into_iter().map(StringValue::from).collect()
        ))),
    ]
}

proptest! {
    // Like the hostile-input properties: no regression files; the deterministic tests above
    // hold the cases that once failed.
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_attributes_name_and_times(
        name in ".{0,60}",
        attributes in proptest::collection::vec((".{0,30}", any_value()), 0..12),
        start in any::<u64>(),
        took in any::<u32>(),
        trace in any::<u128>().prop_filter("valid", |t| *t != 0),
        span_id in any::<u64>().prop_filter("valid", |s| *s != 0),
        parent in any::<u64>(),
        remote in any::<bool>(),
    ) {
        let start = SystemTime::UNIX_EPOCH + Duration::from_nanos(start / 2);
        let mut data = span(
            InstrumentationScope::builder("jetfn").build(),
            attributes.into_iter().map(|(k, v)| KeyValue::new(k, v)).collect(),
        );
        data.name = Cow::Owned(name);
        data.start_time = start;
        data.end_time = start + Duration::from_nanos(u64::from(took));
        data.span_context = context(trace, span_id, TraceState::NONE, false);
        data.parent_span_id = SpanId::from(parent);
        data.parent_span_is_remote = remote;
        let resource = Resource::builder().with_service_name("p").build();
        let ours = request(&EncodedResource::new(&resource), std::slice::from_ref(&data));
        let expected = generic(&resource, &[data]);
        prop_assert_eq!(ExportTraceServiceRequest::decode(ours.as_slice()).ok(), Some(expected.clone()));
        prop_assert_eq!(ours, expected.encode_to_vec());
    }
}
