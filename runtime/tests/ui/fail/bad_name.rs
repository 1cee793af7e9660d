// `name` becomes a JetStream consumer name: only ASCII letters, digits, `_` and `-`.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "orders.created", name = "reserve.inventory")]
async fn reserve(_ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
