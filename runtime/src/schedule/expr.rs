//! Schedule expressions: 6-field cron (seconds first, UTC), `@yearly` ... `@hourly`, and
//! `@every <duration>` (whole seconds, at least `1s`). The grammar is `jetfn-grammar`'s, the one
//! `#[event_handler]` checks at compile time; here for configured overrides, the server's form,
//! the period and the next firing.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use jetfn_grammar::duration::format_duration;
use jetfn_grammar::schedule::Schedule;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expr(Schedule);

/// Why a string is not a schedule (the message names the forms accepted).
pub(crate) type ExprError = jetfn_grammar::schedule::ScheduleError;

impl FromStr for Expr {
    type Err = ExprError;

    fn from_str(text: &str) -> Result<Self, ExprError> {
        text.parse().map(Expr)
    }
}

impl Expr {
    /// The `Nats-Schedule` header value: `@every 90s`, or the cron expression as written.
    pub(crate) fn server_form(&self) -> String {
        self.0.server_form()
    }

    /// The time between two firings (for cron, between the next two).
    pub(crate) fn period(&self) -> Duration {
        self.0.period(SystemTime::now())
    }

    /// The next firing after `now`, for a cron schedule; `None` for `@every`, whose timer
    /// runs on the server from when the schedule was written (at most one period away).
    pub(crate) fn next_after(&self, now: SystemTime) -> Option<SystemTime> {
        self.0.next_after(now)
    }

    /// The next firing, for `list`: an RFC 3339 time, or "within <period>" for `@every`.
    pub(crate) fn describe_next(&self, now: SystemTime) -> String {
        match self.next_after(now) {
            Some(next) => humantime::format_rfc3339_seconds(next).to_string(),
            None => format!("within {}", format_duration(self.0.period(now))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_macro_accepts() {
        assert_eq!(
            "@every 1m 30s".parse::<Expr>().map(|e| e.server_form()),
            Ok("@every 90s".to_owned())
        );
        assert_eq!(
            "0 0 3 * * *".parse::<Expr>().map(|e| e.server_form()),
            Ok("0 0 3 * * *".to_owned())
        );
        assert!("@hourly".parse::<Expr>().is_ok());
        for bad in [
            "@every 0s",
            "@every 500ms",
            "0 0 3 * *",
            "@minutely",
            "",
            "0 0 3 * * * 2030",
        ] {
            assert!(bad.parse::<Expr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn periods_and_next_firings() {
        let daily: Expr = "0 0 3 * * *".parse().expect("cron");
        assert_eq!(daily.period(), Duration::from_secs(86_400));
        let hourly: Expr = "@hourly".parse().expect("nickname");
        assert_eq!(hourly.period(), Duration::from_secs(3600));
        let epoch = SystemTime::UNIX_EPOCH;
        let now = epoch + Duration::from_secs(86_400 + 60);
        assert_eq!(
            daily.next_after(now),
            Some(epoch + Duration::from_secs(86_400 + 3 * 3600))
        );
        assert_eq!(daily.describe_next(now), "1970-01-02T03:00:00Z");
        let every: Expr = "@every 30s".parse().expect("every");
        assert_eq!(every.next_after(now), None);
        assert_eq!(every.describe_next(now), "within 30s");
        let minutely: Expr = "@every 2m".parse().expect("every");
        assert_eq!(minutely.describe_next(now), "within 2m");
    }
}
