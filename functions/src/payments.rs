//! Charges the customer through the payment gateway, a client in the app's state (a simulated
//! one that fails now and then; a fake one in tests).
//!
//! The charge is a once-only step (`ctx.once`): a retried delivery (the gateway failed, or the
//! publish after the charge did) gets the stored transaction back instead of charging again,
//! and the step's key is the gateway's idempotency key, so even a pod killed between the charge
//! and its record cannot charge twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use functions::{subjects, InventoryReserved, PaymentCompleted, ShopEvent};
use jetfn::{event_handler, BoxFuture, Context, Event, HandlerError, State};
use rand::Rng;

/// The simulated gateway is unavailable this often (retried with backoff).
const GATEWAY_FAILURE_RATE: f64 = 0.2;

/// This often the simulated gateway charges but its answer is lost (a timeout after the
/// charge): the retry must not charge again.
const LOST_ANSWER_RATE: f64 = 0.05;

/// The gateway refused or could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("payment gateway unavailable")]
pub(crate) struct GatewayUnavailable;

/// A payment provider: charges `amount` once per idempotency key and returns its transaction.
pub(crate) trait Charger: Send + Sync + 'static {
    /// Charges `amount`; a repeated `idempotency_key` returns the first charge's transaction.
    /// `attempt` is the delivery's, for the logs.
    fn charge<'a>(
        &'a self,
        amount: f64,
        idempotency_key: &'a str,
        attempt: u32,
    ) -> BoxFuture<'a, Result<String, GatewayUnavailable>>;
}

/// The gateway client the shop charges through, built once and shared by every call.
#[derive(Clone)]
pub(crate) struct Gateway(Arc<dyn Charger>);

impl Gateway {
    /// A gateway over `charger`.
    pub(crate) fn new(charger: impl Charger) -> Self {
        Self(Arc::new(charger))
    }

    /// The simulated gateway of the demo.
    pub(crate) fn simulated() -> Self {
        Self::new(Simulated::default())
    }
}

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
    gateway: State<Gateway>,
) -> Result<(), HandlerError> {
    let reserved = &event.data;
    if reserved.data.amount <= 0.0 {
        return Err(HandlerError::permanent("nothing to charge"));
    }
    let (amount, attempt) = (reserved.data.amount, event.attempt());
    let charger = gateway.0.clone();
    let transaction_id: String = ctx
        .once("charge", |key| async move {
            Ok(charger.charge(amount, key.as_str(), attempt).await?)
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

/// The simulated gateway: a little latency, unavailable one time in five, and one time in twenty
/// it charges but the answer is lost. A charge with a known idempotency key returns the first
/// transaction instead of charging again (as a real provider keeps them for a day or so;
/// forgotten past 100 000 here).
#[derive(Default)]
struct Simulated {
    charges: Mutex<HashMap<String, String>>,
}

impl Charger for Simulated {
    fn charge<'a>(
        &'a self,
        amount: f64,
        idempotency_key: &'a str,
        attempt: u32,
    ) -> BoxFuture<'a, Result<String, GatewayUnavailable>> {
        Box::pin(async move {
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
            let transaction = self.record(idempotency_key, format!("tx-{tx:08x}"), attempt);
            if loses_answer {
                tracing::warn!(
                    amount,
                    attempt,
                    "payment gateway charged but its answer was lost; will retry"
                );
                return Err(GatewayUnavailable);
            }
            Ok(transaction)
        })
    }
}

impl Simulated {
    /// The transaction of `key`: the first one charged with it, else `new`.
    fn record(&self, key: &str, new: String, attempt: u32) -> String {
        let mut charges = self.charges.lock().unwrap_or_else(|e| e.into_inner());
        if charges.len() >= 100_000 {
            charges.clear();
        }
        match charges.get(key) {
            Some(first) => {
                tracing::info!(attempt, key, "gateway: a repeated charge; no new charge");
                first.clone()
            }
            None => {
                charges.insert(key.to_owned(), new.clone());
                new
            }
        }
    }
}
