// `batch` is not a key of a request function: one request, one reply.
use jetfn::{request_handler, Context, HandlerError, Request};

#[request_handler(subject = "inventory.check", batch = 10)]
async fn check(_ctx: Context, req: Request<String>) -> Result<String, HandlerError> {
    Ok(req.data)
}

fn main() {}
