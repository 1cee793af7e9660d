// A `State<T>` is shared between threads: a `T` that is not `Send + Sync` is reported on it.
use std::rc::Rc;

use jetfn::{event_handler, Context, Event, HandlerError, State};

#[event_handler(subject = "orders.created")]
async fn reserve(_ctx: Context, _event: Event<String>, _db: State<Rc<u8>>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
