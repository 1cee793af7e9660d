//! The fence a new holder of an ordered function's consumer passes before it runs anything.
//!
//! The server does not fence a takeover: when a pod dies or is cut off, the messages it held
//! (running, waiting behind their key, retrying) stay pending at the server until their
//! `ack_wait` runs out, and meanwhile the consumer hands the new holder the *later* messages. Run
//! those at once and a key's message 12 would run before its message 10 comes back. So the new
//! holder first pulls (redeliveries and new messages alike, all held, nothing run) until every
//! message the server counts as pending for the consumer (`num_ack_pending`: delivered and
//! neither acked nor terminated, NAKed ones included) is in its hand. Then it knows every
//! unsettled message and runs each key's in stream order.
//!
//! The server's answer comes as of one instant, with the consumer's last delivery sequence then:
//! the holder first takes into its hand what the server sent before answering (it is in the
//! subscription already), then counts only the held messages delivered up to that sequence. So
//! a message on its way never counts, nor one delivered after the answer: the comparison is
//! exact even while messages stream in. After a graceful handover (the old holder drained,
//! NAKed what waited and released the lease) the fence passes as soon as the NAKed messages are
//! back; after a crash, once their `ack_wait` ran out; on a fresh start, at once.

use async_nats::jetstream::consumer::PullConsumer;

/// Whether the new holder has every unsettled message in hand.
#[derive(Debug, Default)]
pub(super) struct Fence {
    passed: bool,
}

/// The consumer as of one instant: messages pending, and the last delivery's sequence.
#[derive(Debug, Clone, Copy)]
pub(super) struct Snapshot {
    pub(super) pending: usize,
    pub(super) delivered: u64,
}

impl Fence {
    pub(super) fn passed(&self) -> bool {
        self.passed
    }

    /// Fences again: nothing new starts until the fence passes (what runs goes on).
    pub(super) fn reset(&mut self) {
        self.passed = false;
    }

    /// Asks the server how many messages are pending for the consumer (`None`: no answer, the
    /// fence waits).
    pub(super) async fn ask(consumer: &PullConsumer) -> Option<Snapshot> {
        match consumer.get_info().await {
            Ok(info) => Some(Snapshot {
                pending: info.num_ack_pending,
                delivered: info.delivered.consumer_sequence,
            }),
            Err(error) => {
                tracing::debug!(%error, "consumer info failed; the fence waits");
                None
            }
        }
    }

    /// Passes the fence when every message pending at `snapshot` is among the `held` (the held
    /// messages delivered up to `snapshot.delivered`).
    pub(super) fn decide(&mut self, snapshot: Snapshot, held: usize) {
        self.passed = passes(snapshot.pending, held);
    }
}

/// The fence rule: every message the server counts as pending is held.
fn passes(server_pending: usize, held: usize) -> bool {
    server_pending <= held
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_only_with_every_pending_message_in_hand() {
        assert!(passes(0, 0));
        assert!(passes(3, 3));
        assert!(
            !passes(4, 3),
            "one still with the old holder, or on its way"
        );
    }
}
