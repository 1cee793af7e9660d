// The attribute is `key = literal` pairs separated by commas; anything else is a parse error
// on the first token that does not fit, and nothing else is reported.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject: "orders.created")]
async fn reserve(_ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
