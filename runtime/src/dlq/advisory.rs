//! Crash-proof dead letters from the server's MAX_DELIVERIES advisories.
//!
//! A message whose handler never returns because the process dies on it (abort, OOM kill)
//! exhausts its deliveries without the runtime ever deciding its fate. The server then publishes
//! `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`. The stream
//! `JETFN_ADVISORIES` captures those advisories durably, so one raised while no pod runs is kept.
//! Each pod reads them through one durable consumer for all its functions (see [`watch`]), one
//! filter subject per function; pods running the same functions share it
//! ([`advisory_consumer`]). Each advisory goes to its function, which reads the message by
//! stream sequence and dead-letters it as `crashed`.
//!
//! The normal path acks the message after its dead letter is stored, so the server raises no
//! advisory for it; and both paths give a dead letter the same `Nats-Msg-Id`
//! (`dlq:<stream>:<seq>`), so the dead-letter stream stores one even if both ran.

use std::time::Duration;

use async_nats::jetstream::consumer::FromConsumer;
use async_nats::jetstream::{self, consumer, stream};
use serde::Deserialize;

use super::{dead_letter_headers, publish, Provenance, DUPLICATE_WINDOW};
use crate::config::FunctionConfig;
use crate::policy::DeadLetterKind;

mod watch;

pub(crate) use watch::watch;

/// The stream that keeps MAX_DELIVERIES advisories.
pub(crate) const ADVISORY_STREAM: &str = "JETFN_ADVISORIES";
const ADVISORY_SUBJECTS: &str = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>";
const CRASHED: &str = "deliveries exhausted without a settled outcome: the process ended during \
     every delivery (or the dead-letter publish failed)";
/// How long `JETFN_ADVISORIES` keeps an advisory, and how long an advisory consumer no pod pulls
/// from lives on: a set of functions no pod runs any more leaves no consumer behind, and the one
/// deleted had nothing left to read that the stream still holds.
const KEPT: Duration = Duration::from_secs(7 * 24 * 3600);
/// How far back a new advisory consumer starts: advisories older than the dead-letter stream's
/// duplicate window (less a margin) were handled by the consumer of an earlier set of functions;
/// younger ones handled twice store one dead letter.
const REPLAY: Duration = DUPLICATE_WINDOW.saturating_sub(Duration::from_secs(3600));

/// `io.nats.jetstream.advisory.v1.max_deliver`.
#[derive(Debug, Deserialize)]
pub(crate) struct MaxDeliveries {
    pub(crate) stream: String,
    pub(crate) consumer: String,
    pub(crate) stream_seq: u64,
    pub(crate) deliveries: u64,
}

/// The durable consumer on [`ADVISORY_STREAM`] of a pod running `functions` (event function
/// names, in any order): pods running the same functions share it; another set of functions has
/// another one.
pub(crate) fn advisory_consumer<'a>(functions: impl IntoIterator<Item = &'a str>) -> String {
    let mut names: Vec<&str> = functions.into_iter().collect();
    names.sort_unstable();
    names.dedup();
    // FNV-1a 64 of the names, each ended by a 0 byte: stable across builds and platforms.
    let bytes = names.iter().flat_map(|name| name.bytes().chain([0]));
    let hash = bytes.fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("jetfn_advisories_{hash:016x}")
}

/// Creates the advisory stream if it does not exist yet. A function's consumer is created only
/// after it: an advisory it raises is never lost.
pub(crate) async fn ensure_stream(js: &jetstream::Context) -> Result<stream::Stream, String> {
    js.get_or_create_stream(stream::Config {
        name: ADVISORY_STREAM.to_owned(),
        subjects: vec![ADVISORY_SUBJECTS.to_owned()],
        storage: stream::StorageType::File,
        max_age: KEPT,
        description: Some("jetfn: MAX_DELIVERIES advisories, for crashed dead letters".to_owned()),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("creating stream {ADVISORY_STREAM} failed: {e}"))
}

/// The advisory consumer of `functions`: one filter subject per function (any stream: a
/// function's consumer is named after it). An existing one is used as it is.
fn consumer_config(functions: &[&str]) -> consumer::pull::Config {
    let start_time = time::OffsetDateTime::now_utc() - REPLAY;
    consumer::pull::Config {
        durable_name: Some(advisory_consumer(functions.iter().copied())),
        description: Some(format!(
            "jetfn: MAX_DELIVERIES advisories of {} functions",
            functions.len()
        )),
        filter_subjects: functions
            .iter()
            .map(|function| format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.*.{function}"))
            .collect(),
        deliver_policy: consumer::DeliverPolicy::ByStartTime { start_time },
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        inactive_threshold: KEPT,
        ..Default::default()
    }
}

/// Creates the advisory stream and the durable consumer of `functions` on it, or finds them.
pub(crate) async fn bind(
    js: &jetstream::Context,
    functions: &[&str],
) -> Result<consumer::PullConsumer, String> {
    let config = consumer_config(functions);
    let name = config.durable_name.clone().unwrap_or_default();
    let stream = ensure_stream(js).await?;
    let mut consumer: consumer::PullConsumer =
        stream
            .get_or_create_consumer(&name, config)
            .await
            .map_err(|e| format!("creating the advisory consumer {name} failed: {e}"))?;
    if consumer.cached_info().config.inactive_threshold != KEPT {
        // Made by a jetfn that kept advisory consumers for ever: given the same lifetime.
        consumer = give_lifetime(&stream, consumer.cached_info().config.clone()).await?;
    }
    Ok(consumer)
}

/// The advisory consumers of `functions` that a jetfn before one consumer per pod made, one per
/// function (`jetfn_advisories_<function>`), that have no lifetime yet, given the stream's:
/// they go once no pod of that version pulls from them. Returns their names.
#[cfg(feature = "deploy")]
pub(crate) async fn retire_per_function(
    js: &jetstream::Context,
    functions: &[&str],
) -> Result<Vec<String>, String> {
    let stream = ensure_stream(js).await?;
    let mut retired = Vec::new();
    for function in functions {
        let name = format!("jetfn_advisories_{function}");
        let info = match stream.consumer_info(&name).await {
            Ok(info) => info,
            Err(error) if error.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => {
                continue;
            }
            Err(error) => {
                return Err(format!(
                    "reading the advisory consumer {name} failed: {error}"
                ))
            }
        };
        if info.config.inactive_threshold != KEPT {
            give_lifetime(&stream, info.config).await?;
            retired.push(name);
        }
    }
    Ok(retired)
}

/// Updates the advisory consumer `found` to live [`KEPT`] without pulls, the rest unchanged.
async fn give_lifetime(
    stream: &stream::Stream,
    found: consumer::Config,
) -> Result<consumer::PullConsumer, String> {
    let name = found.durable_name.clone().unwrap_or_default();
    let config = consumer::pull::Config {
        inactive_threshold: KEPT,
        ..consumer::pull::Config::try_from_consumer_config(found).map_err(|e| e.to_string())?
    };
    stream
        .update_consumer(config)
        .await
        .map_err(|e| format!("updating the advisory consumer {name} failed: {e}"))
}

/// Dead-letters, as `crashed`, the message `advisory` is about. `Err` when it should be tried
/// again later.
pub(crate) async fn handle(
    js: &jetstream::Context,
    function: &FunctionConfig,
    advisory: &MaxDeliveries,
) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_running_the_same_functions_share_one_consumer() {
        let one = advisory_consumer(["orders", "payments", "emails"]);
        assert_eq!(
            one,
            advisory_consumer(["emails", "orders", "payments", "orders"])
        );
        assert_ne!(one, advisory_consumer(["orders", "payments"]));
        // Names are not run together: ["ab", "c"] is not ["a", "bc"].
        assert_ne!(
            advisory_consumer(["ab", "c"]),
            advisory_consumer(["a", "bc"])
        );
        assert!(one.starts_with("jetfn_advisories_"), "{one}");
        assert_eq!(one.len(), "jetfn_advisories_".len() + 16);
    }

    #[test]
    fn the_name_is_stable_across_versions() {
        // Consumers of running pods are found by this name: FNV-1a 64 of the sorted names,
        // each ended by a 0 byte (values computed apart from this code).
        assert_eq!(
            advisory_consumer([
                "send_notification",
                "audit_log",
                "reserve_inventory",
                "charge_payment"
            ]),
            "jetfn_advisories_48bfe37c55bb7517"
        );
        assert_eq!(
            advisory_consumer(["a"]),
            "jetfn_advisories_089be207b544f1e4"
        );
    }

    #[test]
    fn the_consumer_filters_each_function_replays_a_day_and_lives_as_long_as_advisories() {
        let config = consumer_config(&["orders", "emails"]);
        assert_eq!(
            config.filter_subjects,
            [
                "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.*.orders",
                "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.*.emails",
            ]
        );
        assert!(config.filter_subject.is_empty(), "one or the other");
        let consumer::DeliverPolicy::ByStartTime { start_time } = config.deliver_policy else {
            panic!("starts by time: {:?}", config.deliver_policy);
        };
        let back = time::OffsetDateTime::now_utc() - start_time;
        assert!(back < DUPLICATE_WINDOW && back >= REPLAY, "{back}");
        assert_eq!(config.inactive_threshold, KEPT);
        assert!(REPLAY < KEPT);
    }
}
