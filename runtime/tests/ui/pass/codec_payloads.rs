// The payload types with a codec of their own: `bytes::Bytes` (as is), `String` (UTF-8 text),
// also through an alias; a user type named `Bytes` is JSON. Each handler records its codec.
#![deny(warnings)]

use jetfn::{event_handler, Context, Event, HandlerError};

type Line = String;

#[derive(serde::Deserialize)]
struct Bytes {
    raw: Vec<u8>,
}

#[event_handler(subject = "files.raw")]
async fn raw(ctx: Context, event: Event<bytes::Bytes>) -> Result<(), HandlerError> {
    let data: bytes::Bytes = event.data;
    ctx.publish_bytes("files.copied", data).await?;
    ctx.publish_bytes("files.copied", vec![0xffu8, 0x00]).await?;
    ctx.publish_bytes("files.copied", "text").await?;
    Ok(())
}

#[event_handler(subject = "files.text")]
async fn text(_ctx: Context, event: Event<String>) -> Result<(), HandlerError> {
    let _ = event.data.len();
    Ok(())
}

#[event_handler(subject = "files.line")]
async fn line(_ctx: Context, event: Event<Line>) -> Result<(), HandlerError> {
    let _ = event.data.trim();
    Ok(())
}

#[event_handler(subject = "files.named")]
async fn named(_ctx: Context, event: Event<Bytes>) -> Result<(), HandlerError> {
    let _ = event.data.raw;
    Ok(())
}

fn main() {
    let registry = jetfn::Registry::collect().expect("unique names");
    let content_type = |name: &str| {
        let spec = registry.get(name).expect("registered");
        (spec.payload)().kind.content_type()
    };
    assert_eq!(content_type("raw"), "application/octet-stream");
    assert_eq!(content_type("text"), "text/plain");
    assert_eq!(content_type("line"), "text/plain");
    assert_eq!(content_type("named"), "application/json");
}
