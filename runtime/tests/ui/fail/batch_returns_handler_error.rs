// A batch function returns `Result<(), BatchError>`; `HandlerError` is reported on the return type.
use jetfn::{event_handler, Batch, Context, HandlerError};

#[event_handler(subject = "metrics.raw", batch = 10)]
async fn ingest(_ctx: Context, _batch: Batch<u32>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
