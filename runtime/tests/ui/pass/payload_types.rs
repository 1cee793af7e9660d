// Any `DeserializeOwned + Send + 'static` payload, decoded as JSON: a derived struct (plain JSON
// or the `data` of a CloudEvents envelope), std types, `serde_json::Value`, a path-qualified
// `jetfn::Event`, a generic payload type, a unit payload; parameter patterns are free. (`String`
// is text, not JSON: see codec_payloads.rs.)
use std::collections::HashMap;

use jetfn::{event_handler, Context, Event, HandlerError};

#[derive(serde::Deserialize)]
struct OrderCreated {
    order_id: String,
    #[serde(default)]
    amount: f64,
}

#[derive(serde::Deserialize)]
struct Envelope<T> {
    items: Vec<T>,
}

#[event_handler(subject = "orders.created")]
async fn structured(_ctx: Context, event: Event<OrderCreated>) -> Result<(), HandlerError> {
    let _ = (event.data.order_id, event.data.amount);
    Ok(())
}

#[event_handler(subject = "orders.text")]
async fn text(_: Context, _: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

#[event_handler(subject = "orders.raw")]
async fn raw(_ctx: Context, event: jetfn::Event<serde_json::Value>) -> Result<(), HandlerError> {
    let _ = event.data.get("order_id");
    Ok(())
}

#[event_handler(subject = "orders.batch")]
async fn batch(_ctx: Context, mut event: Event<Envelope<HashMap<String, u64>>>) -> Result<(), HandlerError> {
    event.data.items.clear();
    Ok(())
}

#[event_handler(subject = "orders.ping")]
async fn ping(_ctx: Context, _event: Event<()>) -> Result<(), HandlerError> {
    Ok(())
}

#[event_handler(subject = "orders.maybe")]
async fn maybe(_ctx: Context, event: Event<Option<Vec<u8>>>) -> Result<(), HandlerError> {
    let _ = event.data;
    Ok(())
}

fn main() {
    let registry = jetfn::Registry::collect().expect("unique names");
    assert_eq!(registry.len(), 6);
}
