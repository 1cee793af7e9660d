// A function with `batch = N` must take `Batch<T>`; an `Event<T>` parameter is reported on it.
use jetfn::{event_handler, BatchError, Context, Event};

#[event_handler(subject = "metrics.raw", batch = 10)]
async fn ingest(_ctx: Context, _event: Event<u32>) -> Result<(), BatchError> {
    Ok(())
}

fn main() {}
