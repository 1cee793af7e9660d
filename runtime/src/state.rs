//! Live state shared between the consumers and the HTTP endpoints.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::{FunctionConfig, RequestConfig};
use crate::metrics::{FunctionMetrics, Metrics, RequestMetrics};

/// The whole process: connection, draining flag, functions.
#[derive(Debug)]
pub(crate) struct RuntimeState {
    pub(crate) client: async_nats::Client,
    /// The startup hooks have finished (and the state check passed).
    pub(crate) started: AtomicBool,
    pub(crate) draining: AtomicBool,
    pub(crate) metrics: Metrics,
    pub(crate) functions: Vec<Arc<FunctionState>>,
    pub(crate) requests: Vec<Arc<RequestState>>,
}

/// One request function: its effective config, whether it is subscribed, its metric handles.
#[derive(Debug)]
pub(crate) struct RequestState {
    pub(crate) config: Arc<RequestConfig>,
    pub(crate) metrics: RequestMetrics,
    subscribed: AtomicBool,
}

/// What `/ready` and `/functions` report of a request function.
#[derive(Debug, Serialize)]
pub(crate) struct RequestReport {
    name: String,
    subject: String,
    subscribed: bool,
}

impl RequestState {
    pub(crate) fn new(config: RequestConfig, metrics: &Metrics) -> Self {
        Self {
            metrics: metrics.request(&config.name),
            config: Arc::new(config),
            subscribed: AtomicBool::new(false),
        }
    }

    pub(crate) fn subscribed(&self) -> bool {
        self.subscribed.load(Ordering::SeqCst)
    }

    pub(crate) fn set_subscribed(&self, subscribed: bool) {
        self.subscribed.store(subscribed, Ordering::SeqCst);
    }

    pub(crate) fn report(&self) -> RequestReport {
        RequestReport {
            name: self.config.name.clone(),
            subject: self.config.subject.clone(),
            subscribed: self.subscribed(),
        }
    }
}

/// One function: its effective config, whether its consumer is bound, its metric handles.
#[derive(Debug)]
pub(crate) struct FunctionState {
    pub(crate) config: Arc<FunctionConfig>,
    pub(crate) metrics: FunctionMetrics,
    bound: AtomicBool,
    detail: Mutex<Detail>,
    pulling: Pulling,
}

/// What the pull loop last asked for, updated with each pull request (not per message).
#[derive(Debug, Default)]
pub(crate) struct Pulling {
    /// Messages requested and not yet received, right after the latest request.
    pub(crate) requested: AtomicUsize,
    /// Of those, the ones asked for beyond the free workers.
    pub(crate) ahead: AtomicUsize,
    /// The measured pull round trip, microseconds.
    pub(crate) round_trip_us: AtomicU64,
    /// Deliveries that reported the consumer's `num_pending` so far.
    pub(crate) pending_reports: AtomicU64,
    /// Every worker is busy and messages asked for are not yet taken (fetched ahead: on their
    /// way or waiting in the subscription): backlog for the autoscaler that the server's
    /// `num_pending` no longer shows.
    pub(crate) waiting: AtomicBool,
}

#[derive(Debug, Default, Clone, Serialize)]
struct Detail {
    stream: Option<String>,
    last_error: Option<String>,
    /// An ordered function: whether this pod holds its lease (pulls and runs it).
    holding: Option<bool>,
}

/// What `/ready` and `/functions` report of a function.
#[derive(Debug, Serialize)]
pub(crate) struct FunctionReport {
    name: String,
    subject: String,
    bound: bool,
    stream: Option<String>,
    last_error: Option<String>,
    /// An ordered function: its key and the partitions this pod holds (one partition today:
    /// `[0]` on the lease holder, `[]` on a standby).
    #[serde(skip_serializing_if = "Option::is_none")]
    ordered: Option<OrderedReport>,
    requested: usize,
    ahead: usize,
    round_trip_us: u64,
}

/// What `/functions` reports of an ordered function.
#[derive(Debug, Serialize)]
pub(crate) struct OrderedReport {
    ordered_by: String,
    partitions: u32,
    partitions_held: Vec<u32>,
}

impl RuntimeState {
    pub(crate) fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Started (the startup hooks done), connected, every consumer bound, every request
    /// function subscribed, not draining.
    pub(crate) fn ready(&self) -> bool {
        self.started.load(Ordering::SeqCst)
            && !self.draining()
            && self.connected()
            && self.functions.iter().all(|f| f.bound())
            && self.requests.iter().all(|r| r.subscribed())
    }
}

impl FunctionState {
    pub(crate) fn new(config: FunctionConfig, metrics: &Metrics) -> Self {
        let metrics = metrics.function(&config.name, config.ordered_by.is_some());
        metrics.breaker.set(0); // closed
        Self {
            metrics,
            config: Arc::new(config),
            bound: AtomicBool::new(false),
            detail: Mutex::new(Detail::default()),
            pulling: Pulling::default(),
        }
    }

    /// What the pull loop reports of its requests.
    pub(crate) fn pulling(&self) -> &Pulling {
        &self.pulling
    }

    /// Sets `jetfn_consumer_pending` from a delivery's `num_pending` (and counts the report).
    pub(crate) fn observe_pending(&self, pending: u64) {
        self.metrics
            .pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.pulling.pending_reports.fetch_add(1, Ordering::Relaxed);
    }

    /// The stream the function is (or was last) bound to.
    pub(crate) fn stream(&self) -> Option<String> {
        self.detail
            .lock()
            .ok()
            .and_then(|detail| detail.stream.clone())
    }

    pub(crate) fn bound(&self) -> bool {
        self.bound.load(Ordering::SeqCst)
    }

    pub(crate) fn set_bound(&self, stream: &str) {
        self.update(|detail| {
            detail.stream = Some(stream.to_owned());
            detail.last_error = None;
        });
        self.bound.store(true, Ordering::SeqCst);
    }

    pub(crate) fn set_unbound(&self, error: impl std::fmt::Display) {
        self.bound.store(false, Ordering::SeqCst);
        self.update(|detail| detail.last_error = Some(error.to_string()));
    }

    /// An ordered function: whether this pod holds its lease now.
    pub(crate) fn set_holding(&self, holding: bool) {
        self.update(|detail| detail.holding = Some(holding));
    }

    pub(crate) fn report(&self) -> FunctionReport {
        let detail = self.detail.lock().map(|d| d.clone()).unwrap_or_default();
        let ordered = self.config.ordered_by.as_ref().map(|by| OrderedReport {
            ordered_by: by.to_string(),
            partitions: 1,
            partitions_held: if detail.holding == Some(true) {
                vec![0]
            } else {
                Vec::new()
            },
        });
        FunctionReport {
            name: self.config.name.clone(),
            subject: self.config.subject.clone(),
            bound: self.bound(),
            stream: detail.stream,
            last_error: detail.last_error,
            ordered,
            requested: self.pulling.requested.load(Ordering::Relaxed),
            ahead: self.pulling.ahead.load(Ordering::Relaxed),
            round_trip_us: self.pulling.round_trip_us.load(Ordering::Relaxed),
        }
    }

    fn update(&self, change: impl FnOnce(&mut Detail)) {
        if let Ok(mut detail) = self.detail.lock() {
            change(&mut detail);
        }
    }
}
