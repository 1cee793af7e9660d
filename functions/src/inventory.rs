//! Reserves stock for each new order.

use functions::{subjects, InventoryReserved, OrderCreated, ShopEvent};
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "shop.orders.created")]
pub(crate) async fn reserve_inventory(
    ctx: Context,
    event: Event<ShopEvent<OrderCreated>>,
) -> Result<(), HandlerError> {
    let order = &event.data;
    if order.data.quantity == 0 {
        return Err(HandlerError::permanent(
            "an order of zero items cannot be reserved",
        ));
    }
    let reserved = order.follow(
        "shop.inventory.reserved",
        "reserve_inventory",
        InventoryReserved {
            order_id: order.data.order_id.clone(),
            customer: order.data.customer.clone(),
            reservation_id: format!("rsv-{}", event.stream_sequence()),
            amount: order.data.amount,
        },
    );
    ctx.publish(subjects::INVENTORY_RESERVED, &reserved).await?;
    tracing::info!(order = %order.data.order_id, sku = %order.data.sku, "inventory reserved");
    Ok(())
}
