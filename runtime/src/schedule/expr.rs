//! Schedule expressions: 6-field cron (seconds first, UTC), `@yearly` ... `@hourly`, and
//! `@every <duration>` (whole seconds, at least `1s`). The same grammar as `#[event_handler]`
//! checks at compile time, here for configured overrides, the server's form, the period and the
//! next firing.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    /// `@every <duration>`.
    Every(Duration),
    /// A cron expression or an `@` nickname, as written.
    Cron(String),
}

/// Why a string is not a schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ExprError {
    #[error("expected a 6-field cron expression (SEC MIN HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK, UTC), @yearly, @monthly, @weekly, @daily, @hourly or \"@every <duration>\", got {0:?}")]
    Malformed(String),
    #[error("`@every` takes whole seconds, at least 1s, got {0:?}")]
    Every(String),
}

impl FromStr for Expr {
    type Err = ExprError;

    fn from_str(text: &str) -> Result<Self, ExprError> {
        let text = text.trim();
        if let Some(every) = text.strip_prefix("@every") {
            let period = humantime::parse_duration(every.trim())
                .map_err(|_| ExprError::Every(text.to_owned()))?;
            if period < Duration::from_secs(1) || period.subsec_nanos() != 0 {
                return Err(ExprError::Every(text.to_owned()));
            }
            return Ok(Expr::Every(period));
        }
        let nickname = matches!(
            text,
            "@yearly" | "@monthly" | "@weekly" | "@daily" | "@hourly"
        );
        if !nickname && (text.starts_with('@') || text.split_whitespace().count() != 6) {
            return Err(ExprError::Malformed(text.to_owned()));
        }
        cron::Schedule::from_str(text).map_err(|_| ExprError::Malformed(text.to_owned()))?;
        Ok(Expr::Cron(text.to_owned()))
    }
}

impl Expr {
    /// The `Nats-Schedule` header value: `@every 90s`, or the cron expression as written.
    pub(crate) fn server_form(&self) -> String {
        match self {
            Expr::Every(period) => format!("@every {}s", period.as_secs()),
            Expr::Cron(text) => text.clone(),
        }
    }

    fn cron(&self) -> Option<cron::Schedule> {
        match self {
            Expr::Every(_) => None,
            Expr::Cron(text) => cron::Schedule::from_str(text).ok(),
        }
    }

    /// The time between two firings (for cron, between the next two).
    pub(crate) fn period(&self) -> Duration {
        match self {
            Expr::Every(period) => *period,
            Expr::Cron(_) => {
                let mut upcoming = self.cron().into_iter().flat_map(|schedule| {
                    schedule.upcoming(chrono::Utc).take(2).collect::<Vec<_>>()
                });
                match (upcoming.next(), upcoming.next()) {
                    (Some(a), Some(b)) => (b - a).to_std().unwrap_or(Duration::from_secs(3600)),
                    _ => Duration::from_secs(3600),
                }
            }
        }
    }

    /// The next firing after `now`, for a cron schedule; `None` for `@every`, whose timer
    /// runs on the server from when the schedule was written (at most one period away).
    pub(crate) fn next_after(&self, now: SystemTime) -> Option<SystemTime> {
        let now = chrono::DateTime::<chrono::Utc>::from(now);
        let next = self.cron()?.after(&now).next()?;
        Some(SystemTime::from(next))
    }

    /// The next firing, for `list`: an RFC 3339 time, or "within <period>" for `@every`.
    pub(crate) fn describe_next(&self, now: SystemTime) -> String {
        match self.next_after(now) {
            Some(next) => humantime::format_rfc3339_seconds(next).to_string(),
            None => format!("within {}", humantime::format_duration(self.period())),
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
    }
}
