//! Schedules: a 6-field cron expression (`SEC MIN HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK`, UTC, in
//! the dialect nats-server runs), `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`, or
//! `@every <duration>` of whole seconds, at least `1s`.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cron::Cron;
use crate::duration::{parse_duration, DurationError};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Every(Duration),
    /// The expression as written (the server's form), parsed.
    Cron(String, Cron),
}

/// Why a string is not a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScheduleError {
    /// Empty or blank.
    Empty,
    /// `@every` with a malformed duration.
    Every(DurationError),
    /// `@every` below one second or not whole seconds.
    EveryPrecision,
    /// Not six fields.
    Fields(usize),
    /// A field of the cron expression is not valid: which, and why.
    Cron(String),
    /// An `@` word that is not one of the known ones.
    Nickname(String),
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const FORMS: &str = "a 6-field cron expression \"SEC MIN HOUR DAY-OF-MONTH MONTH \
                             DAY-OF-WEEK\" (UTC) like \"0 0 3 * * *\", @yearly, @monthly, \
                             @weekly, @daily, @hourly, or \"@every <duration>\" like \"@every 30s\"";
        match self {
            Self::Empty => write!(f, "it is empty; write {FORMS}"),
            Self::Every(error) => write!(f, "`@every`: {error}"),
            Self::EveryPrecision => f.write_str(
                "`@every` takes whole seconds, at least \"1s\" (ticks have second precision)",
            ),
            Self::Fields(n) => write!(
                f,
                "a cron expression has 6 fields, found {n}; write {FORMS}"
            ),
            Self::Cron(reason) => {
                write!(f, "not a valid cron expression ({reason}); write {FORMS}")
            }
            Self::Nickname(word) => write!(f, "unknown schedule `{word}`; write {FORMS}"),
        }
    }
}

impl std::error::Error for ScheduleError {}

/// The cron expression each nickname stands for.
const NICKNAMES: [(&str, &str); 5] = [
    ("@yearly", "0 0 0 1 1 *"),
    ("@monthly", "0 0 0 1 * *"),
    ("@weekly", "0 0 0 * * 0"),
    ("@daily", "0 0 0 * * *"),
    ("@hourly", "0 0 * * * *"),
];

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, ScheduleError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ScheduleError::Empty);
        }
        if let Some(every) = text.strip_prefix("@every") {
            let period = parse_duration(every).map_err(ScheduleError::Every)?;
            if period < Duration::from_secs(1) || period.subsec_nanos() != 0 {
                return Err(ScheduleError::EveryPrecision);
            }
            return Ok(Schedule {
                kind: Kind::Every(period),
            });
        }
        let expression = if text.starts_with('@') {
            NICKNAMES
                .iter()
                .find(|(nickname, _)| *nickname == text)
                .map(|(_, expression)| *expression)
                .ok_or_else(|| ScheduleError::Nickname(text.to_owned()))?
        } else {
            text
        };
        let fields: Vec<&str> = expression.split_whitespace().collect();
        let fields: [&str; 6] = fields
            .try_into()
            .map_err(|fields: Vec<&str>| ScheduleError::Fields(fields.len()))?;
        let cron = Cron::parse(&fields).map_err(|e| ScheduleError::Cron(e.to_string()))?;
        Ok(Schedule {
            kind: Kind::Cron(text.to_owned(), cron),
        })
    }
}

impl Schedule {
    /// The `Nats-Schedule` header value: `@every 90s`, or the expression as written.
    pub fn server_form(&self) -> String {
        match &self.kind {
            Kind::Every(period) => format!("@every {}s", period.as_secs()),
            Kind::Cron(text, _) => text.clone(),
        }
    }

    /// The period of `@every`; `None` for a cron expression.
    pub fn every(&self) -> Option<Duration> {
        match &self.kind {
            Kind::Every(period) => Some(*period),
            Kind::Cron(..) => None,
        }
    }

    /// The next firing after `now` (whole seconds), for a cron expression; `None` for `@every`,
    /// whose timer runs on the server from when the schedule was written, and for an
    /// expression that does not fire within five years.
    pub fn next_after(&self, now: SystemTime) -> Option<SystemTime> {
        let Kind::Cron(_, cron) = &self.kind else {
            return None;
        };
        let now = match now.duration_since(UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_secs()).ok()?,
            Err(before) => -i64::try_from(before.duration().as_secs()).ok()? - 1,
        };
        let next = cron.next_after(now)?;
        let since = Duration::from_secs(u64::try_from(next).ok()?);
        Some(UNIX_EPOCH + since)
    }

    /// The time between two firings: the `@every` period, or for cron the time between the
    /// next two firings after `now` (one hour when it does not fire twice within five years).
    pub fn period(&self, now: SystemTime) -> Duration {
        if let Some(period) = self.every() {
            return period;
        }
        let first = self.next_after(now);
        let second = first.and_then(|first| self.next_after(first));
        match (first, second) {
            (Some(a), Some(b)) => b.duration_since(a).unwrap_or(Duration::from_secs(3600)),
            _ => Duration::from_secs(3600),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        text.parse()
    }

    #[test]
    fn accepts() {
        for ok in [
            "0 0 3 * * *",
            "*/5 * * * * *",
            "0 30 9 * * Mon-Fri",
            "0 0 12 ? JAN,JUL *",
            "@hourly",
            "@daily",
            "@weekly",
            "@monthly",
            "@yearly",
            "@every 30s",
            "@every 1m 30s",
            "@every 1s",
        ] {
            assert!(parse(ok).is_ok(), "{ok}: {:?}", parse(ok));
        }
        assert_eq!(
            parse("@every 1m 30s").map(|s| s.server_form()),
            Ok("@every 90s".into())
        );
        assert_eq!(
            parse(" @hourly ").map(|s| s.server_form()),
            Ok("@hourly".into())
        );
    }

    #[test]
    fn rejects() {
        assert_eq!(parse(""), Err(ScheduleError::Empty));
        assert_eq!(parse("0 0 3 * *"), Err(ScheduleError::Fields(5)));
        assert_eq!(parse("0 0 3 * * * 2030"), Err(ScheduleError::Fields(7)));
        assert_eq!(parse("@every 500ms"), Err(ScheduleError::EveryPrecision));
        assert_eq!(parse("@every 1500ms"), Err(ScheduleError::EveryPrecision));
        assert_eq!(
            parse("@every 0s"),
            Err(ScheduleError::Every(DurationError::Zero))
        );
        assert_eq!(
            parse("@minutely"),
            Err(ScheduleError::Nickname("@minutely".into()))
        );
        assert_eq!(
            parse("0 0 25 * * *"),
            Err(ScheduleError::Cron("hour: 25 is out of range 0-23".into()))
        );
    }

    #[test]
    fn periods_and_next_firings() {
        let epoch = UNIX_EPOCH;
        let now = epoch + Duration::from_secs(86_400 + 60);
        let daily = parse("0 0 3 * * *").expect("cron");
        assert_eq!(daily.period(now), Duration::from_secs(86_400));
        assert_eq!(
            daily.next_after(now),
            Some(epoch + Duration::from_secs(86_400 + 3 * 3600))
        );
        let hourly = parse("@hourly").expect("nickname");
        assert_eq!(hourly.period(now), Duration::from_secs(3600));
        let every = parse("@every 30s").expect("every");
        assert_eq!(every.next_after(now), None);
        assert_eq!(every.period(now), Duration::from_secs(30));
    }
}
