// A key given twice is reported on its second occurrence.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "orders.created", max_deliver = 3, max_deliver = 5)]
async fn reserve(_ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
