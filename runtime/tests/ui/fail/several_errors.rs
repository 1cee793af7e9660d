// Every mistake is reported in one go, each on its own token, with no cascade errors.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "orders..created", retries = 3, timeout = "soon")]
fn reserve(_ctx: Context, _event: Event<String>, _extra: u8) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
