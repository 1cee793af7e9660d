// `dlq` is published to, so it must be a subject without wildcards.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "orders.created", dlq = "orders.dead.*")]
async fn reserve(_ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
