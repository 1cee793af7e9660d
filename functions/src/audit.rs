//! Records every shop event in the `shop_audit` key-value bucket.

use async_nats::jetstream::kv;
use functions::ShopEvent;
use jetfn::{event_handler, Context, Event, HandlerError};

const BUCKET: &str = "shop_audit";

#[event_handler(subject = "shop.>", max_workers = 4)]
async fn audit_log(
    ctx: Context,
    event: Event<ShopEvent<serde_json::Value>>,
) -> Result<(), HandlerError> {
    let record = &event.data;
    let js = ctx.jetstream();
    let bucket = match js.get_key_value(BUCKET).await {
        Ok(bucket) => bucket,
        Err(_) => {
            js.create_key_value(kv::Config {
                bucket: BUCKET.to_owned(),
                history: 1,
                ..Default::default()
            })
            .await?
        }
    };
    let key = format!("{}.{}", record.correlation_id, record.kind);
    let line = serde_json::json!({
        "subject": event.subject(),
        "source": record.source,
        "stream_sequence": event.stream_sequence(),
    });
    bucket.put(key, serde_json::to_vec(&line)?.into()).await?;
    tracing::info!(subject = event.subject(), kind = %record.kind, correlation_id = %record.correlation_id, "audited");
    Ok(())
}
