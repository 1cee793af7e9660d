// A container of a type that is not `DeserializeOwned` fits no codec either: reported on the
// payload type as written, once.
use jetfn::{event_handler, Context, Event, HandlerError};

struct Line {
    sku: String,
}

#[event_handler(subject = "orders.lines")]
async fn lines(_ctx: Context, event: Event<Vec<Line>>) -> Result<(), HandlerError> {
    let _ = event.data.iter().map(|line| &line.sku).count();
    Ok(())
}

fn main() {}
