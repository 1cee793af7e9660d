//! The `#[event_handler]` attribute of [jetfn](https://docs.rs/jetfn). Use it through
//! `jetfn::event_handler`: the code it generates names `::jetfn`.
//!
//! The macro works in three steps: `args` parses the attribute list, `validate` checks it
//! and the function's signature (collecting every error, each on its token), and `expand`
//! writes the registration. On any error the function is emitted unchanged next to the errors,
//! so one mistake gives one error.

use proc_macro::TokenStream;
use proc_macro2::Span;

mod args;
mod expand;
mod validate;

/// Registers an `async fn` as a jetfn function consuming a NATS subject.
///
/// ```text
/// use jetfn::{event_handler, Context, Event, HandlerError};
///
/// #[derive(serde::Deserialize)]
/// struct OrderCreated { order_id: String, amount: f64 }
///
/// #[event_handler(subject = "orders.created", max_deliver = 10, backoff = "500ms..1m")]
/// async fn reserve_inventory(ctx: Context, event: Event<OrderCreated>) -> Result<(), HandlerError> {
///     ctx.publish("inventory.reserved", &event.data.order_id).await?;
///     Ok(())
/// }
/// ```
///
/// The function must be `async fn NAME(ctx: Context, event: Event<T>) -> Result<(), HandlerError>`
/// where the payload type `T` chooses the decoding: `bytes::Bytes` (as is), `String` (UTF-8
/// text), `jetfn::Protobuf<M>` (cargo feature `protobuf` of jetfn), or any other
/// `T: serde::de::DeserializeOwned + Send + 'static` (JSON). The function is not generic and
/// takes no `self`; its future must be `Send`. The parameter names and patterns are free. Its
/// visibility is kept.
///
/// # Options
///
/// `key = literal` pairs, comma separated; only `subject` is required. A key that is not written
/// takes the value from configuration (`JETFN__FUNCTIONS__<NAME>__<KEY>`, `jetfn.toml`), else the
/// runtime's default; configuration also overrides what is written here.
///
/// | key | type | default | example | meaning |
/// |---|---|---|---|---|
/// | `subject` | string: a NATS subject; `*` and `>` wildcards allowed | required | `subject = "orders.created"` | what the function consumes (its consumer's filter subject) |
/// | `name` | string: ASCII letters, digits, `_`, `-` | the fn's name | `name = "reserve-inventory"` | the function's name: durable consumer name, `JETFN_FUNCTIONS` entry, metrics label |
/// | `stream` | string: ASCII letters, digits, `_`, `-` | the stream capturing `subject` (created if none) | `stream = "ORDERS"` | the stream to bind to |
/// | `max_deliver` | integer >= 1 | `5` | `max_deliver = 10` | deliveries before a failing message is dead-lettered |
/// | `backoff` | string `"INITIAL..MAX"`: two durations, initial <= max | `"1s..60s"` | `backoff = "100ms..30s"` | retry delay `min(max, initial * 2^(attempt-1))`, with jitter |
/// | `ack_wait` | duration string | `"30s"` | `ack_wait = "1m"` | how long the server waits for an ack before redelivering |
/// | `timeout` | duration string | `"5m"` | `timeout = "10s"` | the bound on one run of the handler |
/// | `min_workers` | integer >= 1 | `1` | `min_workers = 2` | the fewest concurrent runs |
/// | `max_workers` | integer >= 1, and >= `min_workers` when both are written | `16` | `max_workers = 32` | the most concurrent runs in one process |
/// | `max_ack_pending` | integer >= 1 | `1000` | `max_ack_pending = 500` | the most unacknowledged messages the consumer hands out |
/// | `dlq` | string: a subject without wildcards | `"jetfn.dlq.<name>"` | `dlq = "orders.dead"` | where dead letters are published |
/// | `breaker_failures` | integer >= 0; `0` = no breaker | `0` | `breaker_failures = 10` | consecutive failures that open the circuit breaker |
/// | `breaker_cooldown` | duration string | `"30s"` | `breaker_cooldown = "1m"` | how long an open breaker waits before a trial message |
/// | `once_retention` | duration string, above the whole retry schedule | `"7d"` | `once_retention = "30d"` | how long the records of once-only steps (`ctx.once`) live |
/// | `ordered_by` | `"subject"` or `"header:<Name>"` | none (unordered) | `ordered_by = "subject"` | one message of a key at a time, in stream order, across pods (an ordered function; not with `batch`) |
///
/// The defaults are the runtime's (`jetfn::config`), listed here for convenience.
///
/// Durations are [humantime](https://docs.rs/humantime) strings such as `"250ms"`, `"30s"`,
/// `"5m"`, `"1h"` or `"1m 30s"`; they must be greater than zero and a whole number of
/// milliseconds (`"1.5s"` is fine, `"500us"` and `"1.5ms"` are errors, never rounded). Integers
/// are `u32`.
///
/// # Errors
///
/// Each mistake is a compile error on the offending token, and all of them are reported at
/// once, in source order:
///
/// - on the attribute: a missing `subject`; an unknown key (the message lists the supported
///   ones); a key given twice (on the second); a literal of the wrong type; an invalid subject
///   (empty, an empty token as in `"orders..created"`, whitespace, a partial wildcard as in
///   `"orders.cre*"`, `>` before the last token); a `dlq` with a wildcard; an invalid `name` or
///   `stream`; a malformed duration or backoff; an integer out of range; `max_workers` below
///   `min_workers`;
/// - on the function: not `async` (on `fn`), `unsafe`, generic, taking `self`, a number of
///   parameters other than two, a second parameter that is not `Event<T>`, a borrowed payload
///   (`Event<&str>`), no return type, or (without `name`) a fn name that cannot be a consumer
///   name;
/// - from the type checker, on the user's tokens: a payload that fits no codec ("`T` cannot be
///   an event payload") on `T`; a future that is not `Send`, a first parameter that is not `Context` or another error
///   type on the fn's name.
///
/// ```text
/// error: unsupported argument `retries`; supported arguments are: subject, name, stream, ...
///  --> src/orders.rs:3:45
///   |
/// 3 | #[event_handler(subject = "orders.created", retries = 3)]
///   |                                             ^^^^^^^
/// ```
///
/// When there is an error, the function is emitted unchanged and nothing else, so no error
/// follows from another.
///
/// # What it generates
///
/// The function, unchanged, and next to it a private `static` descriptor that the linker
/// collects into the registry (so the attribute belongs on a module-level fn). Every path is
/// absolute, so user items named `Result`, `Option`, `Context`, `core`... cannot interfere:
///
/// ```ignore
/// #[::jetfn::__private::linkme::distributed_slice(::jetfn::__private::HANDLERS)]
/// #[linkme(crate = ::jetfn::__private::linkme)]
/// #[doc(hidden)]
/// #[allow(non_upper_case_globals)]
/// static __JETFN_HANDLER_reserve_inventory: ::jetfn::__private::HandlerSpec =
///     ::jetfn::__private::HandlerSpec {
///         name: "reserve_inventory",
///         subject: "orders.created",
///         attrs: ::jetfn::__private::Attributes {
///             max_deliver: ::core::option::Option::Some(10u32),
///             backoff: ::core::option::Option::Some((
///                 ::core::time::Duration::from_millis(500u64),
///                 ::core::time::Duration::from_millis(60000u64),
///             )),
///             ..::jetfn::__private::Attributes::NONE
///         },
///         // Spanned on the fn's name; `OrderCreated` keeps its own span. The codec is chosen
///         // on the concrete type by autoref specialization: `Json` here.
///         handler: |ctx, incoming| {
///             let codec = {
///                 use ::jetfn::__private::{JsonCodec as _, SpecificCodec as _};
///                 (&&::jetfn::__private::Select::<OrderCreated>::NEW).codec()
///             };
///             ::jetfn::__private::invoke::<OrderCreated, _, _, _>(ctx, incoming, reserve_inventory, codec)
///         },
///         // For `asyncapi`: type name, codec, and a schema when `OrderCreated: JsonSchema`.
///         payload: || { /* ::jetfn::__private::payload_spec::<OrderCreated, _>(codec, schema) */ },
///         location: ::jetfn::__private::Location {
///             module_path: ::core::module_path!(),
///             file: ::core::file!(),
///             line: ::core::line!(),
///         },
///     };
/// ```
#[proc_macro_attribute]
pub fn event_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    attribute(validate::Macro::Event, attr, item)
}

/// Registers an `async fn` as a jetfn request function answering core NATS requests on a
/// subject, in queue group `jetfn`.
///
/// ```text
/// use jetfn::{request_handler, Context, HandlerError, Request};
///
/// #[derive(serde::Deserialize)]
/// struct StockQuery { sku: String }
/// #[derive(serde::Serialize)]
/// struct StockLevel { sku: String, available: u32 }
///
/// #[request_handler(subject = "inventory.check", timeout = "2s")]
/// async fn check_stock(ctx: Context, req: Request<StockQuery>) -> Result<StockLevel, HandlerError> {
///     Ok(StockLevel { sku: req.data.sku.clone(), available: 7 })
/// }
/// ```
///
/// The function must be `async fn NAME(ctx: Context, req: Request<T>) -> Result<R, HandlerError>`:
/// `T` is decoded as for `#[event_handler]` (`bytes::Bytes`, `String`, `jetfn::Protobuf<M>`,
/// else JSON); `R` is the reply, sent as JSON when `R: serde::Serialize`, as is for `String`
/// and `bytes::Bytes`. An `Err`, an undecodable request, a panic or a timeout replies with an
/// empty body and the headers `Nats-Service-Error` and `Nats-Service-Error-Code` (`400`
/// permanent or undecodable, `500` retryable or panic, `504` timeout).
///
/// # Options
///
/// | key | type | default | meaning |
/// |---|---|---|---|
/// | `subject` | string: a NATS subject | required | what the function answers |
/// | `name` | string: ASCII letters, digits, `_`, `-` | the fn's name | the function's name: `JETFN_FUNCTIONS` entry, endpoint name, metrics label |
/// | `timeout` | duration string | `"5s"` | the bound on one request (then `504`) |
/// | `max_workers` | integer >= 1 | `64` | the most concurrent requests in one process; more wait |
///
/// Any other key (`stream`, `max_deliver`, `schedule`, ...) is an error: a request has no
/// retries or dead letters, the caller decides. Errors are reported like those of
/// `#[event_handler]`, on the offending token; a reply type that cannot be encoded is
/// reported on `R` ("`R` cannot be a reply").
#[proc_macro_attribute]
pub fn request_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    attribute(validate::Macro::Request, attr, item)
}

fn attribute(kind: validate::Macro, attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let function = match syn::parse2::<syn::ItemFn>(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            let error = syn::Error::new(
                Span::call_site(),
                format!("{} applies to an `async fn`", kind.attr()),
            );
            return expand::with_errors(item, &error).into();
        }
    };
    match validate::handler(kind, args::parse(attr.into(), kind.keys()), &function) {
        Ok(handler) => match kind {
            validate::Macro::Event => expand::handler(item, &function, &handler),
            validate::Macro::Request => expand::request(item, &function, &handler),
        },
        Err(errors) => expand::with_errors(item, &errors),
    }
    .into()
}
