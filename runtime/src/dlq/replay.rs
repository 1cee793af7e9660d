//! Inspecting and replaying dead letters (`dlq list`, `dlq replay`).
//!
//! A replay republishes the original payload and original headers to the original subject with
//! `Nats-Msg-Id: replay:<dlq stream>:<dlq seq>`, waits for the ack, then deletes the dead letter.
//! A replay cut off between the two steps and run again publishes the same id, which the
//! original stream drops as a duplicate (within its duplicate window): nothing is doubled, and
//! nothing is deleted before it is stored again.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;

use super::headers as h;

/// One dead letter.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Its sequence in the dead-letter stream.
    pub sequence: u64,
    /// The dead-letter stream.
    pub stream: String,
    /// The original payload.
    pub payload: Bytes,
    /// The original headers plus the `Jetfn-*` provenance.
    pub headers: HeaderMap,
}

impl DeadLetter {
    /// The original payload, unchanged.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The original headers plus the `Jetfn-*` provenance.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Why it was dead-lettered: the `Jetfn-Error-Kind` (`permanent`, `decode`, `invalid`,
    /// `exhausted`, `crashed`).
    pub fn error_kind(&self) -> &str {
        self.header(h::ERROR_KIND)
    }

    /// The last error: the `Jetfn-Error`.
    pub fn error(&self) -> &str {
        self.header(h::ERROR)
    }

    /// A header's value, or `""`.
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.as_str())
    }

    /// The headers the message had before it was dead-lettered.
    pub fn original_headers(&self) -> HeaderMap {
        let mut original = crate::propagation::headers_except(Some(&self.headers), |name| {
            name.starts_with("Jetfn-") || name.eq_ignore_ascii_case("Nats-Msg-Id")
        });
        if let Some(id) = self.headers.get(h::ORIGINAL_MSG_ID) {
            original.insert("Jetfn-Replayed-From-Msg-Id", id.as_str());
        }
        original
    }
}

/// A dead-letter operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeadLetterError {
    /// No stream captures the dead-letter subject.
    #[error("no stream captures `{subject}`: {reason}")]
    NoStream {
        /// The dead-letter subject.
        subject: String,
        /// Why.
        reason: String,
    },
    /// A JetStream request failed.
    #[error("{0}")]
    JetStream(String),
    /// A dead letter lacks its `Jetfn-Subject` header.
    #[error("dead letter {0} has no {h} header", h = h::SUBJECT)]
    NoSubject(u64),
}

fn js_error(error: impl std::fmt::Display) -> DeadLetterError {
    DeadLetterError::JetStream(error.to_string())
}

impl DeadLetter {
    /// The stream jetfn creates for dead letters when none captures `jetfn.dlq.>`.
    pub const STREAM: &'static str = super::DLQ_STREAM;
    /// The stream jetfn keeps the servers' `MAX_DELIVERIES` advisories in (to dead-letter a
    /// message whose deliveries ran out while the process died each time: kind `crashed`).
    pub const ADVISORY_STREAM: &'static str = super::ADVISORY_STREAM;

    /// Every dead letter on `dlq_subject` (`jetfn.dlq.<function>` unless the function sets
    /// `dlq`), oldest first, at most `limit`: what `dlq list` prints.
    pub async fn list(
        js: &jetstream::Context,
        dlq_subject: &str,
        limit: Option<usize>,
    ) -> Result<Vec<DeadLetter>, DeadLetterError> {
        list(js, dlq_subject, limit).await
    }

    /// Republishes at most `limit` dead letters of `dlq_subject` to their original subjects,
    /// oldest first, each deleted once its republish is acknowledged; returns how many: what
    /// `dlq replay` does.
    pub async fn replay(
        js: &jetstream::Context,
        dlq_subject: &str,
        limit: Option<usize>,
    ) -> Result<usize, DeadLetterError> {
        replay(js, dlq_subject, limit).await
    }

    /// The name of the durable consumer on [`DeadLetter::ADVISORY_STREAM`] through which the
    /// pods running exactly these functions watch their advisories (one per set of functions,
    /// whatever their order).
    pub fn advisory_consumer<'a>(functions: impl IntoIterator<Item = &'a str>) -> String {
        super::advisory::advisory_consumer(functions)
    }
}

/// Every dead letter on `dlq_subject`, oldest first (at most `limit`).
pub(crate) async fn list(
    js: &jetstream::Context,
    dlq_subject: &str,
    limit: Option<usize>,
) -> Result<Vec<DeadLetter>, DeadLetterError> {
    let stream_name = js
        .stream_by_subject(dlq_subject.to_owned())
        .await
        .map_err(|e| DeadLetterError::NoStream {
            subject: dlq_subject.to_owned(),
            reason: e.to_string(),
        })?;
    let stream = js.get_stream(&stream_name).await.map_err(js_error)?;
    let reader = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: dlq_subject.to_owned(),
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(js_error)?;
    let available = usize::try_from(reader.cached_info().num_pending).unwrap_or(usize::MAX);
    let wanted = limit.map_or(available, |limit| limit.min(available));
    let mut letters = Vec::with_capacity(wanted);
    while letters.len() < wanted {
        let mut batch = reader
            .fetch()
            .max_messages((wanted - letters.len()).min(256))
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .map_err(js_error)?;
        let before = letters.len();
        while let Some(message) = batch.next().await {
            let message = message.map_err(js_error)?;
            let sequence = message.info().map_err(js_error)?.stream_sequence;
            letters.push(DeadLetter {
                sequence,
                stream: stream_name.clone(),
                payload: message.payload.clone(),
                headers: message.headers.clone().unwrap_or_default(),
            });
        }
        if letters.len() == before {
            break;
        }
    }
    Ok(letters)
}

/// Republishes up to `limit` dead letters to their original subjects, each removed from the
/// dead-letter stream once the republish is acknowledged. Returns how many were replayed.
pub(crate) async fn replay(
    js: &jetstream::Context,
    dlq_subject: &str,
    limit: Option<usize>,
) -> Result<usize, DeadLetterError> {
    let letters = list(js, dlq_subject, limit).await?;
    let mut replayed = 0;
    for letter in &letters {
        let subject = letter.header(h::SUBJECT);
        if subject.is_empty() {
            return Err(DeadLetterError::NoSubject(letter.sequence));
        }
        let mut headers = letter.original_headers();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("replay:{}:{}", letter.stream, letter.sequence),
        );
        js.publish_with_headers(subject.to_owned(), headers, letter.payload.clone())
            .await
            .map_err(js_error)?
            .await
            .map_err(js_error)?;
        js.get_stream(&letter.stream)
            .await
            .map_err(js_error)?
            .delete_message(letter.sequence)
            .await
            .map_err(js_error)?;
        replayed += 1;
    }
    Ok(replayed)
}
