// `subject` is required: the error points at the attribute.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(max_deliver = 3)]
async fn reserve(_ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
