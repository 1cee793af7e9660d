// A payload type that is not `DeserializeOwned` is reported on the payload type.
use jetfn::{event_handler, Context, Event, HandlerError};

struct OrderCreated {
    order_id: String,
}

#[event_handler(subject = "orders.created")]
async fn reserve(_ctx: Context, event: Event<OrderCreated>) -> Result<(), HandlerError> {
    let _ = &event.data.order_id;
    Ok(())
}

fn main() {}
