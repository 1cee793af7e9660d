//! Dead-lettering one message from a delivery: publish, await the stream's ack, and on the last
//! allowed delivery hold the message until the dead letter is stored.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use tokio::time::Instant;

use super::{dead_letter_headers, ensure_stream, publish, DlqError, Provenance};
use crate::delivered::Delivered;
use crate::policy::{DeadLetterKind, RetrySchedule};

/// What dead-lettering a message came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lettered {
    /// Stored in the dead-letter stream: ack the original.
    Stored,
    /// Not stored: the original stays in its stream, redelivered after `delay`.
    Kept { delay: Duration },
}

/// What a function's dead letters need.
#[derive(Debug)]
pub(crate) struct DeadLetters {
    pub(crate) function: Arc<str>,
    pub(crate) jetstream: jetstream::Context,
    /// The dead-letter subject.
    pub(crate) subject: String,
    pub(crate) max_deliver: u32,
    pub(crate) schedule: RetrySchedule,
    /// How often a held message gets an in-progress ack.
    pub(crate) keep_alive: Duration,
}

impl DeadLetters {
    /// Publishes `message` to the dead-letter subject and waits for the ack.
    ///
    /// On the last allowed delivery a NAK would bring no redelivery, and the advisory path would
    /// later dead-letter the message as `crashed`, losing the real cause. So there the message is
    /// kept (in-progress acks) and the publish retried with the function's backoff until it is
    /// stored with its real kind and error; only if the process ends first does the advisory path
    /// take it over.
    pub(crate) async fn letter(
        &self,
        message: &Delivered,
        kind: DeadLetterKind,
        error: &str,
        attempt: u32,
    ) -> Lettered {
        let mut tries = 1;
        loop {
            match self.store(message, kind, error).await {
                Ok(()) => {
                    tracing::warn!(function = %self.function, kind = kind.as_str(), %error, "dead-lettered");
                    return Lettered::Stored;
                }
                Err(dlq_error)
                    if attempt < self.max_deliver
                        || matches!(dlq_error, DlqError::TooLarge { .. }) =>
                {
                    tracing::error!(function = %self.function, error = %dlq_error, "dead-letter publish failed; the message stays in its stream");
                    return Lettered::Kept {
                        delay: self.schedule.delay(attempt, &mut rand::rng()),
                    };
                }
                Err(dlq_error) => {
                    let delay = self.schedule.delay(tries, &mut rand::rng());
                    tracing::error!(
                        function = %self.function,
                        error = %dlq_error,
                        retry_in = %humantime::format_duration(delay),
                        "dead-letter publish failed on the last delivery; keeping the message and retrying"
                    );
                    if dlq_error.is_stream_missing(&self.jetstream).await {
                        // JETFN_DLQ was deleted: make it again (a custom `dlq` subject's stream is
                        // the operator's to restore).
                        let _ = ensure_stream(&self.jetstream, &self.subject).await;
                    }
                    self.hold(message, delay).await;
                    tries = tries.saturating_add(1);
                }
            }
        }
    }

    /// Publishes one dead letter of `message` and waits for the stream's ack.
    async fn store(
        &self,
        message: &Delivered,
        kind: DeadLetterKind,
        error: &str,
    ) -> Result<(), DlqError> {
        let info = message
            .info()
            .map_err(|e| DlqError::NotJetStream(e.to_string()))?;
        let from = Provenance {
            function: &self.function,
            subject: &message.subject,
            stream: info.stream,
            stream_sequence: info.stream_sequence,
            deliveries: u64::try_from(info.delivered).unwrap_or(0),
        };
        let headers = dead_letter_headers(message.headers.as_ref(), &from, kind, error);
        publish(
            &self.jetstream,
            &self.subject,
            message.payload.clone(),
            headers,
        )
        .await
    }

    /// Waits `delay` while keeping `message` from redelivery with in-progress acks.
    async fn hold(&self, message: &Delivered, delay: Duration) {
        let until = Instant::now() + delay;
        loop {
            if let Err(error) = message.ack_with(AckKind::Progress).await {
                tracing::debug!(function = %self.function, %error, "in-progress ack failed");
            }
            let now = Instant::now();
            if now >= until {
                return;
            }
            tokio::time::sleep((until - now).min(self.keep_alive)).await;
        }
    }
}
