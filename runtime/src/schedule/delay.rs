//! Delayed outputs (`Context::publish_after` / `publish_at`): stored now as a one-shot message
//! schedule in `JETFN_SCHEDULES`, published to their subject when due by a forwarder that
//! every runtime runs.
//!
//! A schedule's target must be in the schedule's own stream, so the server fires the message
//! into `jetfn.due.<key>.<subject>` (in `JETFN_SCHEDULES`); the forwarder (durable consumer
//! `jetfn_delayed`, shared by every pod) publishes it to `<subject>` with an acknowledged
//! JetStream publish carrying the output's `Nats-Msg-Id`, then acks and deletes it. A failed
//! publish (the target stream unavailable) is retried every second, never dropped. `<key>` is
//! the hex of the output's `Nats-Msg-Id`, so the schedule subject `jetfn.delay.<key>` is one
//! per output: a retried handler rewrites the same schedule (rollup) or is deduplicated.

use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, consumer, AckKind};
use async_nats::HeaderMap;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::STREAM;

/// The durable consumer of due messages.
pub(crate) const FORWARDER: &str = "jetfn_delayed";
const DUE_PREFIX: &str = "jetfn.due.";
/// Keep the output's own headers, not the schedule's.
const SCHEDULE_HEADERS: [&str; 5] = [
    "Nats-Schedule",
    "Nats-Schedule-Target",
    "Nats-Scheduler",
    "Nats-Schedule-Next",
    "Nats-TTL",
];

/// The subject-safe key of an output id.
pub(crate) fn key(id: &str) -> String {
    id.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unkey(key: &str) -> Option<String> {
    let bytes = (0..key.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(key.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// The schedule message of one delayed output: its subject and headers.
pub(crate) fn schedule(id: &str, subject: &str, at: SystemTime) -> (String, HeaderMap) {
    let key = key(id);
    let mut headers = HeaderMap::new();
    let at = humantime::format_rfc3339_seconds(at).to_string();
    headers.insert("Nats-Schedule", format!("@at {at}").as_str());
    headers.insert(
        "Nats-Schedule-Target",
        format!("{DUE_PREFIX}{key}.{subject}").as_str(),
    );
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
    (format!("jetfn.delay.{key}"), headers)
}

/// The time a delayed output is due: `at` rounded up to the second (the schedules' precision),
/// when at least one second ahead.
pub(crate) fn due(at: SystemTime, now: SystemTime) -> Option<SystemTime> {
    let ahead = at.duration_since(now).ok()?;
    if ahead < Duration::from_secs(1) {
        return None;
    }
    let since = at.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    let whole = Duration::from_secs(since.as_secs() + u64::from(since.subsec_nanos() > 0));
    Some(SystemTime::UNIX_EPOCH + whole)
}

/// `(output id, target subject)` of a due message's subject.
fn target(subject: &str) -> Option<(String, String)> {
    let rest = subject.strip_prefix(DUE_PREFIX)?;
    let (key, target) = rest.split_once('.')?;
    Some((unkey(key)?, target.to_owned()))
}

/// Forwards due messages until `stop`: binds the durable consumer (retrying while the stream
/// is missing), publishes each due message to its subject, acks and deletes it.
pub(crate) async fn forward(
    js: jetstream::Context,
    auto_create_streams: bool,
    stop: CancellationToken,
) {
    loop {
        let run = async {
            super::ensure_stream(&js).await.map_err(|e| e.to_string())?;
            let stream = js.get_stream(STREAM).await.map_err(|e| e.to_string())?;
            let consumer: consumer::PullConsumer = stream
                .get_or_create_consumer(
                    FORWARDER,
                    consumer::pull::Config {
                        durable_name: Some(FORWARDER.to_owned()),
                        description: Some("jetfn: publishes delayed outputs when due".to_owned()),
                        filter_subject: format!("{DUE_PREFIX}>"),
                        ack_policy: consumer::AckPolicy::Explicit,
                        ack_wait: Duration::from_secs(30),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
            let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
            while let Some(message) = messages.next().await {
                let message = message.map_err(|e| e.to_string())?;
                forward_one(&js, &stream, message, auto_create_streams).await;
            }
            Ok::<(), String>(())
        };
        tokio::select! {
            () = stop.cancelled() => return,
            result = run => {
                if let Err(error) = result {
                    tracing::debug!(%error, "delayed-output forwarder restarting");
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn forward_one(
    js: &jetstream::Context,
    stream: &jetstream::stream::Stream,
    message: jetstream::Message,
    auto_create_streams: bool,
) {
    let Some((id, subject)) = target(&message.subject) else {
        tracing::warn!(subject = %message.subject, "not a delayed output; dropping it");
        let _ = message.ack().await;
        return;
    };
    let mut headers = crate::propagation::headers_except(message.headers.as_ref(), |name| {
        SCHEDULE_HEADERS
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
    });
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
    let publish = || crate::election::send(js, &subject, headers.clone(), message.payload.clone());
    let mut published = publish().await;
    // As `Context::publish`: a subject no stream captures gets the auto-created stream (not one
    // whose stream is only without a leader for now).
    if let Err(error) = &published {
        if auto_create_streams
            && crate::election::stream_missing(js, &subject, error).await
            && crate::topology::create_stream_for(js, &subject)
                .await
                .is_ok()
        {
            published = publish().await;
        }
    }
    match published {
        Ok(_) => {
            if message.double_ack().await.is_ok() {
                if let Ok(info) = message.info() {
                    let _ = stream.delete_message(info.stream_sequence).await;
                }
            }
        }
        Err(error) => {
            tracing::warn!(%subject, %error, "delayed output not published yet; retrying in 1s");
            let _ = message
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_due_subjects_name_the_target() {
        let id = "jetfn:reserve:ORDERS:42:0";
        let (subject, headers) = schedule(
            id,
            "shop.orders.late",
            SystemTime::UNIX_EPOCH + Duration::from_secs(60),
        );
        assert_eq!(subject, format!("jetfn.delay.{}", key(id)));
        assert_eq!(
            headers.get("Nats-Schedule").map(|v| v.as_str()),
            Some("@at 1970-01-01T00:01:00Z")
        );
        let due_subject = headers
            .get("Nats-Schedule-Target")
            .map(|v| v.to_string())
            .unwrap_or_default();
        assert_eq!(
            target(&due_subject),
            Some((id.to_owned(), "shop.orders.late".to_owned()))
        );
    }

    #[test]
    fn due_is_at_least_a_second_ahead_rounded_up() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(10_500);
        assert_eq!(due(now + Duration::from_millis(500), now), None);
        assert_eq!(due(now - Duration::from_secs(5), now), None);
        assert_eq!(
            due(now + Duration::from_millis(1_200), now),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(12))
        );
    }
}
