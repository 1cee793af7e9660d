// Durations must be greater than zero.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "orders.created", timeout = "0s")]
async fn reserve(_ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
