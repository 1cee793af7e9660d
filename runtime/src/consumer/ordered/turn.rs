//! One key's turn: run its message, retry it in place after its backoff (kept alive, its key
//! held) until it is settled, and keep it alive while it waits for a worker.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::consumer::delivery::{Deliverer, Fate};
use crate::delivered::Delivered;

/// What a turn needs besides its message.
#[derive(Clone)]
pub(super) struct Turns {
    pub(super) deliverer: Arc<Deliverer>,
    pub(super) stream: Arc<str>,
    /// `max_workers` permits: handler runs at once in this pod.
    pub(super) workers: Arc<Semaphore>,
    pub(super) keep_alive: Duration,
    /// `jetfn_ordered_keys_held`.
    pub(super) keys_held: Gauge,
    /// Fired on shutdown: a message waiting for its retry is handed back instead.
    pub(super) stopping: CancellationToken,
}

impl Turns {
    /// Runs `message` until it is settled (or handed back on shutdown: `Unsettled`).
    pub(super) async fn run(self, message: Delivered) -> Fate {
        let mut retries = 0;
        let mut failing = false;
        let fate = loop {
            // A worker, unless the pod stops first: then the message goes back unrun.
            let permit = tokio::select! {
                biased;
                () = self.stopping.cancelled() => None,
                permit = alive(&message, self.keep_alive, self.workers.clone().acquire_owned()) => permit.ok(),
            };
            let Some(permit) = permit else {
                break self.hand_back(&message).await;
            };
            let (again, stream) = (message.clone(), self.stream.clone());
            let deliverer = self.deliverer.clone();
            let fate = deliverer.run_ordered(again, stream, retries, permit).await;
            let Fate::Retry { delay } = fate else {
                break fate;
            };
            if !failing {
                self.keys_held.inc();
                failing = true;
            }
            retries += 1;
            let wait = alive(&message, self.keep_alive, tokio::time::sleep(delay));
            tokio::select! {
                () = wait => {}
                () = self.stopping.cancelled() => break self.hand_back(&message).await,
            }
        };
        if failing {
            self.keys_held.dec();
        }
        fate
    }

    /// Hands `message` back for the next holder (who counts from the server's attempts).
    async fn hand_back(&self, message: &Delivered) -> Fate {
        if let Err(error) = message.ack_with(AckKind::Nak(None)).await {
            tracing::debug!(%error, "not handed back; the server redelivers it after ack_wait");
        }
        Fate::Unsettled
    }
}

/// Runs `work` while telling the server every `keep_alive` that `message` is in progress.
pub(super) async fn alive<T>(
    message: &Delivered,
    keep_alive: Duration,
    work: impl Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = ticks.tick() => {
                if let Err(error) = message.ack_with(AckKind::Progress).await {
                    tracing::debug!(%error, "in-progress ack not sent");
                }
            }
        }
    }
}
