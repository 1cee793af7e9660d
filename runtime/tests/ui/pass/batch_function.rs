// A batch function with `batch` and `batch_wait`, iterating its events, failing some by index,
// using `?` on an ordinary error, under `#![deny(warnings)]`.
#![deny(warnings)]

use jetfn::{event_handler, Batch, BatchError, Context, HandlerError};

#[derive(serde::Deserialize)]
struct Reading {
    value: f64,
}

#[event_handler(subject = "metrics.raw", batch = 100, batch_wait = "50ms")]
async fn ingest(_ctx: Context, batch: Batch<Reading>) -> Result<(), BatchError> {
    let _: u32 = "7".parse()?;
    let negative = batch
        .iter()
        .enumerate()
        .filter(|(_, event)| event.data.value < 0.0)
        .map(|(index, _)| (index, HandlerError::permanent("negative reading")));
    if batch.is_empty() {
        return Err(BatchError::all(HandlerError::retryable("empty")));
    }
    Err(BatchError::items(negative.collect::<Vec<_>>()))
}

#[event_handler(subject = "metrics.text", batch = 5)]
async fn texts(_ctx: Context, batch: Batch<String>) -> Result<(), BatchError> {
    for event in &batch {
        let _ = event.data.len();
    }
    let _ = batch.len();
    Ok(())
}

fn main() {
    let spec = jetfn::__private::HANDLERS
        .iter()
        .find(|spec| spec.name == "ingest")
        .expect("registered");
    assert_eq!(spec.attrs.batch, Some(100));
    assert!(spec.batch.is_some());
}
