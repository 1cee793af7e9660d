//! One delivery: run the handler (bounded, panic-proof, kept alive with in-progress acks),
//! decide its fate, settle it with the server.
//!
//! The layers around the user's handler, outermost first:
//!
//! ```text
//! settle (ack / NAK with delay / dead-letter then ack)   <- the one place acks are sent
//!  └ decide (policy::decide: failure kind x attempt -> verdict)
//!    └ timeout (function `timeout`) + in-progress acks every ack_wait / 2
//!      └ catch_unwind (a panic is a retryable failure)
//!        └ decode (JSON / CloudEvents -> Event<T>; failure = Decode)
//!          └ the user's async fn
//! ```

mod batch;

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, AckKind};
use futures::FutureExt;
use opentelemetry::context::FutureExt as _;
use opentelemetry::global::BoxedTracer;
use tokio::time::Instant;

use crate::breaker::{Admission, Breaker, Gate, Transition};
use crate::codec::Incoming;
use crate::config::FunctionConfig;
use crate::dlq::{self, Provenance};
use crate::handler::{Context, EventMeta, Function, InputRef};
use crate::policy::{self, DeadLetterKind, Failure, RetrySchedule, Verdict};
use crate::state::FunctionState;
use crate::telemetry::{self, DeliverySpan, SpanNames};

/// How a delivery was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The handler succeeded.
    Acked,
    /// The handler failed and will be retried after `delay`.
    Retried { delay: Duration },
    /// The message is stored in the dead-letter stream.
    DeadLettered,
    /// Fetched but never started (the process is draining): hand it back at once.
    Released,
    /// Fetched while the breaker is open: hand it back for after the cool-down.
    Deferred { delay: Duration },
}

/// The one place that maps an outcome to what the server is told.
pub(crate) fn ack_kind(outcome: Outcome) -> AckKind {
    match outcome {
        Outcome::Acked | Outcome::DeadLettered => AckKind::Ack,
        Outcome::Retried { delay } | Outcome::Deferred { delay } => AckKind::Nak(Some(delay)),
        Outcome::Released => AckKind::Nak(None),
    }
}

/// What every delivery of one function shares.
pub(crate) struct Deliverer {
    state: Arc<FunctionState>,
    /// What each delivery's [`Context`] shares (the function's name among it).
    shared: Arc<Function>,
    schedule: RetrySchedule,
    /// `None` when the breaker is off (`breaker_failures = 0`): no bookkeeping per message.
    breaker: Option<Mutex<Breaker>>,
    tracer: BoxedTracer,
    span_names: SpanNames,
}

impl Deliverer {
    pub(crate) fn new(
        state: Arc<FunctionState>,
        js: jetstream::Context,
        auto_create_streams: bool,
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
        let breaker = (config.breaker_failures > 0).then(|| {
            Mutex::new(Breaker::new(
                config.breaker_failures,
                config.breaker_cooldown,
            ))
        });
        let name: Arc<str> = Arc::from(config.name.as_str());
        Self {
            shared: Arc::new(Function {
                name,
                jetstream: js,
                auto_create_streams,
            }),
            span_names: SpanNames::new(&state.config.subject),
            state,
            schedule,
            breaker,
            tracer: telemetry::tracer(),
        }
    }

    fn config(&self) -> &FunctionConfig {
        &self.state.config
    }

    /// Runs one delivery to its end: the message is acked, NAKed or dead-lettered. `stream` is the
    /// name of the stream the function is bound to (one allocation for all its deliveries).
    ///
    /// Not an `async fn` calling others: the span is started here and the whole delivery is one
    /// future the loop boxes once, so the future (kilobytes) is not moved level by level.
    pub(crate) fn deliver(
        self: Arc<Self>,
        message: jetstream::Message,
        stream: Arc<str>,
    ) -> impl std::future::Future<Output = ()> + Send {
        let started = meta(&message, stream).map(|(meta, pending)| {
            self.state
                .metrics
                .pending
                .set(i64::try_from(pending).unwrap_or(i64::MAX));
            let span =
                DeliverySpan::start(&self.tracer, &self.shared.name, &self.span_names, &meta);
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
                    tracing::warn!(function = %self.shared.name, %error, "not a JetStream delivery; releasing it");
                    self.settle(&message, Outcome::Released).await;
                    return;
                }
            };
            let attempt = meta.attempt;
            let ctx = Context::new(
                self.shared.clone(),
                InputRef::Message {
                    stream: meta.stream.clone(),
                    sequence: meta.stream_sequence,
                },
            );
            let incoming = Incoming {
                payload: message.payload.clone(),
                meta,
            };
            let metrics = &self.state.metrics;
            metrics.in_flight.inc();
            let started = Instant::now();
            let handler = self.config().handler;
            let result = self
                .guarded(|| handler(ctx, incoming), std::slice::from_ref(&message))
                .await
                .and_then(|result| result.map_err(Failure::Handler));
            metrics.duration.observe(started.elapsed().as_secs_f64());
            metrics.in_flight.dec();
            self.conclude(&message, attempt, result, &span).await;
            span.end();
        }
        .with_context(otel)
    }

    /// Settles one message after its handler ran: records the run for the breaker, decides
    /// retry or dead letter by the policy, and tells the server.
    pub(super) async fn conclude(
        &self,
        message: &jetstream::Message,
        attempt: u32,
        result: Result<(), Failure>,
        span: &DeliverySpan,
    ) {
        match &result {
            Ok(()) => self.record(Some(true)),
            Err(failure) => {
                span.record_failure(failure);
                tracing::warn!(function = %self.shared.name, attempt, error = %failure, "{}", failure.log_message());
                // Permanent and decode errors are about the message, not the dependency.
                self.record(failure.is_retryable().then_some(false));
            }
        }
        let verdict = policy::decide(
            result,
            attempt,
            self.config().max_deliver,
            &self.schedule,
            &mut rand::rng(),
        );
        let outcome = match verdict {
            Verdict::Ack => Outcome::Acked,
            Verdict::Retry { delay } => Outcome::Retried { delay },
            // Boxed: the dead-letter path's future is kilobytes, and every delivery's future
            // would carry (and move) it.
            Verdict::DeadLetter { kind, error } => {
                Box::pin(self.dead_letter(message, kind, &error, attempt)).await
            }
        };
        self.settle(message, outcome).await;
    }

    /// Publishes the message to the dead-letter subject and waits for the ack: `DeadLettered`
    /// when stored, else `Retried` (the original must then stay in its stream).
    ///
    /// On the last allowed delivery a NAK would bring no redelivery, and the advisory path would
    /// later dead-letter the message as `crashed`, losing the real cause. So there the message is
    /// kept (in-progress acks) and the publish retried with the function's backoff until it is
    /// stored with its real kind and error; only if the process ends first does the advisory path
    /// take it over.
    async fn dead_letter(
        &self,
        message: &jetstream::Message,
        kind: DeadLetterKind,
        error: &str,
        attempt: u32,
    ) -> Outcome {
        let mut tries = 1;
        loop {
            match self.store_dead_letter(message, kind, error).await {
                Ok(()) => {
                    tracing::warn!(function = %self.shared.name, kind = kind.as_str(), %error, "dead-lettered");
                    return Outcome::DeadLettered;
                }
                Err(dlq_error)
                    if attempt < self.config().max_deliver
                        || matches!(dlq_error, dlq::DlqError::TooLarge { .. }) =>
                {
                    tracing::error!(function = %self.shared.name, error = %dlq_error, "dead-letter publish failed; the message stays in its stream");
                    return Outcome::Retried {
                        delay: self.schedule.delay(attempt, &mut rand::rng()),
                    };
                }
                Err(dlq_error) => {
                    let delay = self.schedule.delay(tries, &mut rand::rng());
                    tracing::error!(
                        function = %self.shared.name,
                        error = %dlq_error,
                        retry_in = %humantime::format_duration(delay),
                        "dead-letter publish failed on the last delivery; keeping the message and retrying"
                    );
                    if dlq_error.is_stream_not_found() {
                        // JETFN_DLQ was deleted: make it again (a custom `dlq` subject's stream is
                        // the operator's to restore).
                        let _ =
                            dlq::ensure_stream(&self.shared.jetstream, &self.config().dlq).await;
                    }
                    self.hold(message, delay).await;
                    tries = tries.saturating_add(1);
                }
            }
        }
    }

    /// Publishes one dead letter of `message` and waits for the stream's ack.
    async fn store_dead_letter(
        &self,
        message: &jetstream::Message,
        kind: DeadLetterKind,
        error: &str,
    ) -> Result<(), dlq::DlqError> {
        let info = message
            .info()
            .map_err(|e| dlq::DlqError::NotJetStream(e.to_string()))?;
        let from = Provenance {
            function: &self.shared.name,
            subject: &message.subject,
            stream: info.stream,
            stream_sequence: info.stream_sequence,
            deliveries: u64::try_from(info.delivered).unwrap_or(0),
        };
        let headers = dlq::dead_letter_headers(message.headers.as_ref(), &from, kind, error);
        dlq::publish(
            &self.shared.jetstream,
            &self.config().dlq,
            message.payload.clone(),
            headers,
        )
        .await
    }

    /// Waits `delay` while keeping `message` from redelivery with in-progress acks.
    async fn hold(&self, message: &jetstream::Message, delay: Duration) {
        let keep_alive = self.keep_alive();
        let until = Instant::now() + delay;
        loop {
            if let Err(error) = message.ack_with(AckKind::Progress).await {
                tracing::debug!(function = %self.shared.name, %error, "in-progress ack failed");
            }
            let now = Instant::now();
            if now >= until {
                return;
            }
            tokio::time::sleep((until - now).min(keep_alive)).await;
        }
    }

    /// How often a message being worked on gets an in-progress ack: half of `ack_wait`.
    fn keep_alive(&self) -> Duration {
        (self.config().ack_wait / 2).max(Duration::from_millis(100))
    }

    /// What the loop should pull now.
    pub(crate) fn gate(&self) -> Gate {
        match self.breaker.as_ref().map(Mutex::lock) {
            Some(Ok(breaker)) => breaker.gate(Instant::now()),
            _ => Gate::Flow,
        }
    }

    /// May this just-arrived message start? (Turns an open breaker whose cool-down has passed
    /// half-open, with this message as the trial.)
    pub(crate) fn admit(&self) -> Admission {
        let Some(Ok(mut breaker)) = self.breaker.as_ref().map(Mutex::lock) else {
            return Admission::Go;
        };
        let admission = breaker.admit(Instant::now());
        self.state.metrics.breaker.set(breaker.state() as i64);
        admission
    }

    /// Records a run for the breaker: `Some(success)`, or `None` when the outcome says nothing
    /// about the dependency.
    fn record(&self, success: Option<bool>) {
        let Some(Ok(mut breaker)) = self.breaker.as_ref().map(Mutex::lock) else {
            return;
        };
        let Some(success) = success else {
            breaker.release_trial(Instant::now());
            return;
        };
        match breaker.record(success, Instant::now()) {
            Some(Transition::Opened(until)) => tracing::warn!(
                function = %self.shared.name,
                cooldown = %humantime::format_duration(until - Instant::now()),
                "circuit breaker opened"
            ),
            Some(Transition::Closed) => {
                tracing::info!(function = %self.shared.name, "circuit breaker closed")
            }
            None => {}
        }
        self.state.metrics.breaker.set(breaker.state() as i64);
    }

    /// Runs the future `make` returns with the function's timeout, a panic guard, and in-progress
    /// acks for every message it works on (one, or a batch).
    pub(super) async fn guarded<R, Fut>(
        &self,
        make: impl FnOnce() -> Fut,
        messages: &[jetstream::Message],
    ) -> Result<R, Failure>
    where
        Fut: std::future::Future<Output = R>,
    {
        let future = match std::panic::catch_unwind(AssertUnwindSafe(make)) {
            Ok(future) => AssertUnwindSafe(future).catch_unwind(),
            Err(panic) => return Err(Failure::Panic(panic_message(panic.as_ref()))),
        };
        let outcome = |result: Result<R, Box<dyn std::any::Any + Send>>| {
            result.map_err(|panic| Failure::Panic(panic_message(panic.as_ref())))
        };
        let mut future = std::pin::pin!(future);
        // Most handlers that do no I/O finish on their first poll: no timers for them.
        if let Some(result) = (&mut future).now_or_never() {
            return outcome(result);
        }
        // Boxed: the timers would otherwise make (and move) every delivery's future larger.
        Box::pin(self.supervise(future, messages))
            .await
            .and_then(outcome)
    }

    /// Polls a handler's future that did not finish at once, until it ends or times out,
    /// sending in-progress acks for `messages` every `ack_wait / 2`.
    async fn supervise<T>(
        &self,
        mut future: std::pin::Pin<&mut impl std::future::Future<Output = T>>,
        messages: &[jetstream::Message],
    ) -> Result<T, Failure> {
        let timeout = self.config().timeout;
        let keep_alive = self.keep_alive();
        let mut progress = tokio::time::interval_at(Instant::now() + keep_alive, keep_alive);
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                result = &mut future => return Ok(result),
                () = &mut deadline => return Err(Failure::Timeout(timeout)),
                _ = progress.tick() => {
                    for message in messages {
                        if let Err(error) = message.ack_with(AckKind::Progress).await {
                            tracing::debug!(function = %self.shared.name, %error, "in-progress ack failed");
                        }
                    }
                }
            }
        }
    }

    /// Tells the server the outcome and counts it.
    pub(crate) async fn settle(&self, message: &jetstream::Message, outcome: Outcome) {
        if let Err(error) = message.ack_with(ack_kind(outcome)).await {
            // The server redelivers an unacknowledged message after ack_wait: nothing is lost.
            tracing::warn!(function = %self.shared.name, %error, ?outcome, "ack not sent; the server will redeliver");
            return;
        }
        let metrics = &self.state.metrics;
        match outcome {
            Outcome::Acked => metrics.acked.inc(),
            Outcome::Retried { .. } => metrics.retried.inc(),
            Outcome::DeadLettered => metrics.dead_lettered.inc(),
            Outcome::Released | Outcome::Deferred { .. } => 0,
        };
    }
}

/// Everything about a delivery but its payload, and the consumer's `num_pending` as of it.
/// `bound` is the bound stream's name, used when the message names the same stream.
pub(super) fn meta(
    message: &jetstream::Message,
    bound: Arc<str>,
) -> Result<(EventMeta, u64), async_nats::Error> {
    let info = message.info()?;
    let stream = if *bound == *info.stream {
        bound
    } else {
        Arc::from(info.stream)
    };
    let headers = message.headers.clone().unwrap_or_default();
    let id = headers
        .get(async_nats::header::NATS_MESSAGE_ID)
        .map(|id| id.as_str().to_owned());
    let published = SystemTime::UNIX_EPOCH
        + Duration::from_nanos(u64::try_from(info.published.unix_timestamp_nanos()).unwrap_or(0));
    let meta = EventMeta {
        subject: message.subject.clone(),
        id,
        headers,
        stream,
        stream_sequence: info.stream_sequence,
        attempt: u32::try_from(info.delivered).unwrap_or(u32::MAX),
        published,
    };
    Ok((meta, info.pending))
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_maps_to_one_ack() {
        let delay = Duration::from_secs(4);
        let table = [
            (Outcome::Acked, "+ACK"),
            (Outcome::DeadLettered, "+ACK"),
            (Outcome::Retried { delay }, "-NAK {\"delay\":4000000000}"),
            (Outcome::Released, "-NAK"),
            (Outcome::Deferred { delay }, "-NAK {\"delay\":4000000000}"),
        ];
        for (outcome, wire) in table {
            let bytes: bytes::Bytes = ack_kind(outcome).into();
            assert_eq!(std::str::from_utf8(&bytes).ok(), Some(wire), "{outcome:?}");
        }
    }

    /// The size of the future `F` a closure returns (never called).
    fn future_size<A, F: FnOnce(A) -> Fut, Fut>(_: &F) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// Every delivery's future is allocated and moved once per message: the dead-letter path
    /// and the timers of a slow handler are boxed apart, so a delivery stays small (it was
    /// 8 KiB, and moving it cost more than a microsecond per message).
    #[test]
    fn a_delivery_future_stays_small() {
        type M = jetstream::Message;
        let deliver = |(d, m, s): (Arc<Deliverer>, M, Arc<str>)| d.deliver(m, s);
        let conclude = |(d, m, s): (&'static Deliverer, &'static M, &'static DeliverySpan)| {
            d.conclude(m, 1, Ok(()), s)
        };
        let (deliver, conclude) = (future_size(&deliver), future_size(&conclude));
        assert!(deliver <= 2048, "a delivery's future is {deliver} bytes");
        assert!(conclude <= 1024, "settling's future is {conclude} bytes");
    }

    #[test]
    fn panic_messages() {
        assert_eq!(panic_message(&"boom"), "boom");
        assert_eq!(panic_message(&String::from("bang")), "bang");
        assert_eq!(panic_message(&42), "a panic with a non-string payload");
    }
}
