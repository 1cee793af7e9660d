//! The effective configuration of one request function.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use jetfn_grammar::{defaults, keys};

use super::value::{duration, human, integer, subject, unknown_key};
use super::ConfigError;
use crate::app_state::StateType;
use crate::registry::{Location, RequestFn, RequestSpec};

/// One request function's settings: attribute values, overridden by configuration, over
/// defaults.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RequestConfig {
    /// The function's name; also its endpoint's name in the NATS micro service.
    pub name: String,
    /// The subject it answers, in queue group `jetfn`.
    pub subject: String,
    /// The bound on one request (default `5s`); past it the caller gets a `504`.
    #[serde(serialize_with = "human")]
    pub timeout: Duration,
    /// The most concurrent requests in this process (default 64); more wait.
    pub max_workers: u32,
    /// The `State<T>` types the handler takes (their type names in `list --json`).
    #[serde(serialize_with = "super::function::state_names")]
    pub states: &'static [StateType],
    /// Where the function is defined.
    #[serde(skip)]
    pub location: Location,
    /// The handler.
    #[serde(skip)]
    pub handler: RequestFn,
}

impl RequestConfig {
    pub(super) fn resolve(
        spec: &'static RequestSpec,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let mut config = Self {
            name: spec.name.to_owned(),
            subject: spec.subject.to_owned(),
            timeout: spec.attrs.timeout.unwrap_or(defaults::REQUEST_TIMEOUT),
            max_workers: spec
                .attrs
                .max_workers
                .unwrap_or(defaults::REQUEST_MAX_WORKERS),
            states: spec.states,
            location: spec.location,
            handler: spec.handler,
        };
        for (key, value) in overrides {
            let path = format!("functions.{}.{key}", config.name.to_lowercase());
            let path = path.as_str();
            match key.as_str() {
                "subject" => config.subject = subject(path, value, true)?,
                "timeout" => config.timeout = duration(path, value)?,
                "max_workers" => config.max_workers = integer(path, value, 1)?,
                _ => {
                    return Err(ConfigError::invalid(
                        path,
                        format!(
                            "{} (a request function)",
                            unknown_key(key, keys::request_override_keys())
                        ),
                    ))
                }
            }
        }
        Ok(config)
    }
}
