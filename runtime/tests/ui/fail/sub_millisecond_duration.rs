// Durations are whole milliseconds: a finer one is an error, never rounded.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "orders.created", breaker_cooldown = "1.5ms")]
async fn reserve(_ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
