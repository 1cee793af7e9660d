//! CPU time, server load, payloads and arithmetic shared by the phases.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use jetfn::testing::NatsServer;

use crate::PAYLOAD_BYTES;

/// The time base shared by publishers and handlers.
static BASE: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since [`BASE`], at least 1.
pub(crate) fn now_nanos() -> u64 {
    let elapsed = BASE.get_or_init(Instant::now).elapsed();
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// The thread (`/proc/self/task/<tid>`) whose CPU time is not the client's: the OTLP sink.
static EXCLUDED: OnceLock<String> = OnceLock::new();

/// Leaves the calling thread's CPU time out of [`process_cpu`] (once; for the OTLP sink).
pub(crate) fn exclude_this_thread() {
    // `/proc/thread-self` links to `<pid>/task/<tid>`.
    if let Ok(link) = std::fs::read_link("/proc/thread-self") {
        if let Some(tid) = link.file_name().and_then(|tid| tid.to_str()) {
            let _ = EXCLUDED.set(format!("self/task/{tid}"));
        }
    }
}

/// This process's CPU time (all threads, user + system, but the OTLP sink's), when
/// `/proc/self/stat` tells it.
pub(crate) fn process_cpu() -> Option<Duration> {
    let all = cpu_of("self")?;
    let excluded = match EXCLUDED.get() {
        Some(thread) => cpu_of(thread)?,
        None => Duration::ZERO,
    };
    Some(all.saturating_sub(excluded))
}

/// The CPU time of process or thread `path` (`<pid>`, `self`, `self/task/<tid>`), when
/// `/proc/<path>/stat` tells it.
fn cpu_of(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{path}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every mainstream Linux.
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time of this process spent since `before`, per message, as text.
pub(crate) fn cpu_per_message(before: Option<Duration>, messages: u64) -> (Option<f64>, String) {
    match (before, process_cpu()) {
        (Some(before), Some(after)) => {
            let micros = after.saturating_sub(before).as_secs_f64() * 1e6 / messages as f64;
            (Some(micros), format!("{micros:.1} us client CPU/msg"))
        }
        _ => (None, "client CPU n/a".to_owned()),
    }
}

/// The server's CPU time and message counters (`/varz` `in_msgs`, `out_msgs`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerLoad {
    cpu: Option<Duration>,
    in_msgs: u64,
    out_msgs: u64,
}

impl ServerLoad {
    pub(crate) async fn now(server: &NatsServer) -> Self {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.monitor_port()));
        let varz = jetfn::testing::http_get(addr, "/varz")
            .await
            .ok()
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok());
        let counter = |name: &str| {
            varz.as_ref()
                .and_then(|v| v.get(name))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        Self {
            cpu: server.pid().and_then(|pid| cpu_of(&pid.to_string())),
            in_msgs: counter("in_msgs"),
            out_msgs: counter("out_msgs"),
        }
    }

    /// What the server did since `self`, per handled message, as text.
    pub(crate) async fn since(self, server: &NatsServer, messages: u64) -> (Option<f64>, String) {
        let after = Self::now(server).await;
        let per = |n: u64| n as f64 / messages as f64;
        let micros = match (self.cpu, after.cpu) {
            (Some(before), Some(after)) => {
                Some(after.saturating_sub(before).as_secs_f64() * 1e6 / messages as f64)
            }
            _ => None,
        };
        let cpu = micros.map_or_else(
            || "server CPU n/a".to_owned(),
            |micros| format!("{micros:.1} us server CPU/msg"),
        );
        let text = format!(
            "{cpu}, server in {:.2} / out {:.2} msgs per msg",
            per(after.in_msgs.saturating_sub(self.in_msgs)),
            per(after.out_msgs.saturating_sub(self.out_msgs)),
        );
        (micros, text)
    }
}

pub(crate) async fn create_stream(js: &jetstream::Context, name: &str, subjects: &str) {
    js.create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![subjects.to_owned()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("create stream {name}: {e}"));
}

/// `{"id":<id>,"pad":"xx..."}`, exactly [`PAYLOAD_BYTES`] long.
pub(crate) fn fixed_payload(id: u64) -> String {
    let head = format!(r#"{{"id":{id},"pad":""#);
    let pad = PAYLOAD_BYTES - head.len() - 2;
    let payload = format!("{head}{}\"}}", "x".repeat(pad));
    assert_eq!(payload.len(), PAYLOAD_BYTES);
    payload
}

/// `{"t":<nanos>,"pad":"xx..."}`, exactly [`PAYLOAD_BYTES`] long.
pub(crate) fn stamp_payload(nanos: u64) -> String {
    let head = format!(r#"{{"t":{nanos},"pad":""#);
    let pad = PAYLOAD_BYTES - head.len() - 2;
    let payload = format!("{head}{}\"}}", "x".repeat(pad));
    assert_eq!(payload.len(), PAYLOAD_BYTES);
    payload
}

/// Publishes `count` messages through JetStream, awaiting the acks in batches of 1,000.
pub(crate) async fn publish_fixed(js: &jetstream::Context, subject: &'static str, count: u64) {
    publish_keyed(js, |_| subject.to_owned(), count).await;
}

/// Publishes `count` messages through JetStream, message `id` to `subject(id)`, awaiting the acks
/// in batches of 1,000.
pub(crate) async fn publish_keyed(
    js: &jetstream::Context,
    subject: impl Fn(u64) -> String,
    count: u64,
) {
    const BATCH: u64 = 1_000;
    let mut acks = Vec::with_capacity(BATCH as usize);
    for id in 0..count {
        let ack = js
            .publish(subject(id), fixed_payload(id).into())
            .await
            .expect("publish");
        acks.push(ack);
        if acks.len() as u64 == BATCH || id + 1 == count {
            for ack in
                futures::future::join_all(acks.drain(..).map(std::future::IntoFuture::into_future))
                    .await
            {
                ack.expect("publish ack");
            }
        }
    }
}

pub(crate) fn rate(messages: u64, elapsed: Duration) -> f64 {
    messages as f64 / elapsed.as_secs_f64()
}

pub(crate) fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}
