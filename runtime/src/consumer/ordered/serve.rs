//! Serving an ordered function's consumer while this pod holds its lease: pull, hold each
//! message under its key, pass the takeover [fence](super::fence), run each key's messages one
//! at a time in stream order, keep what waits alive, renew the lease, and on shutdown drain.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{consumer::PullConsumer, AckKind};
use jetfn_grammar::order::OrderedBy;
use tokio::task::JoinSet;
use tokio::time::{interval_at, sleep_until, Instant};

use super::fence::Fence;
use super::lease::Lease;
use super::queues::{Inserted, Queues};
use super::turn::Turns;
use super::Ordered;
use crate::consumer::delivery::{Fate, Outcome};
use crate::consumer::drain::release_fetched;
use crate::consumer::prefetch::Want;
use crate::consumer::pull::{Pulled, Puller};
use crate::delivered::Delivered;

/// How often the fence asks the server while it waits.
const FENCE_POLL: Duration = Duration::from_millis(250);

/// How serving ended.
pub(super) enum Ended {
    /// The runtime is stopping; the lease was released.
    Stop,
    /// The lease is lost: nothing of this pod runs any more.
    Lost(String),
    /// The consumer or its subscription went away: bind again.
    Rebind(String),
}

/// A turn that ended: its key and sequence, and how (`None`: a message without a key that was
/// dead-lettered at once).
type Ended_ = Option<(String, u64, Fate)>;

/// One holding of the lease.
pub(super) struct Holding<'a> {
    pub(super) ordered: &'a mut Ordered,
    pub(super) consumer: PullConsumer,
    pub(super) turns: Turns,
    pub(super) queues: Queues<Delivered>,
    /// Redeliveries of running messages, settled as their run ends.
    pub(super) shadows: HashMap<u64, Delivered>,
    pub(super) tasks: JoinSet<Ended_>,
    pub(super) fence: Fence,
    /// The consumer went away while the fence read the subscription.
    pub(super) gone: Option<String>,
    /// The stream sequences settled lately.
    pub(super) settled: Recent,
    /// The highest consumer sequence (delivery number) received.
    pub(super) last_delivered: u64,
}

/// The last [`Recent::CAPACITY`] stream sequences settled by this holder.
#[derive(Debug, Default)]
pub(super) struct Recent {
    set: std::collections::HashSet<u64>,
    order: std::collections::VecDeque<u64>,
}

impl Recent {
    const CAPACITY: usize = 65_536;

    fn insert(&mut self, sequence: u64) {
        if self.set.insert(sequence) {
            self.order.push_back(sequence);
        }
        if self.order.len() > Self::CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.set.remove(&oldest);
            }
        }
    }

    fn contains(&self, sequence: u64) -> bool {
        self.set.contains(&sequence)
    }
}

impl Holding<'_> {
    /// Serves until the runtime stops, the lease is lost or the consumer goes.
    pub(super) async fn serve(mut self, mut lease: Lease, puller: &mut Puller) -> Ended {
        let mut renew = interval_at(Instant::now() + lease.period(), lease.period());
        let keep_alive = self.turns.keep_alive;
        let mut keep = interval_at(Instant::now() + keep_alive, keep_alive);
        let mut fence_poll = interval_at(Instant::now(), FENCE_POLL);
        let max_ack_pending = self.ordered.state.config.max_ack_pending as usize;
        let bytes = self.ordered.state.config.prefetch_bytes as usize;
        // Requests for fewer messages than this wait until more room is free: not one pull
        // request per settled message when the hand is full.
        let least = (max_ack_pending / 8).clamp(1, 256);
        // Before anything is pulled: nothing pending means nothing to fence.
        self.ordered.connections.mark_unchanged();
        self.check_fence(puller).await;
        loop {
            if let Some(reason) = self.gone.take() {
                self.tasks.abort_all();
                return Ended::Rebind(reason);
            }
            if self.fence.passed() {
                self.start_turns();
            }
            let messages = max_ack_pending.saturating_sub(self.queues.held());
            let worth = messages >= least || (self.queues.held() == 0 && messages > 0);
            if worth {
                if let Err(error) = puller.request(Want { messages, bytes }).await {
                    tracing::debug!(function = %self.ordered.state.config.name, %error, "pull request not sent");
                }
            }
            tokio::select! {
                biased;
                () = self.ordered.cancel.cancelled() => return self.stop(lease, puller).await,
                () = sleep_until(lease.deadline()) => return self.lose("not renewed before its deadline".to_owned()),
                _ = renew.tick() => {
                    if let Err(lost) = lease.renew().await {
                        return self.lose(lost.to_string());
                    }
                }
                _ = keep.tick() => self.keep_alive().await,
                _ = fence_poll.tick(), if !self.fence.passed() => self.check_fence(puller).await,
                // A reconnect: the requests died, and what was on its way may be lost.
                Ok(()) = self.ordered.connections.changed() => {
                    puller.reset();
                    self.fence.reset();
                }
                Some(joined) = self.tasks.join_next() => self.finish(joined.ok().flatten()),
                pulled = puller.next() => match pulled {
                    Some(Pulled::Message(message)) => self.hold(message),
                    Some(Pulled::Ended) => {}
                    // Requests presumed lost (a leader change): so may be what they brought.
                    Some(Pulled::Stale) => self.fence.reset(),
                    Some(Pulled::Gone(reason)) => {
                        self.tasks.abort_all();
                        return Ended::Rebind(reason);
                    }
                    None => {
                        self.tasks.abort_all();
                        return Ended::Rebind("pull subscription closed".to_owned());
                    }
                },
            }
        }
    }

    /// Holds a pulled message under its key (a message without one is dead-lettered at once).
    fn hold(&mut self, message: Delivered) {
        let Ok((sequence, delivered)) = message
            .info()
            .map(|info| (info.stream_sequence, info.consumer_sequence))
        else {
            tracing::warn!(function = %self.ordered.state.config.name, "not a JetStream delivery; ignored (the server redelivers it)");
            return;
        };
        self.watch_deliveries(delivered);
        let key = match &self.ordered.by {
            OrderedBy::Subject => Some(message.subject.to_string()),
            OrderedBy::Header(name) => message
                .headers
                .as_ref()
                .and_then(|headers| headers.get(name.as_str()))
                .map(|value| value.as_str().to_owned()),
        };
        if self.settled.contains(sequence) {
            // Settled already, and back: its ack was lost (a consumer leader change) or crossed
            // the redelivery. Running it now would run it after its key's later messages.
            tokio::spawn(async move { message.ack_with(AckKind::Ack).await });
            return;
        }
        let Some(key) = key else {
            let reason = format!(
                "the message has no `{}` header: an ordered function (ordered_by = \"{}\") needs its key",
                match &self.ordered.by {
                    OrderedBy::Header(name) => name.as_str(),
                    OrderedBy::Subject => "subject",
                },
                self.ordered.by
            );
            let (deliverer, stream) = (self.turns.deliverer.clone(), self.turns.stream.clone());
            self.tasks.spawn(async move {
                deliverer.reject(message, stream, reason).await;
                None
            });
            return;
        };
        match self.queues.insert(&key, sequence, message) {
            Inserted::Held | Inserted::Replaced(_) => {}
            Inserted::Running(again) => {
                self.shadows.insert(sequence, again);
            }
        }
    }

    /// Every delivery of the consumer comes to this holder, numbered: a number skipped is a
    /// delivery lost on its way (a consumer leader change drops what the old leader was
    /// sending). The lost message is pending at the server and comes back after `ack_wait`, but
    /// a later message of its key may already be here: fence again, so nothing new starts until
    /// every pending message is in hand.
    fn watch_deliveries(&mut self, delivered: u64) {
        let last = self.last_delivered;
        self.last_delivered = last.max(delivered);
        if last != 0 && delivered > last + 1 && self.fence.passed() {
            tracing::warn!(function = %self.ordered.state.config.name, delivered, last, "ordered: a delivery went missing; fencing again");
            self.fence.reset();
        }
    }

    /// Asks the server what is pending, takes what it sent before answering, and passes the
    /// fence when every message pending then is in hand.
    async fn check_fence(&mut self, puller: &mut Puller) {
        let Some(snapshot) = Fence::ask(&self.consumer).await else {
            return;
        };
        while let Some(pulled) = puller.try_next() {
            match pulled {
                Pulled::Message(message) => self.hold(message),
                Pulled::Gone(reason) => self.gone = Some(reason),
                Pulled::Ended | Pulled::Stale => {}
            }
        }
        let held = self
            .queues
            .waiting()
            .filter(|m| {
                m.info()
                    .is_ok_and(|i| i.consumer_sequence <= snapshot.delivered)
            })
            .count();
        self.fence.decide(snapshot, held);
        if self.fence.passed() {
            tracing::info!(function = %self.ordered.state.config.name, held = self.queues.held(), "ordered: fence passed; running");
        }
    }

    /// Starts every key whose next message may run.
    fn start_turns(&mut self) {
        while let Some((key, sequence, message)) = self.queues.next() {
            let turns = self.turns.clone();
            self.tasks.spawn(async move {
                let fate = turns.run(message).await;
                Some((key, sequence, fate))
            });
        }
    }

    /// A turn ended: its key goes on, or is blocked until the server redelivers its message.
    fn finish(&mut self, ended: Ended_) {
        let Some((key, sequence, fate)) = ended else {
            return;
        };
        let settled = fate == Fate::Settled;
        self.queues.finish(&key, sequence, settled);
        if settled {
            self.settled.insert(sequence);
        }
        if let Some(again) = self.shadows.remove(&sequence) {
            if settled {
                tokio::spawn(async move { again.ack_with(AckKind::Ack).await });
            } else {
                self.queues.insert(&key, sequence, again);
            }
        }
    }

    /// Tells the server every waiting message is still in hand.
    async fn keep_alive(&self) {
        for message in self.queues.waiting() {
            if let Err(error) = message.ack_with(AckKind::Progress).await {
                tracing::debug!(%error, "in-progress ack not sent");
            }
        }
    }

    /// The lease is lost: stop everything at once, settle nothing (the next holder's fence
    /// takes over what this pod held).
    fn lose(mut self, reason: String) -> Ended {
        self.tasks.abort_all();
        Ended::Lost(reason)
    }

    /// Drains: nothing more is pulled or started; what waits is handed back; running turns
    /// finish within the shutdown budget (the lease kept meanwhile), then the lease is released.
    async fn stop(mut self, mut lease: Lease, puller: &mut Puller) -> Ended {
        let deliverer = self.turns.deliverer.clone();
        release_fetched(puller, &deliverer).await;
        self.turns.stopping.cancel();
        for message in self.queues.take_waiting() {
            deliverer.settle(&message, Outcome::Released).await;
        }
        let deadline = Instant::now() + self.ordered.shutdown_timeout;
        let mut renew = interval_at(Instant::now() + lease.period(), lease.period());
        while !self.tasks.is_empty() {
            tokio::select! {
                _ = self.tasks.join_next() => {}
                _ = renew.tick() => {
                    if lease.renew().await.is_err() {
                        self.tasks.abort_all();
                        return Ended::Stop;
                    }
                }
                () = sleep_until(deadline.min(lease.deadline())) => {
                    tracing::warn!(function = %self.ordered.state.config.name, running = self.tasks.len(), "shutdown deadline: abandoning running ordered turns (the next holder runs them after ack_wait)");
                    self.tasks.abort_all();
                    break;
                }
            }
        }
        lease.release().await;
        Ended::Stop
    }
}
