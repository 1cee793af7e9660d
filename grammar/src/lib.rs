//! The grammar shared by `jetfn` and `jetfn-macros`: the attribute keys and their defaults
//! ([`keys`], [`defaults`]), durations and backoffs ([`duration`]), schedules ([`schedule`]), ordering keys ([`order`]) and
//! "did you mean" suggestions ([`suggest`]).
//!
//! `#[event_handler]` checks its attributes with these functions at compile time and the
//! configuration checks its overrides with the same functions at start-up, so both accept and
//! reject the same strings. An implementation detail of `jetfn`: use `jetfn`.
//!
//! ```
//! use std::time::Duration;
//! use jetfn_grammar::duration::parse_duration;
//!
//! assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
//! assert!(parse_duration("500us").is_err()); // whole milliseconds only
//! ```

pub mod defaults;
pub mod duration;
pub mod keys;
pub mod order;
pub mod schedule;
pub mod suggest;

mod cron;
