// A `State<T>` is shared by every call: a borrowed `T` is reported on the borrow.
use jetfn::{event_handler, Context, Event, HandlerError, State};

#[event_handler(subject = "orders.created")]
async fn reserve(
    _ctx: Context,
    _event: Event<String>,
    _name: State<&'static str>,
    _other: State<Vec<&str>>,
) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
