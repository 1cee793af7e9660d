//! # jetfn
//!
//! A serverless-style function runtime on NATS JetStream. Write plain `async fn`s, mark each
//! with [`#[event_handler]`](event_handler), link them into one binary whose `main` is
//! [`jetfn::main()`](main), and the runtime binds a durable JetStream pull consumer to each,
//! runs them with retries and backoff, and serves `/health`, `/ready` and `/metrics`.
//!
//! ```no_run
//! use jetfn::{event_handler, Context, Event, HandlerError};
//!
//! #[derive(serde::Deserialize, serde::Serialize)]
//! struct OrderCreated { order_id: String, amount: f64 }
//!
//! #[event_handler(subject = "orders.created")]
//! async fn reserve_inventory(ctx: Context, event: Event<OrderCreated>) -> Result<(), HandlerError> {
//!     let order = &event.data;
//!     ctx.publish("inventory.reserved", &order.order_id).await?;
//!     Ok(())
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     jetfn::main()
//! }
//! ```
//!
//! The binary then takes the commands `run` (the default), `dev`, `list`, `dlq`, `manifests`
//! (Kubernetes + KEDA YAML), `provision`, `healthcheck` and `asyncapi` (an AsyncAPI 3.0
//! document of the functions); see the README for
//! configuration (`NATS_URL`, `JETFN_FUNCTIONS`, `JETFN__FUNCTIONS__<NAME>__<KEY>`, ...).
//!
//! The payload type chooses the decoding ([`codec`]): `bytes::Bytes` as is, `String` as UTF-8
//! text, `jetfn::Protobuf<M>` as protobuf (cargo feature `protobuf`), any other
//! `T: DeserializeOwned` as JSON. [`Context::publish`] writes JSON, [`Context::publish_bytes`]
//! bytes as given.
//!
//! Besides event functions: scheduled functions (`#[event_handler(schedule = "@every 30s")]`,
//! payload [`Tick`], ticks made by nats-server in `JETFN_SCHEDULES`), delayed outputs
//! ([`Context::publish_after`], [`Context::publish_at`]) and request functions
//! ([`#[request_handler]`](request_handler), [`Request<T>`](Request), core NATS
//! request/reply in queue group `jetfn`, one NATS micro service per process).
//!
//! A handler that is not `async`, names no `subject`, or misspells an attribute does not
//! compile:
//!
//! ```compile_fail
//! use jetfn::{event_handler, Context, Event, HandlerError};
//!
//! #[event_handler(subject = "orders.created", retries = 3)]
//! async fn reserve(ctx: Context, event: Event<String>) -> Result<(), HandlerError> { Ok(()) }
//! ```

// The macro's generated code names `::jetfn`; inside this crate's own tests that is us.
#[allow(unused_extern_crates)]
extern crate self as jetfn;

mod app;
mod app_state;
#[cfg(feature = "deploy")]
mod asyncapi;
pub mod autoscale;
mod batch;
pub mod breaker;
mod bucket;
mod cli;
pub mod codec;
mod command;
pub mod config;
mod consumer;
mod deploy;
pub mod dlq;
mod election;
mod handler;
#[cfg(test)]
mod hostile_input;
mod http;
mod local_server;
#[cfg(feature = "deploy")]
mod manifests;
mod metrics;
mod nats;
pub mod once;
mod once_bucket;
mod pipeline;
pub mod policy;
mod probe;
mod propagation;
#[cfg(feature = "deploy")]
mod provision;
#[cfg(feature = "testing")]
mod recorder;
pub mod registry;
mod request;
mod runtime;
mod schedule;
mod select;
mod state;
mod subject;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
mod topology;
mod validation;

pub use app::{App, AppState, Startup, State};
pub use async_nats;
pub use batch::{Batch, BatchError};
pub use cli::main;
#[cfg(feature = "protobuf")]
pub use codec::Protobuf;
pub use codec::{DecodeError, Incoming};
pub use config::{Config, ConfigError};
/// A boxed, sendable future (`futures::future::BoxFuture`), for traits of async methods.
pub use futures::future::BoxFuture;
pub use handler::{BoxError, Context, ErrorKind, Event, HandlerError, PublishError};
pub use jetfn_macros::{event_handler, request_handler};
pub use middleware::Next;
pub use once::OnceKey;
pub use pipeline::middleware;
pub use pipeline::{Call, Extensions};
pub use registry::{Registry, RegistryError};
pub use request::Request;
pub use runtime::{Runtime, RuntimeError, RuntimeHandle};
pub use schedule::Tick;

/// Not public API: what `#[event_handler]` expands to refers to these paths.
#[doc(hidden)]
pub mod __private {
    pub use crate::app_state::StateType;
    pub use crate::batch::{BatchFn, BatchFuture, BatchResults};
    pub use crate::registry::{
        Attributes, HandlerFuture, HandlerSpec, Location, PayloadSpec, ReplyFuture, RequestSpec,
        HANDLERS, REQUESTS,
    };
    pub use crate::request::Reply;
    pub use crate::select::{
        payload_spec, JsonCodec, Select, SpecificCodec, WithSchema, WithoutSchema,
    };
    pub use crate::validation::{Check, WithValidation, WithoutValidation};
    pub use linkme;

    use crate::codec::{Codec, Payload};
    use crate::{Context, Event, HandlerError, Incoming, Request, State};
    use std::future::Future;

    /// The `State<T>` argument of a handler, from what the application provided (checked at
    /// start-up, so never missing when the runtime runs the function).
    pub fn state<T: Send + Sync + 'static>(ctx: &Context) -> Result<State<T>, HandlerError> {
        ctx.app().get::<T>().ok_or_else(|| {
            HandlerError::retryable(format!(
                "no state of type `{}` was provided",
                std::any::type_name::<T>()
            ))
        })
    }

    /// Decodes the payload into `T` with codec `C` and validates it with `V` (both chosen by
    /// the macro through [`Select`]).
    fn decode<T: Payload<C>, C: Codec, V: Check<T>>(
        incoming: Incoming,
        check: V,
    ) -> Result<Event<T>, HandlerError> {
        let event = T::decode(incoming).map_err(HandlerError::decode)?;
        check.check(&event.data)?;
        Ok(event)
    }

    /// Decodes the request into `Request<T>` with codec `C`, validates it with `V`, calls the
    /// user's function, and encodes its `Ok` value with codec `RC`.
    pub fn invoke_request<T, R, C, RC, V, F, Fut>(
        ctx: Context,
        incoming: Incoming,
        handler: F,
        _codec: C,
        _reply: RC,
        check: V,
    ) -> ReplyFuture
    where
        T: Payload<C>,
        R: Reply<RC>,
        C: Codec,
        RC: Codec,
        V: Check<T>,
        F: FnOnce(Context, Request<T>) -> Fut,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    {
        match decode::<T, C, V>(incoming, check) {
            Ok(event) => {
                let reply = handler(ctx, Request::from_event(event));
                Box::pin(async move { reply.await?.encode() })
            }
            Err(error) => Box::pin(std::future::ready(Err(error))),
        }
    }

    /// Decodes the payload into `Event<T>` with codec `C`, validates it with `V` (both chosen
    /// by the macro through [`Select`]) and calls the user's function with it.
    pub fn invoke<T, C, V, F, Fut>(
        ctx: Context,
        incoming: Incoming,
        handler: F,
        _codec: C,
        check: V,
    ) -> HandlerFuture
    where
        T: Payload<C>,
        C: Codec,
        V: Check<T>,
        F: FnOnce(Context, Event<T>) -> Fut,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        match decode::<T, C, V>(incoming, check) {
            Ok(event) => Box::pin(handler(ctx, event)),
            Err(error) => Box::pin(std::future::ready(Err(error))),
        }
    }

    /// Decodes (and validates) each message into `Event<T>` and calls the user's batch
    /// function with those that pass; one result per message.
    pub fn invoke_batch<T, C, V, F, Fut>(
        ctx: Context,
        incoming: Vec<Incoming>,
        handler: F,
        _codec: C,
        check: V,
    ) -> BatchFuture
    where
        T: Payload<C>,
        C: Codec,
        V: Check<T>,
        F: FnOnce(Context, crate::Batch<T>) -> Fut,
        Fut: Future<Output = Result<(), crate::BatchError>> + Send + 'static,
    {
        crate::batch::invoke(ctx, incoming, handler, |incoming| {
            decode::<T, C, V>(incoming, check)
        })
    }

    /// The single-message entry point of a batch function: a batch of one.
    pub fn batch_of_one(ctx: Context, incoming: Incoming, batch: BatchFn) -> HandlerFuture {
        crate::batch::first(batch(ctx, vec![incoming]))
    }
}
