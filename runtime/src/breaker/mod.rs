//! The circuit breaker of one function.
//!
//! Closed: every message runs; `threshold` consecutive failures open it. Open: nothing runs
//! until `cooldown` has passed (the consumer loop pauses the server-side consumer for that long,
//! so messages wait in the stream without burning deliveries). Then half-open: exactly one trial
//! message runs; its success closes the breaker, its failure opens it again.
//!
//! Only failures that say something about a dependency count: errors, panics and timeouts.
//! Permanent errors and undecodable payloads are about the message, not the dependency.

mod shared;

use std::time::Duration;

use tokio::time::Instant;

pub(crate) use shared::SharedBreaker;

/// The breaker's state, as `jetfn_breaker_state` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BreakerState {
    /// Messages flow (0).
    Closed = 0,
    /// One trial message is allowed (1).
    HalfOpen = 1,
    /// Nothing runs until the cool-down ends (2).
    Open = 2,
}

/// Whether a message may start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Start it.
    Go,
    /// The breaker is open until then.
    WaitUntil(Instant),
    /// The half-open trial is still running: wait for its result.
    WaitForTrial,
}

/// What the consumer loop should pull, as the breaker stands (no state change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Closed: pull for every free worker.
    Flow,
    /// The cool-down is over: pull one message, the trial.
    Trial,
    /// Open: pull nothing until then.
    Paused(Instant),
    /// The trial is running: pull nothing until it ends.
    TrialRunning,
}

/// A state change worth acting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// The breaker opened (or re-opened after a failed trial) until then.
    Opened(Instant),
    /// A trial succeeded: the breaker closed.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// A consecutive-failure circuit breaker; `threshold == 0` never opens.
#[derive(Debug, Clone)]
pub(crate) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: State,
}

impl Breaker {
    /// Opens after `threshold` consecutive failures (0 = never) for `cooldown`.
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold,
            cooldown,
            state: State::Closed { failures: 0 },
        }
    }

    /// The state now.
    pub(crate) fn state(&self) -> BreakerState {
        match self.state {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen => BreakerState::HalfOpen,
        }
    }

    /// What to pull at `now`.
    pub(crate) fn gate(&self, now: Instant) -> Gate {
        match self.state {
            State::Closed { .. } => Gate::Flow,
            State::Open { until } if now >= until => Gate::Trial,
            State::Open { until } => Gate::Paused(until),
            State::HalfOpen => Gate::TrialRunning,
        }
    }

    /// The trial ended with an outcome that says nothing about the dependency (a permanent or
    /// decode error): let another message be the trial.
    pub(crate) fn release_trial(&mut self, now: Instant) {
        if self.state == State::HalfOpen {
            self.state = State::Open { until: now };
        }
    }

    /// May a message start at `now`? An open breaker whose cool-down has passed turns
    /// half-open and admits this one message as the trial.
    pub(crate) fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            State::Closed { .. } => Admission::Go,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen;
                Admission::Go
            }
            State::Open { until } => Admission::WaitUntil(until),
            State::HalfOpen => Admission::WaitForTrial,
        }
    }

    /// Records a handler run's result (`true` = success) at `now`.
    pub(crate) fn record(&mut self, success: bool, now: Instant) -> Option<Transition> {
        if self.threshold == 0 {
            return None;
        }
        match (self.state, success) {
            (State::Closed { .. }, true) => {
                self.state = State::Closed { failures: 0 };
                None
            }
            (State::Closed { failures }, false) if failures + 1 >= self.threshold => self.open(now),
            (State::Closed { failures }, false) => {
                self.state = State::Closed {
                    failures: failures + 1,
                };
                None
            }
            (State::HalfOpen, true) => {
                self.state = State::Closed { failures: 0 };
                Some(Transition::Closed)
            }
            (State::HalfOpen, false) => self.open(now),
            // Runs that started before the breaker opened do not move it.
            (State::Open { .. }, _) => None,
        }
    }

    fn open(&mut self, now: Instant) -> Option<Transition> {
        let until = now + self.cooldown;
        self.state = State::Open { until };
        Some(Transition::Opened(until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_only() {
        let mut breaker = Breaker::new(3, COOLDOWN);
        let now = Instant::now();
        assert_eq!(breaker.record(false, now), None);
        assert_eq!(breaker.record(false, now), None);
        assert_eq!(
            breaker.record(true, now),
            None,
            "a success resets the count"
        );
        assert_eq!(breaker.record(false, now), None);
        assert_eq!(breaker.record(false, now), None);
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.admit(now), Admission::Go);
        assert_eq!(
            breaker.record(false, now),
            Some(Transition::Opened(now + COOLDOWN))
        );
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.admit(now), Admission::WaitUntil(now + COOLDOWN));
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_cooldown_one_trial_decides() {
        let mut breaker = Breaker::new(1, COOLDOWN);
        let start = Instant::now();
        breaker.record(false, start);
        tokio::time::advance(COOLDOWN - Duration::from_millis(1)).await;
        assert!(matches!(
            breaker.admit(Instant::now()),
            Admission::WaitUntil(_)
        ));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(breaker.admit(Instant::now()), Admission::Go, "the trial");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert_eq!(
            breaker.admit(Instant::now()),
            Admission::WaitForTrial,
            "only one trial"
        );

        // A failed trial re-opens for another full cool-down.
        let failed_at = Instant::now();
        assert_eq!(
            breaker.record(false, failed_at),
            Some(Transition::Opened(failed_at + COOLDOWN))
        );
        tokio::time::advance(COOLDOWN).await;
        assert_eq!(breaker.admit(Instant::now()), Admission::Go);
        assert_eq!(
            breaker.record(true, Instant::now()),
            Some(Transition::Closed)
        );
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.admit(Instant::now()), Admission::Go);
    }

    #[tokio::test(start_paused = true)]
    async fn the_gate_follows_the_state_without_changing_it() {
        let mut breaker = Breaker::new(1, COOLDOWN);
        let start = Instant::now();
        assert_eq!(breaker.gate(start), Gate::Flow);
        breaker.record(false, start);
        assert_eq!(breaker.gate(start), Gate::Paused(start + COOLDOWN));
        tokio::time::advance(COOLDOWN).await;
        assert_eq!(breaker.gate(Instant::now()), Gate::Trial);
        assert_eq!(
            breaker.gate(Instant::now()),
            Gate::Trial,
            "gate() changes nothing"
        );
        assert_eq!(breaker.admit(Instant::now()), Admission::Go);
        assert_eq!(breaker.gate(Instant::now()), Gate::TrialRunning);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trial_that_proves_nothing_makes_way_for_another() {
        let mut breaker = Breaker::new(1, COOLDOWN);
        breaker.record(false, Instant::now());
        tokio::time::advance(COOLDOWN).await;
        assert_eq!(breaker.admit(Instant::now()), Admission::Go);
        breaker.release_trial(Instant::now());
        assert_eq!(breaker.gate(Instant::now()), Gate::Trial);
        assert_eq!(
            breaker.admit(Instant::now()),
            Admission::Go,
            "a new trial at once"
        );
        breaker.release_trial(Instant::now());
        breaker.record(true, Instant::now());
        assert_eq!(
            breaker.state(),
            BreakerState::Open,
            "a released trial's late result changes nothing"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn late_results_do_not_move_an_open_breaker() {
        let mut breaker = Breaker::new(2, COOLDOWN);
        let now = Instant::now();
        breaker.record(false, now);
        breaker.record(false, now);
        assert_eq!(breaker.record(true, now), None);
        assert_eq!(breaker.record(false, now), None);
        assert_eq!(
            breaker.admit(now),
            Admission::WaitUntil(now + COOLDOWN),
            "not extended"
        );
    }

    #[test]
    fn zero_threshold_never_opens() {
        let mut breaker = Breaker::new(0, COOLDOWN);
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(breaker.record(false, now), None);
        }
        assert_eq!(breaker.admit(now), Admission::Go);
    }
}
