// `State<T>` arguments after the event of event, batch, scheduled and request functions, with
// types that shadow jetfn's names, under `#![deny(warnings)]`.
#![deny(warnings)]

use std::sync::Arc;

use jetfn::{
    event_handler, request_handler, Batch, BatchError, Context, Event, HandlerError, Request,
    State, Tick,
};

struct Settings {
    region: String,
}

#[allow(dead_code)]
struct Context2(Arc<String>);

#[event_handler(subject = "orders.created")]
async fn record(
    _ctx: Context,
    event: Event<String>,
    settings: State<Settings>,
    counter: State<std::sync::atomic::AtomicU64>,
) -> Result<(), HandlerError> {
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _ = (&event.data, &settings.region);
    Ok(())
}

#[event_handler(subject = "metrics.raw", batch = 10)]
async fn ingest(_ctx: Context, batch: Batch<u32>, settings: State<Settings>) -> Result<(), BatchError> {
    let _ = (batch.len(), &settings.region);
    Ok(())
}

#[event_handler(schedule = "@every 30s")]
async fn rollup(_ctx: Context, _tick: Event<Tick>, _s: State<Context2>) -> Result<(), HandlerError> {
    Ok(())
}

#[request_handler(subject = "inventory.check")]
async fn check(_ctx: Context, req: Request<String>, settings: State<Settings>) -> Result<String, HandlerError> {
    Ok(format!("{} in {}", req.data, settings.region))
}

fn main() {
    let app = jetfn::App::new().state(Settings { region: "eu".into() });
    let _ = app;
}
