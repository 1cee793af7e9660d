// The second parameter must be `Event<T>`: anything else is reported on its type.
use jetfn::{event_handler, Context, HandlerError};

#[event_handler(subject = "orders.created")]
async fn reserve(_ctx: Context, _order: String) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
