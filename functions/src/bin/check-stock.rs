//! Sends one stock check to the `check_stock` request function and prints the reply, for the
//! demo.
//!
//! `check-stock [SKU]` (default `teapot`) to `NATS_URL`; exits 1 on an error reply.

use std::process::ExitCode;

use functions::{subjects, StockQuery};

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let sku = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "teapot".to_owned());
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let client = async_nats::connect(&url).await?;
    let query = serde_json::to_vec(&StockQuery { sku: sku.clone() })?;
    let reply = client.request(subjects::STOCK_CHECK, query.into()).await?;
    let error = reply.headers.as_ref().and_then(|headers| {
        Some((
            headers.get("Nats-Service-Error-Code")?.to_string(),
            headers.get("Nats-Service-Error")?.to_string(),
        ))
    });
    match error {
        None => {
            println!("{}", String::from_utf8_lossy(&reply.payload));
            Ok(ExitCode::SUCCESS)
        }
        Some((code, message)) => {
            println!("error {code}: {message}");
            Ok(ExitCode::FAILURE)
        }
    }
}
