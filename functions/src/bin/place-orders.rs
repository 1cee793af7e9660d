//! Publishes sample orders to `shop.orders.created`, for the demo.
//!
//! `place-orders [COUNT] [INTERVAL_MS]` (default 10 orders, one every 500 ms) to `NATS_URL`.

use std::time::Duration;

use functions::{sample_order, subjects};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let count: u64 = args.next().map_or(Ok(10), |a| a.parse())?;
    let interval = Duration::from_millis(args.next().map_or(Ok(500), |a| a.parse())?);
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let js = async_nats::jetstream::new(async_nats::connect(&url).await?);
    let first = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        % 100_000
        * 100;
    for n in first..first + count {
        let order = sample_order(n);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, order.id.as_str());
        js.publish_with_headers(
            subjects::ORDER_CREATED,
            headers,
            serde_json::to_vec(&order)?.into(),
        )
        .await?
        .await?;
        println!(
            "placed {} ({} x {}, {:.2})",
            order.data.order_id, order.data.quantity, order.data.sku, order.data.amount
        );
        tokio::time::sleep(interval).await;
    }
    Ok(())
}
