//! The lease on an ordered function's consumer: one record per function in the KV bucket
//! `JETFN_ORDERED`, written with compare-and-set and a TTL, renewed while the pod serves.
//!
//! The holder stops acting *before* the server can expire its record: it counts the lease from
//! when it sent its last successful write (the server counts from later, when it stored it),
//! and gives up at [`Lease::deadline`], a quarter of the TTL early. A pod that cannot renew
//! (partitioned, or its record taken) aborts its running handlers by then, so by the time
//! another pod can create the record nothing of the old holder runs. This assumes the hosts'
//! clocks run at about the same rate (not that they agree): the usual assumption of a lease.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use tokio::time::Instant;

use crate::bucket::{self, Bucket, BucketError, WriteError};

/// The bucket's name.
pub(crate) const BUCKET: &str = "JETFN_ORDERED";

/// The bucket ([`bucket::config`]): a lease expires by the TTL its last revision carries.
pub(crate) fn config() -> kv::Config {
    bucket::config(
        BUCKET,
        "jetfn ordered functions: which pod holds each function's consumer",
    )
}

/// `JETFN_ORDERED`, created when missing.
pub(crate) async fn ensure(js: &jetstream::Context) -> Result<Bucket, BucketError> {
    bucket::ensure(js, config()).await
}

/// The lease's TTL for a function whose messages wait `ack_wait` for an ack: as long (a crashed
/// holder's messages come back after `ack_wait` anyway), in whole seconds, at least 2 s.
pub(crate) fn ttl(ack_wait: Duration) -> Duration {
    let seconds = ack_wait.as_secs() + u64::from(ack_wait.subsec_nanos() > 0);
    Duration::from_secs(seconds.max(2))
}

/// Why a standby did not get the lease.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotAcquired {
    /// Another pod holds it (its owner id).
    Held(String),
    /// The bucket did not answer or refused.
    Unavailable(String),
}

/// A held lease.
#[derive(Debug)]
pub(crate) struct Lease {
    bucket: Bucket,
    key: String,
    owner: String,
    revision: u64,
    ttl: Duration,
    /// When the last successful write was sent.
    written: Instant,
}

/// The lease was taken by another pod or could not be renewed in time.
#[derive(Debug, thiserror::Error)]
#[error("the lease on {key} is lost: {reason}")]
pub(crate) struct Lost {
    key: String,
    reason: String,
}

impl Lease {
    /// Takes the lease `key` for `owner` if nobody holds it.
    pub(crate) async fn acquire(
        bucket: &Bucket,
        key: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, NotAcquired> {
        let expected = match bucket.store.entry(key).await {
            Ok(None) => 0,
            Ok(Some(entry)) if entry.operation == kv::Operation::Put && !entry.value.is_empty() => {
                let owner = String::from_utf8_lossy(&entry.value).into_owned();
                return Err(NotAcquired::Held(owner));
            }
            Ok(Some(entry)) => entry.revision,
            Err(error) => return Err(NotAcquired::Unavailable(error.to_string())),
        };
        let written = Instant::now();
        let value = Bytes::from(owner.to_owned());
        match bucket::write(bucket, key, value, expected, ttl).await {
            Ok(revision) => Ok(Lease {
                bucket: bucket.clone(),
                key: key.to_owned(),
                owner: owner.to_owned(),
                revision,
                ttl,
                written,
            }),
            Err(WriteError::Conflict) => Err(NotAcquired::Held("another pod, just now".to_owned())),
            Err(WriteError::Unavailable(reason)) => Err(NotAcquired::Unavailable(reason)),
        }
    }

    /// When this pod must have stopped acting unless it renewed meanwhile.
    pub(crate) fn deadline(&self) -> Instant {
        self.written + self.ttl * 3 / 4
    }

    /// How often to renew: four times per TTL.
    pub(crate) fn period(&self) -> Duration {
        self.ttl / 4
    }

    /// Renews the lease, giving up at its deadline.
    pub(crate) async fn renew(&mut self) -> Result<(), Lost> {
        let sent = Instant::now();
        let value = Bytes::from(self.owner.clone());
        let write = bucket::write(&self.bucket, &self.key, value, self.revision, self.ttl);
        match tokio::time::timeout_at(self.deadline(), write).await {
            Ok(Ok(revision)) => {
                self.revision = revision;
                self.written = sent;
                Ok(())
            }
            Ok(Err(WriteError::Conflict)) => Err(self.lost("another pod holds it")),
            // Not renewed this time: the next period tries again, until the deadline.
            Ok(Err(WriteError::Unavailable(reason))) if Instant::now() < self.deadline() => {
                tracing::debug!(key = %self.key, %reason, "lease not renewed; trying again");
                Ok(())
            }
            Ok(Err(WriteError::Unavailable(reason))) => Err(self.lost(&reason)),
            Err(_) => Err(self.lost("not renewed before its deadline")),
        }
    }

    /// Gives the lease up (after draining): a purge marker, so the next holder need not wait
    /// for the TTL.
    pub(crate) async fn release(self) {
        let cleared = bucket::clear(&self.bucket, &self.key, self.revision, self.ttl).await;
        if let Err(error) = cleared {
            tracing::debug!(key = %self.key, %error, "lease not released; it expires by its TTL");
        }
    }

    fn lost(&self, reason: &str) -> Lost {
        Lost {
            key: self.key.clone(),
            reason: reason.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ttl_is_ack_wait_in_whole_seconds_at_least_two() {
        assert_eq!(ttl(Duration::from_secs(30)), Duration::from_secs(30));
        assert_eq!(ttl(Duration::from_millis(2_500)), Duration::from_secs(3));
        assert_eq!(ttl(Duration::from_millis(300)), Duration::from_secs(2));
    }
}
