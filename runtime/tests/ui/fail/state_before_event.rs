// `State<T>` arguments come after the event argument; one in its place is reported on it.
use jetfn::{event_handler, Context, Event, HandlerError, State};

struct Db;

#[event_handler(subject = "orders.created")]
async fn reserve(_ctx: Context, _db: State<Db>, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
