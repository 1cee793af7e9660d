//! `/health`, `/ready`, `/metrics`, `/functions` (axum).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{FunctionConfig, RequestConfig};
use crate::metrics::Format;
use crate::state::{FunctionReport, RequestReport, RuntimeState};

type AppState = Arc<RuntimeState>;

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/functions", get(functions))
        .with_state(state)
}

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    stop: CancellationToken,
) {
    let result = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "HTTP server failed");
    }
}

async fn health() -> &'static str {
    "ok"
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    connected: bool,
    draining: bool,
    functions: Vec<FunctionReport>,
    requests: Vec<RequestReport>,
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let body = Readiness {
        ready: state.ready(),
        connected: state.connected(),
        draining: state.draining(),
        functions: state.functions.iter().map(|f| f.report()).collect(),
        requests: state.requests.iter().map(|r| r.report()).collect(),
    };
    let status = if body.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// OpenMetrics when the `Accept` header asks for it, else the text format 0.0.4.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    let connected = state.connected();
    let draining = state.draining();
    state.metrics.nats_connected.set(i64::from(connected));
    for function in &state.functions {
        let ready = connected && !draining && function.bound();
        function.metrics.ready.set(i64::from(ready));
    }
    // A header that is not text is no preference.
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect::<Vec<_>>();
    let format = Format::negotiate((!accept.is_empty()).then(|| accept.join(",")).as_deref());
    (
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::VARY, "Accept"),
        ],
        state.metrics.encode(format),
    )
}

#[derive(Serialize)]
struct FunctionView<'a> {
    #[serde(flatten)]
    config: &'a FunctionConfig,
    status: FunctionReport,
    in_flight: i64,
    workers: i64,
    consumer_pending: i64,
    acked: u64,
    retried: u64,
    dead_lettered: u64,
}

/// A request function in `/functions`: its config, subscription and outcome counts.
#[derive(Serialize)]
struct RequestView<'a> {
    #[serde(flatten)]
    config: &'a RequestConfig,
    status: RequestReport,
    ok: u64,
    error: u64,
}

/// One entry of `/functions`, with its `kind` (as `list --json` has it).
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum View<'a> {
    Event(FunctionView<'a>),
    Request(RequestView<'a>),
}

/// The event functions, then the request functions.
async fn functions(State(state): State<AppState>) -> impl IntoResponse {
    let events = state.functions.iter().map(|f| {
        View::Event(FunctionView {
            config: &f.config,
            status: f.report(),
            in_flight: f.metrics.in_flight.get(),
            workers: f.metrics.workers.get(),
            consumer_pending: f.metrics.pending.get(),
            acked: f.metrics.acked.get(),
            retried: f.metrics.retried.get(),
            dead_lettered: f.metrics.dead_lettered.get(),
        })
    });
    let requests = state.requests.iter().map(|r| {
        View::Request(RequestView {
            config: &r.config,
            status: r.report(),
            ok: r.metrics.ok.get(),
            error: r.metrics.error.get(),
        })
    });
    let views: Vec<View<'_>> = events.chain(requests).collect();
    Json(serde_json::to_value(views).unwrap_or_default())
}
