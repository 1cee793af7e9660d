// A function has `subject` or `schedule`, not both: the error is on the schedule.
use jetfn::{event_handler, Context, Event, HandlerError, Tick};

#[event_handler(subject = "orders.created", schedule = "@hourly")]
async fn rollup(_ctx: Context, _tick: Event<Tick>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
