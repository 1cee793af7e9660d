//! Riding out JetStream elections: which publish failures pass once a leader is elected, and
//! the bounded backoff that waits for one.
//!
//! While a clustered stream has no leader (its leader's server was cut off or restarted), a
//! publish to its subjects gets "no responders" (status 503), which async-nats reports as
//! [`PublishErrorKind::StreamNotFound`], the same answer as for a subject no stream captures;
//! or the ack times out (the request reached a leader that stepped down), or the server says the
//! cluster is not available. None of these says the stream is missing: only the meta layer's
//! list of streams does ([`lookup`]). A publish that meets an election waits and is sent again
//! (the output's `Nats-Msg-Id` makes a resend that was stored after all a duplicate the stream
//! drops) until it is acknowledged or [`BUDGET`] is spent.

use std::time::Duration;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::{self, publish::PublishAck, ErrorCode};
use async_nats::HeaderMap;
use bytes::Bytes;
use tokio::time::Instant;

/// How long a publish waits for a leader in all: well above a 30 s election. A handler's own
/// `timeout` still bounds it; the delivery keeps its message with in-progress acks meanwhile.
pub(crate) const BUDGET: Duration = Duration::from_secs(90);
/// The first pause between two attempts; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(50);
/// The longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// How long one attempt waits for its ack before it is sent again. A publish that reached a
/// leader just before it was cut off or stepped down is never answered: waiting out the client's
/// whole request timeout (5 s) would hold the output, and its input, well past the election.
/// A resend that was stored after all is a duplicate the stream drops (same `Nats-Msg-Id`).
const ATTEMPT_ACK_WAIT: Duration = Duration::from_secs(1);

/// One JetStream publish, its ack awaited at most [`ATTEMPT_ACK_WAIT`] (then `TimedOut`, which
/// [`classify`] reads as transient). Every publish jetfn waits on goes through here: outputs,
/// dead letters, delayed outputs when due.
pub(crate) async fn send(
    js: &jetstream::Context,
    subject: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Result<PublishAck, PublishError> {
    let ack = js
        .publish_with_headers(subject.to_owned(), headers, body)
        .await?;
    match tokio::time::timeout(ATTEMPT_ACK_WAIT, ack).await {
        Ok(acked) => acked,
        Err(_) => Err(PublishError::new(PublishErrorKind::TimedOut)),
    }
}

/// Whether a failed publish to `subject` means that no stream captures it, so that creating
/// one is the remedy: a "no responders" that the meta layer confirms. A stream without a leader
/// answers "no responders" too; creating it again would only load a cluster mid-election.
pub(crate) async fn stream_missing(
    js: &jetstream::Context,
    subject: &str,
    error: &PublishError,
) -> bool {
    classify(error) == Failure::NoResponders && lookup(js, subject).await == Lookup::Missing
}

/// What a failed JetStream publish says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No one answered on the subject: no stream captures it, or its stream has no leader now.
    NoResponders,
    /// It may pass once a leader is elected or the connection is back.
    Transient,
    /// Sending again would not help (a wrong expected sequence, a payload too large...).
    Final,
}

/// Classifies a publish error.
pub(crate) fn classify(error: &PublishError) -> Failure {
    match error.kind() {
        PublishErrorKind::StreamNotFound => Failure::NoResponders,
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => Failure::Transient,
        PublishErrorKind::Other if server_unavailable(error) => Failure::Transient,
        _ => Failure::Final,
    }
}

/// A JetStream API error that an election or a lost quorum explains.
fn server_unavailable(error: &PublishError) -> bool {
    let Some(api) = std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<jetstream::Error>())
    else {
        return false;
    };
    api.code() == 503
        || [
            ErrorCode::CLUSTER_NOT_AVAILABLE,
            ErrorCode::CLUSTER_NOT_LEADER,
            ErrorCode::CLUSTER_NOT_ACTIVE,
            ErrorCode::STREAM_OFFLINE,
        ]
        .contains(&api.error_code())
}

/// Whether a stream captures a subject, as the meta layer knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// A stream captures it (maybe without a leader right now).
    Exists,
    /// No stream captures it.
    Missing,
    /// The lookup itself failed (the meta leader is being elected, the connection is down).
    Unknown,
}

/// Asks the server which stream captures `subject`.
pub(crate) async fn lookup(js: &jetstream::Context, subject: &str) -> Lookup {
    use jetstream::context::GetStreamByNameErrorKind;
    match js.stream_by_subject(subject.to_owned()).await {
        Ok(_) => Lookup::Exists,
        Err(error) if error.kind() == GetStreamByNameErrorKind::NotFound => Lookup::Missing,
        Err(_) => Lookup::Unknown,
    }
}

/// Exponential pauses with jitter between attempts, within a total budget.
#[derive(Debug)]
pub(crate) struct Backoff {
    deadline: Instant,
    pause: Duration,
}

impl Backoff {
    /// Attempts until `budget` from now.
    pub(crate) fn new(budget: Duration) -> Self {
        Self {
            deadline: Instant::now() + budget,
            pause: FIRST_PAUSE,
        }
    }

    /// Waits before the next attempt; `false` (at once) when the budget is spent.
    pub(crate) async fn wait(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        let jitter = rand::random_range(0.8..1.2);
        let pause = self.pause.mul_f64(jitter).min(self.deadline - now);
        self.pause = (self.pause * 2).min(MAX_PAUSE);
        tokio::time::sleep(pause).await;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_responders_is_not_read_as_a_missing_stream() {
        let error = PublishError::new(PublishErrorKind::StreamNotFound);
        assert_eq!(classify(&error), Failure::NoResponders);
    }

    #[test]
    fn timeouts_and_lost_connections_pass_with_time_but_a_wrong_sequence_does_not() {
        for kind in [PublishErrorKind::TimedOut, PublishErrorKind::BrokenPipe] {
            let error = PublishError::new(kind);
            assert_eq!(classify(&error), Failure::Transient, "{kind:?}");
        }
        for kind in [
            PublishErrorKind::WrongLastSequence,
            PublishErrorKind::MaxPayloadExceeded,
            PublishErrorKind::Other,
        ] {
            let error = PublishError::new(kind);
            assert_eq!(classify(&error), Failure::Final, "{kind:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_backoff_doubles_to_its_cap_and_ends_with_the_budget() {
        let started = Instant::now();
        let mut backoff = Backoff::new(Duration::from_secs(10));
        let mut pauses = Vec::new();
        let mut last = started;
        while backoff.wait().await {
            pauses.push(last.elapsed());
            last = Instant::now();
        }
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(10),
            "the budget, no more"
        );
        assert!(pauses[0] < Duration::from_millis(61), "{pauses:?}");
        assert!(pauses[1] > pauses[0], "{pauses:?}");
        assert!(
            pauses.iter().all(|p| *p <= MAX_PAUSE.mul_f64(1.2)),
            "{pauses:?}"
        );
    }
}
