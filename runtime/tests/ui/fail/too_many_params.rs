// A handler takes exactly `ctx: Context, event: Event<T>`: extra parameters are reported on
// themselves.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "orders.created")]
async fn reserve(_ctx: Context, _event: Event<String>, _retries: u32) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
