//! How many messages to have requested ahead: bounded by the time of work they stand for.
//!
//! Little's law: a pod that finishes `capacity` messages a second needs `capacity × window`
//! messages on their way to stay busy while a pull request travels. The window is twice the
//! measured pull round trip (one request in flight while the other drains; at least
//! [`Prefetch::MIN_WINDOW`]) and never more than the function's `prefetch`: so fetched-but-not-started
//! messages stand for at most `prefetch` of work, and another pod gets the rest. A no-op handler
//! gets hundreds ahead (large, cheap pull requests); a 10 ms handler next to none. On top of that,
//! every free worker gets one message (a pod with free workers always has a request waiting), the
//! total never exceeds `max_ack_pending`, and the bytes requested stay within `prefetch_bytes`
//! (pull requests carry `max_bytes`), so large payloads cannot fill the memory.

use std::time::Duration;

/// What to have requested in all: messages and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Want {
    pub(crate) messages: usize,
    pub(crate) bytes: usize,
}

impl Want {
    /// At most `messages` messages.
    pub(crate) fn at_most(self, messages: usize) -> Self {
        Self {
            messages: self.messages.min(messages),
            ..self
        }
    }
}

/// The observed handler time, message size and round trip of one function, and its bounds.
#[derive(Debug, Clone)]
pub(crate) struct Prefetch {
    /// The most time of work to hold fetched but not started (the `prefetch` setting).
    limit: Duration,
    /// The most bytes requested and not yet started (the `prefetch_bytes` setting).
    max_bytes: usize,
    /// `max_ack_pending`: the server hands out no more anyway.
    max_messages: usize,
    /// Moving average of a delivery's time in the loop or in its task, nanoseconds; `None`
    /// until the first delivery finished (until then nothing is asked for ahead).
    service_nanos: Option<f64>,
    /// Moving average of a message's size as the server counts it, bytes.
    size: f64,
    /// Moving average of the pull round trip, nanoseconds.
    round_trip_nanos: f64,
}

impl Prefetch {
    /// The shortest window: below it requests get small and the server works per request.
    pub(crate) const MIN_WINDOW: Duration = Duration::from_millis(1);
    /// Before any measurement: a 1 ms round trip, 1 KiB messages.
    const INITIAL_ROUND_TRIP: f64 = 1e6;
    const INITIAL_SIZE: f64 = 1024.0;
    /// Weight of a new sample in the moving averages (~the last 16 samples).
    const WEIGHT: f64 = 1.0 / 16.0;

    pub(crate) fn new(limit: Duration, max_bytes: usize, max_ack_pending: u32) -> Self {
        Self {
            limit,
            max_bytes,
            max_messages: max_ack_pending as usize,
            service_nanos: None,
            size: Self::INITIAL_SIZE,
            round_trip_nanos: Self::INITIAL_ROUND_TRIP,
        }
    }

    /// Records how long one delivery kept its worker (or the loop, when run inline).
    pub(crate) fn observe_service(&mut self, took: Duration) {
        let sample = took.as_nanos() as f64;
        match &mut self.service_nanos {
            Some(service) => average(service, sample),
            None => self.service_nanos = Some(sample),
        }
    }

    /// Records the size of a received message.
    pub(crate) fn observe_size(&mut self, bytes: usize) {
        average(&mut self.size, bytes as f64);
    }

    /// Records the time from a pull request to its first message.
    pub(crate) fn observe_round_trip(&mut self, took: Duration) {
        average(&mut self.round_trip_nanos, took.as_nanos() as f64);
    }

    /// The measured pull round trip.
    pub(crate) fn round_trip(&self) -> Duration {
        Duration::from_nanos(self.round_trip_nanos.round() as u64)
    }

    /// The window of work to have on its way: twice the round trip, within
    /// [`MIN_WINDOW`](Self::MIN_WINDOW)..`prefetch`.
    pub(crate) fn window(&self) -> Duration {
        (self.round_trip() * 2)
            .max(Self::MIN_WINDOW)
            .min(self.limit)
    }

    /// Messages to request ahead of the free workers when `parallel` deliveries run at once;
    /// none before the first delivery has shown how long one takes (a slow handler's pod must
    /// not hoard at start-up).
    pub(crate) fn ahead(&self, parallel: usize) -> usize {
        let Some(service) = self.service_nanos else {
            return 0;
        };
        let capacity = parallel.max(1) as f64 / service.max(1.0) * 1e9;
        (capacity * self.window().as_secs_f64()).ceil() as usize
    }

    /// What to have requested in all, with `free` workers idle and `parallel` deliveries able to
    /// run at once; nothing when no worker is free (the server keeps the messages for others).
    pub(crate) fn want(&self, free: usize, parallel: usize) -> Want {
        if free == 0 {
            return Want {
                messages: 0,
                bytes: 0,
            };
        }
        let by_bytes = (self.max_bytes as f64 / self.size.max(1.0)).floor() as usize;
        let messages = (free + self.ahead(parallel))
            .min(self.max_messages)
            .min(by_bytes.max(free));
        Want {
            messages: messages.max(1),
            bytes: self.max_bytes,
        }
    }
}

fn average(value: &mut f64, sample: f64) {
    *value += (sample - *value) * Prefetch::WEIGHT;
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn trained(service: Duration, round_trip: Duration, size: usize) -> Prefetch {
        let mut prefetch = Prefetch::new(5 * MS, 8 << 20, 1000);
        for _ in 0..1000 {
            prefetch.observe_service(service);
            prefetch.observe_round_trip(round_trip);
            prefetch.observe_size(size);
        }
        prefetch
    }

    #[test]
    fn a_no_op_handler_gets_hundreds_ahead() {
        // 3 µs per delivery, run one at a time in the loop, 200 µs round trip: 1 ms window.
        let prefetch = trained(Duration::from_micros(3), Duration::from_micros(200), 128);
        assert_eq!(prefetch.window(), Prefetch::MIN_WINDOW);
        let want = prefetch.want(16, 1);
        assert!((300..=400).contains(&want.messages), "{want:?}");
    }

    #[test]
    fn a_10ms_handler_gets_next_to_none() {
        let prefetch = trained(10 * MS, Duration::from_micros(200), 128);
        // 16 workers x 10 ms: 1,600 msg/s x 1 ms = 2 ahead of the free workers.
        let ahead = prefetch.want(16, 16).messages - 16;
        assert!((2..=3).contains(&ahead), "{ahead}");
        assert_eq!(prefetch.want(1, 16).messages, 1 + ahead);
    }

    #[test]
    fn the_window_follows_the_round_trip_up_to_prefetch() {
        let far = trained(10 * MS, 2 * MS, 128);
        assert_eq!(far.window(), 4 * MS);
        let very_far = trained(10 * MS, 20 * MS, 128);
        assert_eq!(very_far.window(), 5 * MS, "never beyond prefetch");
        // 1,600 msg/s x 5 ms = 8 messages of work held at most (the averages are approximate).
        let ahead = very_far.want(16, 16).messages - 16;
        assert!((8..=9).contains(&ahead), "{ahead}");
    }

    #[test]
    fn nothing_ahead_before_the_first_delivery_then_the_first_sample_counts_in_full() {
        let mut prefetch = Prefetch::new(5 * MS, 8 << 20, 1000);
        assert_eq!(prefetch.want(16, 16).messages, 16, "only the free workers");
        prefetch.observe_service(20 * MS);
        // 16 x 20 ms = 800 msg/s x the 2 ms window (the initial 1 ms round trip, doubled).
        let ahead = prefetch.want(16, 16).messages - 16;
        assert!((1..=2).contains(&ahead), "{ahead}");
    }

    #[test]
    fn no_free_worker_asks_for_nothing() {
        let prefetch = trained(Duration::from_micros(3), Duration::from_micros(200), 128);
        assert_eq!(prefetch.want(0, 16).messages, 0);
    }

    #[test]
    fn bounded_by_max_ack_pending_and_bytes() {
        let mut fast = Prefetch::new(5 * MS, 8 << 20, 100);
        for _ in 0..1000 {
            fast.observe_service(Duration::from_micros(1));
            fast.observe_round_trip(2 * MS);
        }
        assert_eq!(fast.want(16, 1).messages, 100, "max_ack_pending");
        // 1 MiB messages and an 8 MiB budget: 8 at most (but every free worker gets one).
        let large = trained(Duration::from_micros(50), 2 * MS, 1 << 20);
        assert_eq!(large.want(4, 1).messages, 8);
        assert_eq!(large.want(16, 16).messages, 16);
        assert_eq!(large.want(4, 1).bytes, 8 << 20);
    }
}
