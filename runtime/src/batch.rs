//! Batch functions: [`Batch<T>`] in, [`BatchError`] out, and the per-event results the delivery
//! settles one by one.
//!
//! A batch function (`#[event_handler(subject = "...", batch = N)]`) is called with up to `N`
//! events. Undecodable messages never reach it (they are dead-lettered as `decode`). Its result
//! becomes one result per event: `Ok(())` acks every event, [`BatchError::all`] (or `?`) fails
//! every event, [`BatchError::items`] fails the events it names and acks the others; each failed
//! event then follows the retry / dead-letter / breaker policy on its own.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::codec::Incoming;
use crate::handler::{Context, Event, HandlerError};

/// The events of one call of a batch function, in the order they were delivered.
#[derive(Debug)]
pub struct Batch<T> {
    events: Vec<Event<T>>,
}

impl<T> Batch<T> {
    /// How many events the batch holds (at least 1).
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the batch holds no event (never, when the runtime calls the function).
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The events, in delivery order; an event's position is its index for
    /// [`BatchError::items`].
    pub fn iter(&self) -> std::slice::Iter<'_, Event<T>> {
        self.events.iter()
    }
}

impl<'a, T> IntoIterator for &'a Batch<T> {
    type Item = &'a Event<T>;
    type IntoIter = std::slice::Iter<'a, Event<T>>;

    fn into_iter(self) -> Self::IntoIter {
        self.events.iter()
    }
}

/// A batch function's failure: of every event, or of some events by index.
///
/// `?` on any `std::error::Error + Send + Sync + 'static` fails every event with a retryable
/// error, as [`HandlerError`] does for one event.
pub struct BatchError {
    failed: Failed,
}

enum Failed {
    All(HandlerError),
    Items(Vec<(usize, HandlerError)>),
}

impl BatchError {
    /// Every event of the batch failed with `error`.
    pub fn all(error: impl Into<HandlerError>) -> Self {
        Self {
            failed: Failed::All(error.into()),
        }
    }

    /// The events at these indexes (positions in the [`Batch`]) failed; the others succeeded
    /// and are acked. An index past the batch's end is ignored.
    pub fn items(failures: impl IntoIterator<Item = (usize, HandlerError)>) -> Self {
        Self {
            failed: Failed::Items(failures.into_iter().collect()),
        }
    }
}

impl<E> From<E> for BatchError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        Self::all(HandlerError::retryable(error))
    }
}

impl From<HandlerError> for BatchError {
    fn from(error: HandlerError) -> Self {
        Self::all(error)
    }
}

impl fmt::Debug for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failed {
            Failed::All(error) => f.debug_tuple("BatchError::All").field(error).finish(),
            Failed::Items(items) => f.debug_tuple("BatchError::Items").field(items).finish(),
        }
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failed {
            Failed::All(error) => write!(f, "every event failed: {error}"),
            Failed::Items(items) => write!(f, "{} event(s) failed", items.len()),
        }
    }
}

/// One result per message of a batch call, in the order the messages were given.
pub type BatchResults = Vec<Result<(), HandlerError>>;

/// The future a registered batch function returns.
pub type BatchFuture = Pin<Box<dyn Future<Output = BatchResults> + Send + 'static>>;

/// The type-erased entry point of a batch function: decodes each message, calls the user's
/// function with the decodable ones, and gives one result per message.
pub type BatchFn = fn(Context, Vec<Incoming>) -> BatchFuture;

/// Decodes `incoming` into events of `T` with `decode` and calls `handler` with those that
/// decode; the others get their error (undecodable, invalid) as their result.
pub(crate) fn invoke<T, F, Fut>(
    ctx: Context,
    incoming: Vec<Incoming>,
    handler: F,
    decode: impl FnMut(Incoming) -> Result<Event<T>, HandlerError>,
) -> BatchFuture
where
    F: FnOnce(Context, Batch<T>) -> Fut,
    Fut: Future<Output = Result<(), BatchError>> + Send + 'static,
{
    let Decoded {
        batch,
        positions,
        results,
    } = decode_all(incoming, decode);
    if batch.is_empty() {
        return Box::pin(std::future::ready(results));
    }
    let call = handler(ctx, batch);
    Box::pin(async move { merge(results, &positions, call.await) })
}

/// The decodable events of a batch call, and a result per message so far.
struct Decoded<T> {
    batch: Batch<T>,
    /// For each event in the batch, its message's position.
    positions: Vec<usize>,
    /// `Ok` for the decoded ones (until the function says otherwise), the decode error else.
    results: BatchResults,
}

fn decode_all<T>(
    incoming: Vec<Incoming>,
    mut decode: impl FnMut(Incoming) -> Result<Event<T>, HandlerError>,
) -> Decoded<T> {
    let mut results: BatchResults = Vec::with_capacity(incoming.len());
    let mut events = Vec::with_capacity(incoming.len());
    let mut positions = Vec::with_capacity(incoming.len());
    for (position, message) in incoming.into_iter().enumerate() {
        match decode(message) {
            Ok(event) => {
                events.push(event);
                positions.push(position);
                results.push(Ok(()));
            }
            Err(error) => results.push(Err(error)),
        }
    }
    Decoded {
        batch: Batch { events },
        positions,
        results,
    }
}

/// The function's outcome spread over the messages.
fn merge(
    mut results: BatchResults,
    positions: &[usize],
    outcome: Result<(), BatchError>,
) -> BatchResults {
    match outcome.map_err(|error| error.failed) {
        Ok(()) => {}
        Err(Failed::All(error)) => {
            for &position in positions {
                results[position] = Err(error.duplicate());
            }
        }
        Err(Failed::Items(items)) => {
            for (index, error) in items {
                if let Some(&position) = positions.get(index) {
                    results[position] = Err(error);
                }
            }
        }
    }
    results
}

/// The result of a batch of one, for the single-message entry point of a batch function.
/// (The same type as the registry's `HandlerFuture`, which this module does not import: the
/// registry imports this one.)
pub(crate) fn first(
    batch: BatchFuture,
) -> Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'static>> {
    Box::pin(async move {
        batch
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(HandlerError::retryable("a batch of one gave no result")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Json;
    use crate::handler::{EventMeta, FailureKind};
    use std::sync::Arc;
    use std::time::SystemTime;

    fn incoming(payload: &str, seq: u64) -> Incoming {
        Incoming {
            payload: bytes::Bytes::copy_from_slice(payload.as_bytes()),
            meta: EventMeta {
                subject: "metrics.raw".into(),
                id: None,
                headers: Default::default(),
                stream: Arc::from("METRICS"),
                stream_sequence: seq,
                attempt: 1,
                published: SystemTime::UNIX_EPOCH,
            },
        }
    }

    fn kinds(results: &BatchResults) -> Vec<Option<FailureKind>> {
        results
            .iter()
            .map(|r| r.as_ref().err().map(HandlerError::kind))
            .collect()
    }

    fn run(
        payloads: &[&str],
        handler: impl FnOnce(&Batch<u32>) -> Result<(), BatchError>,
    ) -> BatchResults {
        let messages = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| incoming(p, i as u64 + 1))
            .collect();
        let decoded = decode_all(messages, |m| {
            <u32 as crate::codec::Payload<Json>>::decode(m).map_err(HandlerError::decode)
        });
        let outcome = handler(&decoded.batch);
        merge(decoded.results, &decoded.positions, outcome)
    }

    #[test]
    fn undecodable_messages_never_reach_the_function_and_items_index_the_batch() {
        let results = run(&["1", "x", "3", "4"], |batch| {
            let seen: Vec<u32> = batch.iter().map(|e| e.data).collect();
            assert_eq!(seen, [1, 3, 4], "the undecodable one is left out");
            // Index 1 of the batch is the payload 3 (position 2); 9 is past the end.
            Err(BatchError::items([
                (1, HandlerError::permanent("bad")),
                (9, HandlerError::permanent("ignored")),
            ]))
        });
        assert_eq!(
            kinds(&results),
            [
                None,
                Some(FailureKind::Decode),
                Some(FailureKind::Permanent),
                None
            ]
        );
    }

    #[test]
    fn all_fails_every_decoded_event_with_its_kind() {
        let results = run(&["1", "2", "nope"], |_| {
            Err(BatchError::all(HandlerError::permanent("down")))
        });
        assert_eq!(
            kinds(&results),
            [
                Some(FailureKind::Permanent),
                Some(FailureKind::Permanent),
                Some(FailureKind::Decode)
            ]
        );
        assert_eq!(
            results[0].as_ref().map_err(ToString::to_string),
            Err("down".to_owned())
        );
    }

    #[test]
    fn question_mark_fails_every_event_retryably() {
        fn parse(text: &str) -> Result<u32, BatchError> {
            Ok(text.parse::<u32>()?)
        }
        let results = run(&["1", "2"], |_| parse("x").map(drop));
        assert_eq!(
            kinds(&results),
            [Some(FailureKind::Retryable), Some(FailureKind::Retryable)]
        );
        let ok = run(&["1"], |_| Ok(()));
        assert_eq!(kinds(&ok), [None]);
    }
}
