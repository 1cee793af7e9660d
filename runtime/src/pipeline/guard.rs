//! The panic guard, the timeout and the in-progress acks around a call.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use futures::FutureExt;
use tokio::time::Instant;

use crate::delivered::Delivered;
use crate::policy::Failure;

/// A function's bounds on one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Guard {
    /// The bound on one call (the function's `timeout`).
    pub(crate) timeout: Duration,
    /// How often the messages of a running call get an in-progress ack (`ack_wait / 2`).
    pub(crate) keep_alive: Duration,
}

impl Guard {
    /// Runs the future `make` returns with the timeout, a panic guard (a panic in `make`, in a
    /// layer or in the handler is a [`Failure::Panic`]), and in-progress acks for every message
    /// it works on (none for a request).
    pub(crate) async fn run<R, Fut>(
        &self,
        make: impl FnOnce() -> Fut,
        alive: &[Delivered],
    ) -> Result<R, Failure>
    where
        Fut: Future<Output = R>,
    {
        let future = match std::panic::catch_unwind(AssertUnwindSafe(make)) {
            Ok(future) => AssertUnwindSafe(future).catch_unwind(),
            Err(panic) => return Err(Failure::Panic(panic_message(panic.as_ref()))),
        };
        let outcome = |result: Result<R, Box<dyn std::any::Any + Send>>| {
            result.map_err(|panic| Failure::Panic(panic_message(panic.as_ref())))
        };
        let mut future = std::pin::pin!(future);
        // Most handlers that do no I/O finish on their first poll: no timers for them.
        if let Some(result) = (&mut future).now_or_never() {
            return outcome(result);
        }
        // Boxed: the timers would otherwise make (and move) every delivery's future larger.
        Box::pin(self.supervise(future, alive))
            .await
            .and_then(outcome)
    }

    /// Polls a call that did not finish at once until it ends or times out, sending in-progress
    /// acks for `alive` every `keep_alive`.
    async fn supervise<T>(
        &self,
        mut future: std::pin::Pin<&mut impl Future<Output = T>>,
        alive: &[Delivered],
    ) -> Result<T, Failure> {
        let keep_alive = self.keep_alive;
        let mut progress = tokio::time::interval_at(Instant::now() + keep_alive, keep_alive);
        let deadline = tokio::time::sleep(self.timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                result = &mut future => return Ok(result),
                () = &mut deadline => return Err(Failure::Timeout(self.timeout)),
                _ = progress.tick(), if !alive.is_empty() => keep_alive_all(alive).await,
            }
        }
    }
}

/// Sends an in-progress ack for each message (a failure only means the server may redeliver).
pub(crate) async fn keep_alive_all(messages: &[Delivered]) {
    for message in messages {
        if let Err(error) = message.ack_with(AckKind::Progress).await {
            tracing::debug!(%error, "in-progress ack failed");
        }
    }
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard {
            timeout: Duration::from_millis(50),
            keep_alive: Duration::from_millis(10),
        }
    }

    #[test]
    fn panic_messages() {
        assert_eq!(panic_message(&"boom"), "boom");
        assert_eq!(panic_message(&String::from("bang")), "bang");
        assert_eq!(panic_message(&42), "a panic with a non-string payload");
    }

    #[tokio::test(start_paused = true)]
    async fn a_panic_while_making_or_polling_is_a_failure_with_its_message() {
        let made = guard()
            .run(|| -> std::future::Ready<()> { panic!("in make") }, &[])
            .await;
        assert!(matches!(made, Err(Failure::Panic(m)) if m == "in make"));
        let polled = guard()
            .run(
                || async {
                    tokio::task::yield_now().await;
                    panic!("in poll {}", 1)
                },
                &[],
            )
            .await;
        assert!(matches!(polled, Err(Failure::Panic(m)) if m == "in poll 1"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_timeout_bounds_a_slow_call_and_a_quick_one_passes() {
        let slow = guard()
            .run(|| tokio::time::sleep(Duration::from_secs(1)), &[])
            .await;
        assert!(matches!(slow, Err(Failure::Timeout(_))));
        let quick = guard()
            .run(
                || async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    7
                },
                &[],
            )
            .await;
        assert!(matches!(quick, Ok(7)));
    }
}
