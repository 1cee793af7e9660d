//! Once-only steps: [`Context::once`](crate::Context::once) runs a side effect at most once per
//! (function, input, step) to success, and gives every later delivery its stored result.
//!
//! Each step has a record in the KV bucket [`BUCKET`] (`JETFN_ONCE`) under
//! [`OnceKey::record_key`]:
//!
//! 1. **Claim**: a write that succeeds only when the key has no record (or a cleared one, or a
//!    claim whose lease is over): `{"claimed":{"owner":..,"lease_until":..}}`. A `done` record
//!    is returned as it is; a live claim of another delivery is waited for (polled until it is
//!    done, cleared or its lease is over), never run beside.
//! 2. **Lease**: while the step runs its claim is rewritten every third of the lease (the
//!    function's `ack_wait`), each write conditional on the revision before it. A rewrite that
//!    finds another revision means the claim was taken over: the step is dropped and the call
//!    fails (retryable).
//! 3. **Result**: `Ok(value)` is stored as `{"done":value}` with a write conditional on the
//!    claim's revision, which proves the claim was still ours; `Err` clears the claim (a purge
//!    conditional on that revision) and stores nothing, so a retry runs the step again.
//!
//! Every revision carries `Nats-TTL` = the function's `once_retention` (see [`record`]). The
//! bucket being unavailable fails the call with a retryable error before the step runs. A lease
//! deadline is the owner's wall clock: pods' clocks must agree within a third of the lease.

mod key;
mod record;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::bucket::Bucket;
use crate::handler::{Context, HandlerError};
use crate::once_bucket::Steps;
use record::{Found, Record, RecordError};

#[cfg(feature = "deploy")]
pub(crate) use crate::once_bucket::ensure as ensure_bucket;
#[cfg(feature = "deploy")]
pub(crate) use crate::once_bucket::BUCKET;
pub use key::OnceKey;

/// How long a record lives when its function does not say (`once_retention`).
pub(crate) const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why a once-only step failed, besides an error of the step itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum OnceError {
    /// The bucket did not answer: the step was not run, or its result could not be stored (then
    /// its claim ends with its lease and a later delivery runs it again with the same key).
    #[error("once-only step `{key}`: the KV bucket JETFN_ONCE is unavailable: {reason}")]
    Unavailable {
        /// The step's key.
        key: String,
        /// What failed.
        reason: String,
    },
    /// The step's lease ran out (the claim could not be renewed, or was taken over by another
    /// delivery): its result is not stored and the step was stopped.
    #[error("once-only step `{key}`: its claim was lost (lease over or taken over)")]
    Lost {
        /// The step's key.
        key: String,
    },
    /// The step's value could not be encoded as JSON (permanent: the step already ran).
    #[error("once-only step `{key}`: cannot encode its value as JSON: {source}")]
    Encode {
        /// The step's key.
        key: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The stored record or value does not decode as the step's type (permanent).
    #[error("once-only step `{key}`: the stored value does not decode: {source}")]
    Decode {
        /// The step's key.
        key: String,
        /// The JSON error.
        source: serde_json::Error,
    },
}

/// Runs step `key` as [`Context::once`](crate::Context::once) describes.
pub(crate) async fn run<T, F, Fut>(
    steps: &Steps,
    js: &jetstream::Context,
    key: OnceKey,
    f: F,
) -> Result<T, HandlerError>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce(OnceKey) -> Fut,
    Fut: Future<Output = Result<T, HandlerError>>,
{
    let store = steps
        .store(js)
        .await
        .map_err(|e| failure(&key, RecordError::Unavailable(e.reason)))?;
    let owner = format!("{:016x}", rand::random::<u64>());
    loop {
        match claim(steps, store, &key, &owner).await? {
            Claim::Won(revision) => {
                let held = Held {
                    steps,
                    store,
                    key: &key,
                    owner: &owner,
                    revision,
                    until: Instant::now() + steps.lease,
                };
                return held.run(f).await;
            }
            Claim::Done(value) => {
                return serde_json::from_str(value.get()).map_err(|source| {
                    HandlerError::permanent(OnceError::Decode {
                        key: key.to_string(),
                        source,
                    })
                })
            }
            Claim::Busy {
                owner: holder,
                lease_until,
            } => {
                tracing::debug!(%key, %holder, "a once-only step runs in another delivery; waiting");
                let left = Duration::from_millis(lease_until.saturating_sub(record::now_millis()));
                tokio::time::sleep(steps.poll().min(left + Duration::from_millis(10))).await;
            }
        }
    }
}

/// What a claim attempt found.
enum Claim {
    /// The claim is ours, at this revision.
    Won(u64),
    /// The step is done: its value.
    Done(Box<RawValue>),
    /// Another delivery holds a live claim.
    Busy { owner: String, lease_until: u64 },
}

/// Claims `key` for `owner`: written over nothing, a cleared record or an expired claim.
async fn claim(
    steps: &Steps,
    store: &Bucket,
    key: &OnceKey,
    owner: &str,
) -> Result<Claim, HandlerError> {
    // The first delivery is the common case: try creating before reading.
    let mut expected = 0;
    loop {
        let value = Record::claim(owner, SystemTime::now(), steps.lease).encode();
        match record::write(store, key.record_key(), value, expected, steps.retention).await {
            Ok(revision) => return Ok(Claim::Won(revision)),
            Err(RecordError::Conflict) => {}
            Err(error) => return Err(failure(key, error)),
        }
        expected = match record::read(store, key.record_key())
            .await
            .map_err(|e| failure(key, e))?
        {
            Found::Absent => 0,
            Found::Cleared(revision) => revision,
            Found::Done(value) => return Ok(Claim::Done(value)),
            Found::Claimed {
                revision,
                lease_until,
                ..
            } if Found::expired(lease_until, SystemTime::now()) => revision,
            Found::Claimed {
                owner, lease_until, ..
            } => return Ok(Claim::Busy { owner, lease_until }),
        };
    }
}

/// A claim this call holds.
struct Held<'a> {
    steps: &'a Steps,
    store: &'a Bucket,
    key: &'a OnceKey,
    owner: &'a str,
    /// The claim's last revision.
    revision: u64,
    /// Until when the claim is surely ours (this process's clock).
    until: Instant,
}

impl Held<'_> {
    /// Runs the step under the lease, then stores its value or clears the claim.
    async fn run<T, F, Fut>(mut self, f: F) -> Result<T, HandlerError>
    where
        T: Serialize,
        F: FnOnce(OnceKey) -> Fut,
        Fut: Future<Output = Result<T, HandlerError>>,
    {
        let step = AssertUnwindSafe(f(self.key.clone())).catch_unwind();
        match self.keep_while(step).await? {
            Ok(Ok(value)) => self.store_done(&value).await.map(|()| value),
            Ok(Err(error)) => {
                self.clear().await;
                Err(error)
            }
            Err(panic) => {
                self.clear().await;
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// Polls `step` to its end, renewing the claim every third of the lease; the claim lost
    /// ends it (the step is dropped).
    async fn keep_while<O>(&mut self, step: impl Future<Output = O>) -> Result<O, HandlerError> {
        let mut step = std::pin::pin!(step);
        loop {
            tokio::select! {
                output = &mut step => return Ok(output),
                () = tokio::time::sleep(self.steps.lease / 3) => self.renew().await?,
            }
        }
    }

    async fn renew(&mut self) -> Result<(), HandlerError> {
        let started = Instant::now();
        let value = Record::claim(self.owner, SystemTime::now(), self.steps.lease).encode();
        let written = record::write(
            self.store,
            self.key.record_key(),
            value,
            self.revision,
            self.steps.retention,
        )
        .await;
        match written {
            Ok(revision) => {
                self.revision = revision;
                self.until = started + self.steps.lease;
                Ok(())
            }
            Err(RecordError::Unavailable(reason)) if Instant::now() < self.until => {
                tracing::warn!(key = %self.key, %reason, "cannot renew a once-only step's lease; trying again");
                Ok(())
            }
            Err(_) => Err(self.lost()),
        }
    }

    /// Stores the step's value, conditional on the claim; retried while the claim is surely
    /// ours.
    async fn store_done<T: Serialize>(&mut self, value: &T) -> Result<(), HandlerError> {
        let raw = serde_json::value::to_raw_value(value).map_err(|source| {
            HandlerError::permanent(OnceError::Encode {
                key: self.key.to_string(),
                source,
            })
        })?;
        let done = Record::Done(raw).encode();
        loop {
            let key = self.key.record_key();
            let written = record::write(
                self.store,
                key,
                done.clone(),
                self.revision,
                self.steps.retention,
            )
            .await;
            match written {
                Ok(_) => return Ok(()),
                Err(RecordError::Unavailable(reason)) if Instant::now() < self.until => {
                    tracing::warn!(key = %self.key, %reason, "cannot store a once-only step's value; trying again");
                    tokio::time::sleep(self.steps.poll()).await;
                }
                Err(RecordError::Conflict) => return Err(self.lost()),
                Err(error) => return Err(failure(self.key, error)),
            }
        }
    }

    /// Clears the claim so that a retry runs the step again; when that fails the claim ends
    /// with its lease.
    async fn clear(&self) {
        let key = self.key.record_key();
        let cleared = record::clear(self.store, key, self.revision, self.steps.retention).await;
        if let Err(error) = cleared {
            tracing::warn!(key = %self.key, %error, "cannot clear a failed once-only step's claim; it ends with its lease");
        }
    }

    fn lost(&self) -> HandlerError {
        HandlerError::retryable(OnceError::Lost {
            key: self.key.to_string(),
        })
    }
}

/// A record operation's failure as the step's failure: retryable unless the record is corrupt.
fn failure(key: &OnceKey, error: RecordError) -> HandlerError {
    let key = key.to_string();
    match error {
        RecordError::Corrupt { source, .. } => {
            HandlerError::permanent(OnceError::Decode { key, source })
        }
        RecordError::Conflict => HandlerError::retryable(OnceError::Lost { key }),
        RecordError::Unavailable(reason) => {
            HandlerError::retryable(OnceError::Unavailable { key, reason })
        }
    }
}

impl Context {
    /// Runs `f` at most once per (function, input, `step`) to success and returns its value,
    /// stored in the KV bucket `JETFN_ONCE`: a redelivered message, a retried handler or
    /// another pod gets the stored value back without running `f`.
    ///
    /// - `f` gets the step's [`OnceKey`], stable across redeliveries, pods and restarts: pass
    ///   [`OnceKey::as_str`] to the provider as its idempotency key.
    /// - An `Err` from `f` stores nothing (a retry runs it again) and is returned as it is.
    /// - While `f` runs, its claim is a lease (the function's `ack_wait`) kept alive; another
    ///   delivery of the same input meanwhile waits for it and never runs `f` beside it. If the
    ///   process dies mid-step, the lease ends and a later delivery runs `f` again with the
    ///   same key: **at most once to success, at least once to a crash**.
    /// - The bucket being unavailable fails the call (retryable) without running `f`: `f`
    ///   never runs without its record. Records live the function's `once_retention`
    ///   (default `7d`).
    ///
    /// The input is the message for an event function; for a batch function it is the
    /// batch's members as a set (the same members in a retried batch, in any order, give the
    /// same key; a batch made up differently is another input); for a request function it is
    /// the request (its reply subject): a step runs once per request, and a client's retry is
    /// a new request.
    ///
    /// ```no_run
    /// # use jetfn::{Context, HandlerError, OnceKey};
    /// # async fn charge(_amount: u64, _key: &str) -> Result<String, std::io::Error> { Ok(String::new()) }
    /// # async fn example(ctx: Context) -> Result<(), HandlerError> {
    /// let transaction: String = ctx
    ///     .once("charge", |key: OnceKey| async move {
    ///         Ok(charge(42, key.as_str()).await?)
    ///     })
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn once<T, F, Fut>(&self, step: &str, f: F) -> Result<T, HandlerError>
    where
        T: Serialize + DeserializeOwned + Send,
        F: FnOnce(OnceKey) -> Fut + Send,
        Fut: std::future::Future<Output = Result<T, HandlerError>> + Send,
    {
        let (function, input) = self.function_and_input();
        let key = OnceKey::new(&function.name, input, step);
        run(&function.once, &function.jetstream, key, f).await
    }
}
