//! One run of an ordered function's message. Unlike [`Deliverer::deliver`], a failure is not
//! NAKed back to the server: the message stays in the pod's hand (kept alive) and runs again
//! after its backoff, so that no later message of its key can overtake it and a takeover's
//! fence sees every unsettled message held by the consumer's owner (see `consumer::ordered`).

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::context::FutureExt as _;
use tokio::sync::OwnedSemaphorePermit;

use super::{meta, Deliverer, Outcome};
use crate::delivered::Delivered;
use crate::handler::HandlerError;
use crate::policy::Failure;
use crate::telemetry::DeliverySpan;

/// What became of one run of an ordered function's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Acked, or dead-lettered and acked: its key goes on with the next message.
    Settled,
    /// It failed and runs again after `delay`, kept alive meanwhile; its key stays held.
    Retry { delay: Duration },
    /// Not settled with the server (handed back, the ack not sent, or not a JetStream
    /// delivery): the server redelivers it, and its key stays held until then.
    Unsettled,
}

impl Deliverer {
    /// Runs `message` once; `retries` earlier runs of it failed in this pod since the server
    /// delivered it (they count as attempts toward `max_deliver`). `worker` is held while the
    /// handler runs, not while the outcome is confirmed.
    pub(crate) async fn run_ordered(
        self: Arc<Self>,
        message: Delivered,
        stream: Arc<str>,
        retries: u32,
        worker: OwnedSemaphorePermit,
    ) -> Fate {
        self.run_or_reject(message, stream, retries, Err(worker))
            .await
    }

    /// Dead-letters `message` as `permanent` with `reason` at once, without running it (an
    /// ordered function's message without its key).
    pub(crate) async fn reject(
        self: Arc<Self>,
        message: Delivered,
        stream: Arc<str>,
        reason: String,
    ) -> Fate {
        self.run_or_reject(message, stream, 0, Ok(reason)).await
    }

    async fn run_or_reject(
        self: Arc<Self>,
        message: Delivered,
        stream: Arc<str>,
        retries: u32,
        reject_or_run: Result<String, OwnedSemaphorePermit>,
    ) -> Fate {
        let (mut meta, pending) = match meta(&message, stream) {
            Ok(started) => started,
            Err(error) => {
                tracing::warn!(function = %self.name(), %error, "not a JetStream delivery; releasing it");
                self.settle(&message, Outcome::Released).await;
                return Fate::Unsettled;
            }
        };
        self.state.observe_pending(pending);
        meta.attempt = meta.attempt.saturating_add(retries);
        let span = DeliverySpan::start(&self.tracer, self.name(), &self.span_names, &meta);
        let otel = span.otel.clone();
        let attempt = meta.attempt;
        let result = match reject_or_run {
            Ok(reason) => Err(Failure::Handler(HandlerError::permanent(reason))),
            Err(worker) => {
                let call = self.call(&message, meta);
                let alive = std::slice::from_ref(&message);
                let result = self.pipeline.run(call, 1, alive).with_context(otel).await;
                drop(worker);
                result
            }
        };
        let fate = self.settle_ordered(&message, attempt, result, &span).await;
        span.end();
        fate
    }

    async fn settle_ordered(
        &self,
        message: &Delivered,
        attempt: u32,
        result: Result<(), Failure>,
        span: &DeliverySpan,
    ) -> Fate {
        let judged = self.judge(message, attempt, result, span).await;
        if let Outcome::Retried { delay } = judged.outcome {
            self.state.metrics.retried.inc();
            self.observe(message, attempt, judged);
            return Fate::Retry { delay };
        }
        // Not waited for (a double ack per message costs the server more than the message
        // itself): an ack lost on a leader change brings the message back, and the holder then
        // settles it without running it (it remembers what it settled lately).
        if !self.settle(message, judged.outcome).await {
            return Fate::Unsettled;
        }
        self.observe(message, attempt, judged);
        Fate::Settled
    }
}
