//! Binding a function to its stream and durable pull consumer.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use tokio_util::sync::CancellationToken;

use crate::config::FunctionConfig;
use crate::dlq::{self, advisory, DlqError};
use crate::schedule::{self, ScheduleError};
use crate::state::FunctionState;
use crate::topology::{create_stream, stream_name_for, TopologyError};

/// Why a function could not be bound (yet).
#[derive(Debug, thiserror::Error)]
pub(crate) enum BindError {
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error("looking up the stream for `{subject}` failed: {source}")]
    Lookup {
        subject: String,
        source: jetstream::context::GetStreamByNameError,
    },
    #[error("getting stream `{stream}` failed: {source}")]
    GetStream {
        stream: String,
        source: jetstream::context::GetStreamError,
    },
    #[error("creating or updating consumer `{consumer}` on `{stream}` failed: {source}")]
    Consumer {
        stream: String,
        consumer: String,
        source: jetstream::stream::ConsumerError,
    },
}

/// Why a function's server-side objects could not be provisioned (yet).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProvisionError {
    #[error(transparent)]
    DeadLetters(#[from] DlqError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("{0}")]
    Advisories(String),
    #[error(transparent)]
    Leases(#[from] crate::bucket::BucketError),
}

/// Creates, or updates to the function's configuration, everything a function needs on the
/// server: the stream of its dead-letter subject (`JETFN_DLQ`), the advisory stream (before the
/// consumer, so that no MAX_DELIVERIES advisory of it is lost; the pod's one consumer on it is
/// `dlq::advisory`'s), an ordered function's lease bucket (`JETFN_ORDERED`), its stream and
/// durable consumer. Idempotent: the same configuration twice
/// changes nothing. The runtime calls it when it binds a function, the `provision` command
/// before any pod runs.
pub(crate) async fn provision_function(
    js: &jetstream::Context,
    function: &FunctionConfig,
    auto_create_streams: bool,
) -> Result<Bound, ProvisionError> {
    dlq::ensure_stream(js, &function.dlq).await?;
    advisory::ensure_stream(js)
        .await
        .map_err(ProvisionError::Advisories)?;
    // A scheduled function: its stream and schedule first (written only when they differ).
    if let Some(wanted) = function.wanted_schedule() {
        schedule::ensure(js, &wanted).await?;
    }
    // An ordered function: the bucket of its lease (`JETFN_ORDERED`).
    if function.ordered_by.is_some() {
        super::ordered::lease::ensure(js).await?;
    }
    Ok(bind(js, function, auto_create_streams).await?)
}

/// A bound function: the stream it reads and its durable consumer.
pub(crate) struct Bound {
    pub(crate) stream: String,
    pub(crate) consumer: consumer::PullConsumer,
}

/// Finds (or creates) the stream, then creates or updates the durable consumer.
pub(crate) async fn bind(
    js: &jetstream::Context,
    function: &FunctionConfig,
    auto_create_streams: bool,
) -> Result<Bound, BindError> {
    let stream_name = find_or_create_stream(js, function, auto_create_streams).await?;
    let stream = js
        .get_stream(&stream_name)
        .await
        .map_err(|source| BindError::GetStream {
            stream: stream_name.clone(),
            source,
        })?;
    let consumer = stream
        .create_consumer(consumer_config(function))
        .await
        .map_err(|source| BindError::Consumer {
            stream: stream_name.clone(),
            consumer: function.name.clone(),
            source,
        })?;
    Ok(Bound {
        stream: stream_name,
        consumer,
    })
}

/// The durable consumer of a function. No `inactive_threshold`: the durable outlives every pod,
/// so KEDA can read its lag while the Deployment is scaled to zero.
pub(crate) fn consumer_config(function: &FunctionConfig) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(function.name.clone()),
        description: Some(format!("jetfn function {}", function.name)),
        filter_subject: function.subject.clone(),
        ack_policy: consumer::AckPolicy::Explicit,
        deliver_policy: consumer::DeliverPolicy::All,
        ack_wait: function.ack_wait,
        // An ordered function retries in place and counts its attempts itself: the server must
        // never stop redelivering a message its key waits for.
        max_deliver: match function.ordered_by {
            Some(_) => -1,
            None => i64::from(function.max_deliver),
        },
        max_ack_pending: i64::from(function.max_ack_pending),
        ..Default::default()
    }
}

async fn find_or_create_stream(
    js: &jetstream::Context,
    function: &FunctionConfig,
    auto_create_streams: bool,
) -> Result<String, BindError> {
    let subject = &function.subject;
    if let Some(stream) = &function.stream {
        return match js.get_stream(stream).await {
            Ok(_) => Ok(stream.clone()),
            Err(error) if is_stream_not_found(&error) => {
                Ok(create_stream(js, stream, subject, auto_create_streams).await?)
            }
            Err(source) => Err(BindError::GetStream {
                stream: stream.clone(),
                source,
            }),
        };
    }
    match js.stream_by_subject(subject.clone()).await {
        Ok(name) => Ok(name),
        Err(error) if error.kind() == jetstream::context::GetStreamByNameErrorKind::NotFound => {
            let name = stream_name_for(subject)?;
            Ok(create_stream(js, &name, subject, auto_create_streams).await?)
        }
        Err(source) => Err(BindError::Lookup {
            subject: subject.clone(),
            source,
        }),
    }
}

fn is_stream_not_found(error: &jetstream::context::GetStreamError) -> bool {
    matches!(
        error.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(inner)
            if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// The longest pause between two attempts to bind a function.
const MAX_BIND_BACKOFF: Duration = Duration::from_secs(5);

/// Binds the function (its stream, durable consumer, dead-letter and advisory streams),
/// retrying with backoff until it works or `cancel` fires.
pub(super) async fn bind_until_bound(
    state: &FunctionState,
    js: &jetstream::Context,
    auto_create_streams: bool,
    cancel: &CancellationToken,
) -> Option<Bound> {
    let mut pause = Duration::from_millis(100);
    loop {
        let attempt = provision_function(js, &state.config, auto_create_streams);
        let result = tokio::select! {
            () = cancel.cancelled() => return None,
            result = attempt => result,
        };
        match result {
            Ok(bound) => return Some(bound),
            Err(error) => {
                tracing::warn!(function = %state.config.name, %error, "cannot bind yet; retrying");
                state.set_unbound(error);
            }
        }
        if !backoff_pause(cancel, pause).await {
            return None;
        }
        pause = (pause * 2).min(MAX_BIND_BACKOFF);
    }
}

/// Sleeps `pause` unless cancelled; returns whether to go on.
pub(super) async fn backoff_pause(cancel: &CancellationToken, pause: Duration) -> bool {
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(pause) => true,
    }
}
