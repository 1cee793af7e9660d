//! One binding's pull loop: each turn reads the breaker's gate, asks the server for what the
//! free workers can take, waits for a message (or a worker, a reconnect, the end), and starts
//! it (`start`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::bind::backoff_pause;
use super::delivery::Deliverer;
use super::prefetch::{Prefetch, Want};
use super::pull::{Pulled, Puller};
use super::scale::pause_on_server;
use super::workers::{Inline, ServiceTimes, Workers};
use super::{Outcome, Runner, TRIAL_DEFER, TRIAL_POLL};
use crate::breaker::Gate;
use crate::state::FunctionState;

/// How serving a bound consumer ended.
pub(super) enum Served {
    /// The runtime is stopping.
    Stop,
    /// The consumer or its subscription went away: bind again.
    Rebind(String),
}

/// What one turn of the loop does next.
pub(super) enum Turn {
    /// Go on with the next turn.
    Next,
    /// End serving.
    End(Served),
}

/// The pull loop's state across bindings.
pub(super) struct Loop {
    pub(super) state: Arc<FunctionState>,
    pub(super) js: jetstream::Context,
    pub(super) api_prefix: Arc<str>,
    pub(super) auto_create_streams: bool,
    pub(super) cancel: CancellationToken,
    pub(super) shutdown_timeout: Duration,
    pub(super) connections: watch::Receiver<u64>,
    pub(super) deliverer: Arc<Deliverer>,
    pub(super) workers: Arc<Workers>,
    pub(super) inline: Inline,
    pub(super) prefetch: Prefetch,
    /// Deliveries that can run at once: 1 while handlers finish inline, else the workers.
    pub(super) parallel: usize,
    pub(super) services: ServiceTimes,
    /// Cancelled past the shutdown deadline: running deliveries are handed back.
    pub(super) abandon: CancellationToken,
    /// Messages per worker: 1, or a batch function's `batch`.
    pub(super) batch_size: usize,
    pub(super) tasks: JoinSet<()>,
}

impl Loop {
    pub(super) fn new(runner: Runner) -> Self {
        let Runner {
            state,
            js,
            api_prefix,
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
            api_prefix,
            auto_create_streams,
            cancel,
            shutdown_timeout,
            connections,
        }
    }

    /// Pulls and runs deliveries from one binding until the runtime stops or the consumer goes.
    pub(super) async fn serve(&mut self, puller: &mut Puller, stream: &str) -> Served {
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
        // fetched ahead waits in the subscription until a worker is free; the autoscaler counts
        // it (asked for and not yet taken: on its way, or waiting here).
        let waiting = &self.state.pulling().waiting;
        if free == 0 {
            waiting.store(puller.outstanding() > 0, Ordering::Relaxed);
        } else if waiting.load(Ordering::Relaxed) {
            waiting.store(false, Ordering::Relaxed);
        }
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
