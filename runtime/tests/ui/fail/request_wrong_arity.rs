// A request function takes exactly `ctx: Context, req: Request<T>`.
use jetfn::{request_handler, Context, HandlerError};

#[request_handler(subject = "inventory.check")]
async fn check(_ctx: Context) -> Result<String, HandlerError> {
    Ok(String::new())
}

fn main() {}
