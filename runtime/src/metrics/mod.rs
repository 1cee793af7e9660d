//! Prometheus metrics, one registry per runtime.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `jetfn_messages_total` | counter | `function`, `outcome` (`ack`, `retry`, `dlq`) |
//! | `jetfn_requests_total` | counter: requests answered by request functions | `function`, `outcome` (`ok`, `error`) |
//! | `jetfn_handler_duration_seconds` | histogram | `function` |
//! | `jetfn_batch_size` | histogram: events per call of a batch function | `function` |
//! | `jetfn_in_flight` | gauge: handler runs now | `function` |
//! | `jetfn_workers` | gauge: concurrent runs allowed now | `function` |
//! | `jetfn_consumer_pending` | gauge: the consumer's `num_pending` | `function` |
//! | `jetfn_ordered_keys_held` | gauge: keys of an ordered function held behind a failing message (only ordered functions have it) | `function` |
//! | `jetfn_breaker_state` | gauge: 0 closed, 1 half-open, 2 open | `function` |
//! | `jetfn_ready` | gauge: 1 when this process is ready for the function (connected, its consumer bound, not draining) | `function` |
//! | `jetfn_nats_connected` | gauge: 1 when connected | — |
//!
//! `/metrics` writes OpenMetrics or the classic text format 0.0.4, as the scrape's `Accept`
//! header asks ([`Format::negotiate`]); `prometheus-client` encodes only OpenMetrics, and
//! [`classic`] rewrites that. The gauges that describe the process as a whole
//! (`jetfn_ready`, `jetfn_nats_connected`) are set when scraped: no work per delivery.

mod classic;
mod negotiate;

pub(crate) use negotiate::Format;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabel {
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    function: String,
    outcome: &'static str,
}

/// The counter of `function`'s `outcome` in `family`, looked up once (a message needs none).
fn outcome_counter(
    family: &Family<OutcomeLabels, Counter>,
    function: &str,
    outcome: &'static str,
) -> Counter {
    family
        .get_or_create(&OutcomeLabels {
            function: function.to_owned(),
            outcome,
        })
        .clone()
}

/// The runtime's metric families.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    messages: Family<OutcomeLabels, Counter>,
    requests: Family<OutcomeLabels, Counter>,
    duration: Family<FunctionLabel, Histogram>,
    batch_size: Family<FunctionLabel, Histogram>,
    in_flight: Family<FunctionLabel, Gauge>,
    workers: Family<FunctionLabel, Gauge>,
    pending: Family<FunctionLabel, Gauge>,
    breaker: Family<FunctionLabel, Gauge>,
    ready: Family<FunctionLabel, Gauge>,
    keys_held: Family<FunctionLabel, Gauge>,
    pub(crate) nats_connected: Gauge,
}

/// One function's metric handles, looked up once so the per-message path does no label lookup.
#[derive(Debug, Clone)]
pub(crate) struct FunctionMetrics {
    pub(crate) acked: Counter,
    pub(crate) retried: Counter,
    pub(crate) dead_lettered: Counter,
    pub(crate) duration: Histogram,
    pub(crate) batch_size: Histogram,
    pub(crate) in_flight: Gauge,
    pub(crate) workers: Gauge,
    pub(crate) pending: Gauge,
    pub(crate) breaker: Gauge,
    /// Set when `/metrics` is scraped, never per delivery.
    pub(crate) ready: Gauge,
    /// An ordered function's keys held behind a failing message (a detached gauge for any
    /// other function: only ordered functions export it).
    pub(crate) keys_held: Gauge,
}

/// One request function's metric handles.
#[derive(Debug, Clone)]
pub(crate) struct RequestMetrics {
    pub(crate) ok: Counter,
    pub(crate) error: Counter,
    pub(crate) duration: Histogram,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let messages = Family::<OutcomeLabels, Counter>::default();
        let requests = Family::<OutcomeLabels, Counter>::default();
        let duration = Family::<FunctionLabel, Histogram>::new_with_constructor(|| {
            // 100µs .. ~105s
            Histogram::new(exponential_buckets(0.0001, 2.0, 21))
        });
        let batch_size = Family::<FunctionLabel, Histogram>::new_with_constructor(|| {
            // 1 .. 4096
            Histogram::new(exponential_buckets(1.0, 2.0, 13))
        });
        let in_flight = Family::<FunctionLabel, Gauge>::default();
        let workers = Family::<FunctionLabel, Gauge>::default();
        let pending = Family::<FunctionLabel, Gauge>::default();
        let breaker = Family::<FunctionLabel, Gauge>::default();
        let ready = Family::<FunctionLabel, Gauge>::default();
        let keys_held = Family::<FunctionLabel, Gauge>::default();
        let nats_connected = Gauge::default();
        registry.register(
            "jetfn_messages",
            "Messages settled, by outcome: ack, retry, dlq",
            messages.clone(),
        );
        registry.register(
            "jetfn_requests",
            "Requests answered by request functions, by outcome: ok, error",
            requests.clone(),
        );
        registry.register(
            "jetfn_handler_duration_seconds",
            "Handler run time in seconds",
            duration.clone(),
        );
        registry.register(
            "jetfn_batch_size",
            "Events per call of a batch function",
            batch_size.clone(),
        );
        registry.register(
            "jetfn_in_flight",
            "Handler runs in progress",
            in_flight.clone(),
        );
        registry.register(
            "jetfn_workers",
            "Concurrent handler runs allowed",
            workers.clone(),
        );
        registry.register(
            "jetfn_consumer_pending",
            "Messages in the stream not yet delivered to the consumer (num_pending)",
            pending.clone(),
        );
        registry.register(
            "jetfn_breaker_state",
            "Circuit breaker: 0 closed, 1 half-open, 2 open",
            breaker.clone(),
        );
        registry.register(
            "jetfn_ready",
            "1 while this process is ready for the function: connected, consumer bound, not draining",
            ready.clone(),
        );
        registry.register(
            "jetfn_ordered_keys_held",
            "Keys of an ordered function held behind a failing message",
            keys_held.clone(),
        );
        registry.register(
            "jetfn_nats_connected",
            "1 while connected to NATS",
            nats_connected.clone(),
        );
        Self {
            registry,
            messages,
            requests,
            duration,
            batch_size,
            in_flight,
            workers,
            pending,
            breaker,
            ready,
            keys_held,
            nats_connected,
        }
    }

    /// The handles of a function; `ordered` ones also export `jetfn_ordered_keys_held`.
    pub(crate) fn function(&self, name: &str, ordered: bool) -> FunctionMetrics {
        let label = FunctionLabel {
            function: name.to_owned(),
        };
        let outcome = |outcome| outcome_counter(&self.messages, name, outcome);
        FunctionMetrics {
            acked: outcome("ack"),
            retried: outcome("retry"),
            dead_lettered: outcome("dlq"),
            duration: self.duration.get_or_create(&label).clone(),
            batch_size: self.batch_size.get_or_create(&label).clone(),
            in_flight: self.in_flight.get_or_create(&label).clone(),
            workers: self.workers.get_or_create(&label).clone(),
            pending: self.pending.get_or_create(&label).clone(),
            breaker: self.breaker.get_or_create(&label).clone(),
            ready: self.ready.get_or_create(&label).clone(),
            keys_held: if ordered {
                self.keys_held.get_or_create(&label).clone()
            } else {
                Gauge::default()
            },
        }
    }

    pub(crate) fn request(&self, name: &str) -> RequestMetrics {
        let outcome = |outcome| outcome_counter(&self.requests, name, outcome);
        RequestMetrics {
            ok: outcome("ok"),
            error: outcome("error"),
            duration: self
                .duration
                .get_or_create(&FunctionLabel {
                    function: name.to_owned(),
                })
                .clone(),
        }
    }

    /// The exposition in `format`.
    pub(crate) fn encode(&self, format: Format) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        match format {
            Format::OpenMetrics => text,
            Format::Text => classic::from_openmetrics(&text),
        }
    }
}
