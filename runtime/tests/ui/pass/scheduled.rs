// Scheduled functions: cron, nicknames and `@every`; each consumes `jetfn.tick.<name>` and
// keeps its schedule and tick TTL in the descriptor.
#![deny(warnings)]

use std::time::Duration;

use jetfn::{event_handler, Context, Event, HandlerError, Tick};

#[event_handler(schedule = "0 0 3 * * *")]
async fn nightly(_ctx: Context, tick: Event<Tick>) -> Result<(), HandlerError> {
    let _: &str = &tick.data.schedule;
    let _ = tick.published();
    Ok(())
}

#[event_handler(schedule = "@hourly", max_deliver = 3)]
async fn hourly(_ctx: Context, _tick: Event<Tick>) -> Result<(), HandlerError> {
    Ok(())
}

#[event_handler(schedule = "@every 1m 30s", schedule_ttl = "10s", name = "rollup")]
async fn every(_ctx: Context, _tick: Event<Tick>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {
    let registry = jetfn::Registry::collect().expect("unique names");
    let nightly = registry.get("nightly").expect("registered");
    assert_eq!(nightly.subject, "jetfn.tick.nightly");
    assert_eq!(nightly.attrs.schedule, Some("0 0 3 * * *"));
    let rollup = registry.get("rollup").expect("registered");
    assert_eq!(rollup.subject, "jetfn.tick.rollup");
    assert_eq!(rollup.attrs.schedule_ttl, Some(Duration::from_secs(10)));
    assert!(registry.get("hourly").is_some());
}
