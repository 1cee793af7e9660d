// A backoff that is not `"INITIAL..MAX"` is reported on the literal.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "orders.created", backoff = "1s-60s")]
async fn reserve(_ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
