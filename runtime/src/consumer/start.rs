//! Starting a delivery: the breaker's admission, gathering a batch, then running it inline or
//! on a worker task.

use std::sync::Arc;

use futures::FutureExt;

use super::drain::{Delivery, Replies};
use super::gather::{gather, Gathered};
use super::pull::Puller;
use super::pulling::{Loop, Served, Turn};
use super::{Outcome, TRIAL_DEFER};
use crate::breaker::Admission;
use crate::delivered::Delivered;

impl Loop {
    /// Starts a delivery of `message` (with what else a batch gathers): inline when it finishes
    /// on its first poll, else as a task on a worker.
    pub(super) async fn start(
        &mut self,
        puller: &mut Puller,
        message: Delivered,
        per_worker: usize,
        bytes: usize,
        stream: &Arc<str>,
    ) -> Turn {
        self.prefetch.observe_size(message.length);
        // The breaker may have opened while this message was on its way.
        let delay = match self.deliverer.admit() {
            Admission::Go => None,
            Admission::WaitUntil(until) => {
                Some(until.saturating_duration_since(tokio::time::Instant::now()))
            }
            Admission::WaitForTrial => Some(TRIAL_DEFER),
        };
        if let Some(delay) = delay {
            let deferred = Outcome::Deferred { delay };
            self.deliverer.settle(&message, deferred).await;
            return Turn::Next;
        }
        let deliverer = self.deliverer.clone();
        let stream = stream.clone();
        let mut after = Turn::Next;
        // Boxed: moving the delivery future into a task costs more than one allocation.
        let (delivery, replies): (Delivery, Replies) = if per_worker > 1 {
            let mut batch = vec![message];
            let wait = self.state.config.batch_wait;
            let gathered = gather(
                puller,
                &deliverer,
                &mut batch,
                per_worker,
                bytes,
                wait,
                &self.cancel,
            )
            .await;
            match gathered {
                Gathered::Cancelled => {
                    for message in &batch {
                        deliverer.settle(message, Outcome::Released).await;
                    }
                    return Turn::End(Served::Stop);
                }
                Gathered::Gone(reason) => after = Turn::End(Served::Rebind(reason)),
                Gathered::Done => {}
            }
            for message in &batch[1..] {
                self.prefetch.observe_size(message.length);
            }
            let replies = Replies::Many(batch.iter().map(|m| m.reply.clone()).collect());
            let delivery = async move { deliverer.deliver_batch(batch, stream).await };
            (Box::pin(delivery), replies)
        } else {
            let replies = Replies::One(message.reply.clone());
            (Box::pin(deliverer.deliver(message, stream)), replies)
        };
        self.run_delivery(delivery, replies);
        after
    }

    /// Runs a delivery inline when it is done on its first poll (no task, no worker), else on
    /// a worker task, handed back for another pod should the shutdown deadline pass first.
    fn run_delivery(&mut self, mut delivery: Delivery, replies: Replies) {
        let count = replies.count();
        let started = std::time::Instant::now();
        if self.inline.allowed() {
            let done = (&mut delivery).now_or_never().is_some();
            // One clock read for both (a few per delivery add up).
            let took = started.elapsed();
            self.inline.observe(took);
            if done {
                self.prefetch.observe_service(took / count);
                self.parallel = 1;
                return;
            }
        }
        self.parallel = self.workers.target();
        let busy = self.workers.start();
        let services = self.services.clone();
        let abandon = self.abandon.clone();
        let client = self.js.client();
        self.tasks.spawn(async move {
            tokio::select! {
                () = delivery => services.record(started.elapsed() / count),
                // Past the shutdown deadline: hand it back for another pod now rather than after
                // ack_wait.
                () = abandon.cancelled() => replies.release(&client).await,
            }
            drop(busy);
        });
    }
}
