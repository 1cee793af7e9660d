// Request functions: JSON, `String` and `Bytes` replies, `()` as an empty JSON reply, every
// key; the descriptors are registered with what was written.
#![deny(warnings)]

use std::time::Duration;

use jetfn::{request_handler, Context, HandlerError, Request};

#[derive(serde::Deserialize)]
struct StockQuery {
    sku: String,
}

#[derive(serde::Serialize)]
struct StockLevel {
    sku: String,
    available: u32,
}

#[request_handler(
    subject = "inventory.check",
    name = "check-stock",
    timeout = "2s",
    max_workers = 8
)]
async fn check_stock(
    _ctx: Context,
    req: Request<StockQuery>,
) -> Result<StockLevel, HandlerError> {
    Ok(StockLevel {
        sku: req.data.sku.clone(),
        available: 7,
    })
}

#[request_handler(subject = "text.upper")]
async fn upper(_ctx: Context, req: Request<String>) -> Result<String, HandlerError> {
    let _ = (req.subject(), req.headers());
    Ok(req.data.to_uppercase())
}

#[request_handler(subject = "bytes.echo")]
pub async fn echo(_ctx: Context, req: Request<bytes::Bytes>) -> Result<bytes::Bytes, HandlerError> {
    Ok(req.data)
}

#[request_handler(subject = "nothing")]
async fn nothing(ctx: Context, _req: Request<serde_json::Value>) -> Result<(), HandlerError> {
    ctx.publish("audit.nothing", &1).await?;
    Ok(())
}

fn main() {
    let registry = jetfn::Registry::collect().expect("unique names");
    let names: Vec<_> = registry.requests().map(|spec| spec.name).collect();
    assert_eq!(names, ["check-stock", "echo", "nothing", "upper"]);
    let check = registry.request("check-stock").expect("registered");
    assert_eq!(check.subject, "inventory.check");
    assert_eq!(check.attrs.timeout, Some(Duration::from_secs(2)));
    assert_eq!(check.attrs.max_workers, Some(8));
    assert!(registry.iter().next().is_none(), "no event function");
}
