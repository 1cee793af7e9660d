// An ordered function handles one message of a key at a time: no `batch`.
use jetfn::{event_handler, Batch, BatchError, Context};

#[event_handler(subject = "shop.orders.*", batch = 10, ordered_by = "subject")]
async fn apply(_ctx: Context, _batch: Batch<u32>) -> Result<(), BatchError> {
    Ok(())
}

fn main() {}
