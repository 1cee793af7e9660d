// `ordered_by` takes "subject" or "header:<Name>": anything else is reported on its value.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "shop.orders.*", ordered_by = "payload")]
async fn apply(_ctx: Context, _event: Event<u32>) -> Result<(), HandlerError> {
    Ok(())
}

#[event_handler(subject = "shop.orders.*", ordered_by = "header:")]
async fn project(_ctx: Context, _event: Event<u32>) -> Result<(), HandlerError> {
    Ok(())
}

#[event_handler(subject = "shop.orders.*", ordered_by = 1)]
async fn audit(_ctx: Context, _event: Event<u32>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
