//! Answers stock checks: a request function (core NATS request/reply, queue group `jetfn`).

use functions::{stock_of, StockLevel, StockQuery};
use jetfn::{request_handler, Context, HandlerError, Request};

#[request_handler(subject = "inventory.check", timeout = "2s")]
async fn check_stock(_ctx: Context, req: Request<StockQuery>) -> Result<StockLevel, HandlerError> {
    let sku = &req.data.sku;
    let available =
        stock_of(sku).ok_or_else(|| HandlerError::permanent(format!("unknown sku `{sku}`")))?;
    Ok(StockLevel {
        sku: sku.clone(),
        available,
    })
}
