// The second parameter of a request function is `Request<T>`, not `Event<T>`.
use jetfn::{request_handler, Context, Event, HandlerError};

#[request_handler(subject = "inventory.check")]
async fn check(_ctx: Context, event: Event<String>) -> Result<String, HandlerError> {
    Ok(event.data)
}

fn main() {}
