//! The image's binary: every example function, run by the shop's [`app`].

mod audit;
mod inventory;
mod notifications;
mod orders;
mod payments;
mod stock;
#[cfg(test)]
mod tests;

use jetfn::App;

/// The shop as it runs in production: the payment gateway's client in state, the audit and
/// order buckets opened once at startup (before any consumer binds).
fn app() -> App {
    App::new()
        .state(payments::Gateway::simulated())
        .on_startup(|start: jetfn::Startup| async move {
            audit::AuditBucket::open(start.jetstream()).await
        })
        .on_startup(|start: jetfn::Startup| async move {
            orders::OrderBook::open(start.jetstream()).await
        })
}

fn main() -> std::process::ExitCode {
    app().main()
}
