//! The effective configuration of one function.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::value::{self, duration, human, integer};
use jetfn_grammar::order::OrderedBy;
use jetfn_grammar::{defaults, keys};

use super::ConfigError;
use crate::app_state::StateType;
use crate::batch::BatchFn;
use crate::registry::{HandlerFn, HandlerSpec, Location};
use crate::{schedule, subject};

/// Retry delays: `min(max, initial * 2^(attempt - 1))`, written `"initial..max"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first failure.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Serialize for Backoff {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl std::fmt::Display for Backoff {
    /// `1s..60s`: the form `backoff` is written in.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use jetfn_grammar::duration::format_duration;
        write!(
            f,
            "{}..{}",
            format_duration(self.initial),
            format_duration(self.max)
        )
    }
}

/// One function's settings: attribute values, overridden by configuration, over defaults.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FunctionConfig {
    /// The function's name; also its durable consumer's name.
    pub name: String,
    /// The subject it consumes; also its consumer's filter subject (`jetfn.tick.<name>` for a
    /// scheduled function).
    pub subject: String,
    /// A scheduled function's schedule, as written (cron, `@hourly`..., `@every 30s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// How long each tick of a scheduled function lives (default: the period, at most `1h`).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "human_opt")]
    pub schedule_ttl: Option<Duration>,
    /// The stream to bind to; `None` = the stream that captures the subject.
    pub stream: Option<String>,
    /// Deliveries before a failing message is dead-lettered (default 5).
    pub max_deliver: u32,
    /// Retry delays (default `1s..60s`).
    pub backoff: Backoff,
    /// How long the server waits for an ack before redelivering (default `30s`).
    #[serde(serialize_with = "human")]
    pub ack_wait: Duration,
    /// The bound on one handler run (default `5m`).
    #[serde(serialize_with = "human")]
    pub timeout: Duration,
    /// The fewest concurrent handler runs (default 1).
    pub min_workers: u32,
    /// The most concurrent handler runs in this process (default 16).
    pub max_workers: u32,
    /// The most unacknowledged messages the consumer hands out (default 1000).
    pub max_ack_pending: u32,
    /// Where dead letters go (default `jetfn.dlq.<name>`).
    pub dlq: String,
    /// Consecutive failures that open the breaker; 0 = off (default 0).
    pub breaker_failures: u32,
    /// How long an open breaker waits before a trial (default `30s`).
    #[serde(serialize_with = "human")]
    pub breaker_cooldown: Duration,
    /// The most time of work this process holds fetched but not started (default `5ms`): pull
    /// requests ask for what keeps the workers busy across a round trip, within this.
    #[serde(serialize_with = "human")]
    pub prefetch: Duration,
    /// The most bytes this process has requested and not started (default 8 MiB; at least one
    /// message of the server's `max_payload` is always allowed).
    pub prefetch_bytes: u32,
    /// A batch function's most events per call (`batch`); `None` for a per-message function.
    pub batch: Option<u32>,
    /// How long a batch waits to fill up before the function is called with fewer (default
    /// `100ms`).
    #[serde(serialize_with = "human")]
    pub batch_wait: Duration,
    /// The `State<T>` types the handler takes (their type names in `list --json`).
    #[serde(serialize_with = "state_names")]
    pub states: &'static [StateType],
    /// Where the function is defined.
    #[serde(skip)]
    pub location: Location,
    /// How long the record of a once-only step (`ctx.once`) lives (default `7d`); it must
    /// exceed the function's whole retry schedule ([`FunctionConfig::retry_span`]).
    #[serde(serialize_with = "human")]
    pub once_retention: Duration,
    /// An ordered function's key (`ordered_by`): one message of a key at a time, in stream
    /// order, across every pod (see the `ordered` module of the consumer).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "display_opt"
    )]
    pub ordered_by: Option<OrderedBy>,
    /// The handler.
    #[serde(skip)]
    pub handler: HandlerFn,
    /// A batch function's entry point.
    #[serde(skip)]
    pub batch_handler: Option<BatchFn>,
}

/// The type names of `State<T>` arguments.
pub(crate) fn state_names<S: Serializer>(
    states: &&'static [StateType],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(states.iter().map(StateType::name))
}

fn display_opt<S: Serializer>(value: &Option<OrderedBy>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => serializer.collect_str(value),
        None => serializer.serialize_none(),
    }
}

fn human_opt<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => human(value, serializer),
        None => serializer.serialize_none(),
    }
}

impl FunctionConfig {
    /// The defaults for a function, before attributes and overrides.
    fn defaults(spec: &HandlerSpec) -> Self {
        Self {
            name: spec.name.to_owned(),
            subject: spec.subject.to_owned(),
            schedule: None,
            schedule_ttl: None,
            stream: None,
            max_deliver: defaults::MAX_DELIVER,
            backoff: Backoff {
                initial: defaults::BACKOFF_INITIAL,
                max: defaults::BACKOFF_MAX,
            },
            ack_wait: defaults::ACK_WAIT,
            timeout: defaults::TIMEOUT,
            min_workers: defaults::MIN_WORKERS,
            max_workers: defaults::MAX_WORKERS,
            max_ack_pending: defaults::MAX_ACK_PENDING,
            dlq: format!("jetfn.dlq.{}", spec.name),
            breaker_failures: defaults::BREAKER_FAILURES,
            breaker_cooldown: defaults::BREAKER_COOLDOWN,
            prefetch: defaults::PREFETCH,
            prefetch_bytes: defaults::PREFETCH_BYTES,
            batch: None,
            batch_wait: defaults::BATCH_WAIT,
            states: spec.states,
            location: spec.location,
            once_retention: crate::once::DEFAULT_RETENTION,
            ordered_by: None,
            handler: spec.handler,
            batch_handler: spec.batch,
        }
    }

    pub(super) fn resolve(
        spec: &'static HandlerSpec,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let mut config = Self::defaults(spec);
        config.apply_attributes(spec);
        config.resolve_ordered_by(spec)?;
        for (key, value) in overrides {
            config.apply_override(key, value)?;
        }
        config.resolve_schedule(spec)?;
        config.check_once_retention()?;
        if config.min_workers > config.max_workers {
            return Err(ConfigError::invalid(
                &format!("functions.{}.min_workers", spec.name.to_lowercase()),
                format!(
                    "min_workers ({}) is above max_workers ({})",
                    config.min_workers, config.max_workers
                ),
            ));
        }
        Ok(config)
    }

    /// `ordered_by` as written on the function (the macro checked it; a `HandlerSpec` built by
    /// hand is checked here).
    fn resolve_ordered_by(&mut self, spec: &HandlerSpec) -> Result<(), ConfigError> {
        let Some(written) = spec.attrs.ordered_by else {
            return Ok(());
        };
        let path = format!("functions.{}.ordered_by", spec.name.to_lowercase());
        let ordered_by =
            OrderedBy::parse(written).map_err(|e| ConfigError::invalid(&path, e.to_string()))?;
        if spec.batch.is_some() {
            return Err(ConfigError::invalid(
                &path,
                "ordered_by cannot be used with batch",
            ));
        }
        self.ordered_by = Some(ordered_by);
        Ok(())
    }

    /// A scheduled function reads `jetfn.tick.<name>` in `JETFN_SCHEDULES`; its tick TTL
    /// defaults to the period, at most one hour.
    fn resolve_schedule(&mut self, spec: &HandlerSpec) -> Result<(), ConfigError> {
        let Some(written) = &self.schedule else {
            if self.schedule_ttl.is_some() {
                return Err(ConfigError::invalid(
                    &format!("functions.{}.schedule_ttl", spec.name.to_lowercase()),
                    "schedule_ttl applies to a scheduled function only",
                ));
            }
            return Ok(());
        };
        let expr: schedule::Expr = written.parse().map_err(|e: schedule::ExprError| {
            ConfigError::invalid(
                &format!("functions.{}.schedule", spec.name.to_lowercase()),
                e.to_string(),
            )
        })?;
        self.subject = schedule::tick_subject(&self.name);
        self.stream = Some(schedule::STREAM.to_owned());
        if self.schedule_ttl.is_none() {
            self.schedule_ttl = Some(schedule::default_ttl(&expr));
        }
        Ok(())
    }

    /// The longest a message of this function can go from its first delivery to its last:
    /// every retry delay (with the most jitter) and, for each delivery, the longer of
    /// `timeout` (a run) and `ack_wait` (a crashed pod's redelivery).
    pub fn retry_span(&self) -> Duration {
        let schedule = crate::policy::retry::RetrySchedule::new(
            self.backoff.initial,
            self.backoff.max,
            crate::policy::retry::RetrySchedule::DEFAULT_JITTER,
        )
        .unwrap_or(crate::policy::retry::RetrySchedule::DEFAULT);
        let delays = (1..self.max_deliver)
            .map(|attempt| {
                schedule
                    .base_delay(attempt)
                    .mul_f64(1.0 + crate::policy::retry::RetrySchedule::DEFAULT_JITTER)
            })
            .fold(Duration::ZERO, Duration::saturating_add);
        let runs = self
            .timeout
            .max(self.ack_wait)
            .saturating_mul(self.max_deliver);
        delays.saturating_add(runs)
    }

    /// A once-only step's record must outlive every delivery of its message, else a late
    /// retry would run the step again.
    fn check_once_retention(&self) -> Result<(), ConfigError> {
        let span = self.retry_span();
        if self.once_retention > span {
            return Ok(());
        }
        Err(ConfigError::invalid(
            &format!("functions.{}.once_retention", self.name.to_lowercase()),
            format!(
                "once_retention ({}) must exceed the function's whole retry schedule ({}: \
                 max_deliver {} x max(timeout, ack_wait) plus the backoff delays); raise \
                 once_retention or shorten the schedule",
                humantime::format_duration(self.once_retention),
                humantime::format_duration(span),
                self.max_deliver
            ),
        ))
    }

    /// A scheduled function's next firing, for `list`.
    pub(crate) fn next_firing(&self, now: std::time::SystemTime) -> Option<String> {
        let expr: schedule::Expr = self.schedule.as_ref()?.parse().ok()?;
        Some(expr.describe_next(now))
    }

    /// The schedule to write on the server, for a scheduled function.
    pub(crate) fn wanted_schedule(&self) -> Option<schedule::Wanted> {
        let written = self.schedule.clone()?;
        let expr = written.parse().ok()?;
        Some(schedule::Wanted {
            function: self.name.clone(),
            ttl: self
                .schedule_ttl
                .unwrap_or_else(|| schedule::default_ttl(&expr)),
            written,
            expr,
        })
    }

    fn apply_attributes(&mut self, spec: &HandlerSpec) {
        let attrs = &spec.attrs;
        if let Some(schedule) = attrs.schedule {
            self.schedule = Some(schedule.to_owned());
        }
        if let Some(ttl) = attrs.schedule_ttl {
            self.schedule_ttl = Some(ttl);
        }
        if let Some(stream) = attrs.stream {
            self.stream = Some(stream.to_owned());
        }
        if let Some((initial, max)) = attrs.backoff {
            self.backoff = Backoff { initial, max };
        }
        if let Some(dlq) = attrs.dlq {
            self.dlq = dlq.to_owned();
        }
        let set = |target: &mut u32, value: Option<u32>| *target = value.unwrap_or(*target);
        set(&mut self.max_deliver, attrs.max_deliver);
        set(&mut self.min_workers, attrs.min_workers);
        set(&mut self.max_workers, attrs.max_workers);
        set(&mut self.max_ack_pending, attrs.max_ack_pending);
        set(&mut self.breaker_failures, attrs.breaker_failures);
        if self.batch_handler.is_some() {
            self.batch = Some(attrs.batch.unwrap_or(1));
        }
        let set =
            |target: &mut Duration, value: Option<Duration>| *target = value.unwrap_or(*target);
        set(&mut self.ack_wait, attrs.ack_wait);
        set(&mut self.timeout, attrs.timeout);
        set(&mut self.breaker_cooldown, attrs.breaker_cooldown);
        set(&mut self.batch_wait, attrs.batch_wait);
        set(&mut self.once_retention, attrs.once_retention);
    }

    fn apply_override(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let path = format!("functions.{}.{key}", self.name.to_lowercase());
        let path = path.as_str();
        match key {
            "subject" => self.subject = value::subject(path, value, true)?,
            "dlq" => self.dlq = value::subject(path, value, false)?,
            "stream" => {
                subject::validate_name(value)
                    .map_err(|e| ConfigError::invalid(path, e.to_string()))?;
                self.stream = Some(value.to_owned());
            }
            "schedule" => self.schedule = Some(value.to_owned()),
            "schedule_ttl" => self.schedule_ttl = Some(duration(path, value)?),
            "max_deliver" => self.max_deliver = integer(path, value, 1)?,
            "min_workers" => self.min_workers = integer(path, value, 1)?,
            "max_workers" => self.max_workers = integer(path, value, 1)?,
            "max_ack_pending" => self.max_ack_pending = integer(path, value, 1)?,
            "breaker_failures" => self.breaker_failures = integer(path, value, 0)?,
            "ack_wait" => self.ack_wait = duration(path, value)?,
            "timeout" => self.timeout = duration(path, value)?,
            "breaker_cooldown" => self.breaker_cooldown = duration(path, value)?,
            "prefetch" => self.prefetch = duration(path, value)?,
            "prefetch_bytes" => self.prefetch_bytes = integer(path, value, 1)?,
            "batch" | "batch_wait" if self.batch_handler.is_none() => {
                return Err(ConfigError::invalid(
                    path,
                    format!(
                        "`{key}` applies to batch functions only (`batch = N` and a `Batch<T>` parameter)"
                    ),
                ))
            }
            "batch" => self.batch = Some(integer(path, value, 1)?),
            "batch_wait" => self.batch_wait = duration(path, value)?,
            "backoff" => {
                let (initial, max) = value::backoff(path, value)?;
                self.backoff = Backoff { initial, max };
            }
            "once_retention" => self.once_retention = duration(path, value)?,
            _ => {
                return Err(ConfigError::invalid(
                    path,
                    value::unknown_key(key, keys::event_override_keys()),
                ))
            }
        }
        Ok(())
    }
}
