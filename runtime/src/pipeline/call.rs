//! [`Call`]: one delivery (a message, a batch, or a request) as the user's middleware sees it.

use std::sync::{Arc, Mutex};

use async_nats::HeaderMap;
use bytes::Bytes;

use crate::batch::BatchResults;
use crate::codec::Incoming;
use crate::handler::{Function, InputRef};

/// A type map of values a middleware hands to the handler, which reads them with
/// [`Context::extension`](crate::Context::extension) (`http::Extensions`: values are
/// `Clone + Send + Sync + 'static`, one per type).
pub type Extensions = http::Extensions;

/// One call of a function, before its payload is decoded: what a middleware layer
/// ([`App::layer`](crate::App::layer), [`middleware::from_fn`](crate::middleware::from_fn))
/// sees and may change.
///
/// A call is one message of an event function (a scheduled tick included), one request of a
/// request function, or one call of a batch function; for a batch, `subject`, `headers`,
/// `payload`, `attempt` and `stream_sequence` are those of its first message, and
/// [`Call::payloads_mut`] reaches every message's payload.
pub struct Call {
    pub(crate) function: Arc<Function>,
    pub(crate) input: InputRef,
    pub(crate) messages: Messages,
    pub(crate) extensions: Extensions,
    pub(crate) output: Output,
}

/// The messages of a call: one, or a batch (first and the rest, so there is always a first).
pub(crate) enum Messages {
    One(Incoming),
    Batch(Incoming, Vec<Incoming>),
}

impl Messages {
    /// A batch of `messages` (`None` when empty).
    pub(crate) fn batch(messages: Vec<Incoming>) -> Option<Self> {
        let mut messages = messages.into_iter();
        let first = messages.next()?;
        Some(Messages::Batch(first, messages.collect()))
    }

    pub(crate) fn into_vec(self) -> Vec<Incoming> {
        match self {
            Messages::One(one) => vec![one],
            Messages::Batch(first, rest) => {
                let mut all = Vec::with_capacity(rest.len() + 1);
                all.push(first);
                all.extend(rest);
                all
            }
        }
    }

    fn first(&self) -> &Incoming {
        match self {
            Messages::One(one) | Messages::Batch(one, _) => one,
        }
    }

    fn first_mut(&mut self) -> &mut Incoming {
        match self {
            Messages::One(one) | Messages::Batch(one, _) => one,
        }
    }
}

/// Where the innermost service leaves what is not `()`: a request's encoded reply, a batch's
/// result per message. Read by the delivery once the call has ended.
#[derive(Clone, Default)]
pub(crate) enum Output {
    /// An event function's message: its result is the call's.
    #[default]
    None,
    /// A request's reply body.
    Reply(Slot<Bytes>),
    /// A batch call's result per message, in the order of its messages.
    Batch(Slot<BatchResults>),
}

/// A value the innermost service sets and the delivery takes.
pub(crate) struct Slot<T>(Arc<Mutex<Option<T>>>);

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(None)))
    }
}

impl<T> Slot<T> {
    pub(crate) fn put(&self, value: T) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(value);
        }
    }

    pub(crate) fn take(&self) -> Option<T> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

impl Call {
    pub(crate) fn new(
        function: Arc<Function>,
        input: InputRef,
        messages: Messages,
        output: Output,
    ) -> Self {
        Self {
            function,
            input,
            messages,
            extensions: Extensions::new(),
            output,
        }
    }

    /// The function's name.
    pub fn function(&self) -> &str {
        &self.function.name
    }

    /// The subject the message (or request) was published to.
    pub fn subject(&self) -> &str {
        &self.messages.first().meta.subject
    }

    /// The message's headers (empty when it had none).
    pub fn headers(&self) -> &HeaderMap {
        &self.messages.first().meta.headers
    }

    /// The message's headers, to change before the handler sees them.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.messages.first_mut().meta.headers
    }

    /// The raw payload, before decoding.
    pub fn payload(&self) -> &Bytes {
        &self.messages.first().payload
    }

    /// Replaces the raw payload before it is decoded (decryption, decompression, ...).
    pub fn set_payload(&mut self, payload: impl Into<Bytes>) {
        self.messages.first_mut().payload = payload.into();
    }

    /// Every message's raw payload: one for a message or a request, each of a batch's.
    pub fn payloads_mut(&mut self) -> impl Iterator<Item = &mut Bytes> {
        let (first, rest) = match &mut self.messages {
            Messages::One(one) => (one, &mut [][..]),
            Messages::Batch(first, rest) => (first, &mut rest[..]),
        };
        std::iter::once(&mut first.payload).chain(rest.iter_mut().map(|m| &mut m.payload))
    }

    /// Which delivery this is: 1 on the first, 2 on the first retry (always 1 for a request).
    pub fn attempt(&self) -> u32 {
        self.messages.first().meta.attempt
    }

    /// The message's sequence in its stream (0 for a request).
    pub fn stream_sequence(&self) -> u64 {
        self.messages.first().meta.stream_sequence
    }

    /// Values for the handler ([`Context::extension`](crate::Context::extension)).
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// Values for the handler, to insert into.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("function", &self.function())
            .field("subject", &self.subject())
            .field("attempt", &self.attempt())
            .field("stream_sequence", &self.stream_sequence())
            .field("payload_len", &self.payload().len())
            .finish_non_exhaustive()
    }
}
