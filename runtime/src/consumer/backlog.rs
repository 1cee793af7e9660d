//! When the autoscaler reads the consumer's `num_pending` from the server.
//!
//! Every delivery carries the consumer's `num_pending` in its metadata and sets
//! `jetfn_consumer_pending` from it; and a pull request waiting at the server with nothing
//! delivered means nothing is pending. So while messages flow, or while a pod idles with its
//! request waiting, asking the server tells nothing new. It is asked only when the answer carries
//! information:
//! - on the first tick of a binding: a backlog waiting before the pod started is seen at once;
//! - every [`EVERY`] while the breaker holds the consumer back (nothing is delivered then);
//! - every [`EVERY`] while every worker is busy and no delivery started for [`QUIET`]: a backlog
//!   behind busy workers waits at the server, unseen by deliveries;
//! - else once per [`SAFETY_NET`] (messages that left the stream undelivered: a purge, limits),
//!   at an offset of its own so that many functions do not ask at the same moment.

use std::time::Duration;

use tokio::time::Instant;

/// How often the server is asked while a poll carries information.
pub(super) const EVERY: Duration = Duration::from_secs(1);
/// How long all workers must be busy with no delivery starting before the server is asked.
pub(super) const QUIET: Duration = Duration::from_secs(1);
/// The longest time between two polls.
pub(super) const SAFETY_NET: Duration = Duration::from_secs(60);

/// What the autoscaler sees on a tick, for [`Polls::due`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seen {
    /// The breaker holds the consumer back: paused, or a trial running.
    pub(super) held_back: bool,
    /// Every worker is busy.
    pub(super) all_busy: bool,
    /// How many deliveries have reported `num_pending` so far (a counter).
    pub(super) reported: u64,
}

/// When the next poll of `num_pending` is due.
#[derive(Debug)]
pub(super) struct Polls {
    last: Option<Instant>,
    next_safety: Instant,
    reported: u64,
    /// When the last delivery reported `num_pending` (or polling began).
    quiet_since: Instant,
}

impl Polls {
    /// Polls from `now` on; the first safety-net poll comes `offset` (less than [`SAFETY_NET`])
    /// after the first one, the next ones every [`SAFETY_NET`].
    pub(super) fn new(now: Instant, offset: Duration) -> Self {
        Self {
            last: None,
            next_safety: now + offset.min(SAFETY_NET),
            reported: 0,
            quiet_since: now,
        }
    }

    /// A random offset in `[0, SAFETY_NET)`.
    pub(super) fn random_offset() -> Duration {
        SAFETY_NET.mul_f64(rand::random::<f64>())
    }

    /// Whether to ask the server now; a `true` counts as a poll made at `now`.
    pub(super) fn due(&mut self, seen: Seen, now: Instant) -> bool {
        if seen.reported != self.reported {
            self.reported = seen.reported;
            self.quiet_since = now;
        }
        let due = match self.last {
            None => true,
            Some(_) if now >= self.next_safety => true,
            Some(last) => {
                let quiet = now.saturating_duration_since(self.quiet_since) >= QUIET;
                now.saturating_duration_since(last) >= EVERY
                    && (seen.held_back || (seen.all_busy && quiet))
            }
        };
        if due {
            // The first poll keeps the offset of the first safety-net poll.
            if self.last.is_some() {
                self.next_safety = now + SAFETY_NET;
            }
            self.last = Some(now);
        }
        due
    }

    /// The poll just made failed: try again after [`EVERY`] rather than wait for the safety net.
    pub(super) fn failed(&mut self, now: Instant) {
        self.next_safety = self.next_safety.min(now + EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Seen = Seen {
        held_back: false,
        all_busy: false,
        reported: 0,
    };

    /// The ticks (every 200 ms, as the autoscaler's) in `[from, to)` at which a poll is due.
    fn polls(
        polls: &mut Polls,
        start: Instant,
        seen: impl Fn(Duration) -> Seen,
        to: Duration,
    ) -> Vec<Duration> {
        let tick = Duration::from_millis(200);
        let mut due = Vec::new();
        let mut at = Duration::ZERO;
        while at < to {
            if polls.due(seen(at), start + at) {
                due.push(at);
            }
            at += tick;
        }
        due
    }

    #[test]
    fn an_idle_consumer_is_polled_at_start_then_once_per_safety_net() {
        let start = Instant::now();
        let mut idle = Polls::new(start, Duration::from_secs(10));
        let due = polls(&mut idle, start, |_| IDLE, Duration::from_secs(200));
        assert_eq!(
            due,
            [0, 10, 70, 130, 190].map(Duration::from_secs),
            "start, the offset, then every SAFETY_NET"
        );
    }

    #[test]
    fn a_held_back_consumer_is_polled_every_second() {
        let start = Instant::now();
        let mut paused = Polls::new(start, Duration::from_secs(59));
        let held_back = |at: Duration| Seen {
            held_back: at >= Duration::from_secs(3) && at < Duration::from_secs(6),
            ..IDLE
        };
        let due = polls(&mut paused, start, held_back, Duration::from_secs(10));
        assert_eq!(due, [0, 3, 4, 5].map(Duration::from_secs));
    }

    #[test]
    fn busy_workers_are_polled_for_once_deliveries_stop_reporting() {
        let start = Instant::now();
        let mut busy = Polls::new(start, Duration::from_secs(59));
        // Deliveries report until 2 s; every worker is busy from 1 s on.
        let seen = |at: Duration| Seen {
            all_busy: at >= Duration::from_secs(1),
            reported: at.min(Duration::from_secs(2)).as_millis() as u64,
            ..IDLE
        };
        let due = polls(&mut busy, start, seen, Duration::from_secs(6));
        assert_eq!(due, [0, 3, 4, 5].map(Duration::from_secs));
    }

    #[test]
    fn busy_workers_whose_deliveries_report_are_not_polled_for() {
        let start = Instant::now();
        let mut flowing = Polls::new(start, Duration::from_secs(59));
        let seen = |at: Duration| Seen {
            all_busy: true,
            reported: at.as_millis() as u64,
            ..IDLE
        };
        let due = polls(&mut flowing, start, seen, Duration::from_secs(30));
        assert_eq!(due, [Duration::ZERO]);
    }

    #[test]
    fn a_failed_poll_is_retried_after_a_second() {
        let start = Instant::now();
        let mut failing = Polls::new(start, Duration::from_secs(30));
        assert!(failing.due(IDLE, start));
        failing.failed(start);
        let due = polls(&mut failing, start, |_| IDLE, Duration::from_secs(3));
        assert_eq!(due, [Duration::from_secs(1)]);
    }
}
