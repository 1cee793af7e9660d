// `batch_wait` on a per-message function is reported on its value.
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "metrics.raw", batch_wait = "50ms")]
async fn ingest(_ctx: Context, _event: Event<u32>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
