//! The shop's own tests: functions run by the production app on a real nats-server
//! (`TestApp`), and a handler called as a plain async function (`Event::new`, `TestContext`).

use std::sync::atomic::{AtomicU32, Ordering};

use functions::{InventoryReserved, OrderCreated, PaymentCompleted, ShopEvent};
use jetfn::testing::{TestApp, TestContext};
use jetfn::Event;

use crate::payments::{Charger, Gateway, GatewayUnavailable};

/// A gateway that is down for its first `failures` charges.
struct FlakyGateway {
    failures: AtomicU32,
}

impl Charger for FlakyGateway {
    fn charge<'a>(
        &'a self,
        _amount: f64,
        _idempotency_key: &'a str,
        _attempt: u32,
    ) -> jetfn::BoxFuture<'a, Result<String, GatewayUnavailable>> {
        Box::pin(async move {
            match self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            {
                Ok(_) => Err(GatewayUnavailable),
                Err(_) => Ok("tx-test".to_owned()),
            }
        })
    }
}

fn order(id: &str, quantity: u32) -> ShopEvent<OrderCreated> {
    ShopEvent {
        id: format!("{id}:created"),
        kind: "shop.order.created".into(),
        source: "test".into(),
        correlation_id: id.into(),
        data: OrderCreated {
            order_id: id.into(),
            customer: "ada".into(),
            sku: "teapot".into(),
            quantity,
            amount: 42.0,
        },
    }
}

#[tokio::test]
async fn a_payment_is_retried_while_the_gateway_is_down_and_completed_once() {
    let app = TestApp::new()
        .app(crate::app()) // the production app: its startup hook, its state
        .state(Gateway::new(FlakyGateway {
            failures: AtomicU32::new(2),
        })) // replaces the real gateway
        .functions(["charge_payment"])
        .start()
        .await;
    let reserved = order("o-1", 1).follow(
        "shop.inventory.reserved",
        "test",
        InventoryReserved {
            order_id: "o-1".into(),
            customer: "ada".into(),
            reservation_id: "rsv-1".into(),
            amount: 42.0,
        },
    );
    let settled = app.publish("shop.inventory.reserved", &reserved).await;
    assert!(settled.is_acked());
    assert_eq!(settled.attempts(), 3, "two retries");
    let completed: Vec<ShopEvent<PaymentCompleted>> =
        app.published("shop.payments.completed").await;
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].data.transaction_id, "tx-test");
    assert!(app.dead_letters("charge_payment").await.is_empty());
}

#[tokio::test]
async fn an_order_of_nothing_is_dead_lettered_at_once() {
    let app = TestApp::new()
        .app(crate::app())
        .functions(["reserve_inventory"])
        .start()
        .await;
    let settled = app.publish("shop.orders.created", &order("o-2", 0)).await;
    assert_eq!(settled.dead_letter_kind(), Some("permanent"));
    assert_eq!(settled.attempts(), 1);
    let letters = app.dead_letters("reserve_inventory").await;
    assert_eq!(letters[0].error_kind(), "permanent");
}

#[tokio::test]
async fn reserve_inventory_called_directly() {
    let test = TestContext::new("reserve_inventory").for_event("SHOP", 7);
    let event = Event::new(order("o-3", 2)).with_stream_sequence("SHOP", 7);
    crate::inventory::reserve_inventory(test.context(), event)
        .await
        .expect("reserved");
    let reserved = test.published("shop.inventory.reserved");
    let reserved: ShopEvent<InventoryReserved> = reserved[0].json().expect("json");
    assert_eq!(reserved.data.reservation_id, "rsv-7");
    assert_eq!(reserved.correlation_id, "o-3");
}
