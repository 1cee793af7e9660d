//! How a delivery was settled, and the one place that maps it to what the server is told.

use std::time::Duration;

use async_nats::jetstream::AckKind;

/// How a delivery was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The handler succeeded.
    Acked,
    /// The handler failed and will be retried after `delay`.
    Retried { delay: Duration },
    /// The message is stored in the dead-letter stream.
    DeadLettered,
    /// Fetched but never started (the process is draining): hand it back at once.
    Released,
    /// Fetched while the breaker is open: hand it back for after the cool-down.
    Deferred { delay: Duration },
}

/// The one place that maps an outcome to what the server is told.
pub(crate) fn ack_kind(outcome: Outcome) -> AckKind {
    match outcome {
        Outcome::Acked | Outcome::DeadLettered => AckKind::Ack,
        Outcome::Retried { delay } | Outcome::Deferred { delay } => AckKind::Nak(Some(delay)),
        Outcome::Released => AckKind::Nak(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_maps_to_one_ack() {
        let delay = Duration::from_secs(4);
        let table = [
            (Outcome::Acked, "+ACK"),
            (Outcome::DeadLettered, "+ACK"),
            (Outcome::Retried { delay }, "-NAK {\"delay\":4000000000}"),
            (Outcome::Released, "-NAK"),
            (Outcome::Deferred { delay }, "-NAK {\"delay\":4000000000}"),
        ];
        for (outcome, wire) in table {
            let bytes: bytes::Bytes = ack_kind(outcome).into();
            assert_eq!(std::str::from_utf8(&bytes).ok(), Some(wire), "{outcome:?}");
        }
    }
}
