//! How many deliveries of one function may run at once, and how many do.

use std::sync::atomic::{AtomicUsize, Ordering};
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

#[cfg(test)]
mod tests {
    use super::*;

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
