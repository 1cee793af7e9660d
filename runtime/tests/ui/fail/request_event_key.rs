// Event-only keys (`max_deliver`, `stream`, ...) are unsupported on a request function; the
// message lists the keys it takes.
use jetfn::{request_handler, Context, HandlerError, Request};

#[request_handler(subject = "inventory.check", max_deliver = 3)]
async fn check(_ctx: Context, req: Request<String>) -> Result<String, HandlerError> {
    Ok(req.data)
}

fn main() {}
