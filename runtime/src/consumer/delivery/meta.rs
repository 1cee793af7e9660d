//! What a delivered message carries besides its payload.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::delivered::{Delivered, NotJetStream};
use crate::handler::EventMeta;

/// Everything about a delivery but its payload, and the consumer's `num_pending` as of it.
/// `bound` is the bound stream's name, used when the message names the same stream.
pub(crate) fn meta(message: &Delivered, bound: Arc<str>) -> Result<(EventMeta, u64), NotJetStream> {
    let info = message.info()?;
    let stream = if *bound == *info.stream {
        bound
    } else {
        Arc::from(info.stream)
    };
    let headers = message.headers.clone().unwrap_or_default();
    let id = headers
        .get(async_nats::header::NATS_MESSAGE_ID)
        .map(|id| id.as_str().to_owned());
    // Before the epoch, or past what a u64 of nanoseconds holds (the year 2554): the epoch.
    let published =
        SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(info.published).unwrap_or(0));
    let meta = EventMeta {
        subject: message.subject.clone(),
        id,
        headers,
        stream,
        stream_sequence: info.stream_sequence,
        attempt: u32::try_from(info.delivered).unwrap_or(u32::MAX),
        published,
    };
    Ok((meta, info.pending))
}
