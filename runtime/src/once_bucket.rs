//! The KV bucket `JETFN_ONCE` of once-only steps, and what a function's steps share (its lease,
//! retention and bucket handle): below the handler, which keeps one `Steps` per function.

use std::time::Duration;

use async_nats::jetstream::{self, kv};

use crate::bucket::{self, Bucket, BucketError};

/// The bucket's name.
pub(crate) const BUCKET: &str = "JETFN_ONCE";

/// The bucket ([`bucket::config`]). No `max_age`: each record expires by the TTL its last
/// revision carries (`once_retention` of its function).
pub(crate) fn config() -> kv::Config {
    bucket::config(
        BUCKET,
        "jetfn once-only steps: a claim or the stored result per step",
    )
}

/// `JETFN_ONCE`, created when missing.
pub(crate) async fn ensure(js: &jetstream::Context) -> Result<Bucket, BucketError> {
    bucket::ensure(js, config()).await
}

/// What the once-only steps of one function share: their lease, their retention, and the
/// bucket (looked up on the first step, then kept).
#[derive(Debug)]
pub(crate) struct Steps {
    pub(crate) lease: Duration,
    pub(crate) retention: Duration,
    store: tokio::sync::OnceCell<Bucket>,
}

impl Steps {
    /// Steps whose claims live `lease` unless renewed and whose records live `retention`.
    pub(crate) fn new(lease: Duration, retention: Duration) -> Self {
        Self {
            lease: lease.max(Duration::from_millis(300)),
            retention,
            store: tokio::sync::OnceCell::new(),
        }
    }

    pub(crate) async fn store(&self, js: &jetstream::Context) -> Result<&Bucket, BucketError> {
        self.store.get_or_try_init(|| ensure(js)).await
    }

    /// How often a waiting delivery looks at a live claim again.
    pub(crate) fn poll(&self) -> Duration {
        (self.lease / 10).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}
