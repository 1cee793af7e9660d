// A literal of the wrong type is reported on the literal: an integer key given a string, a
// duration given an integer, a string key given a path.
use jetfn::{event_handler, Context, Event, HandlerError};

const SUBJECT: &str = "orders.created";

#[event_handler(subject = SUBJECT, max_deliver = "5", timeout = 30)]
async fn reserve(_ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
