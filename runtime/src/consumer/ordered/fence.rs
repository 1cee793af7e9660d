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
//! The count it compares with is taken while the loop is paused on the answer, so nothing
//! enters its hand meanwhile: a message on its way (delivered, not yet received) makes the
//! server's count the larger one, and the fence waits one more turn. After a graceful handover
//! (the old holder drained, NAKed what waited and released the lease) the fence passes as soon
//! as the NAKed messages are back; after a crash, once their `ack_wait` ran out.

use async_nats::jetstream::consumer::PullConsumer;

/// Whether the new holder has every unsettled message in hand.
#[derive(Debug, Default)]
pub(super) struct Fence {
    passed: bool,
}

impl Fence {
    pub(super) fn passed(&self) -> bool {
        self.passed
    }

    /// Asks the server how many messages are pending for the consumer and passes the fence
    /// when they are all among the `held` in hand.
    pub(super) async fn check(&mut self, consumer: &PullConsumer, held: usize) {
        match consumer.get_info().await {
            Ok(info) => self.passed = passes(info.num_ack_pending, held),
            Err(error) => tracing::debug!(%error, "consumer info failed; the fence waits"),
        }
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
