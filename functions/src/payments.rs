//! Charges the customer through a simulated payment gateway that fails now and then.
//!
//! The charge is a once-only step (`ctx.once`): a retried delivery (the gateway failed, or the
//! publish after the charge did) gets the stored transaction back instead of charging again,
//! and the step's key is the gateway's idempotency key, so even a pod killed between the charge
//! and its record cannot charge twice.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use functions::{subjects, InventoryReserved, PaymentCompleted, ShopEvent};
use jetfn::{event_handler, Context, Event, HandlerError};
use rand::Rng;

/// The gateway is unavailable this often (retried with backoff).
const GATEWAY_FAILURE_RATE: f64 = 0.2;

/// This often the gateway charges but its answer is lost (a timeout after the charge): the
/// retry must not charge again.
const LOST_ANSWER_RATE: f64 = 0.05;

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
    let (amount, attempt) = (reserved.data.amount, event.attempt());
    let transaction_id: String = ctx
        .once("charge", |key| async move {
            Ok(charge(amount, key.as_str(), attempt).await?)
        })
        .await?;
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

/// The simulated gateway's charges by idempotency key (as a real provider keeps them for a
/// day or so; forgotten past 100 000 here).
static CHARGES: LazyLock<Mutex<HashMap<String, String>>> = LazyLock::new(Mutex::default);

/// The simulated gateway: a little latency, unavailable one time in five, and one time in twenty
/// it charges but the answer is lost. A charge with a known idempotency key returns the first
/// transaction instead of charging again.
async fn charge(
    amount: f64,
    idempotency_key: &str,
    attempt: u32,
) -> Result<String, GatewayUnavailable> {
    let (fails, loses_answer, latency_ms, tx) = {
        let mut rng = rand::rng();
        (
            rng.random_bool(GATEWAY_FAILURE_RATE),
            rng.random_bool(LOST_ANSWER_RATE),
            rng.random_range(5..40),
            rng.random::<u32>(),
        )
    };
    tokio::time::sleep(std::time::Duration::from_millis(latency_ms)).await;
    if fails {
        tracing::warn!(amount, attempt, "payment gateway unavailable; will retry");
        return Err(GatewayUnavailable);
    }
    let transaction = {
        let mut charges = CHARGES.lock().unwrap_or_else(|e| e.into_inner());
        if charges.len() >= 100_000 {
            charges.clear();
        }
        match charges.get(idempotency_key) {
            Some(first) => {
                tracing::info!(
                    amount,
                    attempt,
                    key = idempotency_key,
                    "gateway: a repeated charge; no new charge"
                );
                first.clone()
            }
            None => {
                let transaction = format!("tx-{tx:08x}");
                charges.insert(idempotency_key.to_owned(), transaction.clone());
                transaction
            }
        }
    };
    if loses_answer {
        tracing::warn!(
            amount,
            attempt,
            "payment gateway charged but its answer was lost; will retry"
        );
        return Err(GatewayUnavailable);
    }
    Ok(transaction)
}
