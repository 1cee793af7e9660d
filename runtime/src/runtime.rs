//! Wiring: connect, serve HTTP, run one consumer loop per selected function, drain on shutdown.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::app::{App, AppState, Application, Started};
use crate::config::{Config, ConfigError, FunctionConfig, RequestConfig};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::state::{FunctionState, RequestState, RuntimeState};
use crate::{consumer, http, nats, request};

/// The runtime could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The HTTP listener could not be bound.
    #[error("cannot listen on {addr} (JETFN_HTTP_ADDR): {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The NATS client could not be set up.
    #[error("{0}")]
    Connect(String),
    /// A startup hook failed or timed out (exit 1); nothing was bound.
    #[error("{0}")]
    Startup(String),
    /// The application's state does not fit its functions: a selected function takes a
    /// `State<T>` nobody provides, or one type is provided twice (exit 2); nothing was bound.
    #[error("{}", .0.join("\n"))]
    State(Vec<String>),
}

impl RuntimeError {
    /// A configuration mistake (exit 2), as opposed to a failure at run time (exit 1).
    pub fn is_config(&self) -> bool {
        matches!(self, RuntimeError::Config(_) | RuntimeError::State(_))
    }
}

/// The selected functions with their effective configuration, ready to start.
#[derive(Debug)]
pub struct Runtime {
    config: Config,
    functions: Vec<FunctionConfig>,
    requests: Vec<RequestConfig>,
    app: App,
}

/// A started runtime: its HTTP address, its readiness, and the way to stop it.
#[derive(Debug)]
pub struct RuntimeHandle {
    http_addr: SocketAddr,
    state: Arc<RuntimeState>,
    stop: CancellationToken,
    task: JoinHandle<Result<(), RuntimeError>>,
}

impl Runtime {
    /// Resolves the selected functions of `registry` under `config`.
    pub fn new(config: Config, registry: &Registry) -> Result<Self, ConfigError> {
        let (functions, requests) = config.selected(registry)?;
        Ok(Self {
            config,
            functions,
            requests,
            app: App::new(),
        })
    }

    /// Runs the functions in `app`: its state, hooks and layers (default: [`App::new`]).
    pub fn app(mut self, app: App) -> Self {
        self.app = app;
        self
    }

    /// The selected event functions' effective configuration.
    pub fn functions(&self) -> &[FunctionConfig] {
        &self.functions
    }

    /// The selected request functions' effective configuration.
    pub fn requests(&self) -> &[RequestConfig] {
        &self.requests
    }

    /// Binds the HTTP listener, starts connecting to NATS (in the background: an unreachable
    /// server is retried, not an error) and starts every function.
    pub async fn start(self) -> Result<RuntimeHandle, RuntimeError> {
        let Runtime {
            config,
            functions,
            requests,
            app,
        } = self;
        let listener = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| RuntimeError::Listen {
                addr: config.http_addr,
                source,
            })?;
        let http_addr = listener
            .local_addr()
            .map_err(|source| RuntimeError::Listen {
                addr: config.http_addr,
                source,
            })?;
        let metrics = Metrics::new();
        let (connections, connections_rx) = tokio::sync::watch::channel(0u64);
        let client = nats::connect(&config.nats, "jetfn", &metrics, connections)
            .await
            .map_err(|e| RuntimeError::Connect(e.to_string()))?;
        let functions = functions
            .into_iter()
            .map(|f| Arc::new(FunctionState::new(f, &metrics)))
            .collect();
        let requests = requests
            .into_iter()
            .map(|r| Arc::new(RequestState::new(r, &metrics)))
            .collect();
        let state = Arc::new(RuntimeState {
            client,
            started: false.into(),
            draining: false.into(),
            metrics,
            functions,
            requests,
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(supervise(
            state.clone(),
            config,
            app,
            listener,
            stop.clone(),
            connections_rx,
        ));
        tracing::info!(
            %http_addr,
            functions = state.functions.len(),
            requests = state.requests.len(),
            "jetfn started"
        );
        Ok(RuntimeHandle {
            http_addr,
            state,
            stop,
            task,
        })
    }
}

impl RuntimeHandle {
    /// Where `/health`, `/ready`, `/metrics` and `/functions` are served.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Connected, every consumer bound, not draining.
    pub fn is_ready(&self) -> bool {
        self.state.ready()
    }

    /// Waits until ready, at most `timeout`; returns whether it got ready.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.is_ready() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Starts the graceful shutdown (what SIGTERM does) without waiting for it.
    pub fn shutdown(&self) {
        self.state.draining.store(true, Ordering::SeqCst);
        self.stop.cancel();
    }

    /// Waits until the runtime has stopped (an error that stopped it is logged).
    pub async fn wait(self) {
        if let Err(error) = self.finished().await {
            tracing::error!(%error, "the runtime stopped");
        }
    }

    /// Waits until the runtime has stopped: `Err` when it could not start (a startup hook
    /// failed, a state type is missing), `Ok` after a drain.
    pub async fn finished(self) -> Result<(), RuntimeError> {
        self.task.await.unwrap_or_else(|error| {
            Err(RuntimeError::Startup(format!(
                "runtime task failed: {error}"
            )))
        })
    }

    /// Starts the graceful shutdown when called (what [`RuntimeHandle::shutdown`] does), from
    /// anywhere, while another owner waits for the handle.
    pub(crate) fn shutdown_switch(&self) -> impl Fn() + Send + Sync + 'static {
        let (state, stop) = (self.state.clone(), self.stop.clone());
        move || {
            state.draining.store(true, Ordering::SeqCst);
            stop.cancel();
        }
    }

    /// Shuts down gracefully and waits for it.
    pub async fn stop(self) {
        self.shutdown();
        self.wait().await;
    }
}

async fn supervise(
    state: Arc<RuntimeState>,
    config: Config,
    app: App,
    listener: tokio::net::TcpListener,
    stop: CancellationToken,
    connections: tokio::sync::watch::Receiver<u64>,
) -> Result<(), RuntimeError> {
    let js = crate::nats::jetstream(&state.client, &config.nats);
    let http_stop = CancellationToken::new();
    let server = tokio::spawn(http::serve(listener, state.clone(), http_stop.clone()));
    let started = tokio::select! {
        started = start_app(&state, &config, app, &js, connections.clone()) => Some(started),
        () = stop.cancelled() => None,
    };
    let (application, hooks) = match started {
        Some(Ok(started)) => started,
        Some(Err(error)) => {
            close(&state, http_stop, server, Instant::now()).await;
            return Err(error);
        }
        // Stopped before the hooks finished: nothing was bound.
        None => {
            let budget_end = Instant::now() + config.shutdown_timeout;
            close(&state, http_stop, server, budget_end).await;
            return Ok(());
        }
    };
    state.started.store(true, Ordering::SeqCst);
    let workers = run_functions(&state, &config, &js, &stop, connections, application);
    stop.cancelled().await;
    let stop_began = Instant::now();
    state.draining.store(true, Ordering::SeqCst);
    tracing::info!("draining");
    workers.finish().await;
    let left = config.shutdown_timeout.saturating_sub(stop_began.elapsed());
    hooks.shut_down(left).await;
    close(
        &state,
        http_stop,
        server,
        stop_began + config.shutdown_timeout,
    )
    .await;
    Ok(())
}

/// Waits for the connection, runs the startup hooks and checks the state against the selected
/// functions: what the functions then share.
async fn start_app(
    state: &RuntimeState,
    config: &Config,
    app: App,
    js: &async_nats::jetstream::Context,
    mut connections: tokio::sync::watch::Receiver<u64>,
) -> Result<(Application, Started), RuntimeError> {
    let App {
        values,
        replaced,
        hooks,
        layers,
        observer,
    } = app;
    let timeout = config.startup_timeout;
    let deadline = Instant::now() + timeout;
    // The hooks run once NATS answers: they may create buckets, read config from KV, ...
    let connected = tokio::time::timeout(timeout, connections.wait_for(|count| *count > 0))
        .await
        .is_ok();
    if !connected {
        return Err(RuntimeError::Startup(format!(
            "NATS did not answer within JETFN_STARTUP_TIMEOUT ({}); the startup hooks need it",
            humantime::format_duration(timeout)
        )));
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let started = hooks
        .start(values, replaced, &state.client, js, left)
        .await
        .map_err(|error| match error {
            error if error.is_config() => RuntimeError::State(vec![error.to_string()]),
            error => RuntimeError::Startup(error.to_string()),
        })?;
    let gaps = missing_states(state, &started.state);
    if !gaps.is_empty() {
        return Err(RuntimeError::State(gaps));
    }
    let application = Application {
        state: started.state.clone(),
        layers: layers.into(),
        observer,
    };
    Ok((application, started))
}

/// One line per `State<T>` a selected function takes and nobody provided.
fn missing_states(state: &RuntimeState, provided: &AppState) -> Vec<String> {
    let events = state
        .functions
        .iter()
        .map(|f| (&f.config.name, f.config.location, f.config.states));
    let requests = state
        .requests
        .iter()
        .map(|r| (&r.config.name, r.config.location, r.config.states));
    let mut gaps = Vec::new();
    for (name, location, states) in events.chain(requests) {
        for ty in states.iter().filter(|ty| !provided.has(ty)) {
            gaps.push(format!(
                "function `{name}` ({location}) takes `State<{}>`, which nobody provides: add \
                 `App::state(..)` or an `App::on_startup` hook returning it",
                ty.name()
            ));
        }
    }
    gaps
}

/// The tasks running the selected functions.
struct Running {
    runners: Vec<JoinHandle<()>>,
    /// The pod's one reader of MAX_DELIVERIES advisories, for all its event functions.
    advisories: JoinHandle<()>,
    requests: JoinHandle<()>,
    forwarder: Option<JoinHandle<()>>,
}

fn run_functions(
    state: &Arc<RuntimeState>,
    config: &Config,
    js: &async_nats::jetstream::Context,
    stop: &CancellationToken,
    connections: tokio::sync::watch::Receiver<u64>,
    app: Application,
) -> Running {
    // Delayed outputs of every function are published when due by whichever runtime runs.
    let forwarder = (!state.functions.is_empty() || !state.requests.is_empty()).then(|| {
        tokio::spawn(crate::schedule::delay::forward(
            js.clone(),
            config.auto_create_streams,
            stop.clone(),
        ))
    });
    // Request functions drain their subscriptions first on `stop`, then answer what they hold.
    let requests = request::spawn(request::Serve {
        client: state.client.clone(),
        jetstream: js.clone(),
        auto_create_streams: config.auto_create_streams,
        requests: state.requests.clone(),
        stop: stop.clone(),
        shutdown_timeout: config.shutdown_timeout,
        app: app.clone(),
    });
    let advisories = tokio::spawn(crate::dlq::advisory::watch(
        js.clone(),
        state.functions.clone(),
        stop.clone(),
    ));
    let api_prefix: Arc<str> = crate::nats::api_prefix(&config.nats).into();
    let runners = state
        .functions
        .iter()
        .map(|function| {
            tokio::spawn(consumer::run(consumer::Runner {
                state: function.clone(),
                js: js.clone(),
                api_prefix: api_prefix.clone(),
                auto_create_streams: config.auto_create_streams,
                cancel: stop.clone(),
                shutdown_timeout: config.shutdown_timeout,
                connections: connections.clone(),
                app: app.clone(),
            }))
        })
        .collect();
    Running {
        runners,
        advisories,
        requests,
        forwarder,
    }
}

impl Running {
    /// Waits for every function to drain.
    async fn finish(self) {
        for runner in self.runners {
            if let Err(error) = runner.await {
                tracing::error!(%error, "function task failed");
            }
        }
        let _ = self.advisories.await;
        if let Err(error) = self.requests.await {
            tracing::error!(%error, "request functions task failed");
        }
        if let Some(forwarder) = self.forwarder {
            let _ = forwarder.await;
        }
    }
}

/// Flushes the acks, closes the connection and the HTTP listener, by `budget_end` (at least
/// 200 ms and at most 2 s each: a flush without a connection never ends).
async fn close(
    state: &RuntimeState,
    http_stop: CancellationToken,
    server: JoinHandle<()>,
    budget_end: Instant,
) {
    let left = || {
        budget_end
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(200), Duration::from_secs(2))
    };
    // Acks and NAKs are plain publishes: flush them before the connection goes.
    let flushed = tokio::time::timeout(left(), state.client.flush()).await;
    if !matches!(flushed, Ok(Ok(()))) {
        tracing::warn!("could not flush the NATS connection before closing");
    }
    let _ = tokio::time::timeout(left(), state.client.drain()).await;
    http_stop.cancel();
    let _ = server.await;
    tracing::info!("stopped");
}
