//! How many deliveries of one function may run at once, and how many do.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// The worker count (set by the autoscaler) and the busy count.
#[derive(Debug)]
pub(crate) struct Workers {
    target: AtomicUsize,
    busy: AtomicUsize,
    changed: Notify,
}

/// A running delivery; dropping it frees the worker.
#[derive(Debug)]
pub(crate) struct Busy(Arc<Workers>);

impl Workers {
    pub(crate) fn new(target: usize) -> Arc<Self> {
        Arc::new(Self {
            target: AtomicUsize::new(target),
            busy: AtomicUsize::new(0),
            changed: Notify::new(),
        })
    }

    /// Workers that could start a delivery now.
    pub(crate) fn free(&self) -> usize {
        self.target().saturating_sub(self.busy())
    }

    pub(crate) fn target(&self) -> usize {
        self.target.load(Ordering::SeqCst)
    }

    pub(crate) fn busy(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }

    pub(crate) fn set_target(&self, target: usize) {
        if self.target.swap(target, Ordering::SeqCst) != target {
            self.changed.notify_one();
        }
    }

    /// Marks one more delivery as running.
    pub(crate) fn start(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// Resolves after a worker was freed or the target changed (or at once, if that happened
    /// since the last call).
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_one();
    }
}

/// How long the latest delivery that ran as a task took, handed from the task to the loop.
///
/// One value, not a queue: the loop samples what tasks report (a moving average does not need
/// every sample), and a task only stores.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServiceTimes(Arc<AtomicU64>);

impl ServiceTimes {
    /// Reports a task's time (called once per delivery that ran as a task).
    pub(crate) fn record(&self, took: std::time::Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.0.store(nanos, Ordering::Relaxed);
    }

    /// The latest report not yet taken.
    pub(crate) fn take(&self) -> Option<std::time::Duration> {
        match self.0.swap(0, Ordering::Relaxed) {
            0 => None,
            nanos => Some(std::time::Duration::from_nanos(nanos)),
        }
    }
}

/// Whether the pull loop may run a delivery's first poll itself.
///
/// A handler that finishes on its first poll without waiting is cheapest run right in the loop:
/// no task, no wake-ups. But a handler that computes for long before its first `.await` would
/// hold the loop and run deliveries one after another instead of on all the runtime's threads.
/// So the loop remembers which of its last 16 inline first polls were slow (over
/// [`Inline::SLOW_POLL`]) and, while two or more were, hands deliveries to tasks instead, trying
/// inline again now and then to notice when handlers got quick again.
///
/// Two, not one: the time is wall-clock time, and on a busy machine the loop's thread is
/// preempted in the middle of a 2 µs poll every few hundred deliveries. Counting that one poll
/// sent the next 256 deliveries to tasks each time: 20–45 % of all deliveries of a no-op handler
/// in the benchmark on a shared 2-core machine, each paying a spawn and its wake-ups. A handler
/// that is slow before its first `.await` is slow more than once in 16.
#[derive(Debug, Default)]
pub(crate) struct Inline {
    /// One bit per recent inline first poll, the latest lowest: set when it was slow.
    slow: u16,
    /// Deliveries handed to tasks since inline was last tried.
    skipped: u32,
}

impl Inline {
    /// A first poll longer than this is slow.
    pub(crate) const SLOW_POLL: std::time::Duration = std::time::Duration::from_micros(100);
    /// Slow polls among the last 16 that stop inline.
    const SLOW_POLLS: u32 = 2;
    /// While inline is off, one delivery in this many is tried inline to re-measure.
    const RETRY_EVERY: u32 = 256;

    /// Should the next delivery's first poll run inline?
    pub(crate) fn allowed(&mut self) -> bool {
        if self.slow.count_ones() < Self::SLOW_POLLS {
            return true;
        }
        self.skipped += 1;
        if self.skipped >= Self::RETRY_EVERY {
            self.skipped = 0;
            return true;
        }
        false
    }

    /// Records how long an inline first poll took.
    pub(crate) fn observe(&mut self, took: std::time::Duration) {
        self.slow = (self.slow << 1) | u16::from(took > Self::SLOW_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn quick_first_polls_stay_inline_slow_ones_go_to_tasks_and_are_retried() {
        let mut inline = Inline::default();
        for _ in 0..100 {
            assert!(inline.allowed());
            inline.observe(Duration::from_micros(5));
        }
        // A handler that computes for 10 ms before it waits: off after its second such poll.
        assert!(inline.allowed());
        inline.observe(Duration::from_millis(10));
        assert!(inline.allowed(), "one slow poll may be a preemption");
        inline.observe(Duration::from_millis(10));
        let tried: usize = (0..1024).filter(|_| inline.allowed()).count();
        assert_eq!(tried, 4, "one in 256 is tried inline while it stays off");
        // Quick again: the retries push the slow polls out, and inline comes back.
        let mut polls = 0;
        while !inline.allowed() || polls == 0 {
            inline.observe(Duration::from_micros(5));
            polls += 1;
            assert!(polls < 100, "inline comes back after quick polls");
        }
    }

    #[test]
    fn a_lone_slow_poll_now_and_then_keeps_inline() {
        // A preempted thread: one poll in 50 takes milliseconds of wall time.
        let mut inline = Inline::default();
        for poll in 0..10_000 {
            assert!(inline.allowed(), "poll {poll}");
            let took = if poll % 50 == 49 { 4_000 } else { 2 };
            inline.observe(Duration::from_micros(took));
        }
        // Slow twice within 16 polls: off.
        inline.observe(Duration::from_millis(1));
        inline.observe(Duration::from_micros(2));
        inline.observe(Duration::from_millis(1));
        assert!(!inline.allowed());
    }

    #[tokio::test]
    async fn counts_free_workers_and_wakes_on_release() {
        let workers = Workers::new(2);
        let a = workers.start();
        let _b = workers.start();
        assert_eq!(workers.free(), 0);
        drop(a);
        assert_eq!(workers.free(), 1);
        tokio::time::timeout(std::time::Duration::from_secs(1), workers.changed())
            .await
            .expect("a release wakes the loop");
        workers.set_target(1);
        assert_eq!(workers.free(), 0);
    }
}
