// `max_workers` below `min_workers` is reported on `max_workers`.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "orders.created", min_workers = 4, max_workers = 2)]
async fn reserve(_ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
