// A handler cannot take `self`: it is registered as a free function.
use jetfn::{event_handler, Context, Event, HandlerError};

struct Inventory;

impl Inventory {
    #[event_handler(subject = "orders.created")]
    async fn reserve(&self, _ctx: Context, _event: Event<String>) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}
