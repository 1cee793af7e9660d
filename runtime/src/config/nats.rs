//! How to reach NATS: `NATS_URL`, credentials and TLS.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::{value, ConfigError, Secret};

/// The default of [`NatsConfig::ping_interval`]: a path that dies without closing is noticed
/// within three of them (24 s).
pub(crate) const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(8);

/// How to reach NATS.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NatsConfig {
    /// Server URLs (`NATS_URL`, comma-separated; default `nats://127.0.0.1:4222`).
    pub urls: Vec<async_nats::ServerAddr>,
    /// A credentials file (`NATS_CREDS`).
    pub creds: Option<PathBuf>,
    /// A file holding a user NKEY seed (`NATS_NKEY`; `SU...`, as the `nats` CLI's `--nkey`).
    pub nkey: Option<PathBuf>,
    /// User and password (`NATS_USER`, `NATS_PASSWORD`).
    pub user: Option<(String, Secret)>,
    /// A token (`NATS_TOKEN`).
    pub token: Option<Secret>,
    /// A root certificate to trust (`NATS_CA`).
    pub ca: Option<PathBuf>,
    /// A client certificate and its key (`NATS_CERT`, `NATS_KEY`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// How often the client pings the server (`JETFN_NATS_PING_INTERVAL`, default `8s`). The
    /// client gives a connection up when a third ping is due with two still unanswered, so a
    /// network path that dies without closing (no FIN, no RST) is noticed within three intervals
    /// and the client reconnects; the server's traffic postpones the pings.
    pub ping_interval: Duration,
    /// The JetStream domain of the streams, consumers and KV buckets (`NATS_JS_DOMAIN`; default
    /// none: the domain of the server connected to). Set it for functions on a leaf node that use
    /// a hub's JetStream: every JetStream request then goes to `$JS.<domain>.API`.
    pub js_domain: Option<String>,
}

impl NatsConfig {
    /// The default of [`NatsConfig::ping_interval`] (`JETFN_NATS_PING_INTERVAL`): 8 s, so a path
    /// that dies without closing is noticed within three of them (24 s).
    pub const DEFAULT_PING_INTERVAL: Duration = DEFAULT_PING_INTERVAL;

    pub(super) fn validate(raw: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        const KNOWN: &[&str] = &[
            "url",
            "creds",
            "nkey",
            "user",
            "password",
            "token",
            "ca",
            "cert",
            "key",
            "ping_interval",
            "js_domain",
        ];
        if let Some(key) = raw.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(ConfigError::invalid(
                &format!("nats.{key}"),
                format!("unknown key; known keys: {}", KNOWN.join(", ")),
            ));
        }
        let get = |key: &str| raw.get(key).filter(|v| !v.is_empty());
        let urls = get("url")
            .map_or("nats://127.0.0.1:4222", String::as_str)
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(|url| {
                url.parse::<async_nats::ServerAddr>().map_err(|e| {
                    ConfigError::invalid("nats.url", format!("cannot parse {url:?}: {e}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            return Err(ConfigError::invalid("nats.url", "no server URL given"));
        }
        let file = |key: &str| -> Result<Option<PathBuf>, ConfigError> {
            get(key)
                .map(|path| {
                    let path = PathBuf::from(path);
                    if path.is_file() {
                        Ok(path)
                    } else {
                        Err(ConfigError::invalid(
                            &format!("nats.{key}"),
                            format!("no such file: {}", path.display()),
                        ))
                    }
                })
                .transpose()
        };
        let user = match (get("user"), get("password")) {
            (Some(user), Some(password)) => Some((user.clone(), Secret::new(password.clone()))),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "nats.password",
                    "NATS_USER is set without NATS_PASSWORD",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "nats.user",
                    "NATS_PASSWORD is set without NATS_USER",
                ))
            }
        };
        let client_cert = match (file("cert")?, file("key")?) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "nats.key",
                    "NATS_CERT is set without NATS_KEY",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "nats.cert",
                    "NATS_KEY is set without NATS_CERT",
                ))
            }
        };
        Ok(Self {
            js_domain: get("js_domain").map(|d| js_domain(d)).transpose()?,
            urls,
            creds: file("creds")?,
            nkey: file("nkey")?,
            user,
            token: get("token").cloned().map(Secret::new),
            ca: file("ca")?,
            client_cert,
            ping_interval: match get("ping_interval") {
                None => DEFAULT_PING_INTERVAL,
                Some(text) => {
                    let interval = value::duration("nats.ping_interval", text)?;
                    if interval < Duration::from_millis(100) {
                        return Err(ConfigError::invalid(
                            "nats.ping_interval",
                            format!("expected a duration of at least 100ms, got {text:?}"),
                        ));
                    }
                    interval
                }
            },
        })
    }
}

/// A JetStream domain: one subject token (it becomes `$JS.<domain>.API`), as nats-server
/// accepts in its `jetstream.domain`.
fn js_domain(text: &str) -> Result<String, ConfigError> {
    let bad = text
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>'));
    match bad {
        None => Ok(text.to_owned()),
        Some(c) => Err(ConfigError::invalid(
            "nats.js_domain",
            format!(
                "expected one subject token (no `.`, `*`, `>` or whitespace), got {text:?} ({c:?})"
            ),
        )),
    }
}
