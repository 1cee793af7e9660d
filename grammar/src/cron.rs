//! 6-field cron expressions (`SEC MIN HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK`, UTC) in the dialect
//! nats-server runs its message schedules with (that of the Go `robfig/cron` parser): `*` or
//! `?`, values, `a-b` ranges, `/step` on either, comma-separated lists; months `1-12` or
//! `JAN-DEC`, days of the week `0-6` (Sunday is 0) or `SUN-SAT`, names in any case. When both
//! day fields are restricted, a day matches either; otherwise both must match.

use std::fmt;

/// One field's allowed values and names.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const FIELDS: [Field; 6] = [
    Field {
        name: "second",
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &[
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ],
    },
    Field {
        name: "day of week",
        min: 0,
        max: 6,
        names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    },
];

/// Why a cron field is not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    field: &'static str,
    message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A parsed 6-field expression: one bit per allowed value, and whether each day field is `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cron {
    bits: [u64; 6],
    dom_star: bool,
    dow_star: bool,
}

impl Cron {
    /// Parses six whitespace-separated fields.
    pub(crate) fn parse(fields: &[&str; 6]) -> Result<Self, FieldError> {
        let mut bits = [0; 6];
        let mut stars = [false; 6];
        for (i, (text, field)) in fields.iter().zip(&FIELDS).enumerate() {
            (bits[i], stars[i]) = parse_field(text, field).map_err(|message| FieldError {
                field: field.name,
                message,
            })?;
        }
        Ok(Cron {
            bits,
            dom_star: stars[3],
            dow_star: stars[5],
        })
    }

    fn has(&self, field: usize, value: u32) -> bool {
        self.bits[field] & (1 << value) != 0
    }

    fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let (dom, dow) = (self.has(3, day), self.has(5, weekday));
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first matching second after `after` (seconds since the Unix epoch), looking at most
    /// five years ahead (an expression like `0 0 0 30 2 *` never matches).
    pub(crate) fn next_after(&self, after: i64) -> Option<i64> {
        let limit = after + 5 * 366 * 86_400;
        let mut t = after + 1;
        while t <= limit {
            let days = t.div_euclid(86_400);
            let second_of_day = t.rem_euclid(86_400);
            let (year, month, day) = civil_from_days(days);
            let (hour, minute, second) = (
                (second_of_day / 3600) as u32,
                (second_of_day / 60 % 60) as u32,
                (second_of_day % 60) as u32,
            );
            let weekday = (days + 4).rem_euclid(7) as u32; // 1970-01-01 was a Thursday.
            let midnight = days * 86_400;
            if !self.has(4, month) {
                let (y, m) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                t = days_from_civil(y, m, 1) * 86_400;
            } else if !self.day_matches(day, weekday) {
                t = midnight + 86_400;
            } else if !self.has(2, hour) {
                t = midnight + i64::from(hour + 1) * 3600;
            } else if !self.has(1, minute) {
                t = midnight + i64::from(hour) * 3600 + i64::from(minute + 1) * 60;
            } else if !self.has(0, second) {
                t += 1;
            } else {
                return Some(t);
            }
        }
        None
    }
}

/// One field: a comma-separated list of `*`, `?`, `v`, `a-b`, each with an optional `/step`.
/// Its values, and whether it is unrestricted (an item `*` or `?` without a step above 1).
fn parse_field(text: &str, field: &Field) -> Result<(u64, bool), String> {
    let mut bits = 0;
    let mut star = false;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step = step
                    .parse::<u32>()
                    .ok()
                    .filter(|step| *step > 0)
                    .ok_or_else(|| format!("the step in {item:?} is not a number above 0"))?;
                (range, Some(step))
            }
            None => (item, None),
        };
        let (low, high) = if range == "*" || range == "?" {
            star |= step.unwrap_or(1) == 1;
            (field.min, field.max)
        } else if let Some((low, high)) = range.split_once('-') {
            (value(low, field)?, value(high, field)?)
        } else {
            let low = value(range, field)?;
            // `5/15` means from 5 to the end, every 15.
            (low, if step.is_some() { field.max } else { low })
        };
        if low > high {
            return Err(format!("{item:?} starts after it ends"));
        }
        let step = step.unwrap_or(1);
        let mut v = low;
        while v <= high {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

/// A number or (months, days of the week) a three-letter name, within the field's range.
fn value(text: &str, field: &Field) -> Result<u32, String> {
    let named = field
        .names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
        .map(|index| index as u32 + field.min);
    let value = match named {
        Some(value) => value,
        None => text.parse::<u32>().map_err(|_| {
            let names = match field.names {
                [] => String::new(),
                names => format!(" or {}-{}", names[0], names[names.len() - 1]),
            };
            format!("expected {}-{}{names}, got {text:?}", field.min, field.max)
        })?,
    };
    if !(field.min..=field.max).contains(&value) {
        return Err(format!(
            "{value} is out of range {}-{}",
            field.min, field.max
        ));
    }
    Ok(value)
}

/// The proleptic Gregorian date of a day number (days since 1970-01-01): year, month, day.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The day number (days since 1970-01-01) of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = i64::from(if month > 2 { month - 3 } else { month + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(text: &str) -> Result<Cron, FieldError> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        Cron::parse(&fields.try_into().expect("six fields"))
    }

    /// 2024-02-28T23:59:59Z, a Wednesday before a leap day.
    const T: i64 = 1_709_164_799;

    #[test]
    fn dates_round_trip() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(T.div_euclid(86_400)), (2024, 2, 28));
        assert_eq!(civil_from_days(T.div_euclid(86_400) + 1), (2024, 2, 29));
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn next_firings() {
        let next = |text: &str| cron(text).expect("valid").next_after(T);
        assert_eq!(next("* * * * * *"), Some(T + 1));
        // Daily at 03:00: on the leap day.
        assert_eq!(next("0 0 3 * * *"), Some(T + 1 + 3 * 3600));
        // Mondays (1) at 09:30: 2024-03-04.
        assert_eq!(
            next("0 30 9 * * 1"),
            Some(T + 1 + 4 * 86_400 + 9 * 3600 + 1800)
        );
        assert_eq!(next("0 30 9 * * MON"), next("0 30 9 * * 1"));
        assert_eq!(next("0 30 9 ? * Mon-Fri"), Some(T + 1 + 9 * 3600 + 1800));
        // The 1st of a month or a Sunday, whichever comes first: Friday 1 March.
        assert_eq!(next("0 0 0 1 * SUN"), Some(T + 1 + 86_400));
        // Every 15 minutes from minute 5.
        assert_eq!(next("0 5/15 * * * *"), Some(T + 1 + 5 * 60));
        // 30 February never comes.
        assert_eq!(next("0 0 0 30 2 *"), None);
        assert_eq!(next("0 0 0 1 JAN *"), Some(1_735_689_600)); // 2025-01-01
    }

    #[test]
    fn rejects_with_the_field_named() {
        let error = cron("0 0 25 * * *").expect_err("hour 25");
        assert_eq!(error.to_string(), "hour: 25 is out of range 0-23");
        assert!(cron("0 0 0 * * 7").is_err(), "Sunday is 0");
        assert!(cron("0 0 0 * FOO *").is_err());
        assert!(cron("0 */0 * * * *").is_err());
        assert!(cron("0 10-5 * * * *").is_err());
        assert!(cron("0 1,,2 * * * *").is_err());
        assert!(cron("0 0 0 0 * *").is_err(), "days of the month start at 1");
    }
}
