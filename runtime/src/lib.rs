//! # jetfn
//!
//! A serverless-style function runtime on NATS JetStream. Write plain `async fn`s, mark each
//! with [`#[event_handler]`](event_handler), link them into one binary whose `main` is
//! [`jetfn::main()`](main), and the runtime binds a durable JetStream pull consumer to each,
//! runs them with retries and backoff, dead-letters what cannot succeed, and serves `/health`,
//! `/ready` and `/metrics`. One image holds every function; `JETFN_FUNCTIONS` picks which ones
//! a pod runs.
//!
//! ## Quick start
//!
//! ```toml
//! [dependencies]
//! jetfn = "0.1"
//! serde = { version = "1", features = ["derive"] }
//! ```
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
//! `cargo run -- dev` runs it against a local nats-server (started for you when none answers at
//! `NATS_URL`), `cargo run -- list` shows what the binary holds. In production the binary's
//! default command is `run`; it also takes `dlq list|replay FUNCTION`, `provision`,
//! `healthcheck`, and with the cargo feature `deploy` `manifests` (Kubernetes + KEDA YAML) and
//! `asyncapi` (an AsyncAPI 3.0 document of the functions).
//!
//! ## What a handler gets and returns
//!
//! - [`Event<T>`](Event): the decoded payload in `data`, plus `subject()`, `id()`,
//!   `headers()`, `attempt()` (1 on the first delivery), `published()`. The payload type
//!   chooses the decoding: `bytes::Bytes` as is, `String` as UTF-8 text, `jetfn::Protobuf<M>` as
//!   protobuf (cargo feature `protobuf`), any other `T: DeserializeOwned` as JSON (a CloudEvents
//!   structured envelope is unwrapped). An undecodable payload never reaches the handler: it is
//!   dead-lettered as `decode`.
//! - [`Context`]: [`publish`](Context::publish) (JSON) and
//!   [`publish_bytes`](Context::publish_bytes), each awaited to the stream's ack and
//!   deduplicated across retries; [`publish_after`](Context::publish_after) and
//!   [`publish_at`](Context::publish_at) for delayed outputs; [`once`](Context::once) for a
//!   side effect at most once to success (keyed by [`OnceKey`]); [`jetstream`](Context::jetstream)
//!   for anything else.
//! - [`HandlerError`]: `?` on any error is **retryable** (redelivered with exponential backoff
//!   up to `max_deliver`, then dead-lettered); [`HandlerError::permanent`] dead-letters at once.
//!   [`HandlerError::kind`] tells which ([`FailureKind`]).
//!
//! ```
//! use jetfn::{FailureKind, HandlerError};
//!
//! fn check(amount: f64) -> Result<(), HandlerError> {
//!     if amount < 0.0 {
//!         return Err(HandlerError::permanent("a negative amount cannot be charged"));
//!     }
//!     let _cents: u32 = "1250".parse()?; // any std error: retryable
//!     Ok(())
//! }
//!
//! assert_eq!(check(-1.0).unwrap_err().kind(), FailureKind::Permanent);
//! assert!(check(12.5).is_ok());
//! ```
//!
//! The attribute keys (`max_deliver`, `backoff = "1s..60s"`, `ack_wait`, `timeout`,
//! `min_workers`, `max_workers`, `breaker_failures`, `dlq`, ...) are listed on
//! [`event_handler`]; configuration (`JETFN__FUNCTIONS__<NAME>__<KEY>`) overrides them.
//!
//! ## Other kinds of functions
//!
//! - Batches: `#[event_handler(subject = "...", batch = 100)]` with a [`Batch<T>`](Batch) and
//!   a [`BatchError`] that can fail single events.
//! - Schedules: `#[event_handler(schedule = "@every 30s")]` with an `Event<`[`Tick`]`>`; the
//!   ticks are made by nats-server itself, one per firing however many pods run.
//! - Requests: [`#[request_handler]`](request_handler) with a [`Request<T>`](Request), answering
//!   core NATS requests in queue group `jetfn` (one NATS micro service per process).
//!
//! ## Applications: state, hooks, middleware
//!
//! [`App`] builds what functions share once — values and [`on_startup`](App::on_startup)
//! results, received as [`State<T>`](State) arguments — and wraps every call in tower layers
//! ([`App::layer`], [`middleware::from_fn`], [`Call`], [`Next`]). `jetfn::main()` is
//! `App::new().main()`.
//!
//! ```no_run
//! use jetfn::{event_handler, App, Context, Event, HandlerError, State};
//!
//! struct Prices { vat: f64 }
//!
//! #[event_handler(subject = "orders.priced")]
//! async fn price(ctx: Context, event: Event<f64>, prices: State<Prices>) -> Result<(), HandlerError> {
//!     ctx.publish("orders.total", &(event.data * (1.0 + prices.vat))).await?;
//!     Ok(())
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     App::new().state(Prices { vat: 0.2 }).main()
//! }
//! ```
//!
//! ## Testing
//!
//! With the cargo feature `testing` (a dev-dependency), [`testing::TestApp`] runs your
//! functions in your tests against a real nats-server and tells how each message ended, and
//! [`testing::TestContext`] with [`Event::new`] calls a handler as a plain async function.
//!
//! ## Embedding and operating
//!
//! [`Runtime`] runs the functions of a [`Registry`] with a [`Config`] from your own `main`
//! (after [`Telemetry::init`]); [`DeadLetter::list`] and [`DeadLetter::replay`] do what
//! `dlq list` and `dlq replay` do.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use jetfn::{Config, Registry, Runtime, Telemetry};
//!
//! let config = Config::from_env()?;
//! let telemetry = Telemetry::init(&config);
//! let handle = Runtime::new(config, &Registry::collect()?)?.start().await?;
//! handle.wait().await; // until it stops (`handle.shutdown()` drains it)
//! telemetry.shutdown();
//! # Ok(()) }
//! ```
//!
//! ## Cargo features
//!
//! All off by default, so a function binary compiles only what it runs: `testing`
//! ([`testing`]), `validate` (payloads implementing `validator::Validate` are validated after
//! decoding), `protobuf` (`Protobuf<M>` payloads), `schema` (payload JSON Schemas in
//! `asyncapi`), `deploy` (the `manifests`, `provision` and `asyncapi` commands), `otlp-grpc`
//! (span export over OTLP gRPC; OTLP over HTTP needs no feature).
//!
//! The guides (configuration, delivery semantics, operations, deploy, measured figures) are
//! the `docs/` pages of the repository.
//!
//! ## Mistakes are compile errors
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
mod autoscale;
mod batch;
mod breaker;
mod bucket;
mod cli;
mod codec;
mod command;
mod config;
mod consumer;
mod delivered;
mod deploy;
mod dlq;
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
mod once;
mod once_bucket;
mod pipeline;
mod policy;
mod probe;
mod propagation;
#[cfg(feature = "deploy")]
mod provision;
#[cfg(feature = "testing")]
mod recorder;
mod registry;
mod request;
mod runtime;
mod schedule;
mod select;
mod state;
mod subject;
mod telemetry;
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
pub use config::{
    Backoff, Config, ConfigError, FunctionConfig, LogFormat, NatsConfig, OtlpConfig, OtlpProtocol,
    RequestConfig, Secret,
};
pub use dlq::{DeadLetter, DeadLetterError, DeadLetterHeaders};
/// A boxed, sendable future (`futures::future::BoxFuture`), for traits of async methods.
pub use futures::future::BoxFuture;
pub use handler::{BoxError, Context, Event, FailureKind, HandlerError, PublishError};
pub use jetfn_macros::{event_handler, request_handler};
pub use middleware::Next;
pub use once::OnceKey;
pub use pipeline::middleware;
pub use pipeline::{Call, Extensions};
pub use registry::{Registry, RegistryError};
pub use request::Request;
pub use runtime::{Runtime, RuntimeError, RuntimeHandle};
pub use schedule::Tick;
pub use telemetry::Telemetry;

/// Not public API: what `#[event_handler]` expands to refers to these paths.
#[doc(hidden)]
pub mod __private {
    pub use crate::app_state::StateType;
    pub use crate::batch::{BatchFn, BatchFuture, BatchResults};
    pub use crate::codec::{Codec, Payload, PayloadKind};
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
