//! The function's pull subscription and what it has asked the server for.
//!
//! One subscription on an inbox for the function's life; pull requests
//! (`$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`, `$JS.<domain>.API...` in a domain) keep what [`Prefetch`](super::prefetch)
//! wants on its way, in messages and in bytes (`max_bytes`). A request that ends (expired,
//! byte allowance used up, ...) is reported so the loop asks again at once: a pod with free
//! workers always has a request waiting at the server.
//!
//! A consumer leader change drops the waiting requests without a word. The new leader's
//! advisory (`$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.<stream>.<consumer>`) makes the loop
//! ask again at once; the missing heartbeats are the fallback (an advisory can be lost too).

use std::sync::Arc;
use std::time::Duration;

use async_nats::StatusCode;
use futures::{FutureExt, StreamExt};
use tokio::time::Instant;

use super::prefetch::Want;
use crate::delivered::Delivered;

/// How long one pull request waits on the server.
const EXPIRES: Duration = Duration::from_secs(30);
/// How often the server confirms a waiting request. Short: a consumer leader change drops the
/// waiting requests without a word, and only the missing heartbeats tell.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Silence (no message, no heartbeat) after which outstanding requests are presumed gone: two
/// heartbeats, so that one late heartbeat on a busy machine is not taken for a loss.
const SILENCE: Duration = Duration::from_secs(2);
/// How often a received message pushes the silence deadline back (not a timer per message).
const PUSH_EVERY: Duration = Duration::from_millis(250);
/// How soon a request that found no consumer leader ("no responders") is sent again: the
/// fallback when the new leader's advisory does not come.
const LEADERLESS_RETRY: Duration = Duration::from_millis(250);
/// How long the server may take to answer the probe sent after a silence.
const PROBE_TIMEOUT: Duration = Duration::from_millis(750);
/// What a request may take beyond the largest payload: subject, reply subject, headers.
const ENVELOPE_BYTES: usize = 4096;
/// A first message later than this after its request was waiting, not travelling: no sample.
const MAX_ROUND_TRIP_SAMPLE: Duration = Duration::from_millis(50);

/// What the subscription brought.
// Nearly every value is a `Message`; boxing it would add an allocation per message.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Pulled {
    /// A message to run.
    Message(Delivered),
    /// A request ended (expired, or its byte allowance is used up): ask again.
    Ended,
    /// Nothing came for [`SILENCE`] (missed heartbeats): outstanding requests are presumed gone.
    Stale,
    /// The consumer was deleted (or became push-based): bind again.
    Gone(String),
}

/// A function's pull subscription and what is requested but not yet received.
pub(crate) struct Puller {
    client: async_nats::Client,
    /// The client every delivered message acks through (shared, not cloned per message).
    acks: Arc<async_nats::Client>,
    subscriber: async_nats::Subscriber,
    /// The consumer's leader-elected advisories.
    elections: async_nats::Subscriber,
    inbox: async_nats::Subject,
    request_subject: String,
    /// Messages requested and not yet received.
    outstanding: usize,
    /// Bytes the outstanding requests may still bring (the server's count of them).
    outstanding_bytes: usize,
    /// The least `max_bytes` a request carries: the largest message the server accepts.
    min_request_bytes: usize,
    /// When the request that found nothing on its way went out (a round-trip sample).
    probe: Option<Instant>,
    round_trip: Option<Duration>,
    /// When silence means outstanding requests are gone: pushed back at most every
    /// [`PUSH_EVERY`], so the hot path does not re-register a timer per message.
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    deadline_set: Instant,
    /// A request met no consumer leader: the deadline is [`LEADERLESS_RETRY`] away, and when it
    /// passes the loop asks again (no probe: the path to the server is fine).
    leaderless: bool,
}

impl Puller {
    pub(crate) async fn new(
        client: &async_nats::Client,
        api_prefix: &str,
        stream: &str,
        consumer: &str,
    ) -> Result<Self, async_nats::SubscribeError> {
        let inbox = async_nats::Subject::from(client.new_inbox());
        let subscriber = client.subscribe(inbox.clone()).await?;
        let elections = client
            .subscribe(format!(
                "$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.{stream}.{consumer}"
            ))
            .await?;
        let max_payload = client.server_info().max_payload.max(1 << 20);
        Ok(Self {
            client: client.clone(),
            acks: Arc::new(client.clone()),
            subscriber,
            elections,
            inbox,
            request_subject: format!("{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
            outstanding: 0,
            outstanding_bytes: 0,
            min_request_bytes: max_payload + ENVELOPE_BYTES,
            probe: None,
            round_trip: None,
            deadline: Box::pin(tokio::time::sleep(SILENCE)),
            deadline_set: Instant::now(),
            leaderless: false,
        })
    }

    /// Makes sure about `want` is on its way; returns whether a request went out.
    ///
    /// A request goes out once less than half of what is wanted is outstanding (so one request
    /// per many messages), for the difference, carrying the byte allowance not yet requested
    /// (at least one message of the largest size).
    pub(crate) async fn request(&mut self, want: Want) -> Result<bool, async_nats::PublishError> {
        // Requests whose byte allowance is used up bring nothing more.
        if self.outstanding_bytes == 0 {
            self.outstanding = 0;
        }
        let missing = want.messages.saturating_sub(self.outstanding);
        if missing == 0 || (self.outstanding > 0 && missing < want.messages.div_ceil(2)) {
            return Ok(false);
        }
        let max_bytes = want
            .bytes
            .saturating_sub(self.outstanding_bytes)
            .max(self.min_request_bytes);
        let request = format!(
            r#"{{"batch":{missing},"max_bytes":{max_bytes},"expires":{},"idle_heartbeat":{}}}"#,
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
        if self.outstanding == 0 {
            self.probe = Some(Instant::now());
        }
        self.outstanding += missing;
        self.outstanding_bytes += max_bytes;
        Ok(true)
    }

    /// Messages requested and not yet received.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// The round trip of the last request that found nothing on its way, once.
    pub(crate) fn take_round_trip(&mut self) -> Option<Duration> {
        self.round_trip.take()
    }

    /// Forgets outstanding requests (after a reconnect the server has dropped them).
    pub(crate) fn reset(&mut self) {
        self.outstanding = 0;
        self.outstanding_bytes = 0;
    }

    /// The next message; heartbeats only update the accounting.
    pub(crate) async fn next(&mut self) -> Option<Pulled> {
        loop {
            let received = tokio::select! {
                message = self.subscriber.next() => message,
                Some(_) = self.elections.next() => {
                    // The requests waited at the old leader: ask the new one.
                    tracing::debug!("consumer leader elected; pulling again");
                    self.reset();
                    self.leaderless = false;
                    self.push_deadline(Instant::now());
                    return Some(Pulled::Stale);
                }
                () = &mut self.deadline => {
                    self.push_deadline(Instant::now());
                    if std::mem::take(&mut self.leaderless) {
                        return Some(Pulled::Stale);
                    }
                    if self.outstanding == 0 {
                        continue;
                    }
                    tracing::debug!(silence = ?SILENCE, "no message or heartbeat; pulling again");
                    self.reset();
                    self.check_path().await;
                    return Some(Pulled::Stale);
                }
            };
            if let Some(pulled) = self.received(received?) {
                return Some(pulled);
            }
        }
    }

    /// The next message if one is already here, without waiting (and without registering a
    /// wake-up: the loop's fast path while messages stream in).
    pub(crate) fn try_next(&mut self) -> Option<Pulled> {
        while let Some(Some(message)) = self.subscriber.next().now_or_never() {
            if let Some(pulled) = self.received(message) {
                return Some(pulled);
            }
        }
        None
    }

    /// What a received message means; it also pushes back the silence deadline.
    fn received(&mut self, message: async_nats::Message) -> Option<Pulled> {
        let now = Instant::now();
        if !self.leaderless && now.duration_since(self.deadline_set) >= PUSH_EVERY {
            self.push_deadline(now);
        }
        self.classify(message)
    }

    fn push_deadline(&mut self, now: Instant) {
        self.deadline.as_mut().reset(now + SILENCE);
        self.deadline_set = now;
    }

    /// After a silence: asks the server something it answers at once (a request no one listens
    /// to gets "no responders"). No answer: the path to the server is dead (cut off, not
    /// closed), and the client reconnects now instead of after its missed pings.
    async fn check_path(&self) {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return; // Reconnecting already.
        }
        let probe = self
            .client
            .request(self.client.new_inbox(), bytes::Bytes::new());
        let alive = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(_)) => true,
            Ok(Err(error)) => error.kind() == async_nats::RequestErrorKind::NoResponders,
            Err(_elapsed) => false,
        };
        if !alive {
            tracing::warn!("the NATS server does not answer; reconnecting to another");
            if let Err(error) = self.client.force_reconnect().await {
                tracing::debug!(%error, "cannot force a reconnect");
            }
        }
    }

    /// A message already received, without waiting.
    pub(crate) fn next_buffered(&mut self) -> Option<Delivered> {
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
        let _ = self.elections.unsubscribe().await;
        let _ = self.client.flush().await;
    }

    fn classify(&mut self, message: async_nats::Message) -> Option<Pulled> {
        match message.status {
            None | Some(StatusCode::OK) => {
                self.outstanding = self.outstanding.saturating_sub(1);
                self.outstanding_bytes = self.outstanding_bytes.saturating_sub(message.length);
                if let Some(sent) = self.probe.take() {
                    let took = sent.elapsed();
                    if took <= MAX_ROUND_TRIP_SAMPLE {
                        self.round_trip = Some(took);
                    }
                }
                Some(Pulled::Message(Delivered::new(message, self.acks.clone())))
            }
            Some(StatusCode::IDLE_HEARTBEAT) => None,
            Some(StatusCode::NO_RESPONDERS) => {
                // No consumer leader (an election): the request is gone. Ask again soon, not at
                // once (it would only meet the same election), nor after a whole silence.
                tracing::debug!("pull request met no consumer leader; asking again shortly");
                self.reset();
                self.probe = None;
                self.leaderless = true;
                let now = Instant::now();
                self.deadline.as_mut().reset(now + LEADERLESS_RETRY);
                self.deadline_set = now;
                None
            }
            Some(StatusCode::NOT_FOUND | StatusCode::TIMEOUT | StatusCode::REQUEST_TERMINATED) => {
                let description = message.description.clone().unwrap_or_default();
                if description.contains("Consumer Deleted") || description.contains("push based") {
                    self.reset();
                    return Some(Pulled::Gone(description));
                }
                // The ended request's unused part, as the server counts it.
                let pending = |name: &str| {
                    message
                        .headers
                        .as_ref()
                        .and_then(|headers| headers.get(name))
                        .and_then(|value| value.as_str().parse::<usize>().ok())
                };
                match pending("Nats-Pending-Messages") {
                    Some(left) => {
                        self.outstanding = self.outstanding.saturating_sub(left);
                        let bytes = pending("Nats-Pending-Bytes").unwrap_or(0);
                        self.outstanding_bytes = self.outstanding_bytes.saturating_sub(bytes);
                    }
                    None => self.reset(),
                }
                self.probe = None;
                Some(Pulled::Ended)
            }
            Some(other) => {
                tracing::debug!(status = %other, description = ?message.description, "pull status");
                None
            }
        }
    }
}
