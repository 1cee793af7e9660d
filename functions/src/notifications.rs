//! Tells the customer their order is paid.

use functions::{subjects, NotificationSent, PaymentCompleted, ShopEvent};
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "shop.payments.completed")]
async fn send_notification(
    ctx: Context,
    event: Event<ShopEvent<PaymentCompleted>>,
) -> Result<(), HandlerError> {
    let payment = &event.data.data;
    let message = format!("Order {} is paid: {:.2}", payment.order_id, payment.amount);
    let sent = NotificationSent {
        order_id: payment.order_id.clone(),
        customer: payment.customer.clone(),
        message,
    };
    let sent = event
        .data
        .follow("shop.notification.sent", "send_notification", sent);
    ctx.publish(subjects::NOTIFICATION_SENT, &sent).await?;
    tracing::info!(order = %payment.order_id, customer = %payment.customer, "notification sent");
    Ok(())
}
