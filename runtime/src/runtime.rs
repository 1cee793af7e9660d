//! Wiring: connect, serve HTTP, run one consumer loop per selected function, drain on shutdown.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

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
}

/// The selected functions with their effective configuration, ready to start.
#[derive(Debug)]
pub struct Runtime {
    config: Config,
    functions: Vec<FunctionConfig>,
    requests: Vec<RequestConfig>,
}

/// A started runtime: its HTTP address, its readiness, and the way to stop it.
#[derive(Debug)]
pub struct RuntimeHandle {
    http_addr: SocketAddr,
    state: Arc<RuntimeState>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Runtime {
    /// Resolves the selected functions of `registry` under `config`.
    pub fn new(config: Config, registry: &Registry) -> Result<Self, ConfigError> {
        let (functions, requests) = config.selected(registry)?;
        Ok(Self {
            config,
            functions,
            requests,
        })
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
            draining: false.into(),
            metrics,
            functions,
            requests,
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(supervise(
            state.clone(),
            config,
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

    /// Waits until the runtime has stopped.
    pub async fn wait(self) {
        if let Err(error) = self.task.await {
            tracing::error!(%error, "runtime task failed");
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
    listener: tokio::net::TcpListener,
    stop: CancellationToken,
    connections: tokio::sync::watch::Receiver<u64>,
) {
    let js = async_nats::jetstream::new(state.client.clone());
    let http_stop = CancellationToken::new();
    let server = tokio::spawn(http::serve(listener, state.clone(), http_stop.clone()));
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
    });
    let runners: Vec<_> = state
        .functions
        .iter()
        .map(|function| {
            tokio::spawn(consumer::run(consumer::Runner {
                state: function.clone(),
                js: js.clone(),
                auto_create_streams: config.auto_create_streams,
                cancel: stop.clone(),
                shutdown_timeout: config.shutdown_timeout,
                connections: connections.clone(),
            }))
        })
        .collect();
    stop.cancelled().await;
    let budget_end = tokio::time::Instant::now() + config.shutdown_timeout;
    state.draining.store(true, Ordering::SeqCst);
    tracing::info!("draining");
    for runner in runners {
        if let Err(error) = runner.await {
            tracing::error!(%error, "function task failed");
        }
    }
    if let Err(error) = requests.await {
        tracing::error!(%error, "request functions task failed");
    }
    if let Some(forwarder) = forwarder {
        let _ = forwarder.await;
    }
    // Acks and NAKs are plain publishes: flush them before the connection goes, within what is
    // left of the budget (a flush without a connection never ends).
    let left = || {
        budget_end
            .saturating_duration_since(tokio::time::Instant::now())
            .clamp(Duration::from_millis(200), Duration::from_secs(2))
    };
    let flushed = tokio::time::timeout(left(), state.client.flush()).await;
    if !matches!(flushed, Ok(Ok(()))) {
        tracing::warn!("could not flush the NATS connection before closing");
    }
    let _ = tokio::time::timeout(left(), state.client.drain()).await;
    http_stop.cancel();
    let _ = server.await;
    tracing::info!("stopped");
}
