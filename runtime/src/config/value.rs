//! Parsing of single configuration values, each error naming its key.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// A secret (password, token) that never shows in `Debug` output, logs or HTTP responses.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub(crate) fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself, for handing to the NATS client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A list given as a comma-separated string or as an array.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum List {
    One(String),
    Many(Vec<String>),
}

impl List {
    pub(super) fn into_items(self) -> Vec<String> {
        let items = match self {
            List::One(text) => text.split(',').map(str::to_owned).collect(),
            List::Many(items) => items,
        };
        items
            .into_iter()
            .map(|item| item.trim().to_owned())
            .filter(|item| !item.is_empty())
            .collect()
    }
}

/// A positive duration like `250ms`, `30s` or `5m`, in whole milliseconds: the grammar
/// `#[event_handler]` checks its attributes with (`jetfn-grammar`).
pub(crate) fn duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    jetfn_grammar::duration::parse_duration(text)
        .map_err(|error| ConfigError::invalid(key, format!("{error}, got {text:?}")))
}

/// `INITIAL..MAX`, two durations with `INITIAL <= MAX` (the attribute's grammar).
pub(crate) fn backoff(key: &str, text: &str) -> Result<(Duration, Duration), ConfigError> {
    jetfn_grammar::duration::parse_backoff(text)
        .map_err(|error| ConfigError::invalid(key, format!("{error}, got {text:?}")))
}

/// The message for an unknown `key` among `known`: a suggestion when one is close, and the
/// known keys.
pub(crate) fn unknown_key<'a>(key: &str, known: impl Iterator<Item = &'a str> + Clone) -> String {
    let all = known.clone().collect::<Vec<_>>().join(", ");
    match jetfn_grammar::suggest::closest(key, known) {
        Some(close) => format!("unknown key `{key}`; did you mean `{close}`? Known keys: {all}"),
        None => format!("unknown key `{key}`; known keys: {all}"),
    }
}

/// An unsigned integer of at least `min`.
pub(crate) fn integer(key: &str, text: &str, min: u32) -> Result<u32, ConfigError> {
    match text.trim().parse::<u32>() {
        Ok(value) if value >= min => Ok(value),
        _ => Err(ConfigError::invalid(
            key,
            format!("expected an integer >= {min}, got {text:?}"),
        )),
    }
}

/// `true` / `false` (also `1` / `0`, `yes` / `no`).
pub(crate) fn boolean(key: &str, text: &str) -> Result<bool, ConfigError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ConfigError::invalid(
            key,
            format!("expected `true` or `false`, got {text:?}"),
        )),
    }
}

/// A subject given for `key` (`wildcards`: whether `*` and `>` may appear).
pub(crate) fn subject(key: &str, text: &str, wildcards: bool) -> Result<String, ConfigError> {
    crate::subject::validate(text, wildcards)
        .map_err(|e| ConfigError::invalid(key, e.to_string()))?;
    Ok(text.to_owned())
}

/// A duration written the way it is read (`60s`, `100ms`), for `Serialize` of a config.
pub(crate) fn human<S: serde::Serializer>(
    value: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&jetfn_grammar::duration::format_duration(*value))
}
