// Integers are checked: `max_deliver` at least 1, nothing negative, everything fits in `u32`.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "orders.created", max_deliver = 0, breaker_failures = -1, max_ack_pending = 5000000000)]
async fn reserve(_ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
