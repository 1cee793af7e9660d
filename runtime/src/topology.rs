//! JetStream topology: which stream a subject belongs to by the auto-create rule, and creating
//! that stream.
//!
//! Below both the consumer (which binds a function's subject) and the handler's
//! [`Context::publish`](crate::Context::publish) (which may publish to a subject no stream
//! captures yet): both create streams by the same rule, `<TOKEN>` capturing `<token>.>`.

use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
use async_nats::jetstream::{self, stream};

/// Why no stream could be made for a subject.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TopologyError {
    #[error("no stream captures `{subject}` and auto_create_streams is off")]
    NoStream { subject: String },
    #[error("cannot derive a stream name from `{subject}`; set the function's `stream`")]
    NoStreamName { subject: String },
    #[error("looking up stream `{stream}` failed: {source}")]
    Lookup {
        stream: String,
        source: jetstream::context::GetStreamError,
    },
    #[error("creating stream `{stream}` failed: {source}")]
    CreateStream {
        stream: String,
        source: jetstream::context::CreateStreamError,
    },
}

/// `orders.created` -> `ORDERS`; `None` when the first token is a wildcard.
pub(crate) fn derived_stream_name(subject: &str) -> Option<String> {
    let first = subject.split('.').next()?;
    (!first.is_empty() && first != "*" && first != ">")
        .then(|| first.to_uppercase().replace('-', "_"))
}

/// The name the auto-create rule gives the stream of `subject`.
pub(crate) fn stream_name_for(subject: &str) -> Result<String, TopologyError> {
    derived_stream_name(subject).ok_or_else(|| TopologyError::NoStreamName {
        subject: subject.to_owned(),
    })
}

/// Creates (or finds, when it exists) the stream `name` capturing `<first token of subject>.>`;
/// returns its name. With `auto_create_streams` off, creates nothing and says so.
pub(crate) async fn create_stream(
    js: &jetstream::Context,
    name: &str,
    subject: &str,
    auto_create_streams: bool,
) -> Result<String, TopologyError> {
    if !auto_create_streams {
        return Err(TopologyError::NoStream {
            subject: subject.to_owned(),
        });
    }
    let first = subject.split('.').next().unwrap_or(subject);
    let config = stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{first}.>")],
        storage: stream::StorageType::File,
        description: Some("created by jetfn".to_owned()),
        ..Default::default()
    };
    // Created only when the server says it is missing (and logged only then): never for a
    // stream that merely has no leader right now.
    match js.get_stream(name).await {
        Ok(_) => return Ok(name.to_owned()),
        Err(error) if !is_stream_not_found(&error) => {
            return Err(TopologyError::Lookup {
                stream: name.to_owned(),
                source: error,
            })
        }
        Err(_) => {}
    }
    match js.create_stream(config).await {
        Ok(_) => {
            tracing::info!(stream = name, subjects = %format!("{first}.>"), "created stream");
        }
        // Another pod created it in between.
        Err(error) if is_name_in_use(&error) => {}
        Err(source) => {
            return Err(TopologyError::CreateStream {
                stream: name.to_owned(),
                source,
            })
        }
    }
    Ok(name.to_owned())
}

fn is_stream_not_found(error: &jetstream::context::GetStreamError) -> bool {
    matches!(error.kind(), GetStreamErrorKind::JetStream(e)
        if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

fn is_name_in_use(error: &jetstream::context::CreateStreamError) -> bool {
    matches!(error.kind(), CreateStreamErrorKind::JetStream(e)
        if e.error_code() == jetstream::ErrorCode::STREAM_NAME_EXIST)
}

/// Creates the stream a subject would get by the auto-create rule (an output subject of
/// `Context::publish`, say); returns its name.
pub(crate) async fn create_stream_for(
    js: &jetstream::Context,
    subject: &str,
) -> Result<String, TopologyError> {
    let name = stream_name_for(subject)?;
    create_stream(js, &name, subject, true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_from_subjects() {
        assert_eq!(
            derived_stream_name("orders.created").as_deref(),
            Some("ORDERS")
        );
        assert_eq!(derived_stream_name("shop.>").as_deref(), Some("SHOP"));
        assert_eq!(derived_stream_name("*.created"), None);
        assert_eq!(derived_stream_name(">"), None);
    }
}
