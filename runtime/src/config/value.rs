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

/// A positive duration like `250ms`, `30s` or `5m`.
pub(crate) fn duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    match humantime::parse_duration(text.trim()) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err(ConfigError::invalid(
            key,
            format!("expected a positive duration like \"250ms\", \"30s\" or \"5m\", got {text:?}"),
        )),
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

/// A duration written the way it is read (`humantime`), for `Serialize` of a config.
pub(crate) fn human<S: serde::Serializer>(
    value: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_duration(*value))
}
