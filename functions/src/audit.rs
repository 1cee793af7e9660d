//! Records every shop event in the `shop_audit` key-value bucket.

use async_nats::jetstream::{self, kv};
use functions::ShopEvent;
use jetfn::{event_handler, BoxError, Context, Event, HandlerError, State};

const BUCKET: &str = "shop_audit";

/// The audit bucket, opened (or created) once by a startup hook.
pub(crate) struct AuditBucket(kv::Store);

impl AuditBucket {
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
}

#[event_handler(subject = "shop.>", max_workers = 4)]
async fn audit_log(
    _ctx: Context,
    event: Event<ShopEvent<serde_json::Value>>,
    audit: State<AuditBucket>,
) -> Result<(), HandlerError> {
    let record = &event.data;
    let key = format!("{}.{}", record.correlation_id, record.kind);
    let line = serde_json::json!({
        "subject": event.subject(),
        "source": record.source,
        "stream_sequence": event.stream_sequence(),
    });
    audit.0.put(key, serde_json::to_vec(&line)?.into()).await?;
    tracing::info!(subject = event.subject(), kind = %record.kind, correlation_id = %record.correlation_id, "audited");
    Ok(())
}
