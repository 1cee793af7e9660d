//! The autoscaler task of one function, and pausing its consumer on the server.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_nats::jetstream;
use async_nats::jetstream::consumer::PullConsumer;
use tokio::time::Instant;

use super::backlog::{Polls, Seen};
use super::delivery::Deliverer;
use super::workers::Workers;
use crate::autoscale::{self, Autoscaler, Observation};
use crate::breaker::Gate;
use crate::state::FunctionState;

/// Aborts a task when dropped.
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The autoscaler of one function: every tick, the worker count from busy workers and backlog.
/// The backlog is what deliveries report, and the server's `num_pending` when a poll carries
/// information (see `backlog`).
pub(super) async fn scale(
    state: Arc<FunctionState>,
    workers: Arc<Workers>,
    deliverer: Arc<Deliverer>,
    mut consumer: PullConsumer,
) {
    let config = &state.config;
    let mut scaler = Autoscaler::new(config.min_workers, config.max_workers);
    let mut ticks = tokio::time::interval(autoscale::TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let metrics = &state.metrics;
    let mut polls = Polls::new(Instant::now(), Polls::random_offset());
    loop {
        ticks.tick().await;
        let busy = workers.busy();
        let seen = Seen {
            held_back: matches!(deliverer.gate(), Gate::Paused(_) | Gate::TrialRunning),
            all_busy: busy >= workers.target(),
            reported: state.pulling().pending_reports.load(Ordering::Relaxed),
        };
        if polls.due(seen, Instant::now()) {
            match consumer.info().await {
                Ok(info) => {
                    let pending = i64::try_from(info.num_pending).unwrap_or(i64::MAX);
                    metrics.pending.set(pending);
                }
                Err(error) => {
                    tracing::debug!(function = %config.name, %error, "consumer info failed");
                    polls.failed(Instant::now());
                }
            }
        }
        // Messages fetched ahead and waiting for a busy worker are backlog too: the server
        // counts them delivered, not pending.
        let fetched_waiting = u64::from(state.pulling().waiting.load(Ordering::Relaxed));
        let seen = Observation {
            busy: u32::try_from(busy).unwrap_or(u32::MAX),
            backlog: u64::try_from(metrics.pending.get())
                .unwrap_or(0)
                .max(fetched_waiting),
        };
        let target = scaler.observe(seen, Instant::now());
        if target as usize != workers.target() {
            tracing::debug!(function = %config.name, workers = target, busy = seen.busy, backlog = seen.backlog, "scaled");
        }
        workers.set_target(target as usize);
        metrics.workers.set(i64::from(target));
    }
}

/// Pauses the function's consumer on the server until `until`, so no pod receives its
/// messages during the breaker's cool-down (nats-server 2.11+). This pod stops pulling either way.
pub(super) async fn pause_on_server(
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
