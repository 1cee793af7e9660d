//! Request functions (`#[request_handler]`): core NATS request/reply in queue group `jetfn`,
//! one NATS micro service per process for discovery.
//!
//! Each request runs in its own task under a per-function semaphore (`max_workers`), through
//! the same pipeline as every delivery (`timeout`, panic guard, metrics, the user's layers,
//! decode and validate); the outcome becomes the reply (the `Ok` value encoded, or
//! empty with `Nats-Service-Error` / `Nats-Service-Error-Code`: 400, 500, 504). On shutdown
//! the subscriptions are drained first, then the requests already received are answered.

mod endpoint;
mod reply;
mod service;

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::Application;
use crate::handler::{Event, Function};
use crate::pipeline::{Entry, Guard, Instruments, Pipeline};
use crate::state::RequestState;

pub use reply::Reply;

/// One request, decoded into the function's payload type `T` (see [the crate docs](crate#what-a-handler-gets-and-returns):
/// `bytes::Bytes`, `String`, `jetfn::Protobuf<M>`, else JSON).
#[derive(Debug)]
#[non_exhaustive]
pub struct Request<T> {
    /// The decoded payload.
    pub data: T,
    subject: async_nats::Subject,
    headers: HeaderMap,
}

impl<T> Request<T> {
    pub(crate) fn from_event(event: Event<T>) -> Self {
        let (data, meta) = event.into_parts();
        Self {
            data,
            subject: meta.subject,
            headers: meta.headers,
        }
    }

    /// The subject the request was sent to.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The request's headers (empty when it had none).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

/// What the request functions of this process need to run.
pub(crate) struct Serve {
    pub(crate) client: async_nats::Client,
    pub(crate) jetstream: async_nats::jetstream::Context,
    pub(crate) auto_create_streams: bool,
    pub(crate) requests: Vec<Arc<RequestState>>,
    pub(crate) stop: CancellationToken,
    pub(crate) shutdown_timeout: Duration,
    /// The application's state and layers.
    pub(crate) app: Application,
}

/// Starts the micro service and one endpoint per request function; the task ends once every
/// endpoint has drained and answered what it received (after `stop`).
pub(crate) fn spawn(serve: Serve) -> JoinHandle<()> {
    tokio::spawn(run(serve))
}

async fn run(serve: Serve) {
    if serve.requests.is_empty() {
        return;
    }
    let identity = service::Identity::of_this_process();
    let mut endpoints = Vec::with_capacity(serve.requests.len());
    let mut infos = Vec::with_capacity(serve.requests.len());
    for state in &serve.requests {
        let info = service::EndpointInfo {
            name: state.config.name.clone(),
            subject: state.config.subject.clone(),
            stats: Arc::default(),
        };
        let function = Arc::new(Function::new(
            Arc::from(state.config.name.as_str()),
            serve.jetstream.clone(),
            serve.auto_create_streams,
            serve.app.state.clone(),
            // A request is its own input (no redelivery): the lease is its timeout.
            crate::once_bucket::Steps::new(state.config.timeout, crate::once::DEFAULT_RETENTION),
        ));
        let pipeline = Pipeline::new(
            function,
            Entry::Request(state.config.handler),
            &serve.app.layers,
            Guard {
                timeout: state.config.timeout,
                keep_alive: state.config.timeout,
            },
            Instruments {
                duration: state.metrics.duration.clone(),
                in_flight: None,
            },
        );
        endpoints.push(tokio::spawn(endpoint::run(endpoint::Endpoint {
            client: serve.client.clone(),
            tracer: crate::telemetry::tracer(),
            span_names: crate::telemetry::SpanNames::new(&state.config.subject),
            state: state.clone(),
            pipeline,
            stats: info.stats.clone(),
            stop: serve.stop.clone(),
            shutdown_timeout: serve.shutdown_timeout,
        })));
        infos.push(info);
    }
    let discovery = loop {
        match service::Discovery::subscribe(&serve.client, &identity).await {
            Ok(discovery) => break Some(discovery),
            Err(error) => {
                tracing::warn!(%error, "cannot subscribe to $SRV discovery; retrying");
                tokio::select! {
                    () = serve.stop.cancelled() => break None,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let discovery = discovery.map(|discovery| {
        tokio::spawn(discovery.serve(
            serve.client.clone(),
            identity.clone(),
            infos,
            serve.stop.clone(),
        ))
    });
    tracing::info!(service = %identity.name, id = %identity.id, endpoints = endpoints.len(), "micro service registered");
    for endpoint in endpoints {
        if let Err(error) = endpoint.await {
            tracing::error!(%error, "request endpoint task failed");
        }
    }
    if let Some(discovery) = discovery {
        let _ = discovery.await;
    }
}
