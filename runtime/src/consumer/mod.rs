//! The pull loop of one function: bind, pull what keeps the workers busy (see `prefetch`), run
//! each delivery, scale the workers, and on shutdown hand back what was fetched but not started
//! and, past the shutdown deadline, what is still running.

mod bind;
mod delivery;
mod prefetch;
mod pull;
mod workers;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::PullConsumer;
use futures::FutureExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub(crate) use bind::{provision_function, Bound};
use delivery::ack_kind;
use delivery::Deliverer;
pub(crate) use delivery::Outcome;
use prefetch::Prefetch;
use pull::{Pulled, Puller};
use workers::{Inline, ServiceTimes, Workers};

use crate::autoscale::{self, Autoscaler, Observation};
use crate::breaker::{Admission, Gate};
use crate::dlq::advisory;
use crate::state::FunctionState;

/// How often a waiting loop looks whether the half-open trial has finished.
const TRIAL_POLL: Duration = Duration::from_millis(20);

/// How long a message that arrives during the half-open trial is handed back for.
const TRIAL_DEFER: Duration = Duration::from_secs(1);

/// How long a draining loop waits for more of what its requests bring before it unsubscribes.
const RELEASE_QUIET: Duration = Duration::from_millis(20);

/// The most time spent handing back fetched or abandoned deliveries on shutdown.
const RELEASE_PATIENCE: Duration = Duration::from_secs(1);

/// The longest pause between two attempts to bind a function.
const MAX_BIND_BACKOFF: Duration = Duration::from_secs(5);

/// How often the consumer's `num_pending` is read from the server, in autoscaler ticks.
const PENDING_EVERY_TICKS: u32 = 5;

/// What a function's loop needs from the runtime.
pub(crate) struct Runner {
    pub(crate) state: Arc<FunctionState>,
    pub(crate) js: jetstream::Context,
    pub(crate) auto_create_streams: bool,
    pub(crate) cancel: CancellationToken,
    pub(crate) shutdown_timeout: Duration,
    /// Bumped on every (re)connect: outstanding pull requests died with the old connection.
    pub(crate) connections: watch::Receiver<u64>,
}

/// Runs one function until `cancel` fires, then drains it within `shutdown_timeout`.
pub(crate) async fn run(runner: Runner) {
    let Runner {
        state,
        js,
        auto_create_streams,
        cancel,
        shutdown_timeout,
        mut connections,
    } = runner;
    let deliverer = Arc::new(Deliverer::new(
        state.clone(),
        js.clone(),
        auto_create_streams,
    ));
    let workers = Workers::new(state.config.min_workers as usize);
    let mut inline = Inline::default();
    let mut prefetch = Prefetch::new(
        state.config.prefetch,
        state.config.prefetch_bytes as usize,
        state.config.max_ack_pending,
    );
    // Deliveries that can run at once: 1 while handlers finish inline, else the workers.
    let mut parallel = 1;
    let services = ServiceTimes::default();
    let abandon = CancellationToken::new();
    // Per-message functions take one message per worker.
    let batch_size = state.config.batch.map_or(1, |batch| batch as usize);
    let batch_wait = state.config.batch_wait;
    // The consumer went away while a batch was being gathered.
    let mut gone = None;
    let mut tasks = JoinSet::new();
    let mut watcher = None;

    'bind: while !cancel.is_cancelled() {
        let Some((bound, advisories)) =
            bind_until_bound(&state, &js, auto_create_streams, &cancel).await
        else {
            break;
        };
        if watcher.is_none() {
            watcher = Some(tokio::spawn(advisory::watch(
                js.clone(),
                state.config.clone(),
                advisories,
                cancel.clone(),
            )));
        }
        let mut puller =
            match Puller::new(&js.client(), &js, &bound.stream, &state.config.name).await {
                Ok(puller) => puller,
                Err(error) => {
                    state.set_unbound(format!("pull subscription failed: {error}"));
                    backoff_pause(&cancel, Duration::from_secs(1)).await;
                    continue;
                }
            };
        let scaler = AbortOnDrop(tokio::spawn(scale(
            state.clone(),
            workers.clone(),
            bound.consumer.clone(),
        )));
        let stream: Arc<str> = Arc::from(bound.stream.as_str());
        state.set_bound(&bound.stream);
        tracing::info!(function = %state.config.name, stream = %bound.stream, subject = %state.config.subject, "consumer bound");
        connections.mark_unchanged();

        let mut paused_until = None;
        loop {
            // (JoinSet's bookkeeping takes a lock: not per message while nothing runs as a task.)
            if !tasks.is_empty() {
                while tasks.try_join_next().is_some() {}
            }
            if let Some(took) = services.take() {
                prefetch.observe_service(took);
            }
            if let Some(took) = puller.take_round_trip() {
                prefetch.observe_round_trip(took);
            }
            let free = workers.free();
            let gate = deliverer.gate();
            // A batch function's worker takes up to `batch` messages; during a trial, one.
            let per_worker = match gate {
                Gate::Trial => 1,
                _ => batch_size,
            };
            let want = match gate {
                Gate::Flow => prefetch.want(free * per_worker, parallel),
                Gate::Trial => prefetch.want(free.min(1), 1).at_most(1),
                Gate::Paused(until) => {
                    if paused_until != Some(until) {
                        pause_on_server(&js, &bound.stream, &state.config.name, until).await;
                        paused_until = Some(until);
                    }
                    let delay = || until.saturating_duration_since(tokio::time::Instant::now());
                    let wake = tokio::time::sleep_until(until);
                    if !hold_off(&mut puller, &deliverer, &cancel, wake, delay).await {
                        break;
                    }
                    continue;
                }
                Gate::TrialRunning => {
                    let wake = tokio::time::sleep(TRIAL_POLL);
                    if !hold_off(&mut puller, &deliverer, &cancel, wake, || TRIAL_DEFER).await {
                        break;
                    }
                    continue;
                }
            };
            if connections.has_changed().unwrap_or(false) {
                connections.mark_unchanged();
                puller.reset();
            }
            if want.messages > 0 {
                match puller.request(want).await {
                    Ok(true) => {
                        let pulling = state.pulling();
                        pulling
                            .requested
                            .store(puller.outstanding(), Ordering::Relaxed);
                        pulling
                            .ahead
                            .store(want.messages.saturating_sub(free), Ordering::Relaxed);
                        let round_trip = prefetch.round_trip().as_micros();
                        pulling
                            .round_trip_us
                            .store(round_trip as u64, Ordering::Relaxed);
                    }
                    Ok(false) => {}
                    Err(error) => {
                        tracing::debug!(function = %state.config.name, %error, "pull request not sent");
                        if !backoff_pause(&cancel, Duration::from_millis(200)).await {
                            break;
                        }
                        continue;
                    }
                }
            }
            // Fast path: a message already here is taken without waiting on anything. What was
            // fetched ahead waits in the subscription until a worker is free.
            let ready = if free > 0 { puller.try_next() } else { None };
            let pulled = match ready {
                Some(pulled) if !cancel.is_cancelled() => Some(pulled),
                Some(pulled) => {
                    if let Pulled::Message(message) = pulled {
                        deliverer.settle(&message, Outcome::Released).await;
                    }
                    break;
                }
                None => tokio::select! {
                    biased;
                    () = cancel.cancelled() => break,
                    () = workers.changed() => continue,
                    // A reconnect: the server dropped the requests; ask again at once.
                    Ok(()) = connections.changed() => {
                        puller.reset();
                        continue;
                    }
                    pulled = puller.next(), if free > 0 => pulled,
                },
            };
            match pulled {
                Some(Pulled::Message(message)) => {
                    prefetch.observe_size(message.length);
                    // The breaker may have opened while this message was on its way.
                    let delay = match deliverer.admit() {
                        Admission::Go => None,
                        Admission::WaitUntil(until) => {
                            Some(until.saturating_duration_since(tokio::time::Instant::now()))
                        }
                        Admission::WaitForTrial => Some(TRIAL_DEFER),
                    };
                    if let Some(delay) = delay {
                        deliverer
                            .settle(&message, Outcome::Deferred { delay })
                            .await;
                        continue;
                    }
                    let deliverer = deliverer.clone();
                    let stream = stream.clone();
                    // Boxed: the delivery future is kilobytes; moving it into a task costs more
                    // than one allocation.
                    let (mut delivery, replies): (Delivery, Replies) = if per_worker > 1 {
                        let mut batch = vec![message];
                        let gathered = gather(
                            &mut puller,
                            &deliverer,
                            &mut batch,
                            per_worker,
                            want.bytes,
                            batch_wait,
                            &cancel,
                        )
                        .await;
                        if let Gathered::Cancelled = gathered {
                            for message in &batch {
                                deliverer.settle(message, Outcome::Released).await;
                            }
                            break;
                        }
                        for message in &batch[1..] {
                            prefetch.observe_size(message.length);
                        }
                        let replies =
                            Replies::Many(batch.iter().map(|m| m.reply.clone()).collect());
                        if let Gathered::Gone(reason) = gathered {
                            gone = Some(reason);
                        }
                        (
                            Box::pin(async move { deliverer.deliver_batch(batch, stream).await }),
                            replies,
                        )
                    } else {
                        let replies = Replies::One(message.reply.clone());
                        (Box::pin(deliverer.deliver(message, stream)), replies)
                    };
                    let count = replies.count();
                    let started = std::time::Instant::now();
                    let done = inline.allowed() && {
                        let done = (&mut delivery).now_or_never().is_some();
                        inline.observe(started.elapsed());
                        done
                    };
                    if done {
                        prefetch.observe_service(started.elapsed() / count);
                        parallel = 1;
                    } else {
                        parallel = workers.target();
                        let busy = workers.start();
                        let services = services.clone();
                        let abandon = abandon.clone();
                        let client = js.client();
                        tasks.spawn(async move {
                            tokio::select! {
                                () = delivery => services.record(started.elapsed() / count),
                                // Past the shutdown deadline: hand it back for another pod now
                                // rather than after ack_wait.
                                () = abandon.cancelled() => replies.release(&client).await,
                            }
                            drop(busy);
                        });
                    }
                    if let Some(reason) = gone.take() {
                        tracing::warn!(function = %state.config.name, %reason, "consumer gone; binding again");
                        state.set_unbound(reason);
                        continue 'bind;
                    }
                }
                Some(Pulled::Ended | Pulled::Stale) => {}
                Some(Pulled::Gone(reason)) => {
                    tracing::warn!(function = %state.config.name, %reason, "consumer gone; binding again");
                    state.set_unbound(reason);
                    continue 'bind;
                }
                None => {
                    state.set_unbound("pull subscription closed");
                    continue 'bind;
                }
            }
        }

        // Draining: whatever was fetched but not started goes back at once, including what
        // the outstanding requests still bring while the subscription closes.
        release_fetched(&mut puller, &deliverer).await;
        drop(scaler);
        break;
    }

    drain(&state, tasks, shutdown_timeout, &abandon).await;
    if let Some(watcher) = watcher {
        let _ = watcher.await;
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

/// A delivery (one message or a batch) as the loop runs it.
type Delivery = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Where to hand a running delivery's messages back (their ack subjects), should it be abandoned
/// at the shutdown deadline: no allocation for a single message.
enum Replies {
    One(Option<async_nats::Subject>),
    Many(Vec<Option<async_nats::Subject>>),
}

impl Replies {
    /// How many messages the delivery runs (at least 1).
    fn count(&self) -> u32 {
        match self {
            Replies::One(_) => 1,
            Replies::Many(replies) => u32::try_from(replies.len()).unwrap_or(u32::MAX).max(1),
        }
    }

    /// NAKs (no delay) every message of an abandoned delivery.
    async fn release(self, client: &async_nats::Client) {
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

/// How gathering a batch ended.
enum Gathered {
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
async fn gather(
    puller: &mut Puller,
    deliverer: &Deliverer,
    batch: &mut Vec<jetstream::Message>,
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

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The autoscaler of one function: every tick, the worker count from busy workers and backlog.
async fn scale(state: Arc<FunctionState>, workers: Arc<Workers>, mut consumer: PullConsumer) {
    let config = &state.config;
    let mut scaler = Autoscaler::new(config.min_workers, config.max_workers);
    let mut ticks = tokio::time::interval(autoscale::TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let metrics = &state.metrics;
    let mut tick = 0u32;
    loop {
        tick = tick.wrapping_add(1);
        ticks.tick().await;
        // From the first tick on: a backlog waiting at start-up is seen at once.
        if tick % PENDING_EVERY_TICKS == 1 {
            if let Ok(info) = consumer.info().await {
                metrics
                    .pending
                    .set(i64::try_from(info.num_pending).unwrap_or(i64::MAX));
            }
        }
        let seen = Observation {
            busy: u32::try_from(workers.busy()).unwrap_or(u32::MAX),
            backlog: u64::try_from(metrics.pending.get()).unwrap_or(0),
        };
        let target = scaler.observe(seen, tokio::time::Instant::now());
        if target as usize != workers.target() {
            tracing::debug!(function = %config.name, workers = target, busy = seen.busy, backlog = seen.backlog, "scaled");
        }
        workers.set_target(target as usize);
        metrics.workers.set(i64::from(target));
    }
}

/// Pauses the function's consumer on the server until `until`, so no pod receives its
/// messages during the breaker's cool-down (nats-server 2.11+). This pod stops pulling either way.
async fn pause_on_server(
    js: &jetstream::Context,
    stream: &str,
    consumer: &str,
    until: tokio::time::Instant,
) {
    let wall = time::OffsetDateTime::now_utc()
        + until.saturating_duration_since(tokio::time::Instant::now());
    let paused = async {
        js.get_stream(stream)
            .await
            .map_err(|e| e.to_string())?
            .pause_consumer(consumer, wall)
            .await
            .map_err(|e| e.to_string())
    };
    match paused.await {
        Ok(_) => {
            tracing::warn!(function = consumer, until = %wall, "consumer paused on the server")
        }
        Err(error) => {
            tracing::error!(function = consumer, %error, "could not pause the consumer on the server; this pod stops pulling")
        }
    }
}

/// Waits for in-flight deliveries, at most `timeout`; then hands back (NAK, no delay) those
/// still running, so another pod starts them at once instead of after `ack_wait`.
async fn drain(
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
async fn release_fetched(puller: &mut Puller, deliverer: &Deliverer) {
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

/// Binds the function (its stream, durable consumer, dead-letter stream and advisory consumer),
/// retrying with backoff until it works or `cancel` fires.
async fn bind_until_bound(
    state: &FunctionState,
    js: &jetstream::Context,
    auto_create_streams: bool,
    cancel: &CancellationToken,
) -> Option<(Bound, PullConsumer)> {
    let mut pause = Duration::from_millis(100);
    loop {
        let attempt = provision_function(js, &state.config, auto_create_streams);
        let result = tokio::select! {
            () = cancel.cancelled() => return None,
            result = attempt => result,
        };
        match result {
            Ok(bound) => return Some(bound),
            Err(error) => {
                tracing::warn!(function = %state.config.name, %error, "cannot bind yet; retrying");
                state.set_unbound(error);
            }
        }
        if !backoff_pause(cancel, pause).await {
            return None;
        }
        pause = (pause * 2).min(MAX_BIND_BACKOFF);
    }
}

/// Sleeps `pause` unless cancelled; returns whether to go on.
async fn backoff_pause(cancel: &CancellationToken, pause: Duration) -> bool {
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(pause) => true,
    }
}
