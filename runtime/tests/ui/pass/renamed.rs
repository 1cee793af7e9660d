// `name` replaces the fn's name in the registry; a raw identifier's default name has no `r#`.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "orders.created", name = "reserve-inventory_v2")]
async fn reserve(_ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

#[event_handler(subject = "orders.typed")]
async fn r#type(_ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {
    let registry = jetfn::Registry::collect().expect("unique names");
    assert_eq!(registry.names().collect::<Vec<_>>(), ["reserve-inventory_v2", "type"]);
}
