// A request function whose reply type is not `Serialize` is reported on the reply type.
use jetfn::{request_handler, Context, HandlerError, Request};

struct StockLevel {
    available: u32,
}

#[request_handler(subject = "inventory.check")]
async fn check(_ctx: Context, _req: Request<String>) -> Result<StockLevel, HandlerError> {
    Ok(StockLevel { available: 7 })
}

fn main() {}
