// A cron expression has 6 fields (seconds first); a 5-field one is an error on the string.
use jetfn::{event_handler, Context, Event, HandlerError, Tick};

#[event_handler(schedule = "0 3 * * *")]
async fn rollup(_ctx: Context, _tick: Event<Tick>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
