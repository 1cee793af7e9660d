//! The record of one step in `JETFN_ONCE`: its JSON value, and the compare-and-set writes that
//! claim it, keep its lease, store its result or clear it.
//!
//! Every write is a compare-and-set write of [`crate::bucket`] carrying the function's
//! `once_retention` as its TTL.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv::Operation;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::bucket::{self, Bucket, WriteError};

/// A record's value.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Record {
    /// A delivery is running the step: `owner` (random per call) holds it until `lease_until`
    /// (milliseconds since the Unix epoch, the owner's clock), renewed while the step runs.
    Claimed { owner: String, lease_until: u64 },
    /// The step succeeded with this value (JSON).
    Done(Box<RawValue>),
}

impl Record {
    /// A claim by `owner` for `lease` from `now`.
    pub(crate) fn claim(owner: &str, now: SystemTime, lease: Duration) -> Self {
        Record::Claimed {
            owner: owner.to_owned(),
            lease_until: millis(now + lease),
        }
    }

    pub(crate) fn encode(&self) -> Bytes {
        // A `Record` always serializes: its only free part is already JSON.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// What the key holds now.
#[derive(Debug)]
pub(crate) enum Found {
    /// Nothing: the key has no message.
    Absent,
    /// A delete or purge marker at this revision (a cleared claim, or an expired record).
    Cleared(u64),
    /// A claim, live or not.
    Claimed {
        revision: u64,
        owner: String,
        lease_until: u64,
    },
    /// The stored result.
    Done(Box<RawValue>),
}

impl Found {
    /// Whether a claim's lease is over at `now`.
    pub(crate) fn expired(lease_until: u64, now: SystemTime) -> bool {
        lease_until <= millis(now)
    }
}

/// A write or read that did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    /// The key's last revision is not the one expected: someone else wrote it.
    #[error("the record changed meanwhile")]
    Conflict,
    /// The bucket did not answer or refused.
    #[error("{0}")]
    Unavailable(String),
    /// The stored value is not a record.
    #[error("the record `{key}` in JETFN_ONCE is not a once-only record: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
}

/// Writes `value` to `key` if its last revision is `expected` (0: the key has no message),
/// with `ttl`; the new revision.
pub(crate) async fn write(
    bucket: &Bucket,
    key: &str,
    value: Bytes,
    expected: u64,
    ttl: Duration,
) -> Result<u64, RecordError> {
    Ok(bucket::write(bucket, key, value, expected, ttl).await?)
}

/// Clears `key` if its last revision is `expected`: a purge marker (which drops the claim) that
/// itself expires after `ttl`.
pub(crate) async fn clear(
    bucket: &Bucket,
    key: &str,
    expected: u64,
    ttl: Duration,
) -> Result<u64, RecordError> {
    Ok(bucket::clear(bucket, key, expected, ttl).await?)
}

/// What `key` holds now.
pub(crate) async fn read(bucket: &Bucket, key: &str) -> Result<Found, RecordError> {
    let entry = bucket
        .store
        .entry(key)
        .await
        .map_err(|e| RecordError::Unavailable(e.to_string()))?;
    let Some(entry) = entry else {
        return Ok(Found::Absent);
    };
    if entry.operation != Operation::Put || entry.value.is_empty() {
        return Ok(Found::Cleared(entry.revision));
    }
    let record = serde_json::from_slice(&entry.value).map_err(|source| RecordError::Corrupt {
        key: key.to_owned(),
        source,
    })?;
    Ok(match record {
        Record::Claimed { owner, lease_until } => Found::Claimed {
            revision: entry.revision,
            owner,
            lease_until,
        },
        Record::Done(value) => Found::Done(value),
    })
}

impl From<WriteError> for RecordError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Conflict => RecordError::Conflict,
            WriteError::Unavailable(reason) => RecordError::Unavailable(reason),
        }
    }
}

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn now_millis() -> u64 {
    millis(SystemTime::now())
}

/// Milliseconds since the Unix epoch (0 before it).
fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_encode_as_tagged_json() {
        let now = UNIX_EPOCH + Duration::from_millis(1_000);
        let claim = Record::claim("ab12", now, Duration::from_secs(30));
        assert_eq!(
            claim.encode(),
            Bytes::from_static(br#"{"claimed":{"owner":"ab12","lease_until":31000}}"#)
        );
        let value = serde_json::value::to_raw_value(&("tx-1", 2)).expect("json");
        let done = Record::Done(value).encode();
        assert_eq!(done, Bytes::from_static(br#"{"done":["tx-1",2]}"#));
        match serde_json::from_slice(&done).expect("decodes") {
            Record::Done(raw) => assert_eq!(raw.get(), r#"["tx-1",2]"#),
            Record::Claimed { .. } => panic!("not a claim"),
        }
        assert!(serde_json::from_slice::<Record>(b"{\"other\":1}").is_err());
    }

    #[test]
    fn a_lease_is_over_at_its_deadline() {
        let at = UNIX_EPOCH + Duration::from_secs(100);
        let until = millis(at);
        assert!(!Found::expired(until, at - Duration::from_millis(1)));
        assert!(Found::expired(until, at));
    }
}
