//! The worker-count controller of one function, between `min_workers` and `max_workers`.
//!
//! Every tick it looks at the busy workers and the backlog (the consumer's `num_pending`):
//! - a backlog of at least one message per worker, or every worker busy with a backlog waiting:
//!   grow to as many workers as there are messages waiting, at least double (at most
//!   `max_workers`): a large burst gets `max_workers` on the first tick, a trickle grows step by
//!   step. (Short handlers are rarely caught busy by a snapshot; the backlog is what shows they
//!   lag.)
//! - no backlog and fewer than half the workers busy for [`SCALE_DOWN_AFTER`]: halve them (never
//!   below the busy count or `min_workers`), one step per period.

use std::time::Duration;

use tokio::time::Instant;

/// How often the controller looks.
pub(crate) const TICK: Duration = Duration::from_millis(200);
/// How long workers must stay mostly idle before a step down.
pub(crate) const SCALE_DOWN_AFTER: Duration = Duration::from_secs(5);

/// What the controller sees on a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Observation {
    /// Deliveries running now.
    pub busy: u32,
    /// Messages waiting in the stream for this consumer.
    pub backlog: u64,
}

/// A worker-count controller.
#[derive(Debug, Clone)]
pub(crate) struct Autoscaler {
    min: u32,
    max: u32,
    current: u32,
    idle_since: Option<Instant>,
}

impl Autoscaler {
    /// Starts at `min` workers (`min` is raised to 1, `max` to `min`).
    pub(crate) fn new(min: u32, max: u32) -> Self {
        let min = min.max(1);
        Self {
            min,
            max: max.max(min),
            current: min,
            idle_since: None,
        }
    }

    /// The worker count now.
    #[cfg(test)]
    pub(crate) fn current(&self) -> u32 {
        self.current
    }

    /// Takes one observation at `now`; returns the worker count to use.
    pub(crate) fn observe(&mut self, seen: Observation, now: Instant) -> u32 {
        let lagging = seen.backlog >= u64::from(self.current)
            || (seen.busy >= self.current && seen.backlog > 0);
        if lagging {
            let backlog = u32::try_from(seen.backlog).unwrap_or(u32::MAX);
            self.current = self.current.saturating_mul(2).max(backlog).min(self.max);
            self.idle_since = None;
        } else if seen.backlog == 0
            && seen.busy.saturating_mul(2) < self.current
            && self.current > self.min
        {
            let since = *self.idle_since.get_or_insert(now);
            if now.duration_since(since) >= SCALE_DOWN_AFTER {
                self.current = (self.current / 2).max(seen.busy).max(self.min);
                self.idle_since = Some(now);
            }
        } else {
            self.idle_since = None;
        }
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(busy: u32, backlog: u64) -> Observation {
        Observation { busy, backlog }
    }

    #[tokio::test(start_paused = true)]
    async fn a_large_backlog_gets_max_workers_on_the_first_tick() {
        let mut scaler = Autoscaler::new(1, 16);
        let mut counts = Vec::new();
        for _ in 0..3 {
            let current = scaler.current();
            counts.push(scaler.observe(busy(current, 500), Instant::now()));
            tokio::time::advance(TICK).await;
        }
        assert_eq!(counts, [16, 16, 16]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_small_backlog_grows_workers_to_its_size_at_least_doubling() {
        let mut scaler = Autoscaler::new(1, 64);
        let mut counts = Vec::new();
        for backlog in [1, 3, 5, 20, 300] {
            let current = scaler.current();
            counts.push(scaler.observe(busy(current, backlog), Instant::now()));
            tokio::time::advance(TICK).await;
        }
        assert_eq!(counts, [2, 4, 8, 20, 64]);
    }

    #[tokio::test(start_paused = true)]
    async fn growth_needs_a_backlog_worth_the_workers() {
        let mut scaler = Autoscaler::new(2, 16);
        assert_eq!(
            scaler.observe(busy(2, 0), Instant::now()),
            2,
            "no backlog: no growth"
        );
        assert_eq!(
            scaler.observe(busy(1, 1), Instant::now()),
            2,
            "a free worker, one waiting"
        );
        assert_eq!(
            scaler.observe(busy(0, 10), Instant::now()),
            10,
            "never seen busy, but lagging: as many as are waiting"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_backlog_holds_the_workers_up() {
        let mut scaler = Autoscaler::new(1, 16);
        while scaler.current() < 16 {
            scaler.observe(busy(0, 1000), Instant::now());
        }
        for _ in 0..100 {
            tokio::time::advance(TICK).await;
            assert_eq!(
                scaler.observe(busy(0, 3), Instant::now()),
                16,
                "backlog left: no step down"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idleness_steps_down_to_min_one_period_at_a_time() {
        let mut scaler = Autoscaler::new(2, 16);
        while scaler.current() < 16 {
            scaler.observe(busy(scaler.current(), 1000), Instant::now());
        }
        let start = Instant::now();
        let mut steps = Vec::new();
        while tokio::time::Instant::now() - start < SCALE_DOWN_AFTER * 5 {
            let before = scaler.current();
            let after = scaler.observe(busy(0, 0), Instant::now());
            if after != before {
                steps.push((after, (Instant::now() - start).as_secs()));
            }
            tokio::time::advance(TICK).await;
        }
        assert_eq!(steps, [(8, 5), (4, 10), (2, 15)]);
    }

    #[tokio::test(start_paused = true)]
    async fn busy_workers_are_never_cut_and_work_resets_the_idle_timer() {
        let mut scaler = Autoscaler::new(1, 16);
        while scaler.current() < 16 {
            scaler.observe(busy(scaler.current(), 1000), Instant::now());
        }
        scaler.observe(busy(7, 0), Instant::now());
        tokio::time::advance(SCALE_DOWN_AFTER).await;
        assert_eq!(
            scaler.observe(busy(7, 0), Instant::now()),
            8,
            "halved, not below busy"
        );
        tokio::time::advance(SCALE_DOWN_AFTER - TICK).await;
        assert_eq!(
            scaler.observe(busy(8, 0), Instant::now()),
            8,
            "half busy: timer reset"
        );
        tokio::time::advance(SCALE_DOWN_AFTER).await;
        assert_eq!(
            scaler.observe(busy(3, 0), Instant::now()),
            8,
            "timer restarted"
        );
    }

    #[test]
    fn bounds_are_sane() {
        let scaler = Autoscaler::new(0, 0);
        assert_eq!(scaler.current(), 1);
    }
}
