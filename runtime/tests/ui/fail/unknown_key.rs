// An unknown key is reported on the key, and the message lists the supported keys.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "orders.created", retries = 3)]
async fn reserve(_ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
