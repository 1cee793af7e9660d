//! The keys of `#[event_handler]` and `#[request_handler]`, the kind of value each takes, and the
//! keys a configuration override may set.

/// An attribute key. The order here is the order of the docs and of the error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)] // Each is the key of the same name (`Key::MaxDeliver`: `max_deliver`).
pub enum Key {
    Subject,
    Schedule,
    ScheduleTtl,
    Name,
    Stream,
    MaxDeliver,
    Backoff,
    AckWait,
    Timeout,
    MinWorkers,
    MaxWorkers,
    MaxAckPending,
    Dlq,
    BreakerFailures,
    BreakerCooldown,
    Batch,
    BatchWait,
    OnceRetention,
    OrderedBy,
}

/// The kind of value a key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string: a subject or a name.
    Str,
    /// A string holding a duration ([`crate::duration::parse_duration`]).
    Duration,
    /// A string holding `initial..max` ([`crate::duration::parse_backoff`]).
    Backoff,
    /// An unsigned integer.
    Int,
    /// A string holding a schedule ([`crate::schedule::Schedule`]).
    Schedule,
    /// A string holding an ordering key ([`crate::order::OrderedBy`]).
    OrderedBy,
}

impl Key {
    /// The keys of `#[event_handler]`, in the order of the docs.
    pub const ALL: [Key; 19] = [
        Key::Subject,
        Key::Schedule,
        Key::ScheduleTtl,
        Key::Name,
        Key::Stream,
        Key::MaxDeliver,
        Key::Backoff,
        Key::AckWait,
        Key::Timeout,
        Key::MinWorkers,
        Key::MaxWorkers,
        Key::MaxAckPending,
        Key::Dlq,
        Key::BreakerFailures,
        Key::BreakerCooldown,
        Key::Batch,
        Key::BatchWait,
        Key::OnceRetention,
        Key::OrderedBy,
    ];

    /// The key as written in the attribute and in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Key::Subject => "subject",
            Key::Schedule => "schedule",
            Key::ScheduleTtl => "schedule_ttl",
            Key::Name => "name",
            Key::Stream => "stream",
            Key::MaxDeliver => "max_deliver",
            Key::Backoff => "backoff",
            Key::AckWait => "ack_wait",
            Key::Timeout => "timeout",
            Key::MinWorkers => "min_workers",
            Key::MaxWorkers => "max_workers",
            Key::MaxAckPending => "max_ack_pending",
            Key::Dlq => "dlq",
            Key::BreakerFailures => "breaker_failures",
            Key::BreakerCooldown => "breaker_cooldown",
            Key::Batch => "batch",
            Key::BatchWait => "batch_wait",
            Key::OnceRetention => "once_retention",
            Key::OrderedBy => "ordered_by",
        }
    }

    /// The key written as `text`, if any.
    pub fn from_name(text: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|key| key.as_str() == text)
    }

    /// The kind of value the key takes.
    pub fn kind(self) -> Kind {
        match self {
            Key::Subject | Key::Name | Key::Stream | Key::Dlq => Kind::Str,
            Key::AckWait
            | Key::Timeout
            | Key::BreakerCooldown
            | Key::ScheduleTtl
            | Key::BatchWait
            | Key::OnceRetention => Kind::Duration,
            Key::Schedule => Kind::Schedule,
            Key::OrderedBy => Kind::OrderedBy,
            Key::Backoff => Kind::Backoff,
            Key::MaxDeliver
            | Key::MinWorkers
            | Key::MaxWorkers
            | Key::MaxAckPending
            | Key::BreakerFailures
            | Key::Batch => Kind::Int,
        }
    }

    /// A correct use of the key, for error messages.
    pub fn example(self) -> &'static str {
        match self {
            Key::Subject => "subject = \"orders.created\"",
            Key::Schedule => "schedule = \"@every 30s\"",
            Key::ScheduleTtl => "schedule_ttl = \"10m\"",
            Key::Name => "name = \"reserve-inventory\"",
            Key::Stream => "stream = \"ORDERS\"",
            Key::MaxDeliver => "max_deliver = 5",
            Key::Backoff => "backoff = \"100ms..60s\"",
            Key::AckWait => "ack_wait = \"30s\"",
            Key::Timeout => "timeout = \"10s\"",
            Key::MinWorkers => "min_workers = 1",
            Key::MaxWorkers => "max_workers = 16",
            Key::MaxAckPending => "max_ack_pending = 1000",
            Key::Dlq => "dlq = \"orders.dead\"",
            Key::BreakerFailures => "breaker_failures = 10",
            Key::BreakerCooldown => "breaker_cooldown = \"30s\"",
            Key::Batch => "batch = 100",
            Key::BatchWait => "batch_wait = \"100ms\"",
            Key::OnceRetention => "once_retention = \"7d\"",
            Key::OrderedBy => "ordered_by = \"subject\"",
        }
    }
}

/// The keys of `#[request_handler]`.
pub const REQUEST_KEYS: &[Key] = &[Key::Subject, Key::Name, Key::Timeout, Key::MaxWorkers];

/// Keys only configuration sets (no attribute): the pull prefetch of an event function.
pub const CONFIG_ONLY_EVENT_KEYS: &[&str] = &["prefetch", "prefetch_bytes"];

/// The keys a configuration override of an event function may set: every attribute key but
/// `name` (a function is overridden under its name) and `ordered_by` (whether a function keeps
/// per-key order is its code's decision, not a deployment's), then [`CONFIG_ONLY_EVENT_KEYS`].
pub fn event_override_keys() -> impl Iterator<Item = &'static str> + Clone {
    Key::ALL
        .into_iter()
        .filter(|key| !matches!(key, Key::Name | Key::OrderedBy))
        .map(Key::as_str)
        .chain(CONFIG_ONLY_EVENT_KEYS.iter().copied())
}

/// The keys a configuration override of a request function may set: [`REQUEST_KEYS`] but
/// `name`.
pub fn request_override_keys() -> impl Iterator<Item = &'static str> + Clone {
    REQUEST_KEYS
        .iter()
        .filter(|key| **key != Key::Name)
        .map(|key| key.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_examples_start_with_their_key() {
        for key in Key::ALL {
            assert_eq!(Key::from_name(key.as_str()), Some(key));
            assert!(key.example().starts_with(&format!("{} = ", key.as_str())));
        }
        assert_eq!(Key::from_name("retries"), None);
        assert!(REQUEST_KEYS.iter().all(|key| Key::ALL.contains(key)));
    }

    #[test]
    fn override_keys() {
        let event: Vec<_> = event_override_keys().collect();
        assert!(!event.contains(&"name"));
        assert!(event.contains(&"max_deliver") && event.contains(&"prefetch_bytes"));
        let request: Vec<_> = request_override_keys().collect();
        assert_eq!(request, ["subject", "timeout", "max_workers"]);
    }
}
