// `@every` takes whole seconds: `500ms` is an error on the string.
use jetfn::{event_handler, Context, Event, HandlerError, Tick};

#[event_handler(schedule = "@every 500ms")]
async fn rollup(_ctx: Context, _tick: Event<Tick>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
