//! [`App`]: the application around the registered functions — shared state, startup and
//! shutdown hooks, middleware — and its lifecycle.
//!
//! `run`/`dev`: config → connect to NATS → startup hooks (bounded by `JETFN_STARTUP_TIMEOUT`)
//! → the state check → bind consumers and subscriptions → ready. On SIGTERM: not ready, drain,
//! shutdown hooks (NATS still connected, in reverse order, within what is left of
//! `JETFN_SHUTDOWN_TIMEOUT`), close.

mod hooks;

use std::any::TypeId;
use std::future::Future;

use tower::{Layer, Service};

pub(crate) use crate::app_state::Provided;
pub use crate::app_state::{AppState, State};
pub use hooks::Startup;
pub(crate) use hooks::{Hooks, Started};

use crate::handler::{BoxError, HandlerError};
use crate::pipeline::middleware::{self, Inner};
use crate::pipeline::{Call, LayerFn};

/// An application: the functions linked into the binary, plus what they share.
///
/// [`jetfn::main()`](crate::main) is `App::new().main()`.
///
/// ```no_run
/// use jetfn::{App, Startup};
///
/// struct Settings { region: String }
/// struct Ledger { bucket: jetfn::async_nats::jetstream::kv::Store }
///
/// fn main() -> std::process::ExitCode {
///     App::new()
///         .state(Settings { region: "eu".into() })          // provided as State<Settings>
///         .on_startup(|start: Startup| async move {          // after NATS connects
///             let bucket = start.jetstream().create_key_value(Default::default()).await?;
///             Ok(Ledger { bucket })                           // provided as State<Ledger>
///         })
///         .on_shutdown(|_state| async move { Ok(()) })        // after the drain
///         .main()
/// }
/// ```
#[must_use = "an App does nothing until `.main()` runs it"]
#[derive(Default)]
pub struct App {
    pub(crate) values: Vec<(TypeId, Provided)>,
    pub(crate) replaced: Vec<(TypeId, Provided)>,
    pub(crate) hooks: Hooks,
    pub(crate) layers: Vec<LayerFn>,
    /// Told of every settled delivery (the test harness's view).
    pub(crate) observer: Option<Observer>,
}

/// Told of every settled delivery: `jetfn::testing::TestApp` waits on it.
pub(crate) type Observer = std::sync::Arc<dyn Fn(Settlement) + Send + Sync>;

/// A delivery the server was told the outcome of (read by the test harness only).
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
#[derive(Debug, Clone)]
pub(crate) struct Settlement {
    pub(crate) function: std::sync::Arc<str>,
    pub(crate) stream: String,
    pub(crate) sequence: u64,
    pub(crate) attempt: u32,
    /// `Some` for a dead letter: its kind.
    pub(crate) dead_letter: Option<&'static str>,
    /// `true` for an ack (success or dead letter), `false` for a retry.
    pub(crate) final_: bool,
    /// The failure, when it failed.
    pub(crate) error: Option<String>,
}

impl App {
    /// An application with nothing added: what `jetfn::main()` runs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Provides `value` to every handler that takes `State<T>`. Providing one type twice (here
    /// or by a startup hook) stops `run` with exit 2.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.values.push((TypeId::of::<T>(), Provided::new(value)));
        self
    }

    /// Adds a startup hook: it runs after NATS connects and before any consumer binds, in the
    /// order added, and returns the value it provides as `State<T>` (`()` provides nothing).
    /// An `Err` (or `JETFN_STARTUP_TIMEOUT` passing) ends the process with exit 1, nothing bound.
    pub fn on_startup<F, Fut, T>(mut self, hook: F) -> Self
    where
        F: FnOnce(Startup) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, BoxError>> + Send + 'static,
        T: Send + Sync + 'static,
    {
        self.hooks.add_startup(hook);
        self
    }

    /// Adds a shutdown hook: it runs after the drain, with NATS still connected, in reverse
    /// order of registration, within what is left of `JETFN_SHUTDOWN_TIMEOUT`. An `Err` is
    /// logged; the exit stays 0.
    pub fn on_shutdown<F, Fut>(mut self, hook: F) -> Self
    where
        F: FnOnce(AppState) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.hooks.add_shutdown(hook);
        self
    }

    /// Wraps every call of every function (each message, each batch call, each request) in
    /// `layer`, a `tower::Layer` whose service is `Service<Call, Response = (), Error =
    /// HandlerError>`; see [`middleware`](crate::middleware). The first layer added is the
    /// outermost.
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<Inner> + Send + Sync + 'static,
        L::Service: Service<Call, Response = (), Error = HandlerError> + Send + 'static,
        <L::Service as Service<Call>>::Future: Send + 'static,
    {
        self.layers.push(middleware::erase(layer));
        self
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field(
                "state",
                &self.values.iter().map(|(_, p)| p.name).collect::<Vec<_>>(),
            )
            .field("hooks", &self.hooks)
            .field("layers", &self.layers.len())
            .finish()
    }
}

/// What the functions of a started application share: its state and its layers.
#[derive(Clone, Default)]
pub(crate) struct Application {
    pub(crate) state: AppState,
    pub(crate) layers: std::sync::Arc<[LayerFn]>,
    pub(crate) observer: Option<Observer>,
}
