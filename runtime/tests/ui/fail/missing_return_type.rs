// A handler must return `Result<(), HandlerError>`; a missing return type is reported at the
// signature.
use jetfn::{event_handler, Context, Event};

#[event_handler(subject = "orders.created")]
async fn reserve(_ctx: Context, _event: Event<String>) {}

fn main() {}
