// Every key at once; the descriptor holds exactly what was written.
use std::time::Duration;

use jetfn::{event_handler, Context, Event, HandlerError};

#[derive(serde::Deserialize)]
struct OrderCreated {
    order_id: String,
}

#[event_handler(
    subject = "orders.*.created",
    name = "reserve-inventory",
    stream = "ORDERS",
    max_deliver = 7,
    backoff = "250ms..1m",
    ack_wait = "45s",
    timeout = "10s",
    min_workers = 2,
    max_workers = 32,
    max_ack_pending = 1000,
    dlq = "orders.dead",
    breaker_failures = 0,
    breaker_cooldown = "1m 30s",
    once_retention = "30d",
    ordered_by = "header:Order-Id",
)]
async fn reserve(_ctx: Context, event: Event<OrderCreated>) -> Result<(), HandlerError> {
    let _ = event.data.order_id;
    Ok(())
}

fn main() {
    let registry = jetfn::Registry::collect().expect("one handler");
    let spec = registry.get("reserve-inventory").expect("registered under its name");
    assert_eq!(spec.subject, "orders.*.created");
    let expected = jetfn::__private::Attributes {
        // `schedule` and `schedule_ttl` exclude `subject` (tests/ui/pass/scheduled.rs).
        schedule: None,
        schedule_ttl: None,
        stream: Some("ORDERS"),
        max_deliver: Some(7),
        backoff: Some((Duration::from_millis(250), Duration::from_secs(60))),
        ack_wait: Some(Duration::from_secs(45)),
        timeout: Some(Duration::from_secs(10)),
        min_workers: Some(2),
        max_workers: Some(32),
        max_ack_pending: Some(1000),
        dlq: Some("orders.dead"),
        breaker_failures: Some(0),
        breaker_cooldown: Some(Duration::from_secs(90)),
        // Batch keys belong to batch functions (`tests/ui/pass/batch_function.rs`).
        batch: None,
        batch_wait: None,
        once_retention: Some(Duration::from_secs(30 * 24 * 3600)),
        ordered_by: Some("header:Order-Id"),
    };
    assert_eq!(spec.attrs, expected);
    assert_eq!(spec.location.file, file!());
    assert_eq!(spec.location.module_path, module_path!());
    assert_eq!(spec.location.line, 11, "the line of the attribute");
}
