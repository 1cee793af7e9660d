// User items named like the ones the expansion uses (`Result`, `Option`, `Some`, `Context`,
// `Event`, `Duration`, `core`, `jetfn`-looking modules...) cannot break it: every generated
// path is absolute.
#![allow(dead_code, unused_macros)]

type Result<T> = std::result::Result<T, MyErr>;
struct MyErr;
struct Context;
struct Event;
struct Option;
struct Some;
struct None;
struct Duration;
struct HandlerSpec;
struct Attributes;
struct Location;
struct HANDLERS;
mod core {}
mod linkme {}
mod __private {}
macro_rules! file {
    () => {
        "shadowed"
    };
}
macro_rules! line {
    () => {
        0
    };
}
fn invoke() {}

#[jetfn::event_handler(subject = "orders.created", timeout = "5s", max_deliver = 2, dlq = "orders.dead")]
async fn reserve(
    ctx: jetfn::Context,
    event: jetfn::Event<String>,
) -> std::result::Result<(), jetfn::HandlerError> {
    let _ = (ctx.name(), event.data);
    Ok(())
}

fn main() {
    let registry = jetfn::Registry::collect().expect("unique names");
    let spec = registry.get("reserve").expect("registered");
    assert_eq!(spec.location.file, std::file!());
    assert_eq!(spec.attrs.max_deliver, std::option::Option::Some(2));
}
