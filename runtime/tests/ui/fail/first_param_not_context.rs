// The first parameter must be `Context`; anything else is reported on the function's name.
use jetfn::{event_handler, Event, HandlerError};

#[event_handler(subject = "orders.created")]
async fn reserve(_ctx: String, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
