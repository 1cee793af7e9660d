// `Event<Protobuf<M>>` for a prost message (feature `protobuf`), also path-qualified.
#![deny(warnings)]

use jetfn::{event_handler, Context, Event, HandlerError, Protobuf};

#[derive(Clone, PartialEq, prost::Message)]
struct Reading {
    #[prost(string, tag = "1")]
    sensor: String,
    #[prost(double, tag = "2")]
    value: f64,
}

#[event_handler(subject = "sensors.readings")]
async fn record(_ctx: Context, event: Event<Protobuf<Reading>>) -> Result<(), HandlerError> {
    let reading: &Reading = &event.data.0;
    let _ = (&reading.sensor, reading.value);
    Ok(())
}

#[event_handler(subject = "sensors.other")]
async fn qualified(_ctx: Context, event: Event<jetfn::Protobuf<Reading>>) -> Result<(), HandlerError> {
    let _ = event.data.0.value;
    Ok(())
}

fn main() {
    let registry = jetfn::Registry::collect().expect("unique names");
    let record = registry.get("record").expect("registered");
    assert_eq!(
        (record.payload)().kind.content_type(),
        "application/x-protobuf"
    );
}
