//! NATS headers: W3C trace context (reading a message's `traceparent`, writing the current
//! context into a message about to be published), and copying headers but some.
//!
//! Below the handler (whose `Context::publish` injects) and telemetry (whose delivery span
//! extracts its parent), so both use one implementation.

use async_nats::{HeaderMap, HeaderName};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The W3C trace context header, made once: looking a `&str` name up makes a `HeaderName` of it,
/// an allocation per delivery (a clone of this one is not).
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The trace context the headers carry; an empty context when they carry none.
pub(crate) fn extract(headers: &HeaderMap) -> opentelemetry::Context {
    if !headers.is_empty() && headers.get(TRACEPARENT.clone()).is_some() {
        TraceContextPropagator::new().extract(&HeaderExtractor(headers))
    } else {
        opentelemetry::Context::new()
    }
}

/// Writes the current OpenTelemetry context (`traceparent`, `tracestate`) into `headers`: during
/// a delivery, that of the delivery span or of a `tracing` span the handler entered.
pub(crate) fn inject_current(headers: &mut HeaderMap) {
    let context = opentelemetry::Context::current();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

/// A copy of `headers` without those whose name `leave_out` says.
pub(crate) fn headers_except(
    headers: Option<&HeaderMap>,
    leave_out: impl Fn(&str) -> bool,
) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for (name, values) in headers.into_iter().flat_map(HeaderMap::iter) {
        if leave_out(name.as_ref()) {
            continue;
        }
        for value in values {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|value| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value);
    }
}
