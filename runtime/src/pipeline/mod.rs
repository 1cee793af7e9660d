//! The one delivery pipeline every call goes through: a message of an event function (a
//! scheduled tick included), a call of a batch function, a request of a request function.
//!
//! The layers, outermost first (an onion: each wraps everything below it):
//!
//! ```text
//! end            event: settle (ack / NAK with delay / dead-letter, then ack), breaker record,
//!                       policy::decide        -> consumer::delivery
//!                request: the reply (or the NATS service error headers)  -> request::endpoint
//!  └ span        `<subject> process`, its parent from `traceparent` (telemetry::DeliverySpan)
//!    └ metrics   jetfn_in_flight, jetfn_handler_duration_seconds          -> Pipeline::run
//!      └ timeout the function's `timeout`; in-progress acks every ack_wait / 2  -> guard
//!        └ panic guard  a panic below (a layer's too) is a retryable failure   -> guard
//!          └ the user's layers (App::layer; the first added is the outermost)  -> middleware
//!            └ decode + validate   raw payload -> Event<T> / Batch<T> / Request<T>;
//!                                  failure = Decode / Invalid (dead letter, or 400)
//!              └ the user's async fn (with its State<T> arguments)
//! ```
//!
//! The breaker's admission (before a message starts) is the pull loop's; everything from the
//! span inwards is this module's and the same for every kind of function. With no user layer
//! the handler is called directly: no tower service, no lock, no allocation of its own.

mod call;
mod guard;
pub mod middleware;

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::time::Instant;
use tower::Service;

pub use call::{Call, Extensions};
pub(crate) use call::{Messages, Output, Slot};
pub(crate) use guard::Guard;
pub(crate) use middleware::LayerFn;
use middleware::{CallFuture, Inner, Shared};

use crate::batch::{BatchFn, BatchResults};
use crate::delivered::Delivered;
use crate::handler::{Context, Function, HandlerError};
use crate::policy::Failure;
use crate::registry::{HandlerFn, RequestFn};

/// The type-erased entry point of a function: decodes (and validates) the payload, calls the
/// user's fn.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Entry {
    /// An event function: one message per call; a batch function also takes a batch.
    Event {
        single: HandlerFn,
        batch: Option<BatchFn>,
    },
    /// A request function.
    Request(RequestFn),
}

impl Entry {
    /// Runs the function on `call`. A batch's results per message and a request's reply go to
    /// the call's [`Output`]; a batch with failed events ends in [`HandlerError::items_failed`].
    fn invoke(self, call: Call) -> CallFuture {
        let Call {
            function,
            input,
            messages,
            extensions,
            output,
        } = call;
        let ctx = Context::new(function, input).with_extensions(extensions);
        match (self, messages, output) {
            (Entry::Event { single, .. }, Messages::One(incoming), Output::None) => {
                single(ctx, incoming)
            }
            (
                Entry::Event {
                    batch: Some(batch), ..
                },
                messages,
                Output::Batch(slot),
            ) => {
                let results = batch(ctx, messages.into_vec());
                Box::pin(async move { settle_batch(&slot, results.await) })
            }
            (Entry::Request(handler), Messages::One(incoming), Output::Reply(slot)) => {
                let reply = handler(ctx, incoming);
                Box::pin(async move {
                    slot.put(reply.await?);
                    Ok(())
                })
            }
            // The deliveries make calls of their function's kind only.
            _ => Box::pin(std::future::ready(Err(HandlerError::retryable(
                "a call of the wrong kind for this function",
            )))),
        }
    }
}

/// Keeps a batch's results for the delivery; `Err` (so that layers see the failure) when any
/// event failed.
fn settle_batch(slot: &Slot<BatchResults>, results: BatchResults) -> Result<(), HandlerError> {
    let failed = results.iter().filter(|result| result.is_err()).count();
    slot.put(results);
    match failed {
        0 => Ok(()),
        failed => Err(HandlerError::items_failed(failed)),
    }
}

/// The innermost service of a stack with user layers: the entry point.
#[derive(Clone)]
struct Endpoint(Entry);

impl Service<Call> for Endpoint {
    type Response = ();
    type Error = HandlerError;
    type Future = CallFuture;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), HandlerError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> CallFuture {
        self.0.invoke(call)
    }
}

/// The user's layers around the entry point, built once per function.
enum Stack {
    /// No layer: the entry point is called directly.
    Direct(Entry),
    /// The outermost layer's service.
    Layered(Shared),
}

impl Stack {
    fn new(entry: Entry, layers: &[LayerFn]) -> Self {
        let mut layers = layers.iter().rev();
        let Some(innermost) = layers.next() else {
            return Stack::Direct(entry);
        };
        let mut stack = innermost(Inner::new(Endpoint(entry)));
        for layer in layers {
            stack = layer(Inner::new(stack));
        }
        Stack::Layered(stack)
    }

    fn call(
        &self,
        call: Call,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), HandlerError>> + Send + '_>>
    {
        match self {
            Stack::Direct(entry) => entry.invoke(call),
            Stack::Layered(shared) => Box::pin(shared.run(call)),
        }
    }
}

/// What a pipeline counts.
pub(crate) struct Instruments {
    pub(crate) duration: Histogram,
    /// `None` for request functions (they have no `jetfn_in_flight`).
    pub(crate) in_flight: Option<Gauge>,
}

/// One function's pipeline, built once per process.
pub(crate) struct Pipeline {
    function: Arc<Function>,
    stack: Stack,
    guard: Guard,
    instruments: Instruments,
}

impl Pipeline {
    pub(crate) fn new(
        function: Arc<Function>,
        entry: Entry,
        layers: &[LayerFn],
        guard: Guard,
        instruments: Instruments,
    ) -> Self {
        Self {
            function,
            stack: Stack::new(entry, layers),
            guard,
            instruments,
        }
    }

    /// What every call's [`Context`] shares.
    pub(crate) fn function(&self) -> &Arc<Function> {
        &self.function
    }

    /// Runs `call` through metrics, timeout, in-progress acks for `alive`, panic guard, the
    /// user's layers and the handler; `count` is how many messages it carries.
    pub(crate) async fn run(
        &self,
        call: Call,
        count: usize,
        alive: &[Delivered],
    ) -> Result<(), Failure> {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        if let Some(in_flight) = &self.instruments.in_flight {
            in_flight.inc_by(count);
        }
        let started = Instant::now();
        let stack = &self.stack;
        let result = self
            .guard
            .run(move || stack.call(call), alive)
            .await
            .and_then(|result| result.map_err(Failure::Handler));
        self.instruments
            .duration
            .observe(started.elapsed().as_secs_f64());
        if let Some(in_flight) = &self.instruments.in_flight {
            in_flight.dec_by(count);
        }
        result
    }
}
