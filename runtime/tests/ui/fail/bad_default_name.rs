// Without `name`, the fn's name is the consumer name; one that is not ASCII letters, digits,
// `_` and `-` is reported on the fn's name.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "orders.created")]
async fn réserver(_ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
