// A handler whose future is not `Send` (an `Rc` held across an `.await`) is reported on the
// function, with rustc's note pointing at the `.await`.
use jetfn::{event_handler, Context, Event, HandlerError};

async fn later() {}

#[event_handler(subject = "orders.created")]
async fn reserve(_ctx: Context, event: Event<String>) -> Result<(), HandlerError> {
    let shared = std::rc::Rc::new(event.data);
    later().await;
    drop(shared);
    Ok(())
}

fn main() {}
