//! Startup and shutdown hooks, and the state they provide.

use std::any::TypeId;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream;

use crate::app_state::{AppState, Provided, State};
use crate::handler::BoxError;

type HookFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;
type StartupHook = Box<dyn FnOnce(Startup) -> HookFuture<Option<(TypeId, Provided)>> + Send>;
type ShutdownHook = Box<dyn FnOnce(AppState) -> HookFuture<()> + Send>;

/// The hooks of an [`App`](crate::App), in the order added.
#[derive(Default)]
pub(crate) struct Hooks {
    startup: Vec<StartupHook>,
    shutdown: Vec<ShutdownHook>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("startup", &self.startup.len())
            .field("shutdown", &self.shutdown.len())
            .finish()
    }
}

/// What a startup hook gets: the connected client, JetStream, and what was provided before it.
#[derive(Debug)]
pub struct Startup {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    provided: AppState,
}

impl Startup {
    /// The connected NATS client.
    pub fn nats(&self) -> &async_nats::Client {
        &self.client
    }

    /// JetStream (in the configured domain, as the functions use it).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// What `App::state` or an earlier hook provided for `U`.
    pub fn state<U: Send + Sync + 'static>(&self) -> Option<State<U>> {
        self.provided.get::<U>()
    }
}

/// The startup could not finish.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartupError {
    /// A hook returned `Err` (exit 1).
    #[error("startup hook {index} failed: {error}")]
    Hook { index: usize, error: BoxError },
    /// The hooks ran past `JETFN_STARTUP_TIMEOUT` (exit 1).
    #[error("the startup hooks did not finish within JETFN_STARTUP_TIMEOUT ({})", humantime::format_duration(*.0))]
    TimedOut(Duration),
    /// One state type was provided twice (exit 2).
    #[error("the state type `{0}` is provided twice (by `App::state` or a startup hook); provide each type once")]
    Duplicate(&'static str),
}

impl StartupError {
    /// A configuration mistake (exit 2) rather than a failure at run time (exit 1).
    pub(crate) fn is_config(&self) -> bool {
        matches!(self, StartupError::Duplicate(_))
    }
}

/// The outcome of the startup: the application's state, and the shutdown hooks to run later.
pub(crate) struct Started {
    pub(crate) state: AppState,
    shutdown: Vec<ShutdownHook>,
}

impl Hooks {
    pub(crate) fn add_startup<F, Fut, T>(&mut self, hook: F)
    where
        F: FnOnce(Startup) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, BoxError>> + Send + 'static,
        T: Send + Sync + 'static,
    {
        self.startup.push(Box::new(move |start| {
            let provided = hook(start);
            Box::pin(async move {
                let value = provided.await?;
                Ok((TypeId::of::<T>() != TypeId::of::<()>())
                    .then(|| (TypeId::of::<T>(), Provided::new(value))))
            })
        }));
    }

    pub(crate) fn add_shutdown<F, Fut>(&mut self, hook: F)
    where
        F: FnOnce(AppState) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.shutdown
            .push(Box::new(move |state| Box::pin(hook(state))));
    }

    /// Runs the startup hooks in order, within `timeout`; `values` are what `App::state`
    /// provided, `replaced` what replaces a provided type (tests).
    pub(crate) async fn start(
        self,
        values: Vec<(TypeId, Provided)>,
        replaced: Vec<(TypeId, Provided)>,
        client: &async_nats::Client,
        jetstream: &jetstream::Context,
        timeout: Duration,
    ) -> Result<Started, StartupError> {
        let mut provided = HashMap::new();
        for (id, value) in values {
            insert(&mut provided, id, value)?;
        }
        let run = async {
            for (index, hook) in self.startup.into_iter().enumerate() {
                let start = Startup {
                    client: client.clone(),
                    jetstream: jetstream.clone(),
                    provided: AppState::from_map(provided.clone()),
                };
                match hook(start).await {
                    Ok(Some((id, value))) => insert(&mut provided, id, value)?,
                    Ok(None) => {}
                    Err(error) => {
                        return Err(StartupError::Hook {
                            index: index + 1,
                            error,
                        })
                    }
                }
            }
            Ok(())
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| StartupError::TimedOut(timeout))??;
        provided.extend(replaced);
        Ok(Started {
            state: AppState::from_map(provided),
            shutdown: self.shutdown,
        })
    }
}

fn insert(
    provided: &mut HashMap<TypeId, Provided>,
    id: TypeId,
    value: Provided,
) -> Result<(), StartupError> {
    let name = value.name;
    match provided.insert(id, value) {
        Some(_) => Err(StartupError::Duplicate(name)),
        None => Ok(()),
    }
}

impl Started {
    /// Runs the shutdown hooks in reverse order of registration, within `budget`; errors are
    /// logged.
    pub(crate) async fn shut_down(self, budget: Duration) {
        let Started { state, shutdown } = self;
        if shutdown.is_empty() {
            return;
        }
        let count = shutdown.len();
        let run = async {
            for (index, hook) in shutdown.into_iter().enumerate().rev() {
                if let Err(error) = hook(state.clone()).await {
                    tracing::error!(hook = index + 1, %error, "shutdown hook failed");
                }
            }
        };
        if tokio::time::timeout(budget, run).await.is_err() {
            tracing::error!(hooks = count, budget = %humantime::format_duration(budget), "shutdown hooks did not finish within what was left of JETFN_SHUTDOWN_TIMEOUT");
        } else {
            tracing::info!(hooks = count, "shutdown hooks done");
        }
    }
}
