// `schedule_ttl` without `schedule` is an error on its value.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "orders.created", schedule_ttl = "1m")]
async fn reserve(_ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
