//! The pull loop of one function: bind, pull what keeps the workers busy (see `prefetch`), run
//! each delivery, scale the workers, and on shutdown hand back what was fetched but not started
//! and, past the shutdown deadline, what is still running.
//!
//! [`run`] binds (again after the consumer went away) and [`Loop::serve`] pulls: each turn it
//! reads the breaker's gate, asks the server for what the free workers can take, waits for a
//! message (or a worker, a reconnect, the end), and [`Loop::start`]s it — inline when the
//! handler finishes on its first poll, else as a task (see `workers`).

mod backlog;
mod bind;
mod delivery;
mod drain;
mod gather;
mod ordered;
mod prefetch;
mod pull;
mod pulling;
mod scale;
mod start;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[cfg(feature = "deploy")]
pub(crate) use bind::provision_function;
use bind::{backoff_pause, bind_until_bound};
pub(crate) use delivery::Outcome;
use drain::{drain, release_fetched};
use pull::Puller;
use pulling::{Loop, Served};
use scale::{scale, AbortOnDrop};

use crate::app::Application;
use crate::state::FunctionState;

/// How often a waiting loop looks whether the half-open trial has finished.
const TRIAL_POLL: Duration = Duration::from_millis(20);

/// How long a message that arrives during the half-open trial is handed back for.
const TRIAL_DEFER: Duration = Duration::from_secs(1);

/// What a function's loop needs from the runtime.
pub(crate) struct Runner {
    pub(crate) state: Arc<FunctionState>,
    pub(crate) js: jetstream::Context,
    /// The JetStream API prefix of `js` (`$JS.API`, or `$JS.<domain>.API`): pull requests go
    /// to `<prefix>.CONSUMER.MSG.NEXT.<stream>.<consumer>`.
    pub(crate) api_prefix: Arc<str>,
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
    if let Some(by) = runner.state.config.ordered_by.clone() {
        return ordered::run(runner, by).await;
    }
    let mut pulling = Loop::new(runner);
    while !pulling.cancel.is_cancelled() {
        let (state, js, cancel) = (&pulling.state, &pulling.js, &pulling.cancel);
        let Some(bound) = bind_until_bound(state, js, pulling.auto_create_streams, cancel).await
        else {
            break;
        };
        let api = &pulling.api_prefix;
        let mut puller =
            match Puller::new(&js.client(), api, &bound.stream, &state.config.name).await {
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
            pulling.deliverer.clone(),
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
}
