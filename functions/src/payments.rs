//! Charges the customer through the payment gateway, a client in the app's state (a simulated
//! one that fails now and then; a fake one in tests).

use std::sync::Arc;

use functions::{subjects, InventoryReserved, PaymentCompleted, ShopEvent};
use jetfn::{event_handler, BoxFuture, Context, Event, HandlerError, State};
use rand::Rng;

/// The simulated gateway is unavailable this often (retried with backoff).
const GATEWAY_FAILURE_RATE: f64 = 0.2;

/// The gateway refused or could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("payment gateway unavailable")]
pub(crate) struct GatewayUnavailable;

/// A payment provider: charges `amount` and returns its transaction id.
pub(crate) trait Charger: Send + Sync + 'static {
    /// Charges `amount`; `attempt` is the delivery's, for the logs.
    fn charge(
        &self,
        amount: f64,
        attempt: u32,
    ) -> BoxFuture<'_, Result<String, GatewayUnavailable>>;
}

/// The gateway client the shop charges through, built once and shared by every call.
#[derive(Clone)]
pub(crate) struct Gateway(Arc<dyn Charger>);

impl Gateway {
    /// A gateway over `charger`.
    pub(crate) fn new(charger: impl Charger) -> Self {
        Self(Arc::new(charger))
    }

    /// The simulated gateway of the demo: a little latency, a failure one time in five.
    pub(crate) fn simulated() -> Self {
        Self::new(Simulated)
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
    let transaction_id = gateway
        .0
        .charge(reserved.data.amount, event.attempt())
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

/// The simulated gateway.
struct Simulated;

impl Charger for Simulated {
    fn charge(
        &self,
        amount: f64,
        attempt: u32,
    ) -> BoxFuture<'_, Result<String, GatewayUnavailable>> {
        Box::pin(async move {
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
        })
    }
}
