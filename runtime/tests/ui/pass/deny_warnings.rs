// The expansion is warning-free under `#![deny(warnings)]` and the workspace's lints, with
// public and private handlers, one written with a trailing comma, in a crate that forbids
// `unsafe_code` like this workspace does (linkme's link sections must not trip it).
#![forbid(unsafe_code)]
#![deny(warnings, missing_docs, unreachable_pub, rust_2018_idioms, unused_qualifications)]
//! A crate with handlers.

use jetfn::{event_handler, Context, Event, HandlerError};

/// A payload.
#[derive(serde::Deserialize)]
pub struct OrderCreated {
    /// The order.
    pub order_id: String,
}

/// A public handler.
#[event_handler(subject = "orders.created", max_deliver = 3,)]
pub async fn reserve(ctx: Context, event: Event<OrderCreated>) -> Result<(), HandlerError> {
    ctx.publish("inventory.reserved", &event.data.order_id).await?;
    Ok(())
}

#[event_handler(subject = "orders.cancelled")]
async fn release(_ctx: Context, event: Event<OrderCreated>) -> Result<(), HandlerError> {
    if event.data.order_id.is_empty() {
        return Err(HandlerError::permanent("no order id"));
    }
    Ok(())
}

fn main() {
    let registry = jetfn::Registry::collect().expect("unique names");
    assert_eq!(registry.names().collect::<Vec<_>>(), ["release", "reserve"]);
}
