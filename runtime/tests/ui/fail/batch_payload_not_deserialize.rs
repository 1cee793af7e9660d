// A batch's payload type that fits no codec is reported on the type, as for `Event<T>`.
use jetfn::{event_handler, Batch, BatchError, Context};

struct Reading {
    value: f64,
}

#[event_handler(subject = "metrics.raw", batch = 10)]
async fn ingest(_ctx: Context, batch: Batch<Reading>) -> Result<(), BatchError> {
    for event in &batch {
        let _ = event.data.value;
    }
    Ok(())
}

fn main() {}
