//! The pull loop of one function: bind, pull as many messages as there are free workers, run
//! each delivery, scale the workers, and on shutdown hand back what was fetched but not started.

mod bind;
mod delivery;
mod pull;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::PullConsumer;
use futures::FutureExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub(crate) use bind::{provision_function, Bound};
use delivery::Deliverer;
pub(crate) use delivery::Outcome;
use pull::{Pulled, Puller};
use workers::{Inline, Workers};

use crate::autoscale::{self, Autoscaler, Observation};
use crate::breaker::{Admission, Gate};
use crate::dlq::advisory;
use crate::state::FunctionState;

/// How often a waiting loop looks whether the half-open trial has finished.
const TRIAL_POLL: Duration = Duration::from_millis(20);

/// How long a message that arrives during the half-open trial is handed back for.
const TRIAL_DEFER: Duration = Duration::from_secs(1);

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
            while tasks.try_join_next().is_some() {}
            let wanted = match deliverer.gate() {
                Gate::Flow => workers.free(),
                Gate::Trial => workers.free().min(1),
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
            if wanted > 0 {
                if let Err(error) = puller.request_up_to(wanted).await {
                    tracing::debug!(function = %state.config.name, %error, "pull request not sent");
                    if !backoff_pause(&cancel, Duration::from_millis(200)).await {
                        break;
                    }
                    continue;
                }
            }
            let pulled = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = workers.changed() => continue,
                pulled = puller.next() => pulled,
            };
            match pulled {
                Some(Pulled::Message(message)) => {
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
                    let mut delivery =
                        Box::pin(async move { deliverer.deliver(message, stream).await });
                    // A handler that does not wait on anything is done on its first poll, right
                    // here: no task, no wake-ups. One that waits (or computes long, see
                    // `Inline`) takes a worker task.
                    let done = inline.allowed() && {
                        let started = std::time::Instant::now();
                        let done = (&mut delivery).now_or_never().is_some();
                        inline.observe(started.elapsed());
                        done
                    };
                    if !done {
                        let busy = workers.start();
                        tasks.spawn(async move {
                            delivery.await;
                            drop(busy);
                        });
                    }
                }
                Some(Pulled::Stale) => {}
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

        // Draining: whatever was fetched but not started goes back at once.
        puller.stop().await;
        while let Some(message) = puller.next_buffered() {
            deliverer.settle(&message, Outcome::Released).await;
        }
        drop(scaler);
        break;
    }

    drain(&state, tasks, shutdown_timeout).await;
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
                Some(Pulled::Stale | Pulled::Gone(_)) => {}
                // The main loop sees the closed subscription on its next pull.
                None => return true,
            },
        }
    }
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

/// Waits for in-flight deliveries, at most `timeout`.
async fn drain(state: &FunctionState, mut tasks: JoinSet<()>, timeout: Duration) {
    while tasks.try_join_next().is_some() {}
    let in_flight = tasks.len();
    let finished = tokio::time::timeout(timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    match finished {
        Ok(()) => tracing::info!(function = %state.config.name, in_flight, "drained"),
        Err(_) => tracing::warn!(
            function = %state.config.name,
            left = tasks.len(),
            "shutdown timeout: unfinished deliveries are abandoned; the server redelivers them after ack_wait"
        ),
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
