//! The `#[event_handler]` attribute of [jetfn](https://docs.rs/jetfn). Use it through
//! `jetfn::event_handler`: the code it generates names `::jetfn`.
//!
//! The macro works in three steps: [`args`] parses the attribute list, [`validate`] checks it
//! and the function's signature (collecting every error, each on its token), and [`expand`]
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
/// with `T: serde::de::DeserializeOwned + Send + 'static`, not generic and without `self`; its
/// future must be `Send`. The parameter names and patterns are free. Its visibility is kept.
///
/// # Options
///
/// `key = literal` pairs, comma separated; only `subject` is required. A key that is not written
/// takes the value from configuration (`JETFN__FUNCTIONS__<NAME>__<KEY>`, `jetfn.toml`), else the
/// runtime's default; configuration also overrides what is written here.
///
/// | key | type | default | example | meaning |
/// |---|---|---|---|---|
/// | `subject` | string: a NATS subject, `*` / `>` wildcards allowed | required | `subject = "orders.created"` | what the function consumes (the consumer's filter subject) |
/// | `name` | string: ASCII letters, digits, `_`, `-` | the fn's name | `name = "reserve-inventory"` | the function's name: durable consumer name, `JETFN_FUNCTIONS` entry, metrics label |
/// | `stream` | string: ASCII letters, digits, `_`, `-` | the stream capturing `subject`, else one created and named after its first token | `stream = "ORDERS"` | the stream to bind to |
/// | `max_deliver` | integer >= 1 | 5 | `max_deliver = 10` | deliveries before the message is dead-lettered |
/// | `backoff` | string `"INITIAL..MAX"`, two durations, initial <= max | `"1s..60s"` | `backoff = "100ms..30s"` | retry delay `min(max, initial * 2^(attempt-1))`, with jitter |
/// | `ack_wait` | duration string | `"30s"` | `ack_wait = "1m"` | how long the server waits for an ack before redelivering |
/// | `timeout` | duration string | none | `timeout = "10s"` | the bound on one run of the handler (a timeout is a retryable failure) |
/// | `min_workers` | integer >= 1 | runtime default | `min_workers = 2` | the fewest concurrent runs kept ready |
/// | `max_workers` | integer >= 1, >= `min_workers` | runtime default | `max_workers = 32` | the most concurrent runs in one process |
/// | `max_ack_pending` | integer >= 1 | runtime default | `max_ack_pending = 1000` | the most unacknowledged messages the consumer hands out |
/// | `dlq` | string: a subject without wildcards | `"jetfn.dlq.<name>"` | `dlq = "orders.dead"` | where dead letters are published |
/// | `breaker_failures` | integer >= 0; 0 = off | runtime default | `breaker_failures = 10` | consecutive failures that open the circuit breaker |
/// | `breaker_cooldown` | duration string | runtime default | `breaker_cooldown = "30s"` | how long the breaker stays open before a trial message |
///
/// Durations are [humantime](https://docs.rs/humantime) strings such as `"250ms"`, `"30s"`,
/// `"5m"`, `"1h"` or `"1m 30s"`; they must be greater than zero and a whole number of
/// milliseconds (`"1.5s"` is fine, `"500us"` and `"1.5ms"` are errors, never rounded). Integers
/// are `u32`.
///
/// # Errors
///
/// Each mistake is a compile error on the offending token, and all of them are reported at
/// once: a function that is not `async`, `unsafe` or generic, or takes `self`; a wrong number of
/// parameters, a second parameter that is not `Event<T>`, a missing return type; a missing or
/// invalid `subject` (empty, an empty token as in `"orders..created"`, whitespace, a partial
/// wildcard as in `"orders.cre*"`, `>` before the last token); an invalid `name`, `stream` or
/// `dlq`; an unknown or duplicate key; a literal of the wrong type; a malformed duration or
/// backoff; `max_workers < min_workers`. A payload type that is not `DeserializeOwned` is
/// reported on that type, and a future that is not `Send` on the function's signature:
///
/// ```text
/// error: unsupported argument `retries`; supported arguments are: subject, name, stream, ...
///  --> src/orders.rs:3:45
///   |
/// 3 | #[event_handler(subject = "orders.created", retries = 3)]
///   |                                             ^^^^^^^
/// ```
///
/// # What it generates
///
/// The function, unchanged, and a private `static` descriptor collected at link time:
///
/// ```ignore
/// #[::jetfn::__private::linkme::distributed_slice(::jetfn::__private::HANDLERS)]
/// #[linkme(crate = ::jetfn::__private::linkme)]
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
///         handler: |ctx, incoming| ::jetfn::__private::invoke(ctx, incoming, reserve_inventory),
///         location: ::jetfn::__private::Location { module_path: module_path!(), file: file!(), line: line!() },
///     };
/// ```
#[proc_macro_attribute]
pub fn event_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let function = match syn::parse2::<syn::ItemFn>(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            let error = syn::Error::new(
                Span::call_site(),
                "`#[event_handler]` applies to an `async fn`",
            );
            return expand::with_errors(item, &error).into();
        }
    };
    match validate::handler(args::parse(attr.into()), &function) {
        Ok(handler) => expand::handler(item, &function, &handler),
        Err(errors) => expand::with_errors(item, &errors),
    }
    .into()
}
