//! [`TestApp`]: the real runtime, in the test process, against a real nats-server of its own;
//! `publish` returns once the message's outcome is final.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Notify;

use super::NatsServer;
use crate::app::{App, Settlement};
use crate::config::{Config, FunctionConfig};
use crate::dlq::DeadLetter;
use crate::registry::Registry;
use crate::runtime::{Runtime, RuntimeHandle};

/// The backoff of the functions under test, unless [`TestApp::real_backoff`].
const SHORT_BACKOFF: &str = "10ms..40ms";

/// How long `publish` waits for an outcome with the shortened backoff.
const PATIENCE: Duration = Duration::from_secs(30);

/// A test of your functions on a real nats-server: the production [`App`] (its hooks, layers
/// and state), state replaced where the test says, the functions it names.
///
/// ```no_run
/// # async fn example() {
/// use jetfn::testing::TestApp;
///
/// let app = TestApp::new()
///     .app(jetfn::App::new().state(7u32))
///     .state(8u32)                                   // replaces what the app provides
///     .functions(["charge_payment"])                 // default: every registered function
///     .start()
///     .await;
/// let settled = app.publish("shop.inventory.reserved", &"order-1").await;
/// assert!(settled.is_acked());
/// assert!(app.dead_letters("charge_payment").await.is_empty());
/// # }
/// ```
///
/// The backoff of the functions under test is shortened to `10ms..40ms`, so a retried message
/// settles in milliseconds; [`TestApp::real_backoff`] keeps the configured one. Each `TestApp`
/// starts its own server (binary from `NATS_SERVER_BIN`, then `PATH`), so many run in parallel.
#[must_use = "a TestApp does nothing until `.start().await`"]
#[derive(Debug, Default)]
pub struct TestApp {
    app: Option<App>,
    replaced: Vec<(std::any::TypeId, crate::app::Provided)>,
    functions: Option<Vec<String>>,
    real_backoff: bool,
    vars: Vec<(String, String)>,
}

impl TestApp {
    /// A test of every registered function with no state, hooks or layers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `app` (the production one: its hooks, layers and state).
    pub fn app(mut self, app: App) -> Self {
        self.app = Some(app);
        self
    }

    /// Replaces what the app provides for `T` (after its startup hooks ran), or provides it.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        let provided = crate::app::Provided::new(value);
        self.replaced.push((std::any::TypeId::of::<T>(), provided));
        self
    }

    /// Runs only these functions (by name).
    pub fn functions<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.functions = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Keeps the functions' configured backoff.
    pub fn real_backoff(mut self) -> Self {
        self.real_backoff = true;
        self
    }

    /// Sets a configuration variable, as the environment would (`JETFN__FUNCTIONS__F__MAX_DELIVER`).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.vars.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Starts a nats-server and the runtime, and waits until the runtime is ready.
    ///
    /// # Panics
    ///
    /// When nats-server cannot be found (the message says how to install it), the
    /// configuration is invalid, a startup hook fails, or the runtime is not ready in time.
    pub async fn start(self) -> RunningApp {
        let server = NatsServer::start();
        let registry = Registry::collect().unwrap_or_else(|e| panic!("jetfn TestApp: {e}"));
        let selected = self
            .functions
            .as_ref()
            .map_or("*".to_owned(), |f| f.join(","));
        let mut vars = vec![
            ("NATS_URL".to_owned(), server.url()),
            ("JETFN_FUNCTIONS".to_owned(), selected),
            ("JETFN_HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("JETFN_SHUTDOWN_TIMEOUT".to_owned(), "5s".to_owned()),
        ];
        let probe =
            Config::from_vars(vars.clone()).unwrap_or_else(|e| panic!("jetfn TestApp: {e}"));
        let probe = Runtime::new(probe, &registry).unwrap_or_else(|e| panic!("jetfn TestApp: {e}"));
        if !self.real_backoff {
            for function in probe.functions() {
                let key = format!(
                    "JETFN__FUNCTIONS__{}__BACKOFF",
                    function.name.to_uppercase()
                );
                vars.push((key, SHORT_BACKOFF.to_owned()));
            }
        }
        vars.extend(self.vars);
        let config = Config::from_vars(vars).unwrap_or_else(|e| panic!("jetfn TestApp: {e}"));
        let runtime =
            Runtime::new(config, &registry).unwrap_or_else(|e| panic!("jetfn TestApp: {e}"));
        let functions = runtime.functions().to_vec();
        let outcomes = Arc::new(Outcomes::default());
        let mut app = self.app.unwrap_or_default();
        app.replaced.extend(self.replaced);
        let seen = outcomes.clone();
        app.observer = Some(Arc::new(move |settlement| seen.record(settlement)));
        let handle = runtime
            .app(app)
            .start()
            .await
            .unwrap_or_else(|e| panic!("jetfn TestApp: the runtime did not start: {e}"));
        if !handle.wait_ready(PATIENCE).await {
            panic!("jetfn TestApp: the runtime was not ready within {PATIENCE:?} (a failing startup hook or a missing state type is logged)");
        }
        let client = server.client().await;
        RunningApp {
            jetstream: jetstream::new(client.clone()),
            client,
            handle: Some(handle),
            functions,
            outcomes,
            patience: if self.real_backoff {
                PATIENCE * 10
            } else {
                PATIENCE
            },
            server,
        }
    }
}

/// The settlements seen so far, by message.
#[derive(Default)]
struct Outcomes {
    seen: Mutex<HashMap<(String, u64), Vec<Settlement>>>,
    changed: Notify,
}

impl Outcomes {
    fn record(&self, settlement: Settlement) {
        if let Ok(mut seen) = self.seen.lock() {
            let key = (settlement.stream.clone(), settlement.sequence);
            seen.entry(key).or_default().push(settlement);
        }
        self.changed.notify_waiters();
    }

    fn of(&self, stream: &str, sequence: u64) -> Vec<Settlement> {
        self.seen
            .lock()
            .ok()
            .and_then(|seen| seen.get(&(stream.to_owned(), sequence)).cloned())
            .unwrap_or_default()
    }
}

/// A started [`TestApp`]: publish, request, and look at outputs and dead letters. The runtime
/// stops and the server is killed when it is dropped.
pub struct RunningApp {
    server: NatsServer,
    client: async_nats::Client,
    jetstream: jetstream::Context,
    handle: Option<RuntimeHandle>,
    functions: Vec<FunctionConfig>,
    outcomes: Arc<Outcomes>,
    patience: Duration,
}

impl std::fmt::Debug for RunningApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningApp")
            .field("server", &self.server.url())
            .field(
                "functions",
                &self.functions.iter().map(|f| &f.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// How a published message ended, for every function under test that consumes it.
#[derive(Debug, Clone)]
pub struct Settled {
    settlements: Vec<Settlement>,
}

impl Settled {
    /// Every function that consumes it acked it after success (none dead-lettered it).
    pub fn is_acked(&self) -> bool {
        self.finals().all(|s| s.dead_letter.is_none())
    }

    /// A function dead-lettered it.
    pub fn is_dead_lettered(&self) -> bool {
        self.finals().any(|s| s.dead_letter.is_some())
    }

    /// The dead letter's `Jetfn-Error-Kind`, when it was dead-lettered.
    pub fn dead_letter_kind(&self) -> Option<&str> {
        self.finals().find_map(|s| s.dead_letter)
    }

    /// How many deliveries it took (the most of any consuming function): 1 when the first
    /// succeeded.
    pub fn attempts(&self) -> u32 {
        self.finals().map(|s| s.attempt).max().unwrap_or(0)
    }

    /// The last failure, if any delivery failed.
    pub fn error(&self) -> Option<&str> {
        self.settlements
            .iter()
            .rev()
            .find_map(|s| s.error.as_deref())
    }

    fn finals(&self) -> impl Iterator<Item = &Settlement> {
        self.settlements.iter().filter(|s| s.final_)
    }
}

/// A request to a request function that did not give its reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The function answered with an error (`Nats-Service-Error-Code`: 400, 500, 504).
    #[error("the function answered {code}: {message}")]
    Service {
        /// The code.
        code: u16,
        /// `Nats-Service-Error`.
        message: String,
    },
    /// The request or the reply could not be encoded or decoded.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// No reply (no responders, timeout).
    #[error("no reply: {0}")]
    Nats(String),
}

impl RunningApp {
    /// A client of the test's server.
    pub fn nats(&self) -> async_nats::Client {
        self.client.clone()
    }

    /// Publishes `payload` as JSON to `subject` through JetStream and waits until every function
    /// under test that consumes `subject` has settled it for good (acked, or dead-lettered after
    /// its retries).
    ///
    /// # Panics
    ///
    /// When no function under test consumes `subject`, the publish is not acknowledged, or no
    /// outcome comes in time.
    pub async fn publish(&self, subject: &str, payload: &(impl Serialize + ?Sized)) -> Settled {
        let body = serde_json::to_vec(payload)
            .unwrap_or_else(|e| panic!("cannot encode the payload: {e}"));
        self.publish_bytes(subject, body).await
    }

    /// [`RunningApp::publish`] with the payload as given.
    pub async fn publish_bytes(&self, subject: &str, payload: impl Into<bytes::Bytes>) -> Settled {
        let consumers: Vec<&str> = self
            .functions
            .iter()
            .filter(|f| matches(&f.subject, subject))
            .map(|f| f.name.as_str())
            .collect();
        assert!(
            !consumers.is_empty(),
            "no function under test consumes `{subject}`"
        );
        let ack = self
            .jetstream
            .publish(subject.to_owned(), payload.into())
            .await
            .unwrap_or_else(|e| panic!("publish to `{subject}`: {e}"))
            .await
            .unwrap_or_else(|e| panic!("publish to `{subject}` not acknowledged: {e}"));
        let deadline = tokio::time::Instant::now() + self.patience;
        loop {
            let changed = self.outcomes.changed.notified();
            let settlements = self.outcomes.of(&ack.stream, ack.sequence);
            let done = consumers.iter().all(|name| {
                settlements
                    .iter()
                    .any(|s| s.final_ && &*s.function == *name)
            });
            if done {
                return Settled { settlements };
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!(
                    "`{subject}` (stream {} seq {}) was not settled by {consumers:?} within {:?}; so far: {settlements:?}",
                    ack.stream, ack.sequence, self.patience
                );
            }
        }
    }

    /// Calls a request function: `payload` as JSON, the reply decoded from JSON (or the
    /// function's error).
    pub async fn request<R: DeserializeOwned>(
        &self,
        subject: &str,
        payload: &(impl Serialize + ?Sized),
    ) -> Result<R, RequestError> {
        let body = serde_json::to_vec(payload)?;
        let reply = self
            .client
            .request(subject.to_owned(), body.into())
            .await
            .map_err(|e| RequestError::Nats(e.to_string()))?;
        if let Some(headers) = &reply.headers {
            if let Some(code) = headers.get("Nats-Service-Error-Code") {
                return Err(RequestError::Service {
                    code: code.as_str().parse().unwrap_or(500),
                    message: headers
                        .get("Nats-Service-Error")
                        .map(|m| m.as_str().to_owned())
                        .unwrap_or_default(),
                });
            }
        }
        Ok(serde_json::from_slice(&reply.payload)?)
    }

    /// Every message stored on `subject`, decoded from JSON, oldest first (none when no stream
    /// captures `subject`: nothing was ever published there).
    ///
    /// # Panics
    ///
    /// On a JetStream error, or a message that is not JSON of `T`.
    pub async fn published<T: DeserializeOwned>(&self, subject: &str) -> Vec<T> {
        let stream = match self.jetstream.stream_by_subject(subject.to_owned()).await {
            Ok(stream) => stream,
            Err(error) if is_no_stream(&error) => return Vec::new(),
            Err(error) => panic!("which stream captures `{subject}`: {error}"),
        };
        let stream = self
            .jetstream
            .get_stream(&stream)
            .await
            .unwrap_or_else(|e| panic!("stream {stream}: {e}"));
        let reader = stream
            .create_consumer(jetstream::consumer::pull::Config {
                filter_subject: subject.to_owned(),
                ack_policy: jetstream::consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("reading `{subject}`: {e}"));
        let count = usize::try_from(reader.cached_info().num_pending).unwrap_or(usize::MAX);
        let mut found = Vec::with_capacity(count);
        while found.len() < count {
            let mut batch = reader
                .fetch()
                .max_messages(count - found.len())
                .expires(Duration::from_secs(2))
                .messages()
                .await
                .unwrap_or_else(|e| panic!("reading `{subject}`: {e}"));
            let before = found.len();
            while let Some(message) = batch.next().await {
                let message = message.unwrap_or_else(|e| panic!("reading `{subject}`: {e}"));
                let value = serde_json::from_slice(&message.payload).unwrap_or_else(|e| {
                    panic!("a message on `{subject}` is not JSON of the asked type: {e}")
                });
                found.push(value);
            }
            assert!(
                found.len() > before,
                "`{subject}`: {count} stored, {before} read"
            );
        }
        found
    }

    /// The dead letters of `function`, oldest first.
    ///
    /// # Panics
    ///
    /// On a JetStream error.
    pub async fn dead_letters(&self, function: &str) -> Vec<DeadLetter> {
        let subject = self
            .functions
            .iter()
            .find(|f| f.name == function)
            .map_or_else(|| format!("jetfn.dlq.{function}"), |f| f.dlq.clone());
        crate::dlq::list(&self.jetstream, &subject, None)
            .await
            .unwrap_or_else(|e| panic!("dead letters of `{function}`: {e}"))
    }

    /// Stops the runtime gracefully (drain, shutdown hooks) and waits for it.
    pub async fn stop(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.stop().await;
        }
    }
}

impl Drop for RunningApp {
    fn drop(&mut self) {
        if let Some(handle) = &self.handle {
            handle.shutdown();
        }
    }
}

fn is_no_stream(error: &jetstream::context::GetStreamByNameError) -> bool {
    error.kind() == jetstream::context::GetStreamByNameErrorKind::NotFound
}

/// Whether `subject` matches the filter `filter` (`*` one token, `>` the rest).
fn matches(filter: &str, subject: &str) -> bool {
    let mut subject = subject.split('.');
    for token in filter.split('.') {
        match (token, subject.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (token, Some(part)) if token == part => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn filters_match_subjects() {
        assert!(matches("shop.>", "shop.orders.created"));
        assert!(matches("shop.*.created", "shop.orders.created"));
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.b.c"));
        assert!(!matches("a.b.c", "a.b"));
        assert!(!matches("shop.>", "shop"));
        assert!(!matches("a.*", "b.c"));
    }
}
