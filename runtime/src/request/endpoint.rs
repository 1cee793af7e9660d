//! One request function's endpoint: a queue subscription, a semaphore of `max_workers`, one
//! task per request, each through the function's [pipeline](crate::pipeline), then the reply.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_nats::Message;
use futures::StreamExt;
use opentelemetry::context::FutureExt as _;
use opentelemetry::global::BoxedTracer;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::reply::Failure;
use super::service::{EndpointStats, QUEUE_GROUP};
use crate::codec::Incoming;
use crate::handler::{EventMeta, InputRef};
use crate::pipeline::{Call, Messages, Output, Pipeline, Slot};
use crate::state::RequestState;
use crate::telemetry::{DeliverySpan, SpanNames};

pub(super) struct Endpoint {
    pub(super) client: async_nats::Client,
    pub(super) tracer: BoxedTracer,
    pub(super) span_names: SpanNames,
    pub(super) state: Arc<RequestState>,
    pub(super) pipeline: Pipeline,
    pub(super) stats: Arc<Mutex<EndpointStats>>,
    pub(super) stop: CancellationToken,
    pub(super) shutdown_timeout: Duration,
}

/// Subscribes (retrying until it works or `stop`), answers requests until `stop`, then drains
/// the subscription, answers what it still delivers and waits for the requests in flight.
pub(super) async fn run(endpoint: Endpoint) {
    let config = endpoint.state.config.clone();
    let Some(mut subscriber) = subscribe(&endpoint).await else {
        return;
    };
    endpoint.state.set_subscribed(true);
    let endpoint = Arc::new(endpoint);
    let workers = Arc::new(Semaphore::new(
        usize::try_from(config.max_workers).unwrap_or(usize::MAX),
    ));
    // Set on `stop`: the end of the drain budget. Draining ends there whatever the connection
    // state (a drain needs the server's answer: without a connection it never comes).
    let mut draining: Option<tokio::time::Instant> = None;
    loop {
        // A permit first: beyond `max_workers` requests wait in the subscription.
        let permit = match draining {
            Some(deadline) => tokio::time::timeout_at(deadline, workers.clone().acquire_owned())
                .await
                .ok(),
            None => Some(workers.clone().acquire_owned().await),
        };
        let Some(Ok(permit)) = permit else {
            break;
        };
        let next = if let Some(deadline) = draining {
            let Ok(next) = tokio::time::timeout_at(deadline, subscriber.next()).await else {
                tracing::warn!(function = %config.name, "the request subscription did not drain within the budget");
                break;
            };
            next
        } else {
            tokio::select! {
                () = endpoint.stop.cancelled() => {
                    draining = Some(tokio::time::Instant::now() + endpoint.shutdown_timeout);
                    endpoint.state.set_subscribed(false);
                    // UNSUB, then a PING: the server's last deliveries still come, then `None`.
                    if let Err(error) = subscriber.drain().await {
                        tracing::warn!(function = %config.name, %error, "cannot drain the request subscription");
                        break;
                    }
                    continue;
                }
                next = subscriber.next() => next,
            }
        };
        let Some(message) = next else { break };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            answer(&endpoint, message).await;
            drop(permit);
        });
    }
    endpoint.state.set_subscribed(false);
    // Every permit back means every request received has been answered.
    let all = config.max_workers;
    let deadline =
        draining.unwrap_or_else(|| tokio::time::Instant::now() + endpoint.shutdown_timeout);
    let answered = tokio::time::timeout_at(deadline, workers.acquire_many(all)).await;
    if answered.is_err() {
        tracing::warn!(function = %config.name, "requests still running at the end of the drain budget");
    }
}

async fn subscribe(endpoint: &Endpoint) -> Option<async_nats::Subscriber> {
    let subject = endpoint.state.config.subject.clone();
    loop {
        match endpoint
            .client
            .queue_subscribe(subject.clone(), QUEUE_GROUP.to_owned())
            .await
        {
            Ok(subscriber) => return Some(subscriber),
            Err(error) => {
                tracing::warn!(function = %endpoint.state.config.name, %error, "cannot subscribe; retrying");
                tokio::select! {
                    () = endpoint.stop.cancelled() => return None,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Runs the function on one request through the pipeline and replies.
async fn answer(endpoint: &Endpoint, message: Message) {
    let config = &endpoint.state.config;
    let headers = message.headers.clone().unwrap_or_default();
    let function = endpoint.pipeline.function();
    let span = DeliverySpan::start_request(
        &endpoint.tracer,
        &function.name,
        &endpoint.span_names,
        &message.subject,
        &headers,
        QUEUE_GROUP,
    );
    let started = Instant::now();
    let input = InputRef::request(message.reply.as_deref());
    let incoming = Incoming {
        payload: message.payload.clone(),
        meta: EventMeta {
            subject: message.subject.clone(),
            id: None,
            headers,
            stream: Arc::from(""),
            stream_sequence: 0,
            attempt: 1,
            published: SystemTime::now(),
        },
    };
    let reply = Slot::default();
    let call = Call::new(
        function.clone(),
        input,
        Messages::One(incoming),
        Output::Reply(reply.clone()),
    );
    let result = endpoint
        .pipeline
        .run(call, 1, &[])
        .with_context(span.otel.clone())
        .await
        .map_err(|failure| Failure::of(&failure))
        .and_then(|()| reply.take().ok_or_else(Failure::no_reply));
    if let Ok(mut stats) = endpoint.stats.lock() {
        stats.record(started.elapsed(), result.as_ref().err());
    }
    let metrics = &endpoint.state.metrics;
    match &result {
        Ok(_) => metrics.ok.inc(),
        Err(failure) => {
            span.record_reply_failure(&failure.message, failure.code);
            tracing::warn!(function = %config.name, code = failure.code, error = %failure.message, "request failed");
            metrics.error.inc()
        }
    };
    span.end();
    let Some(reply) = message.reply else {
        return;
    };
    let sent = match result {
        Ok(body) => endpoint.client.publish(reply, body).await,
        Err(failure) => {
            endpoint
                .client
                .publish_with_headers(reply, failure.headers(), bytes::Bytes::new())
                .await
        }
    };
    if let Err(error) = sent {
        tracing::warn!(function = %config.name, %error, "cannot send the reply");
    }
}
