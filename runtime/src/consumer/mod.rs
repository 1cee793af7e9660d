//! The pull loop of one function: bind, pull what keeps the workers busy (see `prefetch`), run
//! each delivery, scale the workers, and on shutdown hand back what was fetched but not started
//! and, past the shutdown deadline, what is still running.
//!
//! [`run`] binds (again after the consumer went away) and [`Loop::serve`] pulls: each turn it
//! reads the breaker's gate, asks the server for what the free workers can take, waits for a
//! message (or a worker, a reconnect, the end), and [`Loop::start`]s it — inline when the
//! handler finishes on its first poll, else as a task (see `workers`).

mod bind;
mod delivery;
mod drain;
mod gather;
mod prefetch;
mod pull;
mod scale;
mod workers;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use futures::FutureExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub(crate) use bind::provision_function;
use bind::{backoff_pause, bind_until_bound};
use delivery::Deliverer;
pub(crate) use delivery::Outcome;
use drain::{drain, release_fetched, Delivery, Replies};
use gather::{gather, Gathered};
use prefetch::{Prefetch, Want};
use pull::{Pulled, Puller};
use scale::{pause_on_server, scale, AbortOnDrop};
use workers::{Inline, ServiceTimes, Workers};

use crate::app::Application;
use crate::breaker::{Admission, Gate};
use crate::dlq::advisory;
use crate::state::FunctionState;

/// How often a waiting loop looks whether the half-open trial has finished.
const TRIAL_POLL: Duration = Duration::from_millis(20);

/// How long a message that arrives during the half-open trial is handed back for.
const TRIAL_DEFER: Duration = Duration::from_secs(1);

/// What a function's loop needs from the runtime.
pub(crate) struct Runner {
    pub(crate) state: Arc<FunctionState>,
    pub(crate) js: jetstream::Context,
    pub(crate) auto_create_streams: bool,
    pub(crate) cancel: CancellationToken,
    pub(crate) shutdown_timeout: Duration,
    /// Bumped on every (re)connect: outstanding pull requests died with the old connection.
    pub(crate) connections: watch::Receiver<u64>,
    /// The application's state and layers.
    pub(crate) app: Application,
}

/// Runs one function until `cancel` fires, then drains it within `shutdown_timeout`.
pub(crate) async fn run(runner: Runner) {
    let mut pulling = Loop::new(runner);
    let mut watcher = None;
    while !pulling.cancel.is_cancelled() {
        let (state, js, cancel) = (&pulling.state, &pulling.js, &pulling.cancel);
        let Some((bound, advisories)) =
            bind_until_bound(state, js, pulling.auto_create_streams, cancel).await
        else {
            break;
        };
        if watcher.is_none() {
            let watch =
                advisory::watch(js.clone(), state.config.clone(), advisories, cancel.clone());
            watcher = Some(tokio::spawn(watch));
        }
        let mut puller =
            match Puller::new(&js.client(), js, &bound.stream, &state.config.name).await {
                Ok(puller) => puller,
                Err(error) => {
                    state.set_unbound(format!("pull subscription failed: {error}"));
                    backoff_pause(cancel, Duration::from_secs(1)).await;
                    continue;
                }
            };
        let scaler = scale(
            state.clone(),
            pulling.workers.clone(),
            bound.consumer.clone(),
        );
        let _scaler = AbortOnDrop(tokio::spawn(scaler));
        state.set_bound(&bound.stream);
        tracing::info!(function = %state.config.name, stream = %bound.stream, subject = %state.config.subject, "consumer bound");
        pulling.connections.mark_unchanged();
        match pulling.serve(&mut puller, &bound.stream).await {
            Served::Rebind(reason) => {
                tracing::warn!(function = %pulling.state.config.name, %reason, "consumer gone; binding again");
                pulling.state.set_unbound(reason);
            }
            Served::Stop => {
                // Draining: whatever was fetched but not started goes back at once, including
                // what the outstanding requests still bring while the subscription closes.
                release_fetched(&mut puller, &pulling.deliverer).await;
                break;
            }
        }
    }
    let Loop {
        state,
        tasks,
        shutdown_timeout,
        abandon,
        ..
    } = pulling;
    drain(&state, tasks, shutdown_timeout, &abandon).await;
    if let Some(watcher) = watcher {
        let _ = watcher.await;
    }
}

/// How serving a bound consumer ended.
enum Served {
    /// The runtime is stopping.
    Stop,
    /// The consumer or its subscription went away: bind again.
    Rebind(String),
}

/// What one turn of the loop does next.
enum Turn {
    /// Go on with the next turn.
    Next,
    /// End serving.
    End(Served),
}

/// The pull loop's state across bindings.
struct Loop {
    state: Arc<FunctionState>,
    js: jetstream::Context,
    auto_create_streams: bool,
    cancel: CancellationToken,
    shutdown_timeout: Duration,
    connections: watch::Receiver<u64>,
    deliverer: Arc<Deliverer>,
    workers: Arc<Workers>,
    inline: Inline,
    prefetch: Prefetch,
    /// Deliveries that can run at once: 1 while handlers finish inline, else the workers.
    parallel: usize,
    services: ServiceTimes,
    /// Cancelled past the shutdown deadline: running deliveries are handed back.
    abandon: CancellationToken,
    /// Messages per worker: 1, or a batch function's `batch`.
    batch_size: usize,
    tasks: JoinSet<()>,
}

impl Loop {
    fn new(runner: Runner) -> Self {
        let Runner {
            state,
            js,
            auto_create_streams,
            cancel,
            shutdown_timeout,
            connections,
            app,
        } = runner;
        let config = &state.config;
        let deliverer = Deliverer::new(state.clone(), js.clone(), auto_create_streams, &app);
        Self {
            workers: Workers::new(config.min_workers as usize),
            inline: Inline::default(),
            prefetch: Prefetch::new(
                config.prefetch,
                config.prefetch_bytes as usize,
                config.max_ack_pending,
            ),
            parallel: 1,
            services: ServiceTimes::default(),
            abandon: CancellationToken::new(),
            batch_size: config.batch.map_or(1, |batch| batch as usize),
            tasks: JoinSet::new(),
            deliverer: Arc::new(deliverer),
            state,
            js,
            auto_create_streams,
            cancel,
            shutdown_timeout,
            connections,
        }
    }

    /// Pulls and runs deliveries from one binding until the runtime stops or the consumer goes.
    async fn serve(&mut self, puller: &mut Puller, stream: &str) -> Served {
        let stream: Arc<str> = Arc::from(stream);
        let mut paused_until = None;
        loop {
            // (JoinSet's bookkeeping takes a lock: not per message while nothing runs as a task.)
            if !self.tasks.is_empty() {
                while self.tasks.try_join_next().is_some() {}
            }
            if let Some(took) = self.services.take() {
                self.prefetch.observe_service(took);
            }
            if let Some(took) = puller.take_round_trip() {
                self.prefetch.observe_round_trip(took);
            }
            let free = self.workers.free();
            let gate = self.deliverer.gate();
            // A batch function's worker takes up to `batch` messages; during a trial, one.
            let per_worker = if gate == Gate::Trial {
                1
            } else {
                self.batch_size
            };
            let want = match gate {
                Gate::Flow => self.prefetch.want(free * per_worker, self.parallel),
                Gate::Trial => self.prefetch.want(free.min(1), 1).at_most(1),
                Gate::Paused(until) => {
                    if paused_until != Some(until) {
                        pause_on_server(&self.js, &stream, &self.state.config.name, until).await;
                        paused_until = Some(until);
                    }
                    let delay = || until.saturating_duration_since(tokio::time::Instant::now());
                    let wake = tokio::time::sleep_until(until);
                    if !hold_off(puller, &self.deliverer, &self.cancel, wake, delay).await {
                        return Served::Stop;
                    }
                    continue;
                }
                Gate::TrialRunning => {
                    let wake = tokio::time::sleep(TRIAL_POLL);
                    if !hold_off(puller, &self.deliverer, &self.cancel, wake, || TRIAL_DEFER).await
                    {
                        return Served::Stop;
                    }
                    continue;
                }
            };
            if let Turn::End(served) = self.turn(puller, want, free, per_worker, &stream).await {
                return served;
            }
        }
    }

    /// Asks for `want`, waits for what comes, and starts it.
    async fn turn(
        &mut self,
        puller: &mut Puller,
        want: Want,
        free: usize,
        per_worker: usize,
        stream: &Arc<str>,
    ) -> Turn {
        if self.connections.has_changed().unwrap_or(false) {
            self.connections.mark_unchanged();
            puller.reset();
        }
        if want.messages > 0 && !self.request(puller, want, free).await {
            return Turn::End(Served::Stop);
        }
        // Fast path: a message already here is taken without waiting on anything. What was
        // fetched ahead waits in the subscription until a worker is free.
        let ready = if free > 0 { puller.try_next() } else { None };
        let pulled = match ready {
            Some(pulled) if !self.cancel.is_cancelled() => Some(pulled),
            Some(pulled) => {
                if let Pulled::Message(message) = pulled {
                    self.deliverer.settle(&message, Outcome::Released).await;
                }
                return Turn::End(Served::Stop);
            }
            None => tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Turn::End(Served::Stop),
                () = self.workers.changed() => return Turn::Next,
                // A reconnect: the server dropped the requests; ask again at once.
                Ok(()) = self.connections.changed() => {
                    puller.reset();
                    return Turn::Next;
                }
                pulled = puller.next(), if free > 0 => pulled,
            },
        };
        match pulled {
            Some(Pulled::Message(message)) => {
                self.start(puller, message, per_worker, want.bytes, stream)
                    .await
            }
            Some(Pulled::Ended | Pulled::Stale) => Turn::Next,
            Some(Pulled::Gone(reason)) => Turn::End(Served::Rebind(reason)),
            None => Turn::End(Served::Rebind("pull subscription closed".to_owned())),
        }
    }

    /// Sends a pull request for `want`; false when the loop should stop.
    async fn request(&mut self, puller: &mut Puller, want: Want, free: usize) -> bool {
        match puller.request(want).await {
            Ok(true) => {
                let pulling = self.state.pulling();
                pulling
                    .requested
                    .store(puller.outstanding(), Ordering::Relaxed);
                pulling
                    .ahead
                    .store(want.messages.saturating_sub(free), Ordering::Relaxed);
                let round_trip = self.prefetch.round_trip().as_micros();
                pulling
                    .round_trip_us
                    .store(round_trip as u64, Ordering::Relaxed);
                true
            }
            Ok(false) => true,
            Err(error) => {
                tracing::debug!(function = %self.state.config.name, %error, "pull request not sent");
                backoff_pause(&self.cancel, Duration::from_millis(200)).await
            }
        }
    }

    /// Starts a delivery of `message` (with what else a batch gathers): inline when it finishes
    /// on its first poll, else as a task on a worker.
    async fn start(
        &mut self,
        puller: &mut Puller,
        message: jetstream::Message,
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
        let done = self.inline.allowed() && {
            let done = (&mut delivery).now_or_never().is_some();
            self.inline.observe(started.elapsed());
            done
        };
        if done {
            self.prefetch.observe_service(started.elapsed() / count);
            self.parallel = 1;
            return;
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

/// Waits for `wake` (false: cancelled first) while the breaker holds the function back. A message
/// that was already on its way is handed back at once, for after `delay()`, rather than left
/// unacknowledged in the subscription until the server redelivers it elsewhere.
async fn hold_off(
    puller: &mut Puller,
    deliverer: &Deliverer,
    cancel: &CancellationToken,
    wake: impl std::future::Future<Output = ()>,
    delay: impl Fn() -> Duration,
) -> bool {
    tokio::pin!(wake);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return false,
            () = &mut wake => return true,
            pulled = puller.next() => match pulled {
                Some(Pulled::Message(message)) => {
                    deliverer.settle(&message, Outcome::Deferred { delay: delay() }).await;
                }
                Some(Pulled::Ended | Pulled::Stale | Pulled::Gone(_)) => {}
                // The main loop sees the closed subscription on its next pull.
                None => return true,
            },
        }
    }
}
