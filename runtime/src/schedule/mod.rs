//! Scheduled functions: the schedule held by nats-server (message schedules, nats-server
//! 2.14+) in the stream `JETFN_SCHEDULES`, on `jetfn.schedule.<function>`, firing ticks into
//! `jetfn.tick.<function>`, which the function's durable consumer reads like any subject.
//!
//! The schedule message carries `Nats-Schedule` (the expression in the server's form),
//! `Nats-Schedule-Target` (the tick subject) and `Nats-Schedule-TTL` (each tick's TTL, so that
//! ticks do not pile up while no pod runs); its body is the JSON of [`Tick`], which every tick
//! copies. [`ensure`] writes it only when it is missing or differs, so restarts neither reset
//! nor duplicate it.
//!
//! Delayed outputs ([`delay`]) are one-shot schedules (`@at`) in the same stream.

pub(crate) mod delay;
mod expr;

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use bytes::Bytes;

pub(crate) use expr::{Expr, ExprError};

/// The stream of every schedule and tick.
pub(crate) const STREAM: &str = "JETFN_SCHEDULES";
/// The longest default tick TTL.
const MAX_DEFAULT_TTL: Duration = Duration::from_secs(3600);

const SCHEDULE: &str = "Nats-Schedule";
const TARGET: &str = "Nats-Schedule-Target";
const TTL: &str = "Nats-Schedule-TTL";

/// The payload of a tick: `Event<Tick>` in a scheduled function.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Tick {
    /// The schedule's expression, as written on the function (or configured).
    pub schedule: String,
}

/// Where the schedule of `function` is held.
pub(crate) fn schedule_subject(function: &str) -> String {
    format!("jetfn.schedule.{function}")
}

/// Where the ticks of `function` go (its consumer's filter subject).
pub(crate) fn tick_subject(function: &str) -> String {
    format!("jetfn.tick.{function}")
}

/// The default TTL of a tick: the schedule's period, at most one hour, at least one second.
pub(crate) fn default_ttl(expr: &Expr) -> Duration {
    expr.period().clamp(Duration::from_secs(1), MAX_DEFAULT_TTL)
}

/// The schedule could not be written (yet).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScheduleError {
    #[error("cannot create or update the stream {STREAM}: {0}")]
    Stream(String),
    #[error("cannot read the schedule on {subject}: {source}")]
    Read {
        subject: String,
        source: jetstream::stream::LastRawMessageError,
    },
    #[error("cannot write the schedule on {subject}: {reason}")]
    Write { subject: String, reason: String },
}

/// Creates `JETFN_SCHEDULES` (message schedules and per-message TTL on), or turns those on and
/// adds its subjects when it exists without them.
pub(crate) async fn ensure_stream(js: &jetstream::Context) -> Result<(), ScheduleError> {
    let subjects = vec![
        "jetfn.schedule.>".to_owned(),
        "jetfn.tick.>".to_owned(),
        "jetfn.delay.>".to_owned(),
        "jetfn.due.>".to_owned(),
    ];
    let wanted = stream::Config {
        name: STREAM.to_owned(),
        subjects: subjects.clone(),
        storage: stream::StorageType::File,
        allow_message_schedules: true,
        allow_message_ttl: true,
        description: Some("jetfn schedules and their ticks".to_owned()),
        ..Default::default()
    };
    let stream = js
        .get_or_create_stream(wanted)
        .await
        .map_err(|e| ScheduleError::Stream(e.to_string()))?;
    let mut config = stream.cached_info().config.clone();
    let missing: Vec<_> = subjects
        .iter()
        .filter(|s| !config.subjects.contains(s))
        .cloned()
        .collect();
    if missing.is_empty() && config.allow_message_schedules && config.allow_message_ttl {
        return Ok(());
    }
    config.subjects.extend(missing);
    config.allow_message_schedules = true;
    config.allow_message_ttl = true;
    js.update_stream(config)
        .await
        .map_err(|e| ScheduleError::Stream(e.to_string()))?;
    Ok(())
}

/// What the schedule message of a function is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub(crate) function: String,
    /// The expression as written (the ticks' `Tick::schedule`).
    pub(crate) written: String,
    pub(crate) expr: Expr,
    pub(crate) ttl: Duration,
}

impl Wanted {
    fn headers(&self) -> [(&'static str, String); 3] {
        [
            (SCHEDULE, self.expr.server_form()),
            (TARGET, tick_subject(&self.function)),
            (TTL, format!("{}s", self.ttl.as_secs().max(1))),
        ]
    }

    fn body(&self) -> Bytes {
        let tick = Tick {
            schedule: self.written.clone(),
        };
        Bytes::from(serde_json::to_vec(&tick).unwrap_or_default())
    }
}

/// What [`ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ensured {
    /// The schedule on the server already was this one: nothing written.
    Unchanged,
    /// Written: it was missing or different.
    Written,
}

/// Writes the schedule of a function when it is missing or differs from `wanted`; leaves it
/// alone otherwise (so its timer is never reset). Concurrent writers (pods starting together)
/// are serialized by `Nats-Expected-Last-Subject-Sequence`: the loser reads again and finds the
/// winner's, equal, schedule.
pub(crate) async fn ensure(
    js: &jetstream::Context,
    wanted: &Wanted,
) -> Result<Ensured, ScheduleError> {
    ensure_stream(js).await?;
    let subject = schedule_subject(&wanted.function);
    let stream = js
        .get_stream_no_info(STREAM)
        .await
        .map_err(|e| ScheduleError::Stream(e.to_string()))?;
    for _ in 0..3 {
        let last = match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => Some(message),
            Err(error)
                if error.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
            {
                None
            }
            Err(source) => {
                return Err(ScheduleError::Read {
                    subject: subject.clone(),
                    source,
                })
            }
        };
        if let Some(last) = &last {
            let same_headers = wanted.headers().iter().all(|(name, value)| {
                last.headers.get(*name).map(|v| v.as_str()) == Some(value.as_str())
            });
            if same_headers && last.payload == wanted.body() {
                return Ok(Ensured::Unchanged);
            }
        }
        let mut headers = HeaderMap::new();
        for (name, value) in wanted.headers() {
            headers.insert(name, value.as_str());
        }
        let expected = last.as_ref().map_or(0, |m| m.sequence);
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence",
            expected.to_string().as_str(),
        );
        let write = |reason: String| ScheduleError::Write {
            subject: subject.clone(),
            reason,
        };
        let ack = js
            .publish_with_headers(subject.clone(), headers, wanted.body())
            .await
            .map_err(|e| write(e.to_string()))?
            .await;
        match ack {
            Ok(_) => {
                tracing::info!(function = %wanted.function, schedule = %wanted.written, "schedule written");
                return Ok(Ensured::Written);
            }
            Err(error)
                if error.kind() == jetstream::context::PublishErrorKind::WrongLastSequence =>
            {
                continue; // another pod wrote it meanwhile: read again
            }
            Err(error) => return Err(write(error.to_string())),
        }
    }
    Err(ScheduleError::Write {
        subject,
        reason: "it kept changing under this writer".to_owned(),
    })
}
