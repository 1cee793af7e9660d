//! Shutdown: hand back what was fetched but not started, wait for what runs, and past the
//! shutdown deadline hand back what still runs.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::delivery::{ack_kind, Deliverer, Outcome};
use super::pull::{Pulled, Puller};
use crate::state::FunctionState;

/// How long a draining loop waits for more of what its requests bring before it unsubscribes.
const RELEASE_QUIET: Duration = Duration::from_millis(20);

/// The most time spent handing back fetched or abandoned deliveries on shutdown.
const RELEASE_PATIENCE: Duration = Duration::from_secs(1);

/// A delivery (one message or a batch) as the loop runs it.
pub(super) type Delivery = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Where to hand a running delivery's messages back (their ack subjects), should it be abandoned
/// at the shutdown deadline: no allocation for a single message.
pub(super) enum Replies {
    One(Option<async_nats::Subject>),
    Many(Vec<Option<async_nats::Subject>>),
}

impl Replies {
    /// How many messages the delivery runs (at least 1).
    pub(super) fn count(&self) -> u32 {
        match self {
            Replies::One(_) => 1,
            Replies::Many(replies) => u32::try_from(replies.len()).unwrap_or(u32::MAX).max(1),
        }
    }

    /// NAKs (no delay) every message of an abandoned delivery.
    pub(super) async fn release(self, client: &async_nats::Client) {
        match self {
            Replies::One(reply) => release(client, reply).await,
            Replies::Many(replies) => {
                for reply in replies {
                    release(client, reply).await;
                }
            }
        }
    }
}

/// Waits for in-flight deliveries, at most `timeout`; then hands back (NAK, no delay) those
/// still running, so another pod starts them at once instead of after `ack_wait`.
pub(super) async fn drain(
    state: &FunctionState,
    mut tasks: JoinSet<()>,
    timeout: Duration,
    abandon: &CancellationToken,
) {
    while tasks.try_join_next().is_some() {}
    let in_flight = tasks.len();
    let finished = tokio::time::timeout(timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if finished.is_ok() {
        tracing::info!(function = %state.config.name, in_flight, "drained");
        return;
    }
    let left = tasks.len();
    abandon.cancel();
    let released = tokio::time::timeout(RELEASE_PATIENCE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tracing::warn!(
        function = %state.config.name,
        left,
        released = released.is_ok(),
        "shutdown timeout: unfinished deliveries handed back for another pod"
    );
}

/// Hands back a delivery that will not finish here (NAK without delay).
async fn release(client: &async_nats::Client, reply: Option<async_nats::Subject>) {
    let Some(reply) = reply else { return };
    let nak: bytes::Bytes = ack_kind(Outcome::Released).into();
    if let Err(error) = client.publish(reply, nak).await {
        tracing::debug!(%error, "could not hand back an abandoned delivery; the server redelivers it after ack_wait");
    }
}

/// NAKs (no delay) what was fetched but not started: what arrives until the outstanding
/// requests are satisfied or quiet for a moment, then what is left in the subscription.
pub(super) async fn release_fetched(puller: &mut Puller, deliverer: &Deliverer) {
    let quiet = async {
        while puller.outstanding() > 0 {
            match tokio::time::timeout(RELEASE_QUIET, puller.next()).await {
                Ok(Some(Pulled::Message(message))) => {
                    deliverer.settle(&message, Outcome::Released).await;
                }
                Ok(Some(Pulled::Ended | Pulled::Stale)) => {}
                Ok(Some(Pulled::Gone(_)) | None) | Err(_) => break,
            }
        }
    };
    let _ = tokio::time::timeout(RELEASE_PATIENCE, quiet).await;
    puller.stop().await;
    while let Some(message) = puller.next_buffered() {
        deliverer.settle(&message, Outcome::Released).await;
    }
}
