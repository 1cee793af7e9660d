// A subject with an empty token (a double, leading or trailing dot) is rejected on the literal.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "orders..created")]
async fn reserve(_ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
