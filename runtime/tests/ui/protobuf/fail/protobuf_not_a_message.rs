// `Protobuf<M>` with an `M` that is not a `prost::Message` is reported on the payload type,
// naming the missing `prost::Message` (not JSON).
use jetfn::{event_handler, Context, Event, HandlerError, Protobuf};

#[derive(Default)]
struct Reading {
    sensor: String,
}

#[event_handler(subject = "sensors.readings")]
async fn record(_ctx: Context, event: Event<Protobuf<Reading>>) -> Result<(), HandlerError> {
    let _ = &event.data.0.sensor;
    Ok(())
}

fn main() {}
