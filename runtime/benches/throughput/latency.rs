//! Publish-to-handler latency at a fixed publish rate.

use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use tokio::time::MissedTickBehavior;

use crate::measure::{now_nanos, stamp_payload};
use crate::settings::Settings;
use crate::sides::{jetfn_overrides, raw_consumer, start_runtime, wait_all_acked};
use crate::{Stamp, LATENCIES, LATENCY, LAT_JETFN_SUBJECT, LAT_RAW_SUBJECT, LAT_STREAM};

/// The jetfn runtime handles `lat.jetfn` while a paced publisher sends to it.
pub(crate) async fn jetfn_latency(
    url: &str,
    control: &jetstream::Context,
    settings: &Settings,
) -> Latencies {
    let capacity = usize::try_from(settings.latency_messages).expect("size");
    {
        let mut latencies = LATENCIES.lock().expect("latencies lock");
        latencies.clear();
        latencies.reserve(capacity);
    }
    let handle = start_runtime(
        url,
        LATENCY,
        &jetfn_overrides(settings, LATENCY, None),
        false,
    )
    .await;
    assert!(
        handle.wait_ready(Duration::from_secs(20)).await,
        "runtime not ready"
    );
    let publisher = async_nats::connect(url).await.expect("connect");
    let done = async {
        paced_publish(&publisher, LAT_JETFN_SUBJECT, settings).await;
        while LATENCIES.lock().expect("latencies lock").len() < capacity {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        wait_all_acked(control, LAT_STREAM, LATENCY).await;
    };
    tokio::time::timeout(
        settings.patience(settings.latency_messages) + pacing(settings),
        done,
    )
    .await
    .expect("jetfn latency phase did not finish in time");
    handle.stop().await;
    let samples = std::mem::take(&mut *LATENCIES.lock().expect("latencies lock"));
    assert_eq!(
        samples.len(),
        capacity,
        "every latency probe handled exactly once"
    );
    Latencies::new(samples)
}

/// A raw pull consumer (`messages()`, decode the stamp, ack) on `lat.raw` while a paced publisher
/// sends to it.
pub(crate) async fn raw_latency(
    url: &str,
    control: &jetstream::Context,
    settings: &Settings,
) -> Latencies {
    let capacity = usize::try_from(settings.latency_messages).expect("size");
    let client = async_nats::connect(url).await.expect("connect");
    let js = jetstream::new(client.clone());
    let stream = js.get_stream(LAT_STREAM).await.expect("latency stream");
    let durable = "raw_latency";
    let consumer = raw_consumer(&stream, LAT_RAW_SUBJECT, durable, settings).await;
    let mut messages = consumer.messages().await.expect("pull");
    let reader = tokio::spawn(async move {
        let mut samples = Vec::with_capacity(capacity);
        while samples.len() < capacity {
            let message = messages
                .next()
                .await
                .expect("the pull stream ended")
                .expect("pull error");
            let stamp: Stamp = serde_json::from_slice(&message.payload).expect("a latency probe");
            samples.push(now_nanos().saturating_sub(stamp.t));
            message.ack().await.expect("ack");
        }
        client.flush().await.expect("flush");
        samples
    });
    let publisher = async_nats::connect(url).await.expect("connect");
    let done = async {
        paced_publish(&publisher, LAT_RAW_SUBJECT, settings).await;
        let samples = reader.await.expect("raw latency reader");
        wait_all_acked(control, LAT_STREAM, durable).await;
        samples
    };
    let samples = tokio::time::timeout(
        settings.patience(settings.latency_messages) + pacing(settings),
        done,
    )
    .await
    .expect("raw latency phase did not finish in time");
    stream
        .delete_consumer(durable)
        .await
        .expect("delete raw latency consumer");
    Latencies::new(samples)
}

/// How long the paced publisher runs.
fn pacing(settings: &Settings) -> Duration {
    Duration::from_secs_f64(settings.latency_messages as f64 / settings.rate as f64)
}

/// Publishes `latency_messages` probes to `subject` at `rate` per second (core NATS publishes
/// into the stream's subject), each carrying its send time.
async fn paced_publish(client: &async_nats::Client, subject: &'static str, settings: &Settings) {
    let period = Duration::from_secs_f64(1.0 / settings.rate as f64);
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    for _ in 0..settings.latency_messages {
        ticks.tick().await;
        let payload = stamp_payload(now_nanos());
        client
            .publish(subject, payload.into())
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
}

/// Sorted latencies in nanoseconds.
pub(crate) struct Latencies(Vec<u64>);

impl Latencies {
    fn new(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        Self(samples)
    }

    /// Nearest-rank percentile, in microseconds.
    fn percentile(&self, p: f64) -> f64 {
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.0.len()) - 1;
        self.0[index] as f64 / 1e3
    }

    fn max(&self) -> f64 {
        self.0.last().copied().unwrap_or(0) as f64 / 1e3
    }

    pub(crate) fn line(&self) -> String {
        format!(
            "n={} p50 {:.0} us, p90 {:.0} us, p99 {:.0} us, max {:.0} us",
            self.0.len(),
            self.percentile(50.0),
            self.percentile(90.0),
            self.percentile(99.0),
            self.max()
        )
    }

    pub(crate) fn short(&self) -> String {
        format!(
            "p50 {:.0}us p90 {:.0}us p99 {:.0}us max {:.0}us",
            self.percentile(50.0),
            self.percentile(90.0),
            self.percentile(99.0),
            self.max()
        )
    }
}
