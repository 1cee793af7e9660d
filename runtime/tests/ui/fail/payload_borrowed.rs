// A borrowed payload (`&str`) fits no codec: it is reported on the payload type. (`String` is
// the text payload.)
use jetfn::{event_handler, Context, Event, HandlerError};

#[event_handler(subject = "orders.text")]
async fn text(_ctx: Context, event: Event<&'static str>) -> Result<(), HandlerError> {
    let _ = event.data.len();
    Ok(())
}

fn main() {}
