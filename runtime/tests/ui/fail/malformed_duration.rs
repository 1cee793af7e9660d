// A duration that humantime cannot parse is reported on the literal, with the accepted form.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "orders.created", ack_wait = "30 parsecs")]
async fn reserve(_ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
