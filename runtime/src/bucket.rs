//! KV buckets whose every revision carries its own TTL (`JETFN_ONCE` of once-only steps,
//! `JETFN_ORDERED` of ordered functions' leases): finding or creating one, and the
//! compare-and-set writes on a key.
//!
//! Every write is a JetStream publish to the key's subject with
//! `Nats-Expected-Last-Subject-Sequence` (the revision it replaces; 0 = the key has no message)
//! and `Nats-TTL`. We publish ourselves rather than through `kv::Store::update` because a TTL
//! belongs to one revision, not to the key, and `Store::update` (and `Store::create_with_ttl`
//! when it re-creates a deleted key) writes a revision without one: such a record would never
//! expire. The buckets have no `max_age`: the TTL of each revision is what expires it.

use std::time::Duration;

use async_nats::header::{self, HeaderMap, HeaderValue};
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::{self, kv};
use bytes::Bytes;

/// A bucket could not be found nor created.
#[derive(Debug, thiserror::Error)]
#[error("the KV bucket {bucket} is unavailable: {reason}")]
pub(crate) struct BucketError {
    pub(crate) bucket: String,
    pub(crate) reason: String,
}

/// A bucket, and where its records are written.
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

/// A bucket of `name`: one value per key (no history), file storage, per-message TTL on (each
/// revision carries its own); the markers the server leaves when a record expires live one
/// second.
pub(crate) fn config(name: &str, description: &str) -> kv::Config {
    kv::Config {
        bucket: name.to_owned(),
        description: description.to_owned(),
        history: 1,
        storage: jetstream::stream::StorageType::File,
        limit_markers: Some(Duration::from_secs(1)),
        ..Default::default()
    }
}

/// The bucket of `config`, created when missing (by any pod or by `provision`; creating it again
/// with the same configuration changes nothing). In a cluster it is created with three replicas
/// (one when the cluster cannot place three): a lease or a once-only record must outlive the
/// loss of one server as the streams do.
///
/// A bucket made by hand without per-message TTL gets it turned on: without it every write
/// (each carries a TTL) would be refused.
pub(crate) async fn ensure(
    js: &jetstream::Context,
    config: kv::Config,
) -> Result<Bucket, BucketError> {
    let name = config.bucket.clone();
    let error = |reason: String| BucketError {
        bucket: name.clone(),
        reason,
    };
    let store = match js.get_key_value(&name).await {
        Ok(store) => store,
        Err(_) => match create(js, config).await {
            Ok(store) => store,
            // Created meanwhile by another pod with another configuration, or a lookup that
            // failed for a passing reason: one more look.
            Err(create) => js
                .get_key_value(&name)
                .await
                .map_err(|_| error(create.to_string()))?,
        },
    };
    let mut stream = store.stream.cached_info().config.clone();
    let store = if stream.allow_message_ttl {
        store
    } else {
        stream.allow_message_ttl = true;
        js.update_stream(stream)
            .await
            .map_err(|e| error(format!("turning on per-message TTL: {e}")))?;
        js.get_key_value(&name)
            .await
            .map_err(|e| error(e.to_string()))?
    };
    // A context in a domain writes through its API prefix, as `kv::Store::put` does; the
    // domain is the one that answers on it.
    let api_prefix = if store.use_jetstream_prefix {
        let account = js
            .query_account()
            .await
            .map_err(|e| error(format!("reading the JetStream domain: {e}")))?;
        let domain = account.domain.ok_or_else(|| {
            error("the JetStream API answered through a prefix but names no domain".to_owned())
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

/// Creates the bucket: with three replicas in a cluster, else (or when three cannot be placed)
/// with one.
async fn create(
    js: &jetstream::Context,
    config: kv::Config,
) -> Result<kv::Store, jetstream::context::CreateKeyValueError> {
    if js.client().server_info().cluster.is_some() {
        let replicated = kv::Config {
            num_replicas: 3,
            ..config.clone()
        };
        match js.create_key_value(replicated).await {
            Ok(store) => return Ok(store),
            Err(error) => {
                tracing::debug!(bucket = %config.bucket, %error, "three replicas refused; creating one");
            }
        }
    }
    js.create_key_value(config).await
}

/// A compare-and-set write that did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// The key's last revision is not the one expected: someone else wrote it.
    #[error("the record changed meanwhile")]
    Conflict,
    /// The bucket did not answer or refused.
    #[error("{0}")]
    Unavailable(String),
}

/// Writes `value` to `key` if its last revision is `expected` (0: the key has no message),
/// with `ttl`; the new revision.
pub(crate) async fn write(
    bucket: &Bucket,
    key: &str,
    value: Bytes,
    expected: u64,
    ttl: Duration,
) -> Result<u64, WriteError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
        HeaderValue::from(expected),
    );
    headers.insert(header::NATS_MESSAGE_TTL, ttl_header(ttl));
    publish(bucket, key, headers, value).await
}

/// Clears `key` if its last revision is `expected`: a purge marker that itself expires after
/// `ttl`.
pub(crate) async fn clear(
    bucket: &Bucket,
    key: &str,
    expected: u64,
    ttl: Duration,
) -> Result<u64, WriteError> {
    let mut headers = HeaderMap::new();
    headers.insert("KV-Operation", "PURGE");
    headers.insert(header::NATS_ROLLUP, "sub");
    headers.insert(
        header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
        HeaderValue::from(expected),
    );
    headers.insert(header::NATS_MESSAGE_TTL, ttl_header(ttl));
    publish(bucket, key, headers, Bytes::new()).await
}

async fn publish(
    bucket: &Bucket,
    key: &str,
    headers: HeaderMap,
    value: Bytes,
) -> Result<u64, WriteError> {
    let ack = bucket
        .js
        .publish_with_headers(bucket.subject(key), headers, value)
        .await
        .map_err(unavailable)?
        .await
        .map_err(|error| match error.kind() {
            PublishErrorKind::WrongLastSequence => WriteError::Conflict,
            _ => unavailable(error),
        })?;
    Ok(ack.sequence)
}

fn unavailable(error: PublishError) -> WriteError {
    WriteError::Unavailable(error.to_string())
}

/// `Nats-TTL` in whole seconds, rounded up (the server's unit; at least 1 s).
fn ttl_header(ttl: Duration) -> HeaderValue {
    let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    HeaderValue::from(seconds.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_whole_seconds_rounded_up() {
        assert_eq!(ttl_header(Duration::from_secs(604_800)).as_str(), "604800");
        assert_eq!(ttl_header(Duration::from_millis(2_500)).as_str(), "3");
        assert_eq!(ttl_header(Duration::from_millis(10)).as_str(), "1");
    }
}
