// The `>` wildcard is only allowed as the last token of a subject.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "orders.>.created")]
async fn reserve(_ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
