//! One delivery of an event function: start its span, run it through the
//! [pipeline](crate::pipeline), decide its fate, settle it with the server.
//!
//! The pipeline's onion (span, metrics, timeout and in-progress acks, panic guard, the user's
//! layers, decode and validate, the handler) is drawn in `pipeline`; this module is its
//! outermost ring for event functions: the breaker's record, `policy::decide`, and `settle`,
//! the one place acks are sent.

mod batch;
mod meta;
mod ordered;
mod outcome;

pub(crate) use meta::meta;
pub(crate) use ordered::Fate;
pub(crate) use outcome::{ack_kind, Outcome};

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use opentelemetry::context::FutureExt as _;
use opentelemetry::global::BoxedTracer;

use crate::app::{Application, Observer, Settlement};
use crate::breaker::{Admission, Gate, SharedBreaker};
use crate::codec::Incoming;
use crate::config::FunctionConfig;
use crate::delivered::Delivered;
use crate::dlq::{DeadLetters, Lettered};
use crate::handler::{EventMeta, Function, InputRef};
use crate::pipeline::{Call, Entry, Guard, Instruments, Messages, Output, Pipeline};
use crate::policy::{self, Failure, RetrySchedule, Verdict};
use crate::state::FunctionState;
use crate::telemetry::{self, DeliverySpan, SpanNames};

/// How a run was judged: its outcome, the dead-letter kind when one was stored, and the error
/// for the observer.
struct Judged {
    outcome: Outcome,
    dead_letter: Option<&'static str>,
    error: Option<String>,
}

/// What every delivery of one function shares.
pub(crate) struct Deliverer {
    state: Arc<FunctionState>,
    pipeline: Pipeline,
    schedule: RetrySchedule,
    breaker: SharedBreaker,
    dead_letters: DeadLetters,
    tracer: BoxedTracer,
    span_names: SpanNames,
    observer: Option<Observer>,
}

impl Deliverer {
    pub(crate) fn new(
        state: Arc<FunctionState>,
        js: jetstream::Context,
        auto_create_streams: bool,
        app: &Application,
    ) -> Self {
        let config = &state.config;
        let schedule = RetrySchedule::new(
            config.backoff.initial,
            config.backoff.max,
            RetrySchedule::DEFAULT_JITTER,
        )
        // The config layer only builds valid backoffs; fall back to the defaults regardless.
        .unwrap_or_else(|error| {
            tracing::error!(function = %config.name, %error, "invalid backoff; using 1s..60s");
            RetrySchedule::DEFAULT
        });
        let name: Arc<str> = Arc::from(config.name.as_str());
        let function = Arc::new(Function::new(
            name.clone(),
            js.clone(),
            auto_create_streams,
            app.state.clone(),
            crate::once_bucket::Steps::new(config.ack_wait, config.once_retention),
        ));
        let guard = Guard {
            timeout: config.timeout,
            keep_alive: (config.ack_wait / 2).max(Duration::from_millis(100)),
        };
        let entry = Entry::Event {
            single: config.handler,
            batch: config.batch_handler,
        };
        let instruments = Instruments {
            duration: state.metrics.duration.clone(),
            in_flight: Some(state.metrics.in_flight.clone()),
        };
        let breaker = SharedBreaker::new(
            name.clone(),
            config.breaker_failures,
            config.breaker_cooldown,
            state.metrics.breaker.clone(),
        );
        let dead_letters = DeadLetters {
            function: name,
            jetstream: js,
            subject: config.dlq.clone(),
            max_deliver: config.max_deliver,
            schedule: schedule.clone(),
            keep_alive: guard.keep_alive,
        };
        Self {
            pipeline: Pipeline::new(function, entry, &app.layers, guard, instruments),
            span_names: SpanNames::new(&config.subject),
            schedule,
            breaker,
            dead_letters,
            tracer: telemetry::tracer(),
            observer: app.observer.clone(),
            state,
        }
    }

    fn config(&self) -> &FunctionConfig {
        &self.state.config
    }

    fn name(&self) -> &Arc<str> {
        &self.pipeline.function().name
    }

    /// Runs one delivery to its end: the message is acked, NAKed or dead-lettered. `stream` is the
    /// name of the stream the function is bound to (one allocation for all its deliveries).
    ///
    /// Not an `async fn` calling others: the span is started here and the whole delivery is one
    /// future the loop boxes once, so the future is not moved level by level.
    pub(crate) fn deliver(
        self: Arc<Self>,
        message: Delivered,
        stream: Arc<str>,
    ) -> impl std::future::Future<Output = ()> + Send {
        let started = meta(&message, stream).map(|(meta, pending)| {
            self.state.observe_pending(pending);
            let span = DeliverySpan::start(&self.tracer, self.name(), &self.span_names, &meta);
            (meta, span)
        });
        let otel = match &started {
            Ok((_, span)) => span.otel.clone(),
            Err(_) => opentelemetry::Context::new(),
        };
        async move {
            let (meta, span) = match started {
                Ok(started) => started,
                Err(error) => {
                    tracing::warn!(function = %self.name(), %error, "not a JetStream delivery; releasing it");
                    self.settle(&message, Outcome::Released).await;
                    return;
                }
            };
            let attempt = meta.attempt;
            let call = self.call(&message, meta);
            let alive = std::slice::from_ref(&message);
            let result = self.pipeline.run(call, 1, alive).await;
            self.conclude(&message, attempt, result, &span).await;
            span.end();
        }
        .with_context(otel)
    }

    /// The pipeline's call for one message delivered with `meta`.
    fn call(&self, message: &Delivered, meta: EventMeta) -> Call {
        let input = InputRef::Message {
            stream: meta.stream.clone(),
            sequence: meta.stream_sequence,
        };
        let incoming = Incoming {
            payload: message.payload.clone(),
            meta,
        };
        let function = self.pipeline.function().clone();
        Call::new(function, input, Messages::One(incoming), Output::None)
    }

    /// Settles one message after its handler ran: records the run for the breaker, decides
    /// retry or dead letter by the policy, and tells the server.
    pub(super) async fn conclude(
        &self,
        message: &Delivered,
        attempt: u32,
        result: Result<(), Failure>,
        span: &DeliverySpan,
    ) {
        let judged = self.judge(message, attempt, result, span).await;
        if self.settle(message, judged.outcome).await {
            self.observe(message, attempt, judged);
        }
    }

    /// Records the run for the breaker and decides its outcome by the policy; a dead letter is
    /// stored (and only then the outcome says so). Nothing is told to the server yet.
    async fn judge(
        &self,
        message: &Delivered,
        attempt: u32,
        result: Result<(), Failure>,
        span: &DeliverySpan,
    ) -> Judged {
        let error = match (&self.observer, &result) {
            (Some(_), Err(failure)) => Some(failure.to_string()),
            _ => None,
        };
        match &result {
            Ok(()) => self.breaker.record(Some(true)),
            Err(failure) => {
                span.record_failure(failure);
                tracing::warn!(function = %self.name(), attempt, error = %failure, "{}", failure.log_message());
                // Permanent, undecodable and invalid messages say nothing of the dependency.
                self.breaker.record(failure.is_retryable().then_some(false));
            }
        }
        let verdict = policy::decide(
            result,
            attempt,
            self.config().max_deliver,
            &self.schedule,
            &mut rand::rng(),
        );
        let mut dead_letter = None;
        let outcome = match verdict {
            Verdict::Ack => Outcome::Acked,
            Verdict::Retry { delay } => Outcome::Retried { delay },
            // Boxed: the dead-letter path's future is kilobytes, and every delivery's future
            // would carry (and move) it.
            Verdict::DeadLetter { kind, error } => {
                match Box::pin(self.dead_letters.letter(message, kind, &error, attempt)).await {
                    Lettered::Stored => {
                        dead_letter = Some(kind.as_str());
                        Outcome::DeadLettered
                    }
                    Lettered::Kept { delay } => Outcome::Retried { delay },
                }
            }
        };
        Judged {
            outcome,
            dead_letter,
            error,
        }
    }

    /// Tells the observer (the test harness), if any, how a delivery was settled.
    fn observe(&self, message: &Delivered, attempt: u32, judged: Judged) {
        let Some(observer) = &self.observer else {
            return;
        };
        let Judged {
            outcome,
            dead_letter,
            error,
        } = judged;
        let Ok(info) = message.info() else { return };
        observer(Settlement {
            function: self.name().clone(),
            stream: info.stream.to_owned(),
            sequence: info.stream_sequence,
            attempt,
            dead_letter,
            final_: matches!(outcome, Outcome::Acked | Outcome::DeadLettered),
            error,
        });
    }

    /// What the loop should pull now.
    pub(crate) fn gate(&self) -> Gate {
        self.breaker.gate()
    }

    /// May this just-arrived message start?
    pub(crate) fn admit(&self) -> Admission {
        self.breaker.admit()
    }

    /// Tells the server the outcome and counts it; false when the ack could not be sent.
    pub(crate) async fn settle(&self, message: &Delivered, outcome: Outcome) -> bool {
        if let Err(error) = message.ack_with(ack_kind(outcome)).await {
            // The server redelivers an unacknowledged message after ack_wait: nothing is lost.
            tracing::warn!(function = %self.name(), %error, ?outcome, "ack not sent; the server will redeliver");
            return false;
        }
        let metrics = &self.state.metrics;
        match outcome {
            Outcome::Acked => metrics.acked.inc(),
            Outcome::Retried { .. } => metrics.retried.inc(),
            Outcome::DeadLettered => metrics.dead_lettered.inc(),
            Outcome::Released | Outcome::Deferred { .. } => 0,
        };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `F` a closure returns (never called).
    fn future_size<A, F: FnOnce(A) -> Fut, Fut>(_: &F) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// Every delivery's future is allocated and moved once per message: the dead-letter path
    /// and the timers of a slow handler are boxed apart, so a delivery stays small (it was
    /// 8 KiB, and moving it cost more than a microsecond per message).
    #[test]
    fn a_delivery_future_stays_small() {
        type M = Delivered;
        let deliver = |(d, m, s): (Arc<Deliverer>, M, Arc<str>)| d.deliver(m, s);
        let conclude = |(d, m, s): (&'static Deliverer, &'static M, &'static DeliverySpan)| {
            d.conclude(m, 1, Ok(()), s)
        };
        let (deliver, conclude) = (future_size(&deliver), future_size(&conclude));
        assert!(deliver <= 2048, "a delivery's future is {deliver} bytes");
        assert!(conclude <= 1024, "settling's future is {conclude} bytes");
    }
}
