// `schedule` is not a key of a request function: requests come from callers, not a clock.
use jetfn::{request_handler, Context, HandlerError, Request};

#[request_handler(subject = "inventory.check", schedule = "@hourly")]
async fn check(_ctx: Context, req: Request<String>) -> Result<String, HandlerError> {
    Ok(req.data)
}

fn main() {}
