//! Charges the customer through a simulated payment gateway that fails now and then.

use functions::{subjects, InventoryReserved, PaymentCompleted, ShopEvent};
use jetfn::{event_handler, Context, Event, HandlerError};
use rand::Rng;

/// The gateway is unavailable this often (retried with backoff).
const GATEWAY_FAILURE_RATE: f64 = 0.2;

#[derive(Debug, thiserror::Error)]
#[error("payment gateway unavailable (simulated)")]
struct GatewayUnavailable;

#[event_handler(
    subject = "shop.inventory.reserved",
    max_deliver = 6,
    backoff = "200ms..5s",
    timeout = "10s",
    breaker_failures = 20,
    breaker_cooldown = "15s"
)]
async fn charge_payment(
    ctx: Context,
    event: Event<ShopEvent<InventoryReserved>>,
) -> Result<(), HandlerError> {
    let reserved = &event.data;
    if reserved.data.amount <= 0.0 {
        return Err(HandlerError::permanent("nothing to charge"));
    }
    let transaction_id = charge(reserved.data.amount, event.attempt()).await?;
    let completed = reserved.follow(
        "shop.payment.completed",
        "charge_payment",
        PaymentCompleted {
            order_id: reserved.data.order_id.clone(),
            customer: reserved.data.customer.clone(),
            transaction_id,
            amount: reserved.data.amount,
        },
    );
    ctx.publish(subjects::PAYMENT_COMPLETED, &completed).await?;
    tracing::info!(order = %reserved.data.order_id, amount = reserved.data.amount, attempt = event.attempt(), "payment charged");
    Ok(())
}

/// The simulated gateway: a little latency, and a failure one time in five.
async fn charge(amount: f64, attempt: u32) -> Result<String, GatewayUnavailable> {
    let (fails, latency_ms, tx) = {
        let mut rng = rand::rng();
        (
            rng.random_bool(GATEWAY_FAILURE_RATE),
            rng.random_range(5..40),
            rng.random::<u32>(),
        )
    };
    tokio::time::sleep(std::time::Duration::from_millis(latency_ms)).await;
    if fails {
        tracing::warn!(amount, attempt, "payment gateway unavailable; will retry");
        return Err(GatewayUnavailable);
    }
    Ok(format!("tx-{tx:08x}"))
}
