//! Durations (`humantime` syntax: `250ms`, `30s`, `1m 30s`, ...; whole milliseconds, above zero)
//! and backoffs (`INITIAL..MAX`).

use std::fmt;
use std::time::Duration;

/// Why a string is not a duration jetfn takes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DurationError {
    /// Not `humantime` syntax; humantime's reason when it names the units it knows.
    Malformed(Option<String>),
    /// Zero.
    Zero,
    /// Not a whole number of milliseconds, like `1.5ms` or `500us`.
    SubMillisecond,
    /// More milliseconds than a `u64` holds.
    TooLarge,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(None) => {
                f.write_str("expected a duration like \"250ms\", \"30s\" or \"5m\"")
            }
            Self::Malformed(Some(reason)) => write!(
                f,
                "expected a duration like \"250ms\", \"30s\" or \"5m\" ({reason})"
            ),
            Self::Zero => f.write_str("the duration must be greater than zero"),
            Self::SubMillisecond => f.write_str(
                "durations are whole milliseconds: \"1.5ms\" or \"500us\" are not accepted",
            ),
            Self::TooLarge => f.write_str("the duration is too large"),
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses a duration: `humantime` syntax, greater than zero, a whole number of milliseconds.
/// Surrounding whitespace is ignored.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let parsed = humantime::parse_duration(text.trim()).map_err(|error| match error {
        // "unknown time unit "x", supported units: ..." or "time unit needed, for example ...".
        humantime::DurationError::UnknownUnit { .. } => {
            DurationError::Malformed(Some(error.to_string()))
        }
        // Reasons as byte offsets: "expected number at 0".
        _ => DurationError::Malformed(None),
    })?;
    if parsed.is_zero() {
        return Err(DurationError::Zero);
    }
    if parsed.subsec_nanos() % 1_000_000 != 0 {
        return Err(DurationError::SubMillisecond);
    }
    if u64::try_from(parsed.as_millis()).is_err() {
        return Err(DurationError::TooLarge);
    }
    Ok(parsed)
}

/// Why a string is not a backoff `INITIAL..MAX`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackoffError {
    /// No `..` between two durations.
    Malformed,
    /// The initial delay is not a duration.
    Initial(DurationError),
    /// The maximum delay is not a duration.
    Max(DurationError),
    /// The initial delay exceeds the maximum.
    InitialAboveMax,
}

impl fmt::Display for BackoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str(
                "expected \"INITIAL..MAX\", two durations like \"100ms..60s\"",
            ),
            Self::Initial(error) => write!(f, "the initial delay: {error}"),
            Self::Max(error) => write!(f, "the maximum delay: {error}"),
            Self::InitialAboveMax => f.write_str(
                "the initial delay exceeds the maximum; write \"INITIAL..MAX\", like \"100ms..60s\"",
            ),
        }
    }
}

impl std::error::Error for BackoffError {}

/// Parses `INITIAL..MAX` (two durations, `INITIAL <= MAX`).
pub fn parse_backoff(text: &str) -> Result<(Duration, Duration), BackoffError> {
    let (initial, max) = text.split_once("..").ok_or(BackoffError::Malformed)?;
    if max.contains("..") {
        return Err(BackoffError::Malformed);
    }
    let initial = parse_duration(initial).map_err(BackoffError::Initial)?;
    let max = parse_duration(max).map_err(BackoffError::Max)?;
    if initial > max {
        return Err(BackoffError::InitialAboveMax);
    }
    Ok((initial, max))
}

/// A duration as jetfn writes it, in one unit: `100ms`, `1500ms`, `30s`, `60s`, `90s`, `5m`,
/// `1h`, `24h` (minutes from two minutes on, hours when whole). What it writes,
/// [`parse_duration`] reads back (for whole milliseconds above zero).
pub fn format_duration(duration: Duration) -> String {
    if duration.subsec_nanos() % 1_000_000 != 0 {
        return humantime::format_duration(duration).to_string();
    }
    let seconds = duration.as_secs();
    if duration.subsec_nanos() != 0 {
        format!("{}ms", duration.as_millis())
    } else if seconds != 0 && seconds % 3600 == 0 {
        format!("{}h", seconds / 3600)
    } else if seconds >= 120 && seconds % 60 == 0 {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 1m 30s "), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0s"), Err(DurationError::Zero));
        assert_eq!(parse_duration("500us"), Err(DurationError::SubMillisecond));
        assert_eq!(parse_duration("soon"), Err(DurationError::Malformed(None)));
        assert!(matches!(
            parse_duration("5 parsecs"),
            Err(DurationError::Malformed(Some(reason))) if reason.contains("parsecs")
        ));
    }

    #[test]
    fn backoffs() {
        assert_eq!(
            parse_backoff("100ms..60s"),
            Ok((Duration::from_millis(100), Duration::from_secs(60)))
        );
        assert_eq!(parse_backoff("1s"), Err(BackoffError::Malformed));
        assert_eq!(parse_backoff("1s..2s..3s"), Err(BackoffError::Malformed));
        assert_eq!(parse_backoff("2s..1s"), Err(BackoffError::InitialAboveMax));
        assert!(matches!(
            parse_backoff("x..1s"),
            Err(BackoffError::Initial(_))
        ));
    }

    #[test]
    fn formatted_durations_read_back() {
        assert_eq!(format_duration(Duration::from_secs(60)), "60s");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_secs(5400)), "90m");
        assert_eq!(format_duration(Duration::from_millis(100)), "100ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        for millis in [1, 999, 1000, 1001, 60_000, 86_400_000 + 7] {
            let duration = Duration::from_millis(millis);
            assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }
    }
}
