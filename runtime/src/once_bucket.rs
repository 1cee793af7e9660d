//! The KV bucket `JETFN_ONCE` of once-only steps, and what a function's steps share (its lease,
//! retention and bucket handle): below the handler, which keeps one `Steps` per function.

use std::time::Duration;

use async_nats::jetstream::{self, kv};

/// The bucket's name.
pub const BUCKET: &str = "JETFN_ONCE";

/// The bucket could not be found nor created.
#[derive(Debug, thiserror::Error)]
#[error("the KV bucket {BUCKET} is unavailable: {reason}")]
pub(crate) struct BucketError {
    pub(crate) reason: String,
}

/// The bucket: one value per key (no history), file storage, per-message TTL on. No `max_age`:
/// each record expires by the TTL its last revision carries (`once_retention` of its
/// function), and the markers the server leaves when one expires live one second.
pub(crate) fn config() -> kv::Config {
    kv::Config {
        bucket: BUCKET.to_owned(),
        description: "jetfn once-only steps: a claim or the stored result per step".to_owned(),
        history: 1,
        storage: jetstream::stream::StorageType::File,
        limit_markers: Some(Duration::from_secs(1)),
        ..Default::default()
    }
}

/// The bucket, and where its records are written.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    pub(crate) js: jetstream::Context,
    pub(crate) store: kv::Store,
    /// `$JS.<domain>.API` when the context is bound to a JetStream domain (`NATS_JS_DOMAIN`).
    api_prefix: Option<String>,
}

impl Bucket {
    /// The subject a record of `key` is written to (as `kv::Store` writes it).
    ///
    /// In a JetStream domain (`NATS_JS_DOMAIN`) that is `$JS.<domain>.API.$KV.<bucket>.<key>`:
    /// the domain's servers map it onto the bucket's own subject, wherever the pod is connected.
    pub(crate) fn subject(&self, key: &str) -> String {
        let prefix = self.store.put_prefix.as_ref().unwrap_or(&self.store.prefix);
        match &self.api_prefix {
            Some(api) => format!("{api}.{prefix}{key}"),
            None => format!("{prefix}{key}"),
        }
    }
}

/// The bucket, created when missing (by any pod or by `provision`; creating it again with the
/// same configuration changes nothing).
///
/// A bucket made by hand without per-message TTL gets it turned on: without it every write
/// (each carries a TTL) would be refused.
pub(crate) async fn ensure(js: &jetstream::Context) -> Result<Bucket, BucketError> {
    let store = find_or_create(js).await?;
    // A context in a domain writes through its API prefix, as `kv::Store::put` does; the
    // domain is the one that answers on it.
    let api_prefix = if store.use_jetstream_prefix {
        let account = js.query_account().await.map_err(|e| BucketError {
            reason: format!("reading the JetStream domain: {e}"),
        })?;
        let domain = account.domain.ok_or_else(|| BucketError {
            reason: "the JetStream API answered through a prefix but names no domain".to_owned(),
        })?;
        Some(format!("$JS.{domain}.API"))
    } else {
        None
    };
    Ok(Bucket {
        js: js.clone(),
        store,
        api_prefix,
    })
}

async fn find_or_create(js: &jetstream::Context) -> Result<kv::Store, BucketError> {
    let store = match js.get_key_value(BUCKET).await {
        Ok(store) => store,
        Err(_) => match js.create_key_value(config()).await {
            Ok(store) => store,
            // Created meanwhile by another pod with another configuration, or a lookup that
            // failed for a passing reason: one more look.
            Err(create) => js.get_key_value(BUCKET).await.map_err(|_| BucketError {
                reason: create.to_string(),
            })?,
        },
    };
    let mut stream = store.stream.cached_info().config.clone();
    if stream.allow_message_ttl {
        return Ok(store);
    }
    stream.allow_message_ttl = true;
    js.update_stream(stream).await.map_err(|e| BucketError {
        reason: format!("turning on per-message TTL: {e}"),
    })?;
    js.get_key_value(BUCKET).await.map_err(|e| BucketError {
        reason: e.to_string(),
    })
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
