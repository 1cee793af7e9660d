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
    let tls = tls_settings(config);
    // The connection errors logged: each distinct one is logged once (at warn) until a
    // connection succeeds, not on every retry.
    let last_error = std::sync::Arc::new(std::sync::Mutex::new(
        std::collections::BTreeSet::<String>::new(),
    ));
    // Called before every connection attempt with each server's last error (the events carry
    // only its kind): logs why the previous attempt failed, e.g. a certificate not signed by
    // NATS_CA. `None`: the client's own choice of server.
    let reported = last_error.clone();
    // The server of the connection that was lost is tried last: a server cut off from the pod
    // would hold each attempt for the whole connection timeout.
    let choice = std::sync::Arc::new(std::sync::Mutex::new(ServerChoice::default()));
    let chosen = choice.clone();
    options = options.reconnect_to_server_callback(move |servers, _info| {
        let pick = chosen.lock().ok().and_then(|mut choice| choice.pick(&servers));
        let failures: Vec<(String, String)> = servers
            .iter()
            .filter_map(|server| {
                let error = server.last_error.clone()?;
                // host:port only: a URL may carry a password.
                Some((format!("{}:{}", server.addr.host(), server.addr.port()), error))
            })
            .collect();
        let reported = reported.clone();
        let tls = tls.clone();
        async move {
            for (server, error) in failures {
                let line = format!("{server}: {error}");
                let new = reported
                    .lock()
                    .map(|mut logged| logged.insert(line))
                    .unwrap_or(true);
                if new {
                    tracing::warn!(%server, %error, %tls, "cannot connect to NATS; retrying (not ready until connected)");
                } else {
                    tracing::debug!(%server, %error, "cannot connect to NATS; retrying");
                }
            }
            pick
        }
    });
    options = options.event_callback(move |event| {
        if matches!(event, Event::Connected) {
            if let Ok(mut choice) = choice.lock() {
                choice.connected();
            }
        }
        let connected = connected.clone();
        let connections = connections.clone();
        let last_error = last_error.clone();
        async move {
            match event {
                Event::Connected => {
                    connected.set(1);
                    connections.send_modify(|count| *count += 1);
                    if let Ok(mut logged) = last_error.lock() {
                        logged.clear();
                    }
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

/// Which server a reconnect tries: the fewest failed attempts first, the server whose
/// connection was lost after every other, at random among equals (so pods spread out).
#[derive(Debug, Default)]
struct ServerChoice {
    /// The server last handed to the client.
    tried: Option<async_nats::ServerAddr>,
    /// The server of the last established connection.
    lost: Option<async_nats::ServerAddr>,
}

impl ServerChoice {
    fn pick(&mut self, servers: &[async_nats::Server]) -> Option<async_nats::ReconnectToServer> {
        let rank = |server: &async_nats::Server| {
            (
                server.failed_attempts,
                self.lost.as_ref() == Some(&server.addr),
            )
        };
        let best = servers.iter().map(rank).min()?;
        let equals: Vec<_> = servers.iter().filter(|s| rank(s) == best).collect();
        let server = equals[rand::random_range(0..equals.len())];
        self.tried = Some(server.addr.clone());
        Some(async_nats::ReconnectToServer {
            addr: server.addr.clone(),
            // The client's reconnect delay (`reconnect_delay_callback`).
            delay: None,
        })
    }

    /// The last server tried is now the connected one.
    fn connected(&mut self) {
        self.lost = self.tried.clone();
    }
}

/// The JetStream context of every JetStream request jetfn makes: in `NATS_JS_DOMAIN` when set
/// (`$JS.<domain>.API`), else the connected server's own.
pub(crate) fn jetstream(
    client: &async_nats::Client,
    config: &NatsConfig,
) -> async_nats::jetstream::Context {
    async_nats::jetstream::with_prefix(client.clone(), &api_prefix(config))
}

/// The JetStream API prefix of [`jetstream`]'s contexts: `$JS.<domain>.API` in `NATS_JS_DOMAIN`,
/// else `$JS.API`.
pub(crate) fn api_prefix(config: &NatsConfig) -> String {
    match &config.js_domain {
        Some(domain) => format!("$JS.{domain}.API"),
        None => "$JS.API".to_owned(),
    }
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

/// The TLS settings in force, for log lines: `off`, or the files named by `NATS_CA`,
/// `NATS_CERT` and `NATS_KEY`.
fn tls_settings(config: &NatsConfig) -> String {
    let mut parts = Vec::new();
    if let Some(ca) = &config.ca {
        parts.push(format!("NATS_CA={}", ca.display()));
    }
    if let Some((cert, key)) = &config.client_cert {
        parts.push(format!("NATS_CERT={}", cert.display()));
        parts.push(format!("NATS_KEY={}", key.display()));
    }
    if parts.is_empty() {
        "off".to_owned()
    } else {
        parts.join(" ")
    }
}

/// Connect options carrying the configured credentials and TLS settings.
async fn authenticated(config: &NatsConfig) -> Result<ConnectOptions, ConnectError> {
    let mut options = ConnectOptions::new();
    if let Some(path) = &config.creds {
        options = options.credentials_file(path).await.map_err(ConnectError)?;
    }
    if let Some(path) = &config.nkey {
        let seed = tokio::fs::read_to_string(path).await.map_err(|e| {
            ConnectError(std::io::Error::new(
                e.kind(),
                format!("cannot read the NKEY seed {}: {e}", path.display()),
            ))
        })?;
        options = options.nkey(seed.trim().to_owned());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn server(port: u16, failed_attempts: usize) -> async_nats::Server {
        async_nats::Server {
            addr: format!("nats://127.0.0.1:{port}").parse().expect("address"),
            failed_attempts,
            did_connect: true,
            is_discovered: false,
            last_error: None,
        }
    }

    #[test]
    fn the_jetstream_domain_prefixes_every_jetstream_request() {
        let config = |vars: &[(&str, &str)]| {
            crate::config::Config::from_vars(vars.iter().copied())
                .expect("valid")
                .nats
        };
        assert_eq!(api_prefix(&config(&[])), "$JS.API");
        assert_eq!(
            api_prefix(&config(&[("NATS_JS_DOMAIN", "hub")])),
            "$JS.hub.API"
        );
    }

    #[test]
    fn a_reconnect_tries_the_server_it_lost_after_every_other() {
        let mut choice = ServerChoice::default();
        let first = choice
            .pick(&[server(1, 0), server(2, 0), server(3, 0)])
            .expect("a server");
        choice.connected();
        for _ in 0..50 {
            let next = choice
                .pick(&[server(1, 0), server(2, 0), server(3, 0)])
                .expect("a server");
            assert_ne!(next.addr, first.addr, "the lost server is not tried first");
        }
        // Servers that failed since rank after it.
        let lost = first.addr.port();
        let pool: Vec<_> = [1, 2, 3]
            .into_iter()
            .map(|port| server(port, usize::from(port != lost)))
            .collect();
        let next = choice.pick(&pool).expect("a server");
        assert_eq!(next.addr.port(), lost);
    }
}
