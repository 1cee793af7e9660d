//! One call of a batch function: up to `batch` messages, one handler run under one timeout
//! (in-progress acks for every message), then each message settled on its own by the policy, as
//! if it had been delivered alone (its own attempt count, backoff, dead letter, breaker record).

use std::sync::Arc;

use async_nats::jetstream;
use opentelemetry::context::FutureExt as _;
use tokio::time::Instant;

use super::{meta, Deliverer, Outcome};
use crate::codec::Incoming;
use crate::handler::{Context, InputRef};
use crate::policy::Failure;
use crate::telemetry::DeliverySpan;

impl Deliverer {
    /// Runs one batch to its end: every message is acked, NAKed or dead-lettered. `messages` is
    /// not empty; `stream` as in [`Deliverer::deliver`].
    pub(crate) async fn deliver_batch(&self, messages: Vec<jetstream::Message>, stream: Arc<str>) {
        let mut kept = Vec::with_capacity(messages.len());
        let mut metas = Vec::with_capacity(messages.len());
        let mut pending = None;
        for message in messages {
            match meta(&message, stream.clone()) {
                Ok((meta, left)) => {
                    metas.push(meta);
                    kept.push(message);
                    pending = Some(left);
                }
                Err(error) => {
                    tracing::warn!(function = %self.shared.name, %error, "not a JetStream delivery; releasing it");
                    self.settle(&message, Outcome::Released).await;
                }
            }
        }
        let Some(pending) = pending else { return };
        let metrics = &self.state.metrics;
        metrics
            .pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        metrics.batch_size.observe(kept.len() as f64);
        let span =
            DeliverySpan::start_batch(&self.tracer, &self.shared.name, &self.span_names, &metas);
        self.deliver_batch_in(kept, metas, &span)
            .with_context(span.otel.clone())
            .await;
        span.end();
    }

    async fn deliver_batch_in(
        &self,
        messages: Vec<jetstream::Message>,
        metas: Vec<crate::handler::EventMeta>,
        span: &DeliverySpan,
    ) {
        let Some(batch) = self.config().batch_handler else {
            // The loop only calls this for batch functions.
            for message in &messages {
                self.settle(message, Outcome::Released).await;
            }
            return;
        };
        // Outputs are numbered from the batch: its first message and all its members.
        let ctx = Context::new(
            self.shared.clone(),
            InputRef::batch(
                metas[0].stream.clone(),
                metas.iter().map(|meta| meta.stream_sequence),
            ),
        );
        let attempts: Vec<u32> = metas.iter().map(|meta| meta.attempt).collect();
        let incoming: Vec<Incoming> = messages
            .iter()
            .zip(metas)
            .map(|(message, meta)| Incoming {
                payload: message.payload.clone(),
                meta,
            })
            .collect();
        let count = i64::try_from(messages.len()).unwrap_or(i64::MAX);
        let metrics = &self.state.metrics;
        metrics.in_flight.inc_by(count);
        let started = Instant::now();
        let outcome = self.guarded(|| batch(ctx, incoming), &messages).await;
        metrics.duration.observe(started.elapsed().as_secs_f64());
        metrics.in_flight.dec_by(count);
        let results: Vec<Result<(), Failure>> = match outcome {
            Ok(results) => results
                .into_iter()
                .map(|result| result.map_err(Failure::Handler))
                .collect(),
            // A panic or the timeout is every event's failure.
            Err(failure) => messages.iter().map(|_| Err(failure.duplicate())).collect(),
        };
        // Settled together: a dead letter that must be retried while its message is held (the
        // last delivery, the DLQ publish failing) holds only that one, not the settling of
        // the rest of the batch behind it (they would go unacknowledged and be redelivered).
        let settling = messages
            .iter()
            .zip(attempts)
            .zip(results)
            .map(|((message, attempt), result)| self.conclude(message, attempt, result, span));
        futures::future::join_all(settling).await;
    }
}
