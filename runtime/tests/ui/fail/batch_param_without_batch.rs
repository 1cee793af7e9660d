// A `Batch<T>` parameter without `batch = N` is reported on the parameter's type.
use jetfn::{event_handler, Batch, BatchError, Context};

#[event_handler(subject = "metrics.raw")]
async fn ingest(_ctx: Context, _batch: Batch<u32>) -> Result<(), BatchError> {
    Ok(())
}

fn main() {}
