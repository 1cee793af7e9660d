//! The retry schedule: `min(max, initial * 2^(attempt - 1))`, with jitter.

use std::time::Duration;

/// A retry schedule that cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum RetryError {
    /// The initial delay is zero.
    #[error("the initial backoff must be above zero")]
    ZeroInitial,
    /// The initial delay is above the maximum.
    #[error("the initial backoff {initial:?} is above the maximum {max:?}")]
    InitialAboveMax {
        /// The initial delay.
        initial: Duration,
        /// The maximum delay.
        max: Duration,
    },
    /// The jitter is not a fraction in `[0, 1)`.
    #[error("jitter must be in [0, 1), got {0}")]
    Jitter(f64),
}

/// Exponential backoff with proportional jitter, capped at `max`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RetrySchedule {
    initial: Duration,
    max: Duration,
    jitter: f64,
}

impl RetrySchedule {
    /// The jitter the runtime uses: each delay varies by up to ±10%.
    pub(crate) const DEFAULT_JITTER: f64 = 0.1;

    /// The contract's default: `1s..60s`, ±10%.
    pub(crate) const DEFAULT: Self = Self {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(60),
        jitter: Self::DEFAULT_JITTER,
    };

    /// A schedule from `initial` doubling up to `max`, each delay varied by up to `±jitter`
    /// of itself (and never above `max`).
    pub(crate) fn new(initial: Duration, max: Duration, jitter: f64) -> Result<Self, RetryError> {
        if initial.is_zero() {
            return Err(RetryError::ZeroInitial);
        }
        if initial > max {
            return Err(RetryError::InitialAboveMax { initial, max });
        }
        if !(0.0..1.0).contains(&jitter) {
            return Err(RetryError::Jitter(jitter));
        }
        Ok(Self {
            initial,
            max,
            jitter,
        })
    }

    /// The delay before the next delivery after delivery `attempt` (1-based) failed, without
    /// jitter.
    pub(crate) fn base_delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << doublings)
            .map_or(self.max, |delay| delay.min(self.max))
    }

    /// The delay after delivery `attempt` failed, with jitter drawn from `rng`.
    pub(crate) fn delay(&self, attempt: u32, rng: &mut impl rand::Rng) -> Duration {
        let base = self.base_delay(attempt);
        if self.jitter == 0.0 {
            return base;
        }
        let factor = 1.0 + rng.random_range(-self.jitter..=self.jitter);
        base.mul_f64(factor).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn doubles_up_to_max() {
        let schedule = RetrySchedule::new(secs(1), secs(60), 0.0).expect("valid");
        let delays: Vec<u64> = (1..=9).map(|a| schedule.base_delay(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(schedule.base_delay(0), secs(1));
        assert_eq!(schedule.base_delay(u32::MAX), secs(60));
    }

    #[test]
    fn constructor_rejects_nonsense() {
        assert_eq!(
            RetrySchedule::new(Duration::ZERO, secs(1), 0.1),
            Err(RetryError::ZeroInitial)
        );
        assert!(matches!(
            RetrySchedule::new(secs(2), secs(1), 0.1),
            Err(RetryError::InitialAboveMax { .. })
        ));
        assert_eq!(
            RetrySchedule::new(secs(1), secs(2), 1.0),
            Err(RetryError::Jitter(1.0))
        );
    }

    /// Property: for random schedules, attempts and seeds, the delay stays within the jitter
    /// band around the base delay and never exceeds `max`.
    #[test]
    fn jittered_delay_stays_in_band_and_under_max() {
        let mut cases = StdRng::seed_from_u64(42);
        for _ in 0..5_000 {
            let initial = Duration::from_millis(cases.random_range(1..5_000));
            let max = initial + Duration::from_millis(cases.random_range(0..120_000));
            let jitter = cases.random_range(0.0..0.5);
            let schedule = RetrySchedule::new(initial, max, jitter).expect("valid");
            let attempt = cases.random_range(1..40);
            let mut rng = StdRng::seed_from_u64(cases.random());
            let delay = schedule.delay(attempt, &mut rng);
            let base = schedule.base_delay(attempt);
            assert!(delay <= max, "{delay:?} > {max:?}");
            assert!(delay >= base.mul_f64(1.0 - jitter) - Duration::from_nanos(1));
            assert!(delay <= base.mul_f64(1.0 + jitter) + Duration::from_nanos(1));
        }
    }
}
