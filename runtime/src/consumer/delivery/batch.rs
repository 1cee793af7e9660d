//! One call of a batch function: up to `batch` messages, one call through the pipeline (one
//! timeout, in-progress acks for every message), then each message settled on its own by the
//! policy, as if it had been delivered alone (its own attempt count, backoff, dead letter,
//! breaker record).

use std::sync::Arc;

use opentelemetry::context::FutureExt as _;

use super::{meta, Deliverer, Outcome};
use crate::codec::Incoming;
use crate::delivered::Delivered;
use crate::handler::{EventMeta, InputRef};
use crate::pipeline::{Call, Messages, Output, Slot};
use crate::policy::Failure;
use crate::telemetry::DeliverySpan;

impl Deliverer {
    /// Runs one batch to its end: every message is acked, NAKed or dead-lettered. `messages` is
    /// not empty; `stream` as in [`Deliverer::deliver`].
    pub(crate) async fn deliver_batch(&self, messages: Vec<Delivered>, stream: Arc<str>) {
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
                    tracing::warn!(function = %self.name(), %error, "not a JetStream delivery; releasing it");
                    self.settle(&message, Outcome::Released).await;
                }
            }
        }
        let Some(pending) = pending else { return };
        self.state.observe_pending(pending);
        self.state.metrics.batch_size.observe(kept.len() as f64);
        let span = DeliverySpan::start_batch(&self.tracer, self.name(), &self.span_names, &metas);
        self.deliver_batch_in(kept, metas, &span)
            .with_context(span.otel.clone())
            .await;
        span.end();
    }

    async fn deliver_batch_in(
        &self,
        messages: Vec<Delivered>,
        metas: Vec<EventMeta>,
        span: &DeliverySpan,
    ) {
        // Outputs are numbered from the batch: its first message and all its members.
        let input = InputRef::batch(
            metas[0].stream.clone(),
            metas.iter().map(|meta| meta.stream_sequence),
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
        let Some(batch) = Messages::batch(incoming) else {
            return;
        };
        let slot = Slot::default();
        let function = self.pipeline.function().clone();
        let call = Call::new(function, input, batch, Output::Batch(slot.clone()));
        let result = self.pipeline.run(call, messages.len(), &messages).await;
        let results = per_message(result, &slot, messages.len());
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

/// A batch call's result spread over its `count` messages: `Ok` acks them all (a layer may
/// have decided so); the handler's own per-event results when it failed some events (and the
/// layers passed that on); any other failure (a layer's error, a panic, the timeout) is every
/// message's.
fn per_message(
    result: Result<(), Failure>,
    slot: &Slot<crate::batch::BatchResults>,
    count: usize,
) -> Vec<Result<(), Failure>> {
    match result {
        Ok(()) => (0..count).map(|_| Ok(())).collect(),
        Err(Failure::Handler(error)) if error.is_items_failed() => match slot.take() {
            Some(results) if results.len() == count => results
                .into_iter()
                .map(|result| result.map_err(Failure::Handler))
                .collect(),
            _ => {
                let failure = Failure::Handler(error);
                (0..count).map(|_| Err(failure.duplicate())).collect()
            }
        },
        Err(failure) => (0..count).map(|_| Err(failure.duplicate())).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::{FailureKind, HandlerError};

    fn kinds(results: &[Result<(), Failure>]) -> Vec<Option<FailureKind>> {
        results
            .iter()
            .map(|r| match r {
                Ok(()) => None,
                Err(Failure::Handler(e)) => Some(e.kind()),
                Err(_) => Some(FailureKind::Retryable),
            })
            .collect()
    }

    #[test]
    fn a_batch_result_is_spread_over_its_messages() {
        let slot = Slot::default();
        slot.put(vec![Ok(()), Err(HandlerError::decode("x")), Ok(())]);
        let items = Err(Failure::Handler(HandlerError::items_failed(1)));
        assert_eq!(
            kinds(&per_message(items, &slot, 3)),
            [None, Some(FailureKind::Decode), None]
        );
        // A layer's own error (here: made permanent) is every message's.
        slot.put(vec![Ok(()), Err(HandlerError::decode("x")), Ok(())]);
        let layer = Err(Failure::Handler(HandlerError::permanent("tenant unknown")));
        assert_eq!(
            kinds(&per_message(layer, &slot, 3)),
            [Some(FailureKind::Permanent); 3]
        );
        assert_eq!(kinds(&per_message(Ok(()), &slot, 2)), [None, None]);
    }
}
