//! Dead letters: the original payload and headers, plus provenance, on `jetfn.dlq.<function>`
//! in the stream `JETFN_DLQ`.
//!
//! A dead letter carries `Nats-Msg-Id: dlq:<stream>:<seq>`, so publishing it twice (a crash
//! between the DLQ publish and the ack of the original) stores it once.

pub(crate) mod advisory;
mod letter;
mod replay;

pub(crate) use advisory::ADVISORY_STREAM;
pub(crate) use letter::{DeadLetters, Lettered};
pub(crate) use replay::{list, replay};
pub use replay::{DeadLetter, DeadLetterError};

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;

use crate::policy::DeadLetterKind;

/// The stream that holds dead letters.
pub(crate) const DLQ_STREAM: &str = "JETFN_DLQ";
/// The subjects it captures.
pub(crate) const DLQ_SUBJECTS: &str = "jetfn.dlq.>";
/// The duplicate window of the dead-letter stream jetfn creates: long enough that the normal
/// path and the advisory path can never both store a dead letter for the same message.
pub(crate) const DUPLICATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Whether `function` can have dead letters (an event function of `registry`): `Err` is the
/// one line to tell the user, naming request functions as such and suggesting a close name.
pub(crate) fn check_function(registry: &crate::Registry, function: &str) -> Result<(), String> {
    if registry.get(function).is_some() {
        return Ok(());
    }
    if registry.request(function).is_some() {
        return Err(format!(
            "`{function}` is a request function: it has no dead letters (a failed request \
             answers its caller with an error)"
        ));
    }
    let events = || registry.iter().map(|spec| spec.name);
    let known = events().collect::<Vec<_>>().join(", ");
    Err(match jetfn_grammar::suggest::closest(function, events()) {
        Some(close) => format!(
            "no event function `{function}`; did you mean `{close}`? The event functions: {known}"
        ),
        None => format!("no event function `{function}`; the event functions: {known}"),
    })
}

/// The provenance headers a dead letter adds.
pub(crate) mod headers {
    /// The function that gave up on the message.
    pub(crate) const FUNCTION: &str = "Jetfn-Function";
    /// The subject the message was published to.
    pub(crate) const SUBJECT: &str = "Jetfn-Subject";
    /// The stream that stored it.
    pub(crate) const STREAM: &str = "Jetfn-Stream";
    /// Its sequence in that stream.
    pub(crate) const STREAM_SEQ: &str = "Jetfn-Stream-Seq";
    /// How many times it was delivered.
    pub(crate) const DELIVERIES: &str = "Jetfn-Deliveries";
    /// The last error.
    pub(crate) const ERROR: &str = "Jetfn-Error";
    /// `permanent`, `decode`, `invalid`, `exhausted` or `crashed`.
    pub(crate) const ERROR_KIND: &str = "Jetfn-Error-Kind";
    /// When it was dead-lettered, RFC 3339.
    pub(crate) const FAILED_AT: &str = "Jetfn-Failed-At";
    /// The original `Nats-Msg-Id`, when it had one (the dead letter's own id replaces it).
    pub(crate) const ORIGINAL_MSG_ID: &str = "Jetfn-Original-Msg-Id";
}

/// The names of the headers a dead letter carries besides the original ones, as associated
/// constants: `Jetfn-Function`, `Jetfn-Error-Kind`, ... (see [`DeadLetter::header`]).
///
/// ```
/// use jetfn::DeadLetterHeaders as h;
/// assert_eq!(h::ERROR_KIND, "Jetfn-Error-Kind");
/// ```
#[derive(Debug)]
pub enum DeadLetterHeaders {}

impl DeadLetterHeaders {
    /// The function that gave up on the message.
    pub const FUNCTION: &'static str = headers::FUNCTION;
    /// The subject the message was published to.
    pub const SUBJECT: &'static str = headers::SUBJECT;
    /// The stream that stored it.
    pub const STREAM: &'static str = headers::STREAM;
    /// Its sequence in that stream.
    pub const STREAM_SEQ: &'static str = headers::STREAM_SEQ;
    /// How many times it was delivered.
    pub const DELIVERIES: &'static str = headers::DELIVERIES;
    /// The last error.
    pub const ERROR: &'static str = headers::ERROR;
    /// `permanent`, `decode`, `invalid`, `exhausted` or `crashed`.
    pub const ERROR_KIND: &'static str = headers::ERROR_KIND;
    /// When it was dead-lettered, RFC 3339.
    pub const FAILED_AT: &'static str = headers::FAILED_AT;
    /// The original `Nats-Msg-Id`, when it had one (the dead letter's own id replaces it).
    pub const ORIGINAL_MSG_ID: &'static str = headers::ORIGINAL_MSG_ID;
}

/// The longest `Jetfn-Error` value kept.
const MAX_ERROR_LEN: usize = 1024;

/// A dead letter could not be stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DlqError {
    #[error("dead-letter publish to `{subject}` was not acknowledged: {source}")]
    Publish {
        subject: String,
        source: jetstream::context::PublishError,
    },
    #[error("no stream captures the dead-letter subject `{subject}`: {source}")]
    NoStream {
        subject: String,
        source: jetstream::context::GetStreamByNameError,
    },
    #[error("creating stream {DLQ_STREAM} failed: {source}")]
    CreateStream {
        source: jetstream::context::CreateStreamError,
    },
    /// The payload and its original headers leave no room for the provenance under the
    /// server's `max_payload`: no retry can store it.
    #[error(
        "the dead letter for `{subject}` takes {size} bytes with its headers, over the server's \
         max_payload of {max_payload}"
    )]
    TooLarge {
        subject: String,
        size: usize,
        max_payload: usize,
    },
    #[error("not a JetStream delivery: {0}")]
    NotJetStream(String),
}

impl DlqError {
    /// Whether no stream captures the dead-letter subject, `JETFN_DLQ` deleted for instance (the
    /// meta layer says so: a dead-letter stream without a leader answers "no responders" too).
    pub(crate) async fn is_stream_missing(&self, js: &jetstream::Context) -> bool {
        match self {
            Self::Publish { subject, source } => {
                crate::election::stream_missing(js, subject, source).await
            }
            _ => false,
        }
    }
}

/// Where a dead-lettered message came from.
#[derive(Debug, Clone)]
pub(crate) struct Provenance<'a> {
    pub(crate) function: &'a str,
    pub(crate) subject: &'a str,
    pub(crate) stream: &'a str,
    pub(crate) stream_sequence: u64,
    pub(crate) deliveries: u64,
}

/// Makes sure a stream captures `subject`: `JETFN_DLQ` is created for `jetfn.dlq.>` subjects.
pub(crate) async fn ensure_stream(js: &jetstream::Context, subject: &str) -> Result<(), DlqError> {
    match js.stream_by_subject(subject.to_owned()).await {
        Ok(_) => Ok(()),
        Err(error)
            if error.kind() == jetstream::context::GetStreamByNameErrorKind::NotFound
                && subject.starts_with("jetfn.dlq.") =>
        {
            js.get_or_create_stream(stream::Config {
                name: DLQ_STREAM.to_owned(),
                subjects: vec![DLQ_SUBJECTS.to_owned()],
                storage: stream::StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                description: Some("jetfn dead letters".to_owned()),
                ..Default::default()
            })
            .await
            .map_err(|source| DlqError::CreateStream { source })?;
            Ok(())
        }
        Err(source) => Err(DlqError::NoStream {
            subject: subject.to_owned(),
            source,
        }),
    }
}

/// The headers of a dead letter: the original ones, plus provenance.
pub(crate) fn dead_letter_headers(
    original: Option<&HeaderMap>,
    from: &Provenance<'_>,
    kind: DeadLetterKind,
    error: &str,
) -> HeaderMap {
    // Every original header but `Nats-TTL` (a tick's): a dead letter does not expire, and the
    // DLQ stream has no per-message TTL.
    let mut headers =
        crate::propagation::headers_except(original, |name| name.eq_ignore_ascii_case("Nats-TTL"));
    if let Some(id) = original.and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID)) {
        headers.insert(headers::ORIGINAL_MSG_ID, id.as_str());
    }
    let failed_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        format!("dlq:{}:{}", from.stream, from.stream_sequence),
    );
    headers.insert(headers::FUNCTION, from.function);
    headers.insert(headers::SUBJECT, from.subject);
    headers.insert(headers::STREAM, from.stream);
    headers.insert(headers::STREAM_SEQ, from.stream_sequence.to_string());
    headers.insert(headers::DELIVERIES, from.deliveries.to_string());
    headers.insert(headers::ERROR, header_safe(error));
    headers.insert(headers::ERROR_KIND, kind.as_str());
    headers.insert(headers::FAILED_AT, failed_at);
    headers
}

/// Publishes a dead letter and waits for the stream's ack (at most a second: a publish that met
/// an election is sent again by the caller). A `Jetfn-Error` too long for the
/// server's `max_payload` is cut to fit (the payload and the other headers are kept as they are).
pub(crate) async fn publish(
    js: &jetstream::Context,
    dlq_subject: &str,
    payload: bytes::Bytes,
    mut headers: HeaderMap,
) -> Result<(), DlqError> {
    let max_payload = js.client().server_info().max_payload;
    // 0 before the first connection: the publish itself says what is wrong.
    if max_payload > 0 {
        fit(&mut headers, payload.len(), max_payload).map_err(|size| DlqError::TooLarge {
            subject: dlq_subject.to_owned(),
            size,
            max_payload,
        })?;
    }
    let error = |source| DlqError::Publish {
        subject: dlq_subject.to_owned(),
        source,
    };
    crate::election::send(js, dlq_subject, headers, payload)
        .await
        .map_err(error)?;
    Ok(())
}

/// The size of `headers` on the wire: `NATS/1.0\r\n`, each `name: value\r\n`, `\r\n`.
pub(crate) fn wire_len(headers: &HeaderMap) -> usize {
    let mut len = "NATS/1.0\r\n\r\n".len();
    for (name, values) in headers.iter() {
        let name: &str = name.as_ref();
        for value in values {
            len += name.len() + ": ".len() + value.as_str().len() + "\r\n".len();
        }
    }
    len
}

/// Cuts `Jetfn-Error` so that the headers and a payload of `payload_len` bytes fit in
/// `max_payload`; `Err(size)` when they do not fit even with it empty.
pub(crate) fn fit(
    headers: &mut HeaderMap,
    payload_len: usize,
    max_payload: usize,
) -> Result<(), usize> {
    let size = wire_len(headers) + payload_len;
    let Some(excess) = size.checked_sub(max_payload).filter(|excess| *excess > 0) else {
        return Ok(());
    };
    let error = headers
        .get(headers::ERROR)
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    if excess > error.len() {
        return Err(size - error.len());
    }
    let mut end = error.len() - excess;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    headers.insert(headers::ERROR, &error[..end]);
    Ok(())
}

/// A header value cannot hold line breaks; long errors are cut.
fn header_safe(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_keep_the_original_and_add_provenance() {
        let mut original = HeaderMap::new();
        original.insert("traceparent", "00-abc-def-01");
        original.insert(async_nats::header::NATS_MESSAGE_ID, "order-1");
        original.insert("Nats-TTL", "30s"); // a tick's: a dead letter must not expire
        let from = Provenance {
            function: "charge_payment",
            subject: "shop.inventory.reserved",
            stream: "SHOP",
            stream_sequence: 42,
            deliveries: 5,
        };
        let h = dead_letter_headers(
            Some(&original),
            &from,
            DeadLetterKind::Exhausted,
            "gateway\r\ndown",
        );
        let get = |name: &str| h.get(name).map(|v| v.as_str().to_owned());
        assert_eq!(get("traceparent").as_deref(), Some("00-abc-def-01"));
        assert_eq!(get("Nats-TTL"), None);
        assert_eq!(get("Nats-Msg-Id").as_deref(), Some("dlq:SHOP:42"));
        assert_eq!(get(headers::ORIGINAL_MSG_ID).as_deref(), Some("order-1"));
        assert_eq!(get(headers::FUNCTION).as_deref(), Some("charge_payment"));
        assert_eq!(
            get(headers::SUBJECT).as_deref(),
            Some("shop.inventory.reserved")
        );
        assert_eq!(get(headers::STREAM).as_deref(), Some("SHOP"));
        assert_eq!(get(headers::STREAM_SEQ).as_deref(), Some("42"));
        assert_eq!(get(headers::DELIVERIES).as_deref(), Some("5"));
        assert_eq!(get(headers::ERROR).as_deref(), Some("gateway  down"));
        assert_eq!(get(headers::ERROR_KIND).as_deref(), Some("exhausted"));
        let failed_at = get(headers::FAILED_AT).expect("set");
        assert!(time::OffsetDateTime::parse(
            &failed_at,
            &time::format_description::well_known::Rfc3339
        )
        .is_ok());
    }

    #[test]
    fn long_errors_are_cut_on_a_char_boundary() {
        let text = "é".repeat(MAX_ERROR_LEN);
        let safe = header_safe(&text);
        assert!(safe.len() <= MAX_ERROR_LEN);
        assert!(safe.chars().all(|c| c == 'é'));
    }
}
