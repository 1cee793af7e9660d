// A backoff whose initial delay exceeds its maximum is reported on the literal.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "orders.created", backoff = "1m..1s")]
async fn reserve(_ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
