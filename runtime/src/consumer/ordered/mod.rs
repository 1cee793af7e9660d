//! Ordered functions (`ordered_by`): the messages of one key run one at a time, in stream order,
//! across every pod; different keys run in parallel, up to `max_workers` per pod.
//!
//! ```text
//!   pods:      A (holds the lease)                B, C (standby: bound, ready, not pulling)
//!   lease:     JETFN_ORDERED[<function>] = A      renewed every ttl/4; A stops by 3/4 ttl
//!   consumer:  the function's durable consumer on the user's stream (unchanged), pulled by A
//!   A's hand:  key k1: [seq 4 running] [9 waiting] [12 waiting]
//!              key k2: [seq 7 retrying in 2 s] [8 waiting]       <- k2 held (keys_held = 1)
//!              key k3: [seq 11 running]
//! ```
//!
//! - **One holder.** The function's consumer is pulled by the one pod holding its lease in the
//!   KV bucket `JETFN_ORDERED` ([`lease`]); the others stand by, bound and ready, and try to
//!   take the lease as it frees. Within the holder, keys run in parallel up to `max_workers`;
//!   scaling out adds standbys, not throughput (the README says so).
//! - **Per key, in order.** Every message pulled is held under its key ([`queues`]); of each
//!   key only the lowest sequence runs, and the next starts when it is settled.
//! - **Failures hold their key.** A failing message is not NAKed: it runs again in place after
//!   its backoff ([`turn`]), kept alive, and counts its runs toward `max_deliver`; the key's
//!   later messages wait, kept alive too. Only when it succeeds or is dead-lettered does the
//!   key go on. A message without its key (a missing header) is dead-lettered `permanent`.
//! - **Takeovers are fenced.** A new holder runs nothing until every message the server counts
//!   as pending for the consumer is in its hand ([`fence`]); a holder that cannot renew stops
//!   all its runs before the lease can expire ([`lease`]).
//! - **Shutdown hands over.** On SIGTERM the holder stops pulling, NAKs what waits, lets
//!   running turns finish within the shutdown budget (renewing meanwhile), then releases the
//!   lease: a standby takes over at once, its fence passing as the NAKed messages come back.

mod fence;
pub(crate) mod lease;
mod queues;
mod serve;
mod turn;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use jetfn_grammar::order::OrderedBy;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use super::bind::{backoff_pause, bind_until_bound};
use super::delivery::Deliverer;
use super::pull::Puller;
use super::Runner;
use crate::state::FunctionState;
use fence::Fence;
use lease::{Lease, NotAcquired};
use queues::Queues;
use serve::{Ended, Holding};
use turn::Turns;

/// An ordered function's loop, across bindings and holdings of its lease.
pub(super) struct Ordered {
    state: Arc<FunctionState>,
    js: jetstream::Context,
    by: OrderedBy,
    deliverer: Arc<Deliverer>,
    cancel: CancellationToken,
    shutdown_timeout: Duration,
    connections: watch::Receiver<u64>,
    /// This pod's name in the lease.
    owner: String,
    /// `$JS.API`, or `$JS.<domain>.API` in a JetStream domain.
    api_prefix: Arc<str>,
}

/// Runs an ordered function until `cancel` fires; on shutdown the holder drains and hands over.
pub(crate) async fn run(runner: Runner, by: OrderedBy) {
    let deliverer = Deliverer::new(
        runner.state.clone(),
        runner.js.clone(),
        runner.auto_create_streams,
        &runner.app,
    );
    let mut ordered = Ordered {
        by,
        deliverer: Arc::new(deliverer),
        owner: owner_id(),
        state: runner.state,
        js: runner.js,
        cancel: runner.cancel,
        shutdown_timeout: runner.shutdown_timeout,
        connections: runner.connections,
        api_prefix: runner.api_prefix,
    };
    let auto_create = runner.auto_create_streams;
    while !ordered.cancel.is_cancelled() {
        let (state, js, cancel) = (&ordered.state, &ordered.js, &ordered.cancel);
        let Some(bound) = bind_until_bound(state, js, auto_create, cancel).await else {
            break;
        };
        let bucket = match lease::ensure(js).await {
            Ok(bucket) => bucket,
            Err(error) => {
                state.set_unbound(&error);
                backoff_pause(cancel, Duration::from_secs(1)).await;
                continue;
            }
        };
        state.set_bound(&bound.stream);
        state.set_holding(false);
        let ttl = lease::ttl(state.config.ack_wait);
        let name = state.config.name.clone();
        let Some(lease) = standby(&bucket, &name, &ordered.owner, ttl, cancel).await else {
            break;
        };
        tracing::info!(function = %name, owner = %ordered.owner, "ordered: lease taken; fencing");
        state.set_holding(true);
        state
            .metrics
            .workers
            .set(i64::from(state.config.max_workers));
        let ended = ordered.hold(lease, bound.consumer, &bound.stream).await;
        ordered.state.set_holding(false);
        ordered.state.metrics.workers.set(0);
        match ended {
            Ended::Stop => break,
            Ended::Lost(reason) => {
                tracing::warn!(function = %name, %reason, "ordered: lease lost; standing by")
            }
            Ended::Rebind(reason) => {
                tracing::warn!(function = %name, %reason, "consumer gone; binding again");
                ordered.state.set_unbound(reason);
            }
        }
    }
}

impl Ordered {
    /// Serves the consumer while holding `lease`.
    async fn hold(
        &mut self,
        lease: Lease,
        consumer: jetstream::consumer::PullConsumer,
        stream: &str,
    ) -> Ended {
        let config = self.state.config.clone();
        let client = self.js.client();
        let api = &self.api_prefix;
        let mut puller = match Puller::new(&client, api, stream, &config.name).await {
            Ok(puller) => puller,
            Err(error) => {
                lease.release().await;
                return Ended::Rebind(format!("pull subscription failed: {error}"));
            }
        };
        let turns = Turns {
            deliverer: self.deliverer.clone(),
            stream: Arc::from(stream),
            workers: Arc::new(Semaphore::new(config.max_workers as usize)),
            keep_alive: (config.ack_wait / 2).max(Duration::from_millis(100)),
            keys_held: self.state.metrics.keys_held.clone(),
            stopping: CancellationToken::new(),
        };
        let holding = Holding {
            ordered: self,
            consumer,
            turns,
            queues: Queues::default(),
            shadows: HashMap::new(),
            tasks: tokio::task::JoinSet::new(),
            fence: Fence::default(),
            gone: None,
            settled: serve::Recent::default(),
            last_delivered: 0,
        };
        let ended = holding.serve(lease, &mut puller).await;
        puller.stop().await;
        ended
    }
}

/// Waits until this pod takes the lease (`None`: cancelled first). Tries again every eighth of
/// the TTL (between 250 ms and 2 s) while another pod holds it.
async fn standby(
    bucket: &crate::bucket::Bucket,
    key: &str,
    owner: &str,
    ttl: Duration,
    cancel: &CancellationToken,
) -> Option<Lease> {
    let pause = (ttl / 8).clamp(Duration::from_millis(250), Duration::from_secs(2));
    let mut logged = false;
    loop {
        match Lease::acquire(bucket, key, owner, ttl).await {
            Ok(lease) => return Some(lease),
            Err(NotAcquired::Held(holder)) if !logged => {
                tracing::info!(function = %key, %holder, "ordered: another pod holds the lease; standing by");
                logged = true;
            }
            Err(NotAcquired::Held(_)) => {}
            Err(NotAcquired::Unavailable(reason)) => {
                tracing::warn!(function = %key, %reason, "ordered: lease bucket unavailable; trying again");
            }
        }
        if !backoff_pause(cancel, pause).await {
            return None;
        }
    }
}

/// This pod's name in leases: its host name (the pod's name on Kubernetes), process id and a
/// random suffix (a restarted process is another holder).
fn owner_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "pod".to_owned());
    format!(
        "{host}/{}/{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}
