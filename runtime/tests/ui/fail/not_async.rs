// A handler must be `async`: the error points at `fn`.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "orders.created")]
fn reserve(_ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
