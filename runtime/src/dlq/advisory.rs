//! Crash-proof dead letters from the server's MAX_DELIVERIES advisories.
//!
//! A message whose handler never returns because the process dies on it (abort, OOM kill)
//! exhausts its deliveries without the runtime ever deciding its fate. The server then publishes
//! `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`. The stream
//! `JETFN_ADVISORIES` captures those advisories durably, so one raised while no pod runs is kept;
//! each function has a durable consumer on it (`jetfn_advisories_<function>`) and its watcher
//! reads the message by stream sequence and dead-letters it as `crashed`.
//!
//! The normal path acks the message after its dead letter is stored, so the server raises no
//! advisory for it; and both paths give a dead letter the same `Nats-Msg-Id`
//! (`dlq:<stream>:<seq>`), so the dead-letter stream stores one even if both ran.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream, AckKind};
use futures::StreamExt;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{dead_letter_headers, publish, Provenance};
use crate::config::FunctionConfig;
use crate::policy::DeadLetterKind;

/// The stream that keeps MAX_DELIVERIES advisories.
pub const ADVISORY_STREAM: &str = "JETFN_ADVISORIES";
const ADVISORY_SUBJECTS: &str = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>";
const CRASHED: &str = "deliveries exhausted without a settled outcome: the process ended during \
     every delivery (or the dead-letter publish failed)";

/// `io.nats.jetstream.advisory.v1.max_deliver`.
#[derive(Debug, Deserialize)]
struct MaxDeliveries {
    stream: String,
    consumer: String,
    stream_seq: u64,
    deliveries: u64,
}

/// Creates the advisory stream and the function's durable consumer on it.
pub(crate) async fn bind(
    js: &jetstream::Context,
    function: &str,
    stream_name: &str,
) -> Result<consumer::PullConsumer, String> {
    let stream = js
        .get_or_create_stream(stream::Config {
            name: ADVISORY_STREAM.to_owned(),
            subjects: vec![ADVISORY_SUBJECTS.to_owned()],
            storage: stream::StorageType::File,
            max_age: Duration::from_secs(7 * 24 * 3600),
            description: Some(
                "jetfn: MAX_DELIVERIES advisories, for crashed dead letters".to_owned(),
            ),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("creating stream {ADVISORY_STREAM} failed: {e}"))?;
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(format!("jetfn_advisories_{function}")),
            filter_subject: format!(
                "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream_name}.{function}"
            ),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("creating the advisory consumer of {function} failed: {e}"))
}

/// Dead-letters, as `crashed`, every message the function's consumer gave up on, until `cancel`.
pub(crate) async fn watch(
    js: jetstream::Context,
    function: std::sync::Arc<FunctionConfig>,
    advisories: consumer::PullConsumer,
    cancel: CancellationToken,
) {
    let mut messages = match advisories.messages().await {
        Ok(messages) => messages,
        Err(error) => {
            tracing::error!(function = %function.name, %error, "cannot read MAX_DELIVERIES advisories");
            return;
        }
    };
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return,
            next = messages.next() => next,
        };
        let advisory = match next {
            Some(Ok(advisory)) => advisory,
            Some(Err(error)) => {
                tracing::debug!(function = %function.name, %error, "advisory pull error");
                continue;
            }
            None => return,
        };
        let ack = match handle(&js, &function, &advisory.payload).await {
            Ok(()) => AckKind::Ack,
            Err(error) => {
                tracing::error!(function = %function.name, %error, "crashed dead letter not stored yet; retrying");
                AckKind::Nak(Some(Duration::from_secs(5)))
            }
        };
        if let Err(error) = advisory.ack_with(ack).await {
            tracing::warn!(function = %function.name, %error, "advisory ack not sent; it will be redelivered");
        }
    }
}

async fn handle(
    js: &jetstream::Context,
    function: &FunctionConfig,
    payload: &[u8],
) -> Result<(), String> {
    let advisory: MaxDeliveries = match serde_json::from_slice(payload) {
        Ok(advisory) => advisory,
        Err(error) => {
            tracing::error!(function = %function.name, %error, "malformed MAX_DELIVERIES advisory; skipped");
            return Ok(());
        }
    };
    let stream = js
        .get_stream(&advisory.stream)
        .await
        .map_err(|e| e.to_string())?;
    let original = match stream.get_raw_message(advisory.stream_seq).await {
        Ok(message) => message,
        Err(error) if error.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {
            tracing::error!(
                function = %function.name,
                stream = %advisory.stream,
                seq = advisory.stream_seq,
                "a message exhausted its deliveries but is no longer in its stream; nothing to dead-letter"
            );
            return Ok(());
        }
        Err(error) => return Err(error.to_string()),
    };
    let from = Provenance {
        function: &advisory.consumer,
        subject: &original.subject,
        stream: &advisory.stream,
        stream_sequence: advisory.stream_seq,
        deliveries: advisory.deliveries,
    };
    let headers = dead_letter_headers(
        Some(&original.headers),
        &from,
        DeadLetterKind::Crashed,
        CRASHED,
    );
    match publish(js, &function.dlq, original.payload, headers).await {
        Ok(()) => {}
        Err(error @ super::DlqError::TooLarge { .. }) => {
            // No retry can store it; the message stays in its stream, at its sequence.
            tracing::error!(
                function = %function.name,
                stream = %advisory.stream,
                seq = advisory.stream_seq,
                %error,
                "a message that exhausted its deliveries cannot be dead-lettered; it stays in its stream"
            );
            return Ok(());
        }
        Err(error) => return Err(error.to_string()),
    }
    tracing::warn!(
        function = %function.name,
        stream = %advisory.stream,
        seq = advisory.stream_seq,
        deliveries = advisory.deliveries,
        "dead-lettered as crashed"
    );
    Ok(())
}
