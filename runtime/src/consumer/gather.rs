//! Gathering the messages of one batch call.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::delivery::{Deliverer, Outcome};
use super::prefetch;
use super::pull::{Pulled, Puller};
use super::TRIAL_DEFER;
use crate::breaker::Admission;
use crate::delivered::Delivered;

/// How gathering a batch ended.
pub(super) enum Gathered {
    /// Full, or `batch_wait` passed, or nothing more will come for now.
    Done,
    /// The runtime is shutting down: the gathered messages go back.
    Cancelled,
    /// The consumer was deleted: run what was gathered, then bind again.
    Gone(String),
}

/// Adds to `batch` (which holds the first message) until it holds `size` messages or
/// `batch_wait` has passed since the first arrived: what is already received is taken at once,
/// then what arrives in time. A message the breaker holds back goes back for later.
#[allow(clippy::too_many_arguments)]
pub(super) async fn gather(
    puller: &mut Puller,
    deliverer: &Deliverer,
    batch: &mut Vec<Delivered>,
    size: usize,
    bytes: usize,
    batch_wait: Duration,
    cancel: &CancellationToken,
) -> Gathered {
    let deadline = tokio::time::Instant::now() + batch_wait;
    while batch.len() < size {
        // Nothing more on its way: ask for the rest of the batch.
        if puller.outstanding() == 0 {
            let want = prefetch::Want {
                messages: size - batch.len(),
                bytes,
            };
            if puller.request(want).await.is_err() {
                return Gathered::Done;
            }
        }
        let pulled = match puller.try_next() {
            Some(pulled) => Some(pulled),
            None => tokio::select! {
                biased;
                () = cancel.cancelled() => return Gathered::Cancelled,
                () = tokio::time::sleep_until(deadline) => return Gathered::Done,
                pulled = puller.next() => pulled,
            },
        };
        match pulled {
            Some(Pulled::Message(message)) => match deliverer.admit() {
                Admission::Go => batch.push(message),
                Admission::WaitUntil(until) => {
                    let delay = until.saturating_duration_since(tokio::time::Instant::now());
                    deliverer
                        .settle(&message, Outcome::Deferred { delay })
                        .await;
                }
                Admission::WaitForTrial => {
                    let delay = TRIAL_DEFER;
                    deliverer
                        .settle(&message, Outcome::Deferred { delay })
                        .await;
                }
            },
            Some(Pulled::Ended | Pulled::Stale) => {}
            Some(Pulled::Gone(reason)) => return Gathered::Gone(reason),
            // The loop sees the closed subscription on its next pull.
            None => return Gathered::Done,
        }
    }
    Gathered::Done
}
