//! The values a function has when neither its attribute nor configuration sets them.

use std::time::Duration;

/// `max_deliver`: deliveries before a failing message is dead-lettered.
pub const MAX_DELIVER: u32 = 5;
/// `backoff`: the first retry delay.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// `backoff`: the longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// `ack_wait`: how long the server waits for an ack before redelivering.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// `timeout` of an event function's handler.
pub const TIMEOUT: Duration = Duration::from_secs(300);
/// `min_workers`.
pub const MIN_WORKERS: u32 = 1;
/// `max_workers` of an event function.
pub const MAX_WORKERS: u32 = 16;
/// `max_ack_pending`.
pub const MAX_ACK_PENDING: u32 = 1000;
/// `breaker_failures` (0: no breaker).
pub const BREAKER_FAILURES: u32 = 0;
/// `breaker_cooldown`.
pub const BREAKER_COOLDOWN: Duration = Duration::from_secs(30);
/// `prefetch` (configuration only).
pub const PREFETCH: Duration = Duration::from_millis(5);
/// `prefetch_bytes` (configuration only).
pub const PREFETCH_BYTES: u32 = 8 << 20;
/// `batch_wait` of a batch function.
pub const BATCH_WAIT: Duration = Duration::from_millis(100);
/// `timeout` of a request function.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// `max_workers` of a request function.
pub const REQUEST_MAX_WORKERS: u32 = 64;
/// The longest default `schedule_ttl` (the default is the schedule's period, at most this).
pub const SCHEDULE_TTL_MAX: Duration = Duration::from_secs(3600);
