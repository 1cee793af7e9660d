//! The pull loop of one function: bind, pull as many messages as there are free workers, run
//! each delivery, and on shutdown hand back what was fetched but not started.

mod bind;
mod delivery;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use futures::{FutureExt, StreamExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub(crate) use bind::{bind, create_stream_for, derived_stream_name, Bound};
use delivery::Deliverer;
pub(crate) use delivery::Outcome;

use crate::breaker::Admission;
use crate::dlq::{self, advisory};
use crate::state::FunctionState;
use async_nats::jetstream::consumer::PullConsumer;

/// How often a waiting loop looks whether the half-open trial has finished.
const TRIAL_POLL: Duration = Duration::from_millis(20);

/// The longest pause between two attempts to bind a function.
const MAX_BIND_BACKOFF: Duration = Duration::from_secs(5);

/// Runs one function until `cancel` fires, then drains it within `shutdown_timeout`.
pub(crate) async fn run(
    state: Arc<FunctionState>,
    js: jetstream::Context,
    auto_create_streams: bool,
    cancel: CancellationToken,
    shutdown_timeout: Duration,
) {
    let deliverer = Arc::new(Deliverer::new(
        state.clone(),
        js.clone(),
        auto_create_streams,
    ));
    let workers = state.config.max_workers as usize;
    let permits = Arc::new(Semaphore::new(workers));
    state
        .metrics
        .workers
        .set(i64::from(state.config.max_workers));
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
        let pull = bound
            .consumer
            .stream()
            .max_messages_per_batch(workers)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await;
        let mut messages = match pull {
            Ok(messages) => messages,
            Err(error) => {
                state.set_unbound(format!("pull failed: {error}"));
                backoff_pause(&cancel, Duration::from_secs(1)).await;
                continue;
            }
        };
        state.set_bound(&bound.stream);
        tracing::info!(function = %state.config.name, stream = %bound.stream, subject = %state.config.subject, "consumer bound");

        let mut paused_until = None;
        loop {
            while tasks.try_join_next().is_some() {}
            match deliverer.admit() {
                Admission::Go => {}
                Admission::WaitUntil(until) => {
                    if paused_until != Some(until) {
                        pause_on_server(&js, &bound.stream, &state.config.name, until).await;
                        paused_until = Some(until);
                    }
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep_until(until) => continue,
                    }
                }
                Admission::WaitForTrial => {
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(TRIAL_POLL) => continue,
                    }
                }
            }
            let permit = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let next = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    if let Some(until) = deliverer.open_until() {
                        // The breaker opened while this message was on its way.
                        let delay = until.saturating_duration_since(tokio::time::Instant::now());
                        deliverer
                            .settle(&message, Outcome::Deferred { delay })
                            .await;
                        continue;
                    }
                    let deliverer = deliverer.clone();
                    tasks.spawn(async move {
                        deliverer.deliver(message).await;
                        drop(permit);
                    });
                }
                Some(Err(error)) => {
                    use jetstream::consumer::pull::MessagesErrorKind as Kind;
                    tracing::warn!(function = %state.config.name, %error, "pull error");
                    if matches!(
                        error.kind(),
                        Kind::ConsumerDeleted | Kind::PushBasedConsumer
                    ) {
                        state.set_unbound(error);
                        continue 'bind;
                    }
                }
                None => {
                    state.set_unbound("pull stream ended");
                    continue 'bind;
                }
            }
        }

        // Draining: whatever was fetched but not started goes back at once.
        while let Some(Some(Ok(message))) = messages.next().now_or_never() {
            deliverer.settle(&message, Outcome::Released).await;
        }
        break;
    }

    drain(&state, tasks, shutdown_timeout).await;
    if let Some(watcher) = watcher {
        let _ = watcher.await;
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
        let attempt = async {
            dlq::ensure_stream(js, &state.config.dlq)
                .await
                .map_err(|e| e.to_string())?;
            let bound = bind(js, &state.config, auto_create_streams)
                .await
                .map_err(|e| e.to_string())?;
            let advisories = advisory::bind(js, &state.config.name, &bound.stream).await?;
            Ok::<_, String>((bound, advisories))
        };
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
