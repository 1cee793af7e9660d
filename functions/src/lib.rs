//! The example shop of jetfn: the event types the functions exchange.
//!
//! The functions themselves live in the binary (`src/main.rs` and its modules), so the linker
//! keeps every one of them; `place-orders` (in `src/bin/`) feeds the flow with sample orders.
//!
//! ```text
//! shop.orders.created --reserve_inventory--> shop.inventory.reserved
//!   --charge_payment--> shop.payments.completed --send_notification--> shop.notifications.sent
//! audit_log records every shop.> event
//! order_status applies each order's own events (shop.orders.<id>.events) in order
//! ```

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Every shop event: an envelope with id, type, source and correlation id around the data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct ShopEvent<T> {
    /// Unique id of this event.
    pub id: String,
    /// The event type, e.g. `shop.order.created`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Which component produced it.
    pub source: String,
    /// The id shared by every event of one order's flow.
    pub correlation_id: String,
    /// The payload.
    pub data: T,
}

impl<T> ShopEvent<T> {
    /// The next event of the same flow, produced by `source`.
    pub fn follow<U>(&self, kind: &str, source: &str, data: U) -> ShopEvent<U> {
        ShopEvent {
            id: format!("{}:{kind}", self.correlation_id),
            kind: kind.to_owned(),
            source: source.to_owned(),
            correlation_id: self.correlation_id.clone(),
            data,
        }
    }
}

/// A customer placed an order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct OrderCreated {
    /// The order.
    pub order_id: String,
    /// The customer.
    pub customer: String,
    /// What was ordered.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// Total in the shop's currency.
    pub amount: f64,
}

/// Stock was set aside for an order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct InventoryReserved {
    /// The order.
    pub order_id: String,
    /// The customer.
    pub customer: String,
    /// The reservation.
    pub reservation_id: String,
    /// Total to charge.
    pub amount: f64,
}

/// The payment went through.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct PaymentCompleted {
    /// The order.
    pub order_id: String,
    /// The customer.
    pub customer: String,
    /// The gateway's transaction id.
    pub transaction_id: String,
    /// What was charged.
    pub amount: f64,
}

/// The customer was told.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct NotificationSent {
    /// The order.
    pub order_id: String,
    /// Who was told.
    pub customer: String,
    /// What they were told.
    pub message: String,
}

/// One event of an order's own history, on `shop.orders.<order_id>.events`: the events of an
/// order are numbered from 1, and `order_status` applies them in that order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct OrderEvent {
    /// The order.
    pub order_id: String,
    /// This event's number in the order's history (1 = the first).
    pub version: u32,
    /// The order's status after it: `placed`, `address_changed`, `confirmed`, ...
    pub status: String,
}

/// Subjects of the shop's events.
pub mod subjects {
    /// An order's own events (`shop.orders.<order_id>.events`), one subject per order.
    pub const ORDER_EVENTS: &str = "shop.orders.*.events";

    /// The subject of `order_id`'s own events.
    pub fn order_events(order_id: &str) -> String {
        format!("shop.orders.{order_id}.events")
    }

    /// A customer placed an order.
    pub const ORDER_CREATED: &str = "shop.orders.created";
    /// Stock was reserved.
    pub const INVENTORY_RESERVED: &str = "shop.inventory.reserved";
    /// Payment completed.
    pub const PAYMENT_COMPLETED: &str = "shop.payments.completed";
    /// Notification sent.
    pub const NOTIFICATION_SENT: &str = "shop.notifications.sent";
    /// Request: how many of a SKU are in stock (core NATS request/reply, outside `shop.>` so
    /// that no stream captures the requests).
    pub const STOCK_CHECK: &str = "inventory.check";
}

/// A stock check request (`inventory.check`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct StockQuery {
    /// The SKU asked about.
    pub sku: String,
}

/// The reply to a stock check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct StockLevel {
    /// The SKU.
    pub sku: String,
    /// How many can be ordered now.
    pub available: u32,
}

/// The demo's stock: a fixed level per known SKU, `None` for an unknown one.
pub fn stock_of(sku: &str) -> Option<u32> {
    match sku {
        "kettle" => Some(12),
        "teapot" => Some(7),
        "mug" => Some(40),
        "grinder" => Some(3),
        _ => None,
    }
}

/// A sample order event, as `place-orders` publishes it.
pub fn sample_order(n: u64) -> ShopEvent<OrderCreated> {
    const SKUS: [&str; 4] = ["kettle", "teapot", "mug", "grinder"];
    let order_id = format!("order-{n:05}");
    ShopEvent {
        id: format!("{order_id}:shop.order.created"),
        kind: "shop.order.created".to_owned(),
        source: "place-orders".to_owned(),
        correlation_id: order_id.clone(),
        data: OrderCreated {
            order_id,
            customer: format!("customer-{}", n % 7),
            sku: SKUS[(n % 4) as usize].to_owned(),
            quantity: 1 + (n % 3) as u32,
            amount: 10.0 + (n % 10) as f64 * 7.5,
        },
    }
}
