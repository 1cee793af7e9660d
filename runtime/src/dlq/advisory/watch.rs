//! The pod's one reader of MAX_DELIVERIES advisories, for all its functions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::MessagesErrorKind;
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{bind, handle, MaxDeliveries};
use crate::state::FunctionState;

/// The longest pause between two attempts to bind the advisory consumer.
const MAX_BIND_BACKOFF: Duration = Duration::from_secs(5);
/// How long an advisory that could not be handled waits before it is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// What became of one advisory.
enum Handled {
    /// Dead-lettered, or nothing to do: ack it.
    Done,
    /// Try again later: NAK it.
    Retry,
}

/// Dead-letters, as `crashed`, every message the consumers of `functions` gave up on, until
/// `cancel`: one durable consumer on the advisory stream for all of them, bound again should it
/// go away. Nothing to do without event functions.
pub(crate) async fn watch(
    js: jetstream::Context,
    functions: Vec<Arc<FunctionState>>,
    cancel: CancellationToken,
) {
    if functions.is_empty() {
        return;
    }
    let by_name: HashMap<&str, &FunctionState> = functions
        .iter()
        .map(|function| (function.config.name.as_str(), &**function))
        .collect();
    let names: Vec<&str> = functions.iter().map(|f| f.config.name.as_str()).collect();
    let mut pause = Duration::from_millis(100);
    while !cancel.is_cancelled() {
        let bound = tokio::select! {
            () = cancel.cancelled() => return,
            bound = bind(&js, &names) => bound,
        };
        let messages = match bound {
            Ok(consumer) => consumer.messages().await.map_err(|e| e.to_string()),
            Err(error) => Err(error),
        };
        match messages {
            Ok(messages) => {
                pause = Duration::from_millis(100);
                read(&js, &by_name, messages, &cancel).await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read MAX_DELIVERIES advisories yet; retrying");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(MAX_BIND_BACKOFF);
            }
        }
    }
}

/// Handles advisories until `cancel`, or until the consumer goes away (bind it again).
async fn read(
    js: &jetstream::Context,
    functions: &HashMap<&str, &FunctionState>,
    mut messages: jetstream::consumer::pull::Stream,
    cancel: &CancellationToken,
) {
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return,
            next = messages.next() => next,
        };
        let advisory = match next {
            Some(Ok(advisory)) => advisory,
            Some(Err(error)) if error.kind() == MessagesErrorKind::ConsumerDeleted => {
                tracing::warn!(%error, "the advisory consumer went away; binding it again");
                return;
            }
            Some(Err(error)) => {
                tracing::debug!(%error, "advisory pull error");
                continue;
            }
            None => return,
        };
        let ack = match dispatch(js, functions, &advisory.payload).await {
            Handled::Done => AckKind::Ack,
            Handled::Retry => AckKind::Nak(Some(RETRY)),
        };
        if let Err(error) = advisory.ack_with(ack).await {
            tracing::warn!(%error, "advisory ack not sent; it will be redelivered");
        }
    }
}

/// Hands one advisory to its function.
async fn dispatch(
    js: &jetstream::Context,
    functions: &HashMap<&str, &FunctionState>,
    payload: &[u8],
) -> Handled {
    let advisory: MaxDeliveries = match serde_json::from_slice(payload) {
        Ok(advisory) => advisory,
        Err(error) => {
            tracing::error!(%error, "malformed MAX_DELIVERIES advisory; skipped");
            return Handled::Done;
        }
    };
    let Some(function) = functions.get(advisory.consumer.as_str()) else {
        tracing::debug!(consumer = %advisory.consumer, "an advisory of no function of this pod; skipped");
        return Handled::Done;
    };
    // Another stream's consumer of the same name is not this function's.
    if let Some(stream) = function.stream() {
        if stream != advisory.stream {
            tracing::debug!(function = %advisory.consumer, stream = %advisory.stream, bound = %stream, "an advisory of another stream's consumer; skipped");
            return Handled::Done;
        }
    }
    match handle(js, &function.config, &advisory).await {
        Ok(()) => Handled::Done,
        Err(error) => {
            tracing::error!(function = %advisory.consumer, %error, "crashed dead letter not stored yet; retrying");
            Handled::Retry
        }
    }
}
