//! Delivery policy: what to do with a handler's result.
//!
//! [`retry`] holds the backoff schedule. `decide` turns a handler run into a `Verdict`:
//! ack, retry after a delay, or dead-letter, from the failure's kind and the delivery count.

pub(crate) mod retry;

use std::time::Duration;

pub(crate) use retry::RetrySchedule;

use crate::handler::{FailureKind, HandlerError};

/// Why a handler run did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The handler returned `Err` (or the payload did not decode).
    Handler(HandlerError),
    /// The handler panicked.
    Panic(String),
    /// The handler ran past its `timeout`.
    Timeout(Duration),
}

impl Failure {
    /// The same failure again (one shared by every event of a batch call).
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Failure::Handler(error) => Failure::Handler(error.duplicate()),
            Failure::Panic(message) => Failure::Panic(message.clone()),
            Failure::Timeout(timeout) => Failure::Timeout(*timeout),
        }
    }

    /// Whether the payload did not decode into the handler's type (the handler never ran).
    pub(crate) fn is_undecodable(&self) -> bool {
        matches!(self, Failure::Handler(error) if error.kind() == FailureKind::Decode)
    }

    /// What the log line of this failure says: `undecodable payload` or `handler failed`.
    pub(crate) fn log_message(&self) -> &'static str {
        if self.is_undecodable() {
            "undecodable payload"
        } else {
            "handler failed"
        }
    }

    /// Whether retrying may help; such failures also count against the circuit breaker.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Failure::Handler(error) => error.kind() == FailureKind::Retryable,
            Failure::Panic(_) | Failure::Timeout(_) => true,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Handler(error) => write!(f, "{error}"),
            Failure::Panic(message) => write!(f, "handler panicked: {message}"),
            Failure::Timeout(limit) => write!(
                f,
                "handler timed out after {}",
                humantime::format_duration(*limit)
            ),
        }
    }
}

/// Why a message is dead-lettered; the `Jetfn-Error-Kind` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeadLetterKind {
    /// The handler returned `HandlerError::permanent`.
    Permanent,
    /// The payload did not decode into the handler's type.
    Decode,
    /// The decoded payload failed its validation (cargo feature `validate`).
    Invalid,
    /// The last allowed delivery failed.
    Exhausted,
    /// Every delivery ended without the handler returning (the process died).
    Crashed,
}

impl DeadLetterKind {
    /// The header value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Permanent => "permanent",
            DeadLetterKind::Decode => "decode",
            DeadLetterKind::Invalid => "invalid",
            DeadLetterKind::Exhausted => "exhausted",
            DeadLetterKind::Crashed => "crashed",
        }
    }
}

/// What to do with a delivery once its handler has run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It succeeded: ack.
    Ack,
    /// Try again after `delay`.
    Retry {
        /// The NAK delay.
        delay: Duration,
    },
    /// Publish to the dead-letter subject, then ack.
    DeadLetter {
        /// Why.
        kind: DeadLetterKind,
        /// The failure, for the `Jetfn-Error` header.
        error: String,
    },
}

/// Decides a delivery's fate from the handler's result and the delivery count (`attempt`,
/// 1-based) against `max_deliver`.
pub(crate) fn decide(
    result: Result<(), Failure>,
    attempt: u32,
    max_deliver: u32,
    schedule: &RetrySchedule,
    rng: &mut impl rand::Rng,
) -> Verdict {
    let failure = match result {
        Ok(()) => return Verdict::Ack,
        Err(failure) => failure,
    };
    let kind = match &failure {
        Failure::Handler(error) if error.kind() == FailureKind::Decode => {
            Some(DeadLetterKind::Decode)
        }
        Failure::Handler(error) if error.kind() == FailureKind::Invalid => {
            Some(DeadLetterKind::Invalid)
        }
        _ if !failure.is_retryable() => Some(DeadLetterKind::Permanent),
        _ if attempt >= max_deliver => Some(DeadLetterKind::Exhausted),
        _ => None,
    };
    match kind {
        Some(kind) => Verdict::DeadLetter {
            kind,
            error: failure.to_string(),
        },
        None => Verdict::Retry {
            delay: schedule.delay(attempt, rng),
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_decode_failure_is_not_logged_as_a_handler_failure() {
        use super::Failure;
        use crate::HandlerError;
        let decode = Failure::Handler(HandlerError::decode("expected value at line 1"));
        assert_eq!(decode.log_message(), "undecodable payload");
        let failed = Failure::Handler(HandlerError::retryable("db down"));
        assert_eq!(failed.log_message(), "handler failed");
        assert_eq!(Failure::Panic("x".into()).log_message(), "handler failed");
    }
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn schedule() -> RetrySchedule {
        RetrySchedule::new(Duration::from_secs(1), Duration::from_secs(60), 0.0).expect("valid")
    }

    #[test]
    fn verdict_table() {
        use DeadLetterKind::*;
        let retry = || Err(Failure::Handler(HandlerError::retryable("flaky")));
        let permanent = || Err(Failure::Handler(HandlerError::permanent("bad order")));
        let decode = || Err(Failure::Handler(HandlerError::decode("not json")));
        let invalid = || {
            Err(Failure::Handler(HandlerError::invalid(
                "email: not an email",
            )))
        };
        let panic = || Err(Failure::Panic("boom".into()));
        let timeout = || Err(Failure::Timeout(Duration::from_secs(5)));
        type Case = (
            &'static str,
            fn() -> Result<(), Failure>,
            u32,
            Option<DeadLetterKind>,
            Option<u64>,
        );
        let table: &[Case] = &[
            // name, result, attempt (of max 5), dead-letter kind, retry delay in seconds
            ("ok first", || Ok(()), 1, None, None),
            ("ok last", || Ok(()), 5, None, None),
            ("retryable first", retry, 1, None, Some(1)),
            ("retryable third", retry, 3, None, Some(4)),
            ("retryable last", retry, 5, Some(Exhausted), None),
            ("retryable past last", retry, 9, Some(Exhausted), None),
            ("permanent first", permanent, 1, Some(Permanent), None),
            ("decode first", decode, 1, Some(Decode), None),
            ("invalid first", invalid, 1, Some(Invalid), None),
            ("panic first", panic, 1, None, Some(1)),
            ("panic last", panic, 5, Some(Exhausted), None),
            ("timeout second", timeout, 2, None, Some(2)),
        ];
        let mut rng = StdRng::seed_from_u64(7);
        for (name, result, attempt, kind, delay) in table {
            let verdict = decide(result(), *attempt, 5, &schedule(), &mut rng);
            let expected = match (kind, delay) {
                (None, None) => Verdict::Ack,
                (None, Some(secs)) => Verdict::Retry {
                    delay: Duration::from_secs(*secs),
                },
                (Some(kind), _) => {
                    let Verdict::DeadLetter { kind: got, .. } = &verdict else {
                        panic!("{name}: expected a dead letter, got {verdict:?}");
                    };
                    assert_eq!(got, kind, "{name}");
                    continue;
                }
            };
            assert_eq!(verdict, expected, "{name}");
        }
    }

    #[test]
    fn dead_letter_error_text_says_what_happened() {
        let mut rng = StdRng::seed_from_u64(1);
        let verdict = decide(
            Err(Failure::Panic("index out of bounds".into())),
            5,
            5,
            &schedule(),
            &mut rng,
        );
        assert_eq!(
            verdict,
            Verdict::DeadLetter {
                kind: DeadLetterKind::Exhausted,
                error: "handler panicked: index out of bounds".into()
            }
        );
    }
}
