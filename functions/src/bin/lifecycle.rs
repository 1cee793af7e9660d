//! A user's binary written only against jetfn's contract, for the lifecycle tests
//! (`tests/binary.rs`): a function taking state a startup hook provides, and a shutdown hook
//! that reports over NATS. `LIFECYCLE_HOOK` picks the startup: `ok` (default), `fail` (the hook
//! returns an error: exit 1), `none` (nobody provides the state: exit 2), `slow` (the hook
//! waits for a message on `lifecycle.go` first).

use std::process::ExitCode;

use futures::StreamExt;
use jetfn::{event_handler, App, AppState, BoxError, Context, Event, HandlerError, Startup, State};

/// Provided by the startup hook.
struct Greeting(String);

#[event_handler(subject = "lifecycle.greet")]
async fn greet(
    ctx: Context,
    event: Event<String>,
    greeting: State<Greeting>,
) -> Result<(), HandlerError> {
    let line = format!("{} {}", greeting.0, event.data);
    ctx.publish("lifecycle.greeted", &line).await?;
    Ok(())
}

async fn connect(start: Startup) -> Result<Greeting, BoxError> {
    // The hook runs with NATS connected: it can wait for a message.
    if std::env::var("LIFECYCLE_HOOK").as_deref() == Ok("slow") {
        let mut go = start.nats().subscribe("lifecycle.go").await?;
        start.nats().publish("lifecycle.waiting", "".into()).await?;
        go.next().await.ok_or("no go")?;
    }
    Ok(Greeting("hello".to_owned()))
}

async fn report_shutdown(state: AppState) -> Result<(), BoxError> {
    let client = state
        .get::<jetfn::async_nats::Client>()
        .ok_or("no client")?;
    client.publish("lifecycle.stopped", "bye".into()).await?;
    client.flush().await?;
    Ok(())
}

fn main() -> ExitCode {
    let app = App::new()
        .on_startup(|start: Startup| async move { Ok(start.nats().clone()) })
        .on_shutdown(report_shutdown);
    let app = match std::env::var("LIFECYCLE_HOOK").as_deref() {
        Ok("fail") => app.on_startup(|_: Startup| async {
            Err::<(), BoxError>("the database refused the connection".into())
        }),
        Ok("none") => app,
        _ => app.on_startup(connect),
    };
    app.main()
}
