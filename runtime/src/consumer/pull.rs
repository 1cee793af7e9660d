//! Pulling exactly as many messages as there are free workers.
//!
//! One subscription on an inbox for the function's life; pull requests
//! (`$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`) ask for the number of workers that are free
//! and not already covered by an outstanding request. So a pod never holds messages it cannot
//! start (other pods get them), and a waiting request delivers a new message at once.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::StatusCode;
use futures::{FutureExt, StreamExt};

/// How long one pull request waits on the server.
const EXPIRES: Duration = Duration::from_secs(30);
/// How often the server confirms a waiting request.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// What the subscription brought.
// Nearly every value is a `Message`; boxing it would add an allocation per message.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Pulled {
    /// A message to run.
    Message(jetstream::Message),
    /// Nothing came for two heartbeats: outstanding requests are presumed gone.
    Stale,
    /// The consumer was deleted (or became push-based): bind again.
    Gone(String),
}

/// A function's pull subscription and the count of messages requested but not yet received.
pub(crate) struct Puller {
    client: async_nats::Client,
    context: jetstream::Context,
    subscriber: async_nats::Subscriber,
    inbox: async_nats::Subject,
    request_subject: String,
    outstanding: usize,
    /// When silence means outstanding requests are gone: pushed back at most once a second, so
    /// the hot path does not re-register a timer per message.
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    deadline_set: tokio::time::Instant,
}

impl Puller {
    pub(crate) async fn new(
        client: &async_nats::Client,
        context: &jetstream::Context,
        stream: &str,
        consumer: &str,
    ) -> Result<Self, async_nats::SubscribeError> {
        let inbox = async_nats::Subject::from(client.new_inbox());
        let subscriber = client.subscribe(inbox.clone()).await?;
        Ok(Self {
            client: client.clone(),
            context: context.clone(),
            subscriber,
            inbox,
            request_subject: format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
            outstanding: 0,
            deadline: Box::pin(tokio::time::sleep(HEARTBEAT * 2)),
            deadline_set: tokio::time::Instant::now(),
        })
    }

    /// Makes sure `wanted` messages are requested in all; returns whether a request went out.
    pub(crate) async fn request_up_to(
        &mut self,
        wanted: usize,
    ) -> Result<bool, async_nats::PublishError> {
        // Ask again once at least half of what is wanted is not requested yet: one request per
        // several messages, never more outstanding than `wanted`.
        let missing = wanted.saturating_sub(self.outstanding);
        if missing == 0 || (self.outstanding > 0 && missing < wanted.div_ceil(2)) {
            return Ok(false);
        }
        let batch = missing;
        let request = format!(
            r#"{{"batch":{batch},"expires":{},"idle_heartbeat":{}}}"#,
            EXPIRES.as_nanos(),
            HEARTBEAT.as_nanos()
        );
        self.client
            .publish_with_reply(
                self.request_subject.clone(),
                self.inbox.clone(),
                request.into(),
            )
            .await?;
        self.outstanding = wanted;
        Ok(true)
    }

    /// Forgets outstanding requests (after a reconnect the server has dropped them).
    pub(crate) fn reset(&mut self) {
        self.outstanding = 0;
    }

    /// The next message; status messages only update the accounting.
    pub(crate) async fn next(&mut self) -> Option<Pulled> {
        loop {
            let received = tokio::select! {
                message = self.subscriber.next() => message,
                () = &mut self.deadline => {
                    self.push_deadline(tokio::time::Instant::now());
                    if self.outstanding == 0 {
                        continue;
                    }
                    self.outstanding = 0;
                    return Some(Pulled::Stale);
                }
            };
            let message = received?;
            let now = tokio::time::Instant::now();
            if now.duration_since(self.deadline_set) >= Duration::from_secs(1) {
                self.push_deadline(now);
            }
            if let Some(pulled) = self.classify(message) {
                return Some(pulled);
            }
        }
    }

    fn push_deadline(&mut self, now: tokio::time::Instant) {
        self.deadline.as_mut().reset(now + HEARTBEAT * 2);
        self.deadline_set = now;
    }

    /// A message already received, without waiting.
    pub(crate) fn next_buffered(&mut self) -> Option<jetstream::Message> {
        while let Some(Some(message)) = self.subscriber.next().now_or_never() {
            if let Some(Pulled::Message(message)) = self.classify(message) {
                return Some(message);
            }
        }
        None
    }

    /// Stops the subscription; what the server already sent can still be read with
    /// [`Puller::next_buffered`].
    pub(crate) async fn stop(&mut self) {
        let _ = self.subscriber.unsubscribe().await;
        let _ = self.client.flush().await;
    }

    fn classify(&mut self, message: async_nats::Message) -> Option<Pulled> {
        match message.status {
            None | Some(StatusCode::OK) => {
                self.outstanding = self.outstanding.saturating_sub(1);
                Some(Pulled::Message(jetstream::Message {
                    message,
                    context: self.context.clone(),
                }))
            }
            Some(StatusCode::IDLE_HEARTBEAT) => None,
            Some(StatusCode::NOT_FOUND | StatusCode::TIMEOUT | StatusCode::REQUEST_TERMINATED) => {
                let description = message.description.clone().unwrap_or_default();
                if description.contains("Consumer Deleted") || description.contains("push based") {
                    self.outstanding = 0;
                    return Some(Pulled::Gone(description));
                }
                let left = message
                    .headers
                    .as_ref()
                    .and_then(|headers| headers.get("Nats-Pending-Messages"))
                    .and_then(|value| value.as_str().parse().ok())
                    .unwrap_or(self.outstanding);
                self.outstanding = self.outstanding.saturating_sub(left);
                None
            }
            Some(other) => {
                tracing::debug!(status = %other, description = ?message.description, "pull status");
                None
            }
        }
    }
}
