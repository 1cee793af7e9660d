//! The order status projection: applies each order's own events in order, one at a time per
//! order, orders in parallel (an ordered function: `ordered_by = "subject"`, one subject per
//! order).

use async_nats::jetstream::{self, kv};
use functions::OrderEvent;
use jetfn::{event_handler, BoxError, Context, Event, HandlerError, State};

const BUCKET: &str = "shop_orders";

/// The projection: each order's last applied event, in the `shop_orders` key-value bucket,
/// opened (or created) once by a startup hook.
pub(crate) struct OrderBook(kv::Store);

impl OrderBook {
    /// Opens the bucket, creating it when missing.
    pub(crate) async fn open(js: &jetstream::Context) -> Result<Self, BoxError> {
        let store = match js.get_key_value(BUCKET).await {
            Ok(store) => store,
            Err(_) => {
                js.create_key_value(kv::Config {
                    bucket: BUCKET.to_owned(),
                    history: 1,
                    ..Default::default()
                })
                .await?
            }
        };
        Ok(Self(store))
    }

    /// The last event applied to `order_id`, if any.
    pub(crate) async fn last(&self, order_id: &str) -> Result<Option<OrderEvent>, BoxError> {
        match self.0.get(order_id).await? {
            Some(value) => Ok(Some(serde_json::from_slice(&value)?)),
            None => Ok(None),
        }
    }
}

/// Applies an order's event on top of the one before it. An event that does not follow the
/// last applied one is a bug upstream: dead-lettered, never applied out of order.
#[event_handler(subject = "shop.orders.*.events", ordered_by = "subject")]
pub(crate) async fn order_status(
    _ctx: Context,
    event: Event<OrderEvent>,
    orders: State<OrderBook>,
) -> Result<(), HandlerError> {
    let next = &event.data;
    let last = orders.last(&next.order_id).await;
    let applied = last
        .map_err(HandlerError::retryable)?
        .map_or(0, |last| last.version);
    if next.version <= applied {
        return Ok(()); // applied already (a redelivery after a crash)
    }
    if next.version != applied + 1 {
        return Err(HandlerError::permanent(format!(
            "event {} of {} does not follow the last applied one ({applied})",
            next.version, next.order_id
        )));
    }
    let value = serde_json::to_vec(next).map_err(HandlerError::permanent)?;
    orders.0.put(next.order_id.as_str(), value.into()).await?;
    tracing::info!(order = %next.order_id, version = next.version, status = %next.status, "order status");
    Ok(())
}

#[cfg(test)]
mod tests {
    use functions::{subjects, OrderEvent};
    use jetfn::testing::TestApp;

    fn event(order_id: &str, version: u32, status: &str) -> OrderEvent {
        OrderEvent {
            order_id: order_id.into(),
            version,
            status: status.into(),
        }
    }

    #[tokio::test]
    async fn each_orders_events_are_applied_in_order() {
        let app = TestApp::new()
            .app(crate::app())
            .functions(["order_status"])
            .start()
            .await;
        let history = ["placed", "address_changed", "confirmed", "shipped"];
        for (n, status) in history.iter().enumerate() {
            for order in ["o-1", "o-2"] {
                let version = u32::try_from(n).expect("small") + 1;
                let settled = app
                    .publish(
                        &subjects::order_events(order),
                        &event(order, version, status),
                    )
                    .await;
                assert!(settled.is_acked(), "{order} v{version}");
            }
        }
        // Out of order for o-1: dead-lettered, not applied.
        let settled = app
            .publish(&subjects::order_events("o-1"), &event("o-1", 7, "lost"))
            .await;
        assert_eq!(settled.dead_letter_kind(), Some("permanent"));
        assert!(app.dead_letters("order_status").await.len() == 1);
    }
}
