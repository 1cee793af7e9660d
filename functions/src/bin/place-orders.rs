//! Publishes sample orders to `shop.orders.created`, for the demo, and each order's own history
//! (`placed`, for every third order `address_changed`, then `confirmed`) to
//! `shop.orders.<id>.events`, which `order_status` applies in order.
//!
//! `place-orders [COUNT] [INTERVAL_MS]` (default 10 orders, one every 500 ms) to `NATS_URL`.

use std::time::Duration;

use functions::{sample_order, subjects, OrderEvent};

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
        let mut history = vec!["placed"];
        if n % 3 == 0 {
            history.push("address_changed");
        }
        history.push("confirmed");
        for (version, status) in (1..).zip(history) {
            let event = OrderEvent {
                order_id: order.data.order_id.clone(),
                version,
                status: status.to_owned(),
            };
            let subject = subjects::order_events(&event.order_id);
            let mut headers = async_nats::HeaderMap::new();
            let id = format!("{}:{version}", event.order_id);
            headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
            js.publish_with_headers(subject, headers, serde_json::to_vec(&event)?.into())
                .await?
                .await?;
        }
        println!(
            "placed {} ({} x {}, {:.2})",
            order.data.order_id, order.data.quantity, order.data.sku, order.data.amount
        );
        tokio::time::sleep(interval).await;
    }
    Ok(())
}
