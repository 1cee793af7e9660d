//! The breaker of one function as its deliveries share it: admission before a message starts,
//! the gate the pull loop reads, and the record of each run, with its gauge and logs.

use std::sync::{Arc, Mutex};

use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use super::{Admission, Breaker, Gate, Transition};

/// `None` inside when the breaker is off (`breaker_failures = 0`): no bookkeeping per message.
#[derive(Debug)]
pub(crate) struct SharedBreaker {
    breaker: Option<Mutex<Breaker>>,
    gauge: Gauge,
    function: Arc<str>,
}

impl SharedBreaker {
    pub(crate) fn new(
        function: Arc<str>,
        failures: u32,
        cooldown: std::time::Duration,
        gauge: Gauge,
    ) -> Self {
        let breaker = (failures > 0).then(|| Mutex::new(Breaker::new(failures, cooldown)));
        Self {
            breaker,
            gauge,
            function,
        }
    }

    /// What the loop should pull now.
    pub(crate) fn gate(&self) -> Gate {
        match self.breaker.as_ref().map(Mutex::lock) {
            Some(Ok(breaker)) => breaker.gate(Instant::now()),
            _ => Gate::Flow,
        }
    }

    /// May this just-arrived message start? (Turns an open breaker whose cool-down has passed
    /// half-open, with this message as the trial.)
    pub(crate) fn admit(&self) -> Admission {
        let Some(Ok(mut breaker)) = self.breaker.as_ref().map(Mutex::lock) else {
            return Admission::Go;
        };
        let admission = breaker.admit(Instant::now());
        self.gauge.set(breaker.state() as i64);
        admission
    }

    /// Records a run: `Some(success)`, or `None` when the outcome says nothing about the
    /// dependency (a permanent, undecodable or invalid message).
    pub(crate) fn record(&self, success: Option<bool>) {
        let Some(Ok(mut breaker)) = self.breaker.as_ref().map(Mutex::lock) else {
            return;
        };
        let Some(success) = success else {
            breaker.release_trial(Instant::now());
            return;
        };
        match breaker.record(success, Instant::now()) {
            Some(Transition::Opened(until)) => tracing::warn!(
                function = %self.function,
                cooldown = %humantime::format_duration(until - Instant::now()),
                "circuit breaker opened"
            ),
            Some(Transition::Closed) => {
                tracing::info!(function = %self.function, "circuit breaker closed")
            }
            None => {}
        }
        self.gauge.set(breaker.state() as i64);
    }
}
