// A handler takes exactly `ctx: Context, event: Event<T>`: one parameter is reported on the
// parameter list.
use jetfn::{event_handler, Event, HandlerError};

#[event_handler(subject = "orders.created")]
async fn reserve(_event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
