// A handler returning another error type is reported on the function's name.
use jetfn::{event_handler, Context, Event};

#[event_handler(subject = "orders.created")]
async fn reserve(_ctx: Context, _event: Event<String>) -> Result<(), String> {
    Ok(())
}

fn main() {}
