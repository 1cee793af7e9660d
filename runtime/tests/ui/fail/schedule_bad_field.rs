// A cron field out of range (hour 25) is an error on the string.
use jetfn::{event_handler, Context, Event, HandlerError, Tick};

#[event_handler(schedule = "0 0 25 * * *")]
async fn rollup(_ctx: Context, _tick: Event<Tick>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
