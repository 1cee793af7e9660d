// `@every 0s` is an error on the string: a schedule fires at least one second apart.
use jetfn::{event_handler, Context, Event, HandlerError, Tick};

#[event_handler(schedule = "@every 0s")]
async fn rollup(_ctx: Context, _tick: Event<Tick>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
