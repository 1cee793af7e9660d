// A handler cannot be generic: the payload type must be concrete.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "orders.created")]
async fn reserve<T: serde::de::DeserializeOwned>(_ctx: Context, _event: Event<T>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
