//! The reply of a request function: the `Ok` value encoded by the codec its type chooses, or
//! the NATS service error headers.

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::Serialize;

use crate::codec::{Codec, Json, Raw, Text};
use crate::handler::{FailureKind, HandlerError};

/// The header carrying an error's message (the NATS micro protocol).
pub(crate) const SERVICE_ERROR: &str = "Nats-Service-Error";
/// The header carrying an error's code (the NATS micro protocol).
pub(crate) const SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";

/// A value a request function may return, encoded by codec `C`: `bytes::Bytes` as is
/// (`Raw`), `String` as UTF-8 text (`Text`), `jetfn::Protobuf<M>` as protobuf, any other
/// `T: Serialize` as JSON (`Json`). `#[request_handler]` picks the codec.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a reply",
    label = "not `bytes::Bytes`, `String`, `jetfn::Protobuf<M>` or `serde::Serialize`",
    note = "a request function returns `Result<R, HandlerError>` where `R: serde::Serialize` (sent as JSON), `String` or `bytes::Bytes` (sent as they are)"
)]
pub trait Reply<C: Codec>: Sized + Send + 'static {
    /// The reply's body.
    fn encode(self) -> Result<Bytes, HandlerError>;
}

impl Reply<Raw> for Bytes {
    fn encode(self) -> Result<Bytes, HandlerError> {
        Ok(self)
    }
}

impl Reply<Text> for String {
    fn encode(self) -> Result<Bytes, HandlerError> {
        Ok(Bytes::from(self))
    }
}

#[cfg(feature = "protobuf")]
impl<M> Reply<crate::codec::Proto> for crate::Protobuf<M>
where
    M: prost::Message + 'static,
{
    fn encode(self) -> Result<Bytes, HandlerError> {
        Ok(Bytes::from(self.0.encode_to_vec()))
    }
}

impl<T> Reply<Json> for T
where
    T: Serialize + Send + 'static,
{
    fn encode(self) -> Result<Bytes, HandlerError> {
        serde_json::to_vec(&self)
            .map(Bytes::from)
            .map_err(HandlerError::retryable)
    }
}

/// How a request failed, as the caller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// `400` permanent, undecodable or invalid, `500` retryable or panic, `504` timeout.
    pub(crate) code: u16,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn of_error(error: &HandlerError) -> Self {
        let code = match error.kind() {
            FailureKind::Permanent | FailureKind::Decode | FailureKind::Invalid => 400,
            _ => 500,
        };
        Self {
            code,
            message: error.to_string(),
        }
    }

    /// What the pipeline's failure is to the caller: the handler's error (400 or 500), a
    /// panic with its message (500), the timeout (504).
    pub(crate) fn of(failure: &crate::policy::Failure) -> Self {
        use crate::policy::Failure as Run;
        match failure {
            Run::Handler(error) => Self::of_error(error),
            Run::Panic(message) => Self {
                code: 500,
                message: format!("the request function panicked: {message}"),
            },
            Run::Timeout(timeout) => Self::timed_out(*timeout),
        }
    }

    /// The function ended without a reply (a layer answered `Ok` without running it).
    pub(crate) fn no_reply() -> Self {
        Self {
            code: 500,
            message: "the request was not answered (a middleware returned Ok without running the function)".to_owned(),
        }
    }

    pub(crate) fn timed_out(timeout: std::time::Duration) -> Self {
        Self {
            code: 504,
            message: format!(
                "the request function did not answer within {}",
                humantime::format_duration(timeout)
            ),
        }
    }

    /// The error headers of the reply (whose body is empty). Header values cannot hold line
    /// breaks, so the message is kept to one line.
    pub(crate) fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let message: String = self
            .message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        headers.insert(SERVICE_ERROR, message.as_str());
        headers.insert(SERVICE_ERROR_CODE, self.code.to_string().as_str());
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_error_kind() {
        assert_eq!(
            Failure::of_error(&HandlerError::permanent("no such sku")).code,
            400
        );
        assert_eq!(
            Failure::of_error(&HandlerError::decode("bad json")).code,
            400
        );
        assert_eq!(
            Failure::of_error(&HandlerError::retryable("db down")).code,
            500
        );
        let panicked = Failure::of(&crate::policy::Failure::Panic("boom".into()));
        assert_eq!(panicked.code, 500);
        assert_eq!(panicked.message, "the request function panicked: boom");
        let timeout = Failure::timed_out(std::time::Duration::from_secs(5));
        assert_eq!(timeout.code, 504);
        let headers = timeout.headers();
        assert_eq!(
            headers.get(SERVICE_ERROR_CODE).map(|v| v.as_str()),
            Some("504")
        );
        assert!(headers
            .get(SERVICE_ERROR)
            .is_some_and(|v| v.as_str().contains("5s")));
    }

    #[test]
    fn line_breaks_do_not_break_the_header() {
        let failure = Failure::of_error(&HandlerError::permanent("a\r\nb"));
        let headers = failure.headers();
        assert_eq!(headers.get(SERVICE_ERROR).map(|v| v.as_str()), Some("a  b"));
    }
}
