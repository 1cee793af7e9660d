// `batch = 0` is reported on the literal: a batch holds at least one event.
use jetfn::{event_handler, Batch, BatchError, Context};

#[event_handler(subject = "metrics.raw", batch = 0)]
async fn ingest(_ctx: Context, _batch: Batch<u32>) -> Result<(), BatchError> {
    Ok(())
}

fn main() {}
