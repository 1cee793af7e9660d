// The attribute only applies to functions.
use jetfn::event_handler;

#[event_handler(subject = "orders.created")]
struct Reserve;

fn main() {}
