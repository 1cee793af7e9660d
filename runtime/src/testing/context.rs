//! [`TestContext`]: a handler called as a plain async function in a unit test, its outputs
//! recorded instead of sent.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use crate::app::AppState;
use crate::handler::{Context, Function, InputRef};
pub use crate::recorder::Output;
use crate::recorder::Recorder;

/// A [`Context`] for unit tests: call a handler as a plain async function, without a server,
/// and look at what it published.
///
/// ```
/// # async fn example() {
/// use jetfn::testing::TestContext;
/// use jetfn::Event;
///
/// let test = TestContext::new("reserve_inventory");
/// let ctx = test.context();
/// ctx.publish("shop.inventory.reserved", &"order-1").await.unwrap();
/// assert_eq!(test.published("shop.inventory.reserved").len(), 1);
/// # let _ = Event::new(1u8);
/// # }
/// ```
///
/// Its `publish`, `publish_bytes`, `publish_after` and `publish_at` record the output (with the
/// same derived `Nats-Msg-Id` as in production, from the function's name and the stream and
/// sequence given to [`TestContext::for_event`]) and return `Ok`, or fail for subjects named
/// with [`TestContext::fail_publish`]. `ctx.jetstream()` is a client that never connects: a
/// handler that uses JetStream directly needs [`TestApp`](super::TestApp).
#[derive(Debug, Clone)]
pub struct TestContext {
    name: Arc<str>,
    recorder: Arc<Recorder>,
    input: (Arc<str>, u64),
}

impl TestContext {
    /// A context for the function `name`, its outputs keyed as if from stream `TEST`, sequence 1.
    pub fn new(name: &str) -> Self {
        Self {
            name: Arc::from(name),
            recorder: Arc::default(),
            input: (Arc::from("TEST"), 1),
        }
    }

    /// Outputs keyed by this input (as `Event::with_stream_sequence` sets it).
    pub fn for_event(mut self, stream: &str, sequence: u64) -> Self {
        self.input = (Arc::from(stream), sequence);
        self
    }

    /// Publishes to `subject` fail (`PublishError::NoStream`), as when no stream takes them.
    pub fn fail_publish(self, subject: &str) -> Self {
        self.recorder.fail(subject);
        self
    }

    /// A fresh context (its own output numbering, as each delivery has), recording here. Call
    /// it inside a Tokio runtime (`#[tokio::test]`).
    pub fn context(&self) -> Context {
        let mut function = Function::new(
            self.name.clone(),
            async_nats::jetstream::new(never_connected()),
            false,
            AppState::default(),
            // `ctx.once` needs its KV bucket: in a test context it fails (retryable).
            crate::once_bucket::Steps::new(Duration::from_secs(30), crate::once::DEFAULT_RETENTION),
        );
        function.recorder = Some(self.recorder.clone());
        let input = InputRef::Message {
            stream: self.input.0.clone(),
            sequence: self.input.1,
        };
        Context::new(Arc::new(function), input)
    }

    /// Every output published so far, in order.
    pub fn outputs(&self) -> Vec<Output> {
        self.recorder.outputs()
    }

    /// The outputs published to `subject`, in order.
    pub fn published(&self, subject: &str) -> Vec<Output> {
        let mut outputs = self.outputs();
        outputs.retain(|output| output.subject == subject);
        outputs
    }
}

/// A client that never connects (its connection task gives up at once), for `ctx.jetstream()`.
fn never_connected() -> async_nats::Client {
    let connecting = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(1)
        .connect("nats://127.0.0.1:1");
    // With `retry_on_initial_connect` the client is returned before any I/O.
    match connecting.now_or_never() {
        Some(Ok(client)) => client,
        _ => panic!("jetfn::testing::TestContext: cannot make its offline client"),
    }
}
