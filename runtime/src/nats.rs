//! Connecting to NATS from [`NatsConfig`]: retried on the initial connect and on every
//! disconnect, so an unreachable server is never fatal; or, for one-shot commands such as
//! `provision`, once with a bound on the wait.

use std::time::Duration;

use async_nats::{ConnectOptions, Event};

use crate::config::NatsConfig;
use crate::metrics::Metrics;

/// The NATS client could not be set up (credentials file unreadable, ...).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the NATS connection: {0}")]
pub(crate) struct ConnectError(#[source] pub(crate) std::io::Error);

/// Starts connecting in the background and returns the client at once.
pub(crate) async fn connect(
    config: &NatsConfig,
    name: &str,
    metrics: &Metrics,
    connections: tokio::sync::watch::Sender<u64>,
) -> Result<async_nats::Client, ConnectError> {
    let mut options = authenticated(config)
        .await?
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        // A path that dies without closing is noticed by unanswered pings (three intervals).
        .ping_interval(config.ping_interval)
        // No delay before the first attempt (a cold start from zero), then 200 ms doubling to 5 s.
        .reconnect_delay_callback(|attempts| match attempts {
            0 | 1 => Duration::ZERO,
            n => Duration::from_millis((100u64 << n.min(6)).min(5_000)),
        });
    let connected = metrics.nats_connected.clone();
    options = options.event_callback(move |event| {
        let connected = connected.clone();
        let connections = connections.clone();
        async move {
            match event {
                Event::Connected => {
                    connected.set(1);
                    connections.send_modify(|count| *count += 1);
                    tracing::info!("connected to NATS");
                }
                Event::Disconnected => {
                    connected.set(0);
                    tracing::warn!("disconnected from NATS; reconnecting");
                }
                other => tracing::debug!(event = %other, "NATS event"),
            }
        }
    });
    options
        .connect(config.urls.clone())
        .await
        .map_err(|e| ConnectError(std::io::Error::other(e)))
}

/// Connects once, for a one-shot command: an error unless a server answers within `timeout`.
pub(crate) async fn connect_once(
    config: &NatsConfig,
    name: &str,
    timeout: Duration,
) -> Result<async_nats::Client, ConnectError> {
    let options = authenticated(config)
        .await?
        .name(name)
        .connection_timeout(timeout);
    let urls = config
        .urls
        .iter()
        // host:port only: a URL may carry a password.
        .map(|url| format!("{}:{}", url.host(), url.port()))
        .collect::<Vec<_>>()
        .join(",");
    match tokio::time::timeout(timeout, options.connect(config.urls.clone())).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => Err(ConnectError(std::io::Error::other(format!(
            "cannot connect to {urls}: {error}"
        )))),
        Err(_) => Err(ConnectError(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no NATS server answered at {urls} within {}",
                humantime::format_duration(timeout)
            ),
        ))),
    }
}

/// Connect options carrying the configured credentials and TLS settings.
async fn authenticated(config: &NatsConfig) -> Result<ConnectOptions, ConnectError> {
    let mut options = ConnectOptions::new();
    if let Some(path) = &config.creds {
        options = options.credentials_file(path).await.map_err(ConnectError)?;
    }
    if let Some((user, password)) = &config.user {
        options = options.user_and_password(user.clone(), password.expose().to_owned());
    }
    if let Some(token) = &config.token {
        options = options.token(token.expose().to_owned());
    }
    if let Some(ca) = &config.ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &config.client_cert {
        options = options
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    Ok(options)
}
