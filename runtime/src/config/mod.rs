//! Configuration: defaults < `jetfn.toml` (or the file named by `JETFN_CONFIG`) < environment.
//!
//! This is the only module that reads the process environment, and only in
//! [`Config::from_env`]; everything else, tests included, goes through [`Config::from_vars`] with
//! a map of variables.
//!
//! | variable | file key | meaning | default |
//! |---|---|---|---|
//! | `NATS_URL` | `nats.url` | server URL(s), comma-separated | `nats://127.0.0.1:4222` |
//! | `NATS_CREDS` | `nats.creds` | credentials file (user JWT + seed) | none |
//! | `NATS_NKEY` | `nats.nkey` | file holding a user NKEY seed (`SU...`) | none |
//! | `NATS_USER` / `NATS_PASSWORD` | `nats.user` / `nats.password` | user and password | none |
//! | `NATS_TOKEN` | `nats.token` | token | none |
//! | `NATS_CA` / `NATS_CERT` / `NATS_KEY` | `nats.ca` / `nats.cert` / `nats.key` | TLS root and client certificate | none |
//! | `NATS_JS_DOMAIN` | `nats.js_domain` | JetStream domain of the streams, consumers and KV buckets (a leaf node using a hub's JetStream) | none |
//! | `JETFN_NATS_PING_INTERVAL` | `nats.ping_interval` | client ping period; a dead network path is noticed within three | `8s` |
//! | `JETFN_FUNCTIONS` | `select` | function names to run, comma-separated; `*` = all | all |
//! | `JETFN_HTTP_ADDR` | `http_addr` | health/metrics listener | `0.0.0.0:8080` |
//! | `JETFN_SHUTDOWN_TIMEOUT` | `shutdown_timeout` | drain budget on SIGTERM | `25s` |
//! | `JETFN_STARTUP_TIMEOUT` | `startup_timeout` | bound on the startup hooks (`App::on_startup`) | `60s` |
//! | `JETFN_AUTO_CREATE_STREAMS` | `auto_create_streams` | create a stream when none captures a subject | `true` |
//! | `JETFN_LOG_FORMAT` | `log_format` | `text` or `json` | `text` |
//! | `JETFN__FUNCTIONS__<NAME>__<KEY>` | `functions.<name>.<key>` | per-function override of an attribute | — |
//!
//! `RUST_LOG` (default `info`) filters logs; it is read by the log subscriber itself.
//!
//! OpenTelemetry export uses the standard variables: it turns on when
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set (and neither
//! `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none`), with
//! `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL` = `http/protobuf` (default) or `grpc`,
//! `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS` (`k=v,k2=v2`), `OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT`
//! (milliseconds, default 10000), and `OTEL_SERVICE_NAME` (default: the binary's name). Export
//! requests are not compressed.

mod capture;
mod function;
mod nats;
mod otlp;
mod request;
mod value;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use function::{Backoff, FunctionConfig};
pub use nats::NatsConfig;
#[cfg(test)]
use nats::DEFAULT_PING_INTERVAL;
#[cfg(not(feature = "otlp-grpc"))]
pub(crate) use otlp::GRPC_NEEDS_FEATURE;
pub use otlp::{OtlpConfig, OtlpProtocol};
pub use request::RequestConfig;
pub use value::Secret;

use crate::registry::Registry;

const DEFAULT_CONFIG_FILE: &str = "jetfn.toml";
const FUNCTION_PREFIX: &str = "JETFN__FUNCTIONS__";

/// Environment variables and the configuration keys they set.
const ENV_KEYS: &[(&str, &str)] = &[
    ("NATS_URL", "nats.url"),
    ("NATS_CREDS", "nats.creds"),
    ("NATS_NKEY", "nats.nkey"),
    ("NATS_USER", "nats.user"),
    ("NATS_PASSWORD", "nats.password"),
    ("NATS_TOKEN", "nats.token"),
    ("NATS_CA", "nats.ca"),
    ("NATS_CERT", "nats.cert"),
    ("NATS_KEY", "nats.key"),
    ("JETFN_NATS_PING_INTERVAL", "nats.ping_interval"),
    ("NATS_JS_DOMAIN", "nats.js_domain"),
    ("JETFN_FUNCTIONS", "select"),
    ("JETFN_HTTP_ADDR", "http_addr"),
    ("JETFN_SHUTDOWN_TIMEOUT", "shutdown_timeout"),
    ("JETFN_STARTUP_TIMEOUT", "startup_timeout"),
    ("JETFN_AUTO_CREATE_STREAMS", "auto_create_streams"),
    ("JETFN_LOG_FORMAT", "log_format"),
];

/// The runtime's configuration, validated.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// How to reach NATS.
    pub nats: NatsConfig,
    /// Which functions run (`JETFN_FUNCTIONS`): `None` = all.
    pub select: Option<Vec<String>>,
    /// The health/metrics listener (`JETFN_HTTP_ADDR`, default `0.0.0.0:8080`).
    pub http_addr: SocketAddr,
    /// The drain budget on SIGTERM (`JETFN_SHUTDOWN_TIMEOUT`, default `25s`).
    pub shutdown_timeout: Duration,
    /// The bound on the startup hooks (`JETFN_STARTUP_TIMEOUT`, default `60s`).
    pub startup_timeout: Duration,
    /// Create a stream when none captures a function's subject (`JETFN_AUTO_CREATE_STREAMS`,
    /// default `true`).
    pub auto_create_streams: bool,
    /// Log output format (`JETFN_LOG_FORMAT`, default `text`).
    pub log_format: LogFormat,
    /// OpenTelemetry export (`OTEL_*`); `None` = traces are propagated but not exported.
    pub otlp: Option<OtlpConfig>,
    /// `OTEL_SERVICE_NAME`.
    pub service_name: Option<String>,
    /// Per-function overrides (`JETFN__FUNCTIONS__<NAME>__<KEY>`, `[functions.<name>]`), raw
    /// until resolved against the registry by [`Config::functions`].
    overrides: BTreeMap<String, BTreeMap<String, String>>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Configuration that cannot be used. Its message is one line naming the variable or key and
/// what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value is malformed.
    #[error("{key}: {message}")]
    Invalid {
        /// The variable or key, e.g. `JETFN_SHUTDOWN_TIMEOUT (shutdown_timeout)`.
        key: String,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// A function name that no registered function has.
    #[error("{key}: unknown function `{name}`; known functions: {known}")]
    UnknownFunction {
        /// Where the name was given.
        key: String,
        /// The unknown name.
        name: String,
        /// The registered names, comma-separated.
        known: String,
    },
    /// The configuration file could not be read or parsed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(key: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: describe_key(key),
            message: message.into(),
        }
    }
}

/// The environment variable that sets `key`, with the key, for error messages.
fn describe_key(key: &str) -> String {
    if let Some((env, _)) = ENV_KEYS.iter().find(|(_, k)| *k == key) {
        return format!("{env} ({key})");
    }
    if let Some(rest) = key.strip_prefix("functions.") {
        let env = rest.replace('.', "__").to_uppercase();
        return format!("{FUNCTION_PREFIX}{env} ({key})");
    }
    key.to_owned()
}

/// The loosely typed shape of the merged sources; [`Config::from_vars`] validates every leaf.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    nats: BTreeMap<String, String>,
    select: Option<value::List>,
    http_addr: Option<String>,
    shutdown_timeout: Option<String>,
    startup_timeout: Option<String>,
    auto_create_streams: Option<String>,
    log_format: Option<String>,
    #[serde(default)]
    functions: BTreeMap<String, BTreeMap<String, String>>,
}

impl Config {
    /// Reads the process environment (and the configuration file it names, or `jetfn.toml`).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Builds the configuration from the given variables as if they were the environment: the
    /// file named by `JETFN_CONFIG` (which must exist), else `jetfn.toml` in the working
    /// directory when there is one, overridden by the variables.
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, ConfigError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let vars: BTreeMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let raw = merge(&vars)?;
        let mut config = Self::validate(raw)?;
        config.otlp = otlp::from_vars(&vars)?;
        config.service_name = vars.get("OTEL_SERVICE_NAME").cloned();
        Ok(config)
    }

    fn validate(raw: Raw) -> Result<Self, ConfigError> {
        let nats = NatsConfig::validate(&raw.nats)?;
        let select = match raw.select {
            None => None,
            Some(list) => {
                let names = list.into_items();
                (!names.iter().any(|n| n == "*")).then_some(names)
            }
        };
        let http_addr = match raw.http_addr {
            None => SocketAddr::from(([0, 0, 0, 0], 8080)),
            Some(addr) => addr.parse().map_err(|_| {
                ConfigError::invalid(
                    "http_addr",
                    format!("expected HOST:PORT like 0.0.0.0:8080, got {addr:?}"),
                )
            })?,
        };
        let shutdown_timeout = match raw.shutdown_timeout {
            None => Duration::from_secs(25),
            Some(text) => value::duration("shutdown_timeout", &text)?,
        };
        let startup_timeout = match raw.startup_timeout {
            None => Duration::from_secs(60),
            Some(text) => value::duration("startup_timeout", &text)?,
        };
        let auto_create_streams = match raw.auto_create_streams {
            None => true,
            Some(text) => value::boolean("auto_create_streams", &text)?,
        };
        let log_format = match raw.log_format.as_deref().map(str::trim) {
            None => LogFormat::Text,
            Some(text) if text.eq_ignore_ascii_case("text") => LogFormat::Text,
            Some(json) if json.eq_ignore_ascii_case("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "log_format",
                    format!("expected `text` or `json`, got {other:?}"),
                ))
            }
        };
        Ok(Self {
            nats,
            select,
            http_addr,
            shutdown_timeout,
            startup_timeout,
            auto_create_streams,
            log_format,
            otlp: None,
            service_name: None,
            overrides: raw
                .functions
                .into_iter()
                .map(|(name, keys)| (name.to_lowercase(), keys))
                .collect(),
        })
    }

    /// The effective configuration of every selected function: attributes written on the
    /// function, overridden by configuration, over the defaults. Fails on an unknown function
    /// name in `JETFN_FUNCTIONS` or in a per-function override, and on a malformed override.
    pub fn functions(&self, registry: &Registry) -> Result<Vec<FunctionConfig>, ConfigError> {
        let known = || registry.names().collect::<Vec<_>>().join(", ");
        let unknown = |key: &str, name: &str| ConfigError::UnknownFunction {
            key: describe_key(key),
            name: name.to_owned(),
            known: known(),
        };
        for name in self.overrides.keys() {
            if !registry
                .names()
                .any(|known| known.eq_ignore_ascii_case(name))
            {
                return Err(unknown(&format!("functions.{name}"), name));
            }
        }
        let selected: Vec<_> = match &self.select {
            None => registry.iter().collect(),
            Some(names) => names
                .iter()
                .filter(|name| registry.request(name).is_none())
                .map(|name| registry.get(name).ok_or_else(|| unknown("select", name)))
                .collect::<Result<_, _>>()?,
        };
        selected
            .into_iter()
            .map(|spec| FunctionConfig::resolve(spec, self.overrides_of(spec.name)))
            .collect()
    }
}

impl Config {
    /// The `JETFN__FUNCTIONS__<NAME>__*` overrides of the function `name` (none if unset).
    fn overrides_of(&self, name: &str) -> &BTreeMap<String, String> {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        self.overrides.get(&name.to_lowercase()).unwrap_or(&NONE)
    }

    /// [`Config::functions`] and [`Config::requests`]: everything selected.
    pub(crate) fn selected(
        &self,
        registry: &Registry,
    ) -> Result<(Vec<FunctionConfig>, Vec<RequestConfig>), ConfigError> {
        let selected = (self.functions(registry)?, self.requests(registry)?);
        if self.auto_create_streams {
            let everything = Config {
                select: None,
                ..self.clone()
            };
            let is_selected = |name: &str| {
                selected.0.iter().any(|f| f.name == name)
                    || selected.1.iter().any(|r| r.name == name)
            };
            capture::check(
                &everything.functions(registry)?,
                &everything.requests(registry)?,
                &is_selected,
            )?;
        }
        Ok(selected)
    }

    /// The effective configuration of every selected request function (`JETFN_FUNCTIONS`
    /// selects among event and request functions alike). Unknown names are reported by
    /// [`Config::functions`].
    pub fn requests(&self, registry: &Registry) -> Result<Vec<RequestConfig>, ConfigError> {
        let selected: Vec<_> = match &self.select {
            None => registry.requests().collect(),
            Some(names) => names
                .iter()
                .filter_map(|name| registry.request(name))
                .collect(),
        };
        selected
            .into_iter()
            .map(|spec| RequestConfig::resolve(spec, self.overrides_of(spec.name)))
            .collect()
    }
}

fn merge(vars: &BTreeMap<String, String>) -> Result<Raw, ConfigError> {
    let mut builder = config::Config::builder();
    let file_error = |path: &str, error: config::ConfigError| ConfigError::File {
        path: path.to_owned(),
        message: error.to_string(),
    };
    match vars.get("JETFN_CONFIG") {
        Some(path) => {
            if !std::path::Path::new(path).is_file() {
                return Err(ConfigError::invalid(
                    "JETFN_CONFIG",
                    format!("no such file: {path}"),
                ));
            }
            builder = builder.add_source(config::File::from(PathBuf::from(path)).required(true));
        }
        None => {
            if std::path::Path::new(DEFAULT_CONFIG_FILE).is_file() {
                builder = builder.add_source(config::File::with_name(DEFAULT_CONFIG_FILE));
            }
        }
    }
    for (env, key) in ENV_KEYS {
        builder = builder
            .set_override_option(*key, vars.get(*env).cloned())
            .map_err(|e| file_error(env, e))?;
    }
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix(FUNCTION_PREFIX) else {
            continue;
        };
        let Some((function, key)) = rest.split_once("__") else {
            return Err(ConfigError::invalid(
                name,
                "expected JETFN__FUNCTIONS__<NAME>__<KEY>",
            ));
        };
        let path = format!(
            "functions.{}.{}",
            function.to_lowercase(),
            key.to_lowercase()
        );
        builder = builder
            .set_override(path, value.clone())
            .map_err(|e| file_error(name, e))?;
    }
    let source = vars
        .get("JETFN_CONFIG")
        .map_or(DEFAULT_CONFIG_FILE, String::as_str);
    builder
        .build()
        .and_then(|merged| merged.try_deserialize::<Raw>())
        .map_err(|e| file_error(source, e))
}

#[cfg(test)]
mod tests;
