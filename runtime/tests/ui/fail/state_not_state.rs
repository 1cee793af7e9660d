// After the event argument a handler takes only `State<T>` arguments.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "orders.created")]
async fn reserve(_ctx: Context, _event: Event<String>, _db: String) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
