//! What a handler sees: [`Event`], [`Context`] and [`HandlerError`].

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;
use serde::Serialize;

use crate::app_state::AppState;
use crate::once_bucket::Steps;
use crate::{election, propagation, schedule, subject, topology};

/// The boxed error a handler failure carries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One delivery of a message, decoded into the handler's payload type `T`.
///
/// The payload type chooses the decoding (see [the crate docs](crate#what-a-handler-gets-and-returns)): `bytes::Bytes` as is,
/// `String` as UTF-8 text, `jetfn::Protobuf<M>` as protobuf (feature `protobuf`), any other
/// `T: DeserializeOwned` as JSON; when a JSON payload is a CloudEvents 1.0 structured envelope
/// (a JSON object with `specversion`), `data` is the envelope's `data`.
#[derive(Debug)]
#[non_exhaustive]
pub struct Event<T> {
    /// The decoded payload.
    pub data: T,
    meta: EventMeta,
}

/// Everything about a delivery except its payload.
#[derive(Debug, Clone)]
pub(crate) struct EventMeta {
    pub(crate) subject: async_nats::Subject,
    pub(crate) id: Option<String>,
    pub(crate) headers: HeaderMap,
    pub(crate) stream: Arc<str>,
    pub(crate) stream_sequence: u64,
    pub(crate) attempt: u32,
    pub(crate) published: SystemTime,
}

impl<T> Event<T> {
    /// An event of `data`, as a unit test hands it to a handler: subject and stream empty,
    /// no headers, attempt 1, stream sequence 1, published now. Change any of those with the
    /// `with_*` methods.
    ///
    /// ```
    /// let event = jetfn::Event::new("teapot".to_owned())
    ///     .with_subject("shop.orders.created")
    ///     .with_attempt(3);
    /// assert_eq!((event.subject(), event.attempt(), event.data.as_str()), ("shop.orders.created", 3, "teapot"));
    /// ```
    pub fn new(data: T) -> Self {
        let meta = EventMeta {
            subject: async_nats::Subject::from_static(""),
            id: None,
            headers: HeaderMap::new(),
            stream: Arc::from(""),
            stream_sequence: 1,
            attempt: 1,
            published: SystemTime::now(),
        };
        Self { data, meta }
    }

    /// The same event on `subject`.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.meta.subject = async_nats::Subject::from(subject.into());
        self
    }

    /// The same event with these headers (its `id()` follows a `Nats-Msg-Id` among them).
    pub fn with_headers(mut self, headers: HeaderMap) -> Self {
        self.meta.id = headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map(|id| id.as_str().to_owned());
        self.meta.headers = headers;
        self
    }

    /// The same event as delivery `attempt` (1 = the first).
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.meta.attempt = attempt;
        self
    }

    /// The same event stored in `stream` at `sequence` (what outputs' ids derive from).
    pub fn with_stream_sequence(mut self, stream: &str, sequence: u64) -> Self {
        self.meta.stream = Arc::from(stream);
        self.meta.stream_sequence = sequence;
        self
    }

    /// The same event stored at `published`.
    pub fn with_published(mut self, published: SystemTime) -> Self {
        self.meta.published = published;
        self
    }

    pub(crate) fn from_parts(data: T, meta: EventMeta) -> Self {
        Self { data, meta }
    }

    /// The payload and everything else (for request functions, which reuse the decoding).
    pub(crate) fn into_parts(self) -> (T, EventMeta) {
        (self.data, self.meta)
    }

    /// The subject the message was published to.
    pub fn subject(&self) -> &str {
        &self.meta.subject
    }

    /// The message id: the `Nats-Msg-Id` header, else the CloudEvents `id`, when there is one.
    pub fn id(&self) -> Option<&str> {
        self.meta.id.as_deref()
    }

    /// The message headers (empty when the message had none).
    pub fn headers(&self) -> &HeaderMap {
        &self.meta.headers
    }

    /// The name of the stream that stored the message.
    pub fn stream(&self) -> &str {
        &self.meta.stream
    }

    /// The message's sequence number in its stream.
    pub fn stream_sequence(&self) -> u64 {
        self.meta.stream_sequence
    }

    /// Which delivery this is: 1 on the first, 2 on the first retry, and so on.
    pub fn attempt(&self) -> u32 {
        self.meta.attempt
    }

    /// When the server stored the message.
    pub fn published(&self) -> SystemTime {
        self.meta.published
    }
}

/// What a handler gets besides its event: its name, a deduplicating publisher and JetStream.
///
/// Outputs published through [`Context::publish`] and [`Context::publish_bytes`] carry a
/// `Nats-Msg-Id` derived from the input message and the output's index, so a handler that
/// publishes and then fails publishes each output once however often it is retried (within the
/// stream's duplicate window).
#[derive(Debug)]
pub struct Context {
    function: Arc<Function>,
    input: InputRef,
    next_output: AtomicU32,
    extensions: http::Extensions,
}

/// What every [`Context`] of one function shares (one allocation per function, not per delivery).
#[derive(Debug)]
pub(crate) struct Function {
    pub(crate) name: Arc<str>,
    pub(crate) jetstream: jetstream::Context,
    pub(crate) auto_create_streams: bool,
    /// What `App::state` and the startup hooks provided.
    pub(crate) app: AppState,
    /// Lease, retention and bucket of the function's once-only steps.
    pub(crate) once: Steps,
    /// A unit test's recorder: outputs are recorded, not sent.
    #[cfg(feature = "testing")]
    pub(crate) recorder: Option<Arc<crate::recorder::Recorder>>,
}

impl Function {
    /// What every context of a function shares: its name, JetStream, the app's state and its
    /// once-only steps.
    pub(crate) fn new(
        name: Arc<str>,
        jetstream: jetstream::Context,
        auto_create_streams: bool,
        app: AppState,
        once: Steps,
    ) -> Self {
        Self {
            name,
            jetstream,
            auto_create_streams,
            app,
            once,
            #[cfg(feature = "testing")]
            recorder: None,
        }
    }
}

/// What the outputs of one handler run are derived from: their `Nats-Msg-Id` is
/// `jetfn:<function>:<input>:<index>`, the same on every retry of the same input and different
/// for any other input.
#[derive(Debug, Clone)]
pub(crate) enum InputRef {
    /// One stored message: `<stream>:<sequence>`.
    Message { stream: Arc<str>, sequence: u64 },
    /// A batch: `<stream>:<first sequence>+<digest of all its sequences>`, so a retried batch
    /// with other members (some of the first call's were acked) numbers its outputs afresh.
    Batch {
        stream: Arc<str>,
        first: u64,
        digest: u64,
        /// The members as a set (order left out), for once-only steps: the lowest sequence
        /// and a digest of the sorted sequences.
        members: (u64, u64),
    },
    /// A request: a key of its own (its reply subject, else a random one).
    Request(Arc<str>),
}

impl InputRef {
    /// A batch of messages of `stream` with these sequences (not empty; in delivery order).
    pub(crate) fn batch(stream: Arc<str>, sequences: impl IntoIterator<Item = u64>) -> Self {
        let mut sequences: Vec<u64> = sequences.into_iter().collect();
        let first = sequences.first().copied().unwrap_or(0);
        let digest = fnv1a(&sequences);
        sequences.sort_unstable();
        let members = (sequences.first().copied().unwrap_or(0), fnv1a(&sequences));
        InputRef::Batch {
            stream,
            first,
            digest,
            members,
        }
    }

    /// A request: keyed by its reply subject (unique per request), else by a random key, so
    /// that outputs of requests sent without one are not taken for duplicates of each other.
    pub(crate) fn request(reply: Option<&str>) -> Self {
        InputRef::Request(match reply {
            Some(reply) => Arc::from(reply),
            None => Arc::from(format!("request-{:016x}", rand::random::<u64>())),
        })
    }

    /// The `Nats-Msg-Id` of output `index` of `function` from this input.
    fn output_id(&self, function: &str, index: u32) -> String {
        match self {
            InputRef::Message { stream, sequence } => {
                format!("jetfn:{function}:{stream}:{sequence}:{index}")
            }
            InputRef::Batch {
                stream,
                first,
                digest,
                ..
            } => format!("jetfn:{function}:{stream}:{first}+{digest:016x}:{index}"),
            InputRef::Request(key) => format!("jetfn:{function}:{key}:{index}"),
        }
    }
}

/// FNV-1a over `sequences`: stable across builds and processes, unlike std's hasher.
fn fnv1a(sequences: &[u64]) -> u64 {
    let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sequences.iter().flat_map(|sequence| sequence.to_le_bytes()) {
        digest = (digest ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    digest
}

/// A [`Context::publish`] or [`Context::publish_bytes`] that did not reach a stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The payload could not be encoded as JSON.
    #[error("cannot encode the payload for `{subject}` as JSON: {source}")]
    Encode {
        /// The subject of the publish.
        subject: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// No stream captures the subject, and creating one failed (or `auto_create_streams` is off).
    #[error("no stream captures `{subject}` and none could be created: {reason}")]
    NoStream {
        /// The subject of the publish.
        subject: String,
        /// Why no stream could be created.
        reason: String,
    },
    /// A delayed publish with a bad time (in the past, or under one second ahead) or subject.
    #[error("cannot delay a publish to `{subject}`: {reason}")]
    Delay {
        /// The subject of the publish.
        subject: String,
        /// What is wrong.
        reason: String,
    },
    /// The server did not acknowledge the publish.
    #[error("publish to `{subject}` was not acknowledged: {source}")]
    Publish {
        /// The subject of the publish.
        subject: String,
        /// The JetStream error.
        source: jetstream::context::PublishError,
    },
}

impl Context {
    pub(crate) fn new(function: Arc<Function>, input: InputRef) -> Self {
        Self {
            function,
            input,
            next_output: AtomicU32::new(0),
            extensions: http::Extensions::new(),
        }
    }

    /// The same context with the values a middleware put into the call.
    pub(crate) fn with_extensions(mut self, extensions: http::Extensions) -> Self {
        self.extensions = extensions;
        self
    }

    /// A value a middleware inserted into the call's extensions
    /// ([`Call::extensions_mut`](crate::Call::extensions_mut)), by type.
    pub fn extension<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.extensions.get::<T>()
    }

    /// The application state (for the `State<T>` arguments the macro passes).
    pub(crate) fn app(&self) -> &AppState {
        &self.function.app
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.function.name
    }

    /// Publishes `payload` as JSON to `subject` through JetStream and waits for the stream's ack.
    ///
    /// The message gets a `Nats-Msg-Id` of `jetfn:<function>:<stream>:<seq>:<index>` (the input
    /// message and this output's index within the delivery) and the current trace context
    /// (`traceparent`), so the function that consumes it continues the same trace. When no
    /// stream captures `subject`
    /// and `auto_create_streams` is on, the stream is created by the same rule as for a
    /// function's subject (`<TOKEN>` capturing `<token>.>`).
    pub async fn publish(
        &self,
        subject: &str,
        payload: &(impl Serialize + ?Sized),
    ) -> Result<(), PublishError> {
        let body = serde_json::to_vec(payload).map_err(|source| PublishError::Encode {
            subject: subject.to_owned(),
            source,
        })?;
        self.publish_bytes(subject, body).await
    }

    /// Publishes `payload` to `subject` as given (no encoding), exactly like
    /// [`Context::publish`] otherwise: awaited to the stream's ack, trace context injected, the
    /// stream created when missing, and the derived `Nats-Msg-Id`, whose output index is shared
    /// with `publish` (one sequence per delivery across both).
    pub async fn publish_bytes(
        &self,
        subject: &str,
        payload: impl Into<Bytes>,
    ) -> Result<(), PublishError> {
        let body = payload.into();
        let index = self.next_output.fetch_add(1, Ordering::Relaxed);
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, self.output_id(index));
        propagation::inject_current(&mut headers);
        #[cfg(feature = "testing")]
        if let Some(recorder) = &self.function.recorder {
            return recorder
                .record(subject, headers, body, None)
                .map_err(|reason| PublishError::NoStream {
                    subject: subject.to_owned(),
                    reason,
                });
        }
        self.send_creating(subject, headers, body, || async {
            if !self.function.auto_create_streams {
                return Err("auto_create_streams is off".to_owned());
            }
            topology::create_stream_for(&self.function.jetstream, subject)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await
    }

    /// Stores `payload` (JSON) now and publishes it to `subject` once `delay` has passed, like
    /// [`Context::publish_at`] at `now + delay`.
    pub async fn publish_after(
        &self,
        subject: &str,
        payload: &(impl Serialize + ?Sized),
        delay: Duration,
    ) -> Result<(), PublishError> {
        let now = SystemTime::now();
        if delay < Duration::from_secs(1) {
            return Err(PublishError::Delay {
                subject: subject.to_owned(),
                reason: "the delay must be at least 1 s ahead".to_owned(),
            });
        }
        self.publish_delayed(subject, payload, now + delay, now)
            .await
    }

    /// Stores `payload` (JSON) now, durably (the call returns once the stream `JETFN_SCHEDULES`
    /// acknowledged it), and publishes it to `subject` at `at` (second precision: rounded up to
    /// the second; at least one second ahead, else [`PublishError::Delay`]).
    ///
    /// It carries the same derived `Nats-Msg-Id` as [`Context::publish`] (one output index),
    /// so a retried handler stores each delayed output once, and its publish when due is
    /// deduplicated by the target stream. When due, a runtime publishes it with an acknowledged
    /// JetStream publish, retried every second while the target stream is unavailable.
    pub async fn publish_at(
        &self,
        subject: &str,
        payload: &(impl Serialize + ?Sized),
        at: SystemTime,
    ) -> Result<(), PublishError> {
        self.publish_delayed(subject, payload, at, SystemTime::now())
            .await
    }

    async fn publish_delayed(
        &self,
        subject: &str,
        payload: &(impl Serialize + ?Sized),
        at: SystemTime,
        now: SystemTime,
    ) -> Result<(), PublishError> {
        let delay_error = |reason: String| PublishError::Delay {
            subject: subject.to_owned(),
            reason,
        };
        subject::validate(subject, false).map_err(|e| delay_error(e.to_string()))?;
        let due = schedule::delay::due(at, now).ok_or_else(|| {
            delay_error("the time must be at least 1 s ahead (not in the past)".to_owned())
        })?;
        let body = serde_json::to_vec(payload).map_err(|source| PublishError::Encode {
            subject: subject.to_owned(),
            source,
        })?;
        let index = self.next_output.fetch_add(1, Ordering::Relaxed);
        let id = self.output_id(index);
        #[cfg(feature = "testing")]
        if let Some(recorder) = &self.function.recorder {
            let mut headers = HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
            return recorder
                .record(subject, headers, Bytes::from(body), Some(at))
                .map_err(|reason| PublishError::NoStream {
                    subject: subject.to_owned(),
                    reason,
                });
        }
        let (holder, mut headers) = schedule::delay::schedule(&id, subject, due);
        propagation::inject_current(&mut headers);
        self.send_creating(&holder, headers, Bytes::from(body), || async {
            schedule::ensure_stream(&self.function.jetstream)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await
    }

    /// [`Context::send`] until the stream acknowledges, through elections: when no stream
    /// captures `subject` (the meta layer says so, not a "no responders" alone, which a stream
    /// without a leader answers too), `create` makes one (or says why not, as
    /// [`PublishError::NoStream`]); a publish that meets an election (no leader, a timed-out
    /// ack, a lost connection) is sent again with backoff, within [`election::BUDGET`].
    async fn send_creating<F>(
        &self,
        subject: &str,
        headers: HeaderMap,
        body: Bytes,
        create: impl FnOnce() -> F,
    ) -> Result<(), PublishError>
    where
        F: std::future::Future<Output = Result<(), String>>,
    {
        let mut create = Some(create);
        let mut backoff = election::Backoff::new(election::BUDGET);
        loop {
            let error = match self.send(subject, headers.clone(), body.clone()).await {
                Err(PublishError::Publish { source, .. }) => source,
                result => return result,
            };
            if election::classify(&error) == election::Failure::Final {
                return Err(publish_error(subject, error));
            }
            if create.is_some()
                && election::stream_missing(&self.function.jetstream, subject, &error).await
            {
                if let Some(create) = create.take() {
                    create().await.map_err(|reason| PublishError::NoStream {
                        subject: subject.to_owned(),
                        reason,
                    })?;
                    continue;
                }
            }
            tracing::debug!(function = %self.function.name, subject, %error, "publish not acknowledged; sending again");
            if !backoff.wait().await {
                return Err(publish_error(subject, error));
            }
        }
    }

    async fn send(
        &self,
        subject: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<(), PublishError> {
        election::send(&self.function.jetstream, subject, headers, body)
            .await
            .map(drop)
            .map_err(|source| PublishError::Publish {
                subject: subject.to_owned(),
                source,
            })
    }

    /// What every context of the function shares, and this context's input (for
    /// `Context::once`, in the `once` module).
    pub(crate) fn function_and_input(&self) -> (&Function, &InputRef) {
        (&self.function, &self.input)
    }

    /// The JetStream context, for anything [`Context::publish`] does not cover.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.function.jetstream
    }

    fn output_id(&self, index: u32) -> String {
        self.input.output_id(&self.function.name, index)
    }
}

fn publish_error(subject: &str, source: jetstream::context::PublishError) -> PublishError {
    PublishError::Publish {
        subject: subject.to_owned(),
        source,
    }
}

/// How a failure is to be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// Try again later, with backoff (the default).
    Retryable,
    /// Do not retry: dead-letter at once.
    Permanent,
    /// The payload could not be decoded into the handler's type: dead-letter at once.
    Decode,
    /// The decoded payload failed its validation (`validator::Validate`, cargo feature
    /// `validate`): dead-letter at once.
    Invalid,
}

/// A handler's failure: retryable unless made with [`HandlerError::permanent`].
///
/// `?` converts any `std::error::Error + Send + Sync + 'static` into a retryable `HandlerError`.
/// Like `anyhow::Error`, `HandlerError` does not itself implement `std::error::Error`, which is
/// what makes that blanket conversion possible.
pub struct HandlerError {
    kind: FailureKind,
    source: BoxError,
}

impl HandlerError {
    /// A failure worth retrying with backoff.
    pub fn retryable(error: impl Into<BoxError>) -> Self {
        Self::new(FailureKind::Retryable, error)
    }

    /// A failure that retrying cannot fix: the message is dead-lettered at once.
    pub fn permanent(error: impl Into<BoxError>) -> Self {
        Self::new(FailureKind::Permanent, error)
    }

    pub(crate) fn decode(error: impl Into<BoxError>) -> Self {
        Self::new(FailureKind::Decode, error)
    }

    #[cfg_attr(not(feature = "validate"), allow(dead_code))]
    pub(crate) fn invalid(error: impl Into<BoxError>) -> Self {
        Self::new(FailureKind::Invalid, error)
    }

    /// A batch call in which `failed` events failed (their errors are the call's per-event
    /// results): what the layers around a batch call see.
    pub(crate) fn items_failed(failed: usize) -> Self {
        Self::retryable(ItemsFailed(failed))
    }

    /// Whether this is [`HandlerError::items_failed`] as the handler returned it.
    pub(crate) fn is_items_failed(&self) -> bool {
        self.kind == FailureKind::Retryable && self.source.is::<ItemsFailed>()
    }

    fn new(kind: FailureKind, error: impl Into<BoxError>) -> Self {
        Self {
            kind,
            source: error.into(),
        }
    }

    /// The same kind and message (for a failure shared by every event of a batch).
    pub(crate) fn duplicate(&self) -> Self {
        Self::new(self.kind, self.source.to_string())
    }

    /// How the runtime treats this failure.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// The error this failure was made from (what `?`, [`HandlerError::retryable`] or
    /// [`HandlerError::permanent`] received); a `HandlerError` displays as it.
    ///
    /// ```
    /// # use jetfn::HandlerError;
    /// let error = HandlerError::permanent(std::fmt::Error);
    /// assert!(error.get_ref().is::<std::fmt::Error>());
    /// ```
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }

    /// The wrapped error as `E`, when it is one.
    ///
    /// ```
    /// # use jetfn::HandlerError;
    /// let error: HandlerError = std::fmt::Error.into();
    /// assert!(error.downcast_ref::<std::fmt::Error>().is_some());
    /// ```
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.source.downcast_ref::<E>()
    }

    /// The cause of this failure: the wrapped error's own
    /// [`source`](std::error::Error::source), or `None` (a `HandlerError` displays as the
    /// wrapped error, so that error is not its own cause). Walk on with
    /// `std::error::Error::source` for the rest of the chain.
    ///
    /// ```
    /// # use jetfn::HandlerError;
    /// let error = HandlerError::retryable("gateway down");
    /// assert!(error.source().is_none());
    /// ```
    pub fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.source()
    }
}

/// Some events of a batch call failed, each with its own error.
#[derive(Debug, thiserror::Error)]
#[error("{0} event(s) of the batch failed")]
struct ItemsFailed(usize);

impl<E> From<E> for HandlerError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        Self::retryable(error)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_keyed_by_their_input() {
        let stream: Arc<str> = Arc::from("ORDERS");
        let message = InputRef::Message {
            stream: stream.clone(),
            sequence: 7,
        };
        assert_eq!(message.output_id("f", 2), "jetfn:f:ORDERS:7:2");
        // A retried batch with the same members keeps its ids; one with other members (the
        // first call acked some) does not reuse them for different outputs.
        let first = InputRef::batch(stream.clone(), [1, 2]).output_id("f", 1);
        assert_eq!(
            first,
            InputRef::batch(stream.clone(), [1, 2]).output_id("f", 1)
        );
        assert_ne!(
            first,
            InputRef::batch(stream.clone(), [1, 5]).output_id("f", 1)
        );
        assert_ne!(first, InputRef::batch(stream, [1, 2, 5]).output_id("f", 1));
        assert!(first.starts_with("jetfn:f:ORDERS:1+"), "{first}");
        // Requests: keyed by the reply subject, else each by a key of its own.
        let reply = InputRef::request(Some("_INBOX.abc"));
        assert_eq!(reply.output_id("f", 0), "jetfn:f:_INBOX.abc:0");
        assert_ne!(
            InputRef::request(None).output_id("f", 0),
            InputRef::request(None).output_id("f", 0)
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("gateway down")]
    struct GatewayDown;

    fn fails() -> Result<(), HandlerError> {
        Err(GatewayDown)?;
        Ok(())
    }

    #[test]
    fn question_mark_gives_a_retryable_error() {
        let error = fails().expect_err("must fail");
        assert_eq!(error.kind(), FailureKind::Retryable);
        assert!(error.downcast_ref::<GatewayDown>().is_some());
        assert!(error.get_ref().is::<GatewayDown>());
        assert!(error.source().is_none(), "not its own cause");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("charge failed")]
    struct ChargeFailed(#[source] GatewayDown);

    #[test]
    fn source_is_the_wrapped_error_s_cause() {
        let error = HandlerError::permanent(ChargeFailed(GatewayDown));
        assert_eq!(error.to_string(), "charge failed");
        let cause = error.source().expect("the wrapped error's cause");
        assert!(cause.is::<GatewayDown>());
        assert!(std::error::Error::source(cause).is_none());
    }

    #[test]
    fn constructors_take_strings_and_errors() {
        assert_eq!(
            HandlerError::permanent("bad order").kind(),
            FailureKind::Permanent
        );
        assert_eq!(
            HandlerError::retryable(GatewayDown).kind(),
            FailureKind::Retryable
        );
        assert_eq!(HandlerError::permanent("x").to_string(), "x");
    }
}
