//! The grammars of attribute values: NATS subjects and stream/consumer names here; durations,
//! backoffs and schedules from `jetfn-grammar`, which `jetfn`'s configuration reads with too.
//! Pure functions over `&str` with typed errors.

use std::fmt;

/// Whether a subject may hold the wildcards `*` and `>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wildcards {
    /// A subject to consume: wildcards select several subjects.
    Allowed,
    /// A subject to publish to.
    Forbidden,
}

/// Why a string is not a NATS subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubjectError {
    Empty,
    Whitespace(String),
    EmptyToken(String),
    PartialWildcard(String),
    GtNotLast(String),
    Wildcard(String),
}

impl fmt::Display for SubjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("it is empty; write a subject like \"orders.created\""),
            Self::Whitespace(s) => write!(f, "{s:?} contains whitespace"),
            Self::EmptyToken(s) => write!(
                f,
                "{s:?} has an empty token; subjects are non-empty tokens separated by single dots \
                 (no leading, trailing or double `.`)"
            ),
            Self::PartialWildcard(s) => write!(
                f,
                "{s:?} has a partial wildcard; `*` and `>` must be whole tokens, \
                 like \"orders.*\" or \"orders.>\""
            ),
            Self::GtNotLast(s) => write!(
                f,
                "{s:?} has `>` before its last token; `>` is only allowed as the last token"
            ),
            Self::Wildcard(s) => write!(
                f,
                "{s:?} is published to, so it cannot contain the wildcards `*` or `>`"
            ),
        }
    }
}

/// Checks the NATS subject grammar: dot-separated non-empty tokens, no whitespace, `*` and `>`
/// only as whole tokens and `>` only last.
pub(crate) fn check_subject(subject: &str, wildcards: Wildcards) -> Result<(), SubjectError> {
    let error = |make: fn(String) -> SubjectError| Err(make(subject.to_owned()));
    if subject.is_empty() {
        return Err(SubjectError::Empty);
    }
    if subject.chars().any(char::is_whitespace) {
        return error(SubjectError::Whitespace);
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    if tokens.iter().any(|token| token.is_empty()) {
        return error(SubjectError::EmptyToken);
    }
    if tokens
        .iter()
        .any(|token| token.len() > 1 && token.contains(['*', '>']))
    {
        return error(SubjectError::PartialWildcard);
    }
    if tokens[..tokens.len() - 1].contains(&">") {
        return error(SubjectError::GtNotLast);
    }
    if wildcards == Wildcards::Forbidden && tokens.iter().any(|token| matches!(*token, "*" | ">")) {
        return error(SubjectError::Wildcard);
    }
    Ok(())
}

/// Why a string cannot be a JetStream stream or consumer name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameError {
    Empty,
    Char(String, char),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("it is empty"),
            Self::Char(name, c) => write!(
                f,
                "{name:?} contains {c:?}; names hold only ASCII letters, digits, `_` and `-`"
            ),
        }
    }
}

/// Checks a stream or consumer name: non-empty, ASCII letters, digits, `_` and `-`.
pub(crate) fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
    {
        Some(c) => Err(NameError::Char(name.to_owned(), c)),
        None => Ok(()),
    }
}

pub(crate) use jetfn_grammar::duration::{BackoffError, DurationError};
pub(crate) use jetfn_grammar::schedule::ScheduleError;

/// Parses a duration (the grammar `jetfn`'s configuration reads too, see `jetfn-grammar`) into
/// whole milliseconds, greater than zero.
pub(crate) fn parse_duration(text: &str) -> Result<u64, DurationError> {
    jetfn_grammar::duration::parse_duration(text).map(millis)
}

/// Parses `initial..max` into milliseconds, `initial <= max`.
pub(crate) fn parse_backoff(text: &str) -> Result<(u64, u64), BackoffError> {
    jetfn_grammar::duration::parse_backoff(text)
        .map(|(initial, max)| (millis(initial), millis(max)))
}

/// Checks a schedule: 6-field cron (seconds first, UTC), `@yearly`, `@monthly`, `@weekly`,
/// `@daily`, `@hourly`, or `@every <duration>` of whole seconds, at least `1s`.
pub(crate) fn check_schedule(text: &str) -> Result<(), ScheduleError> {
    text.parse::<jetfn_grammar::schedule::Schedule>()
        .map(|_| ())
}

/// Whole milliseconds; the grammar has checked that they fit.
fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        for ok in [
            "0 0 3 * * *",
            "*/5 * * * * *",
            "0 30 9 * * Mon-Fri",
            "@hourly",
            "@daily",
            "@yearly",
            "@every 30s",
            "@every 1m 30s",
            "@every 1s",
        ] {
            assert_eq!(check_schedule(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_schedule(""), Err(ScheduleError::Empty));
        assert_eq!(check_schedule("0 0 3 * *"), Err(ScheduleError::Fields(5)));
        assert_eq!(
            check_schedule("0 0 3 * * * 2030"),
            Err(ScheduleError::Fields(7))
        );
        assert!(matches!(
            check_schedule("0 0 25 * * *"),
            Err(ScheduleError::Cron(_))
        ));
        assert!(matches!(
            check_schedule("@every 0s"),
            Err(ScheduleError::Every(DurationError::Zero))
        ));
        assert_eq!(
            check_schedule("@every 500ms"),
            Err(ScheduleError::EveryPrecision)
        );
        assert_eq!(
            check_schedule("@every 1500ms"),
            Err(ScheduleError::EveryPrecision)
        );
        assert_eq!(
            check_schedule("@minutely"),
            Err(ScheduleError::Nickname("@minutely".to_owned()))
        );
    }

    #[test]
    fn subjects() {
        use SubjectError as E;
        type Expected = Result<(), fn(String) -> E>;
        let table: &[(&str, Expected)] = &[
            ("orders", Ok(())),
            ("orders.created", Ok(())),
            ("orders.*", Ok(())),
            ("orders.>", Ok(())),
            ("*.created", Ok(())),
            (">", Ok(())),
            ("*", Ok(())),
            ("$JS.API.x", Ok(())),
            ("orders-eu.created_v2", Ok(())),
            ("orders created", Err(E::Whitespace)),
            ("orders.created ", Err(E::Whitespace)),
            ("orders\t.x", Err(E::Whitespace)),
            (".orders", Err(E::EmptyToken)),
            ("orders.", Err(E::EmptyToken)),
            ("orders..created", Err(E::EmptyToken)),
            (".", Err(E::EmptyToken)),
            ("orders.cre*", Err(E::PartialWildcard)),
            ("orders.*x", Err(E::PartialWildcard)),
            ("orders.>>", Err(E::PartialWildcard)),
            ("orders.a>", Err(E::PartialWildcard)),
            ("orders.>.created", Err(E::GtNotLast)),
            (">.orders", Err(E::GtNotLast)),
        ];
        for (text, expected) in table {
            let expected = expected.map_err(|make| make((*text).to_owned()));
            assert_eq!(
                check_subject(text, Wildcards::Allowed),
                expected,
                "{text:?}"
            );
        }
        assert_eq!(check_subject("", Wildcards::Allowed), Err(E::Empty));
    }

    #[test]
    fn published_subjects_have_no_wildcards() {
        assert_eq!(check_subject("orders.dead", Wildcards::Forbidden), Ok(()));
        for text in ["orders.*", "orders.>", "*"] {
            assert_eq!(
                check_subject(text, Wildcards::Forbidden),
                Err(SubjectError::Wildcard(text.to_owned()))
            );
        }
        // Grammar errors come first.
        assert!(matches!(
            check_subject("a..>", Wildcards::Forbidden),
            Err(SubjectError::EmptyToken(_))
        ));
    }

    #[test]
    fn names() {
        for ok in ["reserve_inventory", "ORDERS", "billing-v2", "a", "_x", "9"] {
            assert_eq!(check_name(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(check_name(""), Err(NameError::Empty));
        for (bad, c) in [
            ("a.b", '.'),
            ("a b", ' '),
            ("a*", '*'),
            ("a>", '>'),
            ("a/b", '/'),
            ("é", 'é'),
        ] {
            assert_eq!(
                check_name(bad),
                Err(NameError::Char(bad.to_owned(), c)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn durations() {
        for (text, millis) in [
            ("250ms", 250),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1m 30s", 90_000),
            ("1.5s", 1_500),
            ("1ms", 1),
            ("2000us", 2),
        ] {
            assert_eq!(parse_duration(text), Ok(millis), "{text:?}");
        }
        for text in ["", "30", "thirty seconds", "30 parsecs", "-5s", "5s!"] {
            assert!(
                matches!(parse_duration(text), Err(DurationError::Malformed(_))),
                "{text:?}"
            );
        }
        // humantime's reason is kept when it helps, dropped when it is a byte offset.
        let reason = |text| match parse_duration(text) {
            Err(DurationError::Malformed(reason)) => reason,
            other => panic!("{text:?}: {other:?}"),
        };
        assert!(reason("30").is_some_and(|r| r.contains("time unit needed")));
        assert!(reason("30 parsecs").is_some_and(|r| r.contains("supported units")));
        assert_eq!(reason("soon"), None);
        assert_eq!(parse_duration("0s"), Err(DurationError::Zero));
        assert_eq!(parse_duration("0"), Err(DurationError::Zero));
        assert_eq!(parse_duration("500us"), Err(DurationError::SubMillisecond));
        assert_eq!(parse_duration("1.5ms"), Err(DurationError::SubMillisecond));
        assert_eq!(
            parse_duration("600000000000000000s"),
            Err(DurationError::TooLarge)
        );
    }

    #[test]
    fn backoffs() {
        assert_eq!(parse_backoff("100ms..60s"), Ok((100, 60_000)));
        assert_eq!(parse_backoff("1s..1s"), Ok((1_000, 1_000)));
        assert_eq!(parse_backoff("1s .. 5m"), Ok((1_000, 300_000)));
        for text in ["", "1s", "1s-5s", "1s...5s", "1s..5s..10s"] {
            assert!(
                matches!(
                    parse_backoff(text),
                    Err(BackoffError::Malformed | BackoffError::Max(_))
                ),
                "{text:?}"
            );
        }
        assert_eq!(parse_backoff("1s-5s"), Err(BackoffError::Malformed));
        assert!(matches!(
            parse_backoff("..5s"),
            Err(BackoffError::Initial(DurationError::Malformed(_)))
        ));
        assert!(matches!(
            parse_backoff("1s.."),
            Err(BackoffError::Max(DurationError::Malformed(_)))
        ));
        assert_eq!(
            parse_backoff("0s..5s"),
            Err(BackoffError::Initial(DurationError::Zero))
        );
        assert_eq!(parse_backoff("1m..1s"), Err(BackoffError::InitialAboveMax));
    }

    proptest::proptest! {
        /// The macro checks durations, backoffs and schedules with `jetfn-grammar`, the grammar
        /// `jetfn`'s configuration reads them with: the same strings pass, to the same value.
        #[test]
        fn agrees_with_the_shared_grammar(
            text in "[ ]?[0-9]{0,3}(\\.[0-9])?[ ]?(ns|us|ms|s|sec|m|min|h|d|w|x|)( [0-9]{1,2}(ms|s|us))?",
        ) {
            use jetfn_grammar::duration as shared;
            let millis = |d: std::time::Duration| d.as_millis() as u64;
            proptest::prop_assert_eq!(parse_duration(&text).ok(), shared::parse_duration(&text).ok().map(millis));
            let backoff = format!("1ms..{text}");
            proptest::prop_assert_eq!(
                parse_backoff(&backoff).ok(),
                shared::parse_backoff(&backoff).ok().map(|(a, b)| (millis(a), millis(b)))
            );
            let every = format!("@every {text}");
            proptest::prop_assert_eq!(
                check_schedule(&every).is_ok(),
                every.parse::<jetfn_grammar::schedule::Schedule>().is_ok()
            );
        }
    }
}
