// A request function returns `Result<R, HandlerError>`; the error is on the return type.
use jetfn::{request_handler, Context, Request};

#[request_handler(subject = "inventory.check")]
async fn check(_ctx: Context, req: Request<String>) -> String {
    req.data
}

fn main() {}
