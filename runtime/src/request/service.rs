//! The NATS micro service of this process: the `$SRV` discovery protocol (`PING`, `INFO`,
//! `STATS`, each on `$SRV.<VERB>`, `$SRV.<VERB>.<name>` and `$SRV.<VERB>.<name>.<id>`), as
//! `nats micro ls` / `info` / `stats` read it.
//!
//! Written by hand rather than with async-nats's `service` module so that the endpoints are
//! plain queue subscriptions this runtime can drain on shutdown (no request lost between the
//! unsubscribe and the server's last delivery) while the requests already delivered are
//! answered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use serde::Serialize;

use super::reply::Failure;

/// The queue group every endpoint subscribes in.
pub(crate) const QUEUE_GROUP: &str = "jetfn";

/// The service's identity.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) name: String,
    pub(crate) id: String,
    pub(crate) version: String,
    pub(crate) started: SystemTime,
}

impl Identity {
    /// The binary's name (letters, digits, `-`, `_`; else `jetfn`), the crate's version, and a
    /// fresh id.
    pub(crate) fn of_this_process() -> Self {
        let name = std::env::current_exe()
            .ok()
            .and_then(|path| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .map(|stem| {
                stem.chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect::<String>()
            })
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "jetfn".to_owned());
        let id: String = {
            use rand::distr::{Alphanumeric, SampleString};
            Alphanumeric.sample_string(&mut rand::rng(), 22)
        };
        Self {
            name,
            id,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started: SystemTime::now(),
        }
    }
}

/// The live figures of one endpoint, for `$SRV.STATS`.
#[derive(Debug, Default)]
pub(crate) struct EndpointStats {
    requests: u64,
    errors: u64,
    processing: Duration,
    last_error: Option<Failure>,
}

impl EndpointStats {
    pub(crate) fn record(&mut self, elapsed: Duration, failure: Option<&Failure>) {
        self.requests += 1;
        self.processing += elapsed;
        if let Some(failure) = failure {
            self.errors += 1;
            self.last_error = Some(failure.clone());
        }
    }
}

/// One endpoint as the service describes it.
#[derive(Debug, Clone)]
pub(crate) struct EndpointInfo {
    pub(crate) name: String,
    pub(crate) subject: String,
    pub(crate) stats: Arc<Mutex<EndpointStats>>,
}

#[derive(Serialize)]
struct Ping<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    id: &'a str,
    version: &'a str,
    metadata: HashMap<String, String>,
}

#[derive(Serialize)]
struct Info<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    id: &'a str,
    version: &'a str,
    description: &'static str,
    metadata: HashMap<String, String>,
    endpoints: Vec<EndpointInfoJson<'a>>,
}

#[derive(Serialize)]
struct EndpointInfoJson<'a> {
    name: &'a str,
    subject: &'a str,
    queue_group: &'static str,
    metadata: HashMap<String, String>,
}

#[derive(Serialize)]
struct Stats<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    id: &'a str,
    version: &'a str,
    started: String,
    metadata: HashMap<String, String>,
    endpoints: Vec<EndpointStatsJson<'a>>,
}

#[derive(Serialize)]
struct EndpointStatsJson<'a> {
    name: &'a str,
    subject: &'a str,
    queue_group: &'static str,
    num_requests: u64,
    num_errors: u64,
    /// Nanoseconds.
    processing_time: u128,
    /// Nanoseconds.
    average_processing_time: u128,
    last_error: String,
}

#[derive(Debug, Clone, Copy)]
enum Verb {
    Ping,
    Info,
    Stats,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Ping => "PING",
            Verb::Info => "INFO",
            Verb::Stats => "STATS",
        }
    }
}

/// The discovery responder: subscribed to the nine `$SRV` subjects.
pub(crate) struct Discovery {
    subscriptions: Vec<(Verb, async_nats::Subscriber)>,
}

impl Discovery {
    /// Subscribes to the discovery subjects of `identity`.
    pub(crate) async fn subscribe(
        client: &async_nats::Client,
        identity: &Identity,
    ) -> Result<Self, async_nats::SubscribeError> {
        let mut subscriptions = Vec::with_capacity(9);
        for verb in [Verb::Ping, Verb::Info, Verb::Stats] {
            let verb_name = verb.as_str();
            for subject in [
                format!("$SRV.{verb_name}"),
                format!("$SRV.{verb_name}.{}", identity.name),
                format!("$SRV.{verb_name}.{}.{}", identity.name, identity.id),
            ] {
                subscriptions.push((verb, client.subscribe(subject).await?));
            }
        }
        Ok(Self { subscriptions })
    }

    /// Answers discovery requests until `stop`, then unsubscribes.
    pub(crate) async fn serve(
        self,
        client: async_nats::Client,
        identity: Identity,
        endpoints: Vec<EndpointInfo>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut merged = futures::stream::select_all(
            self.subscriptions
                .into_iter()
                .map(|(verb, subscriber)| subscriber.map(move |message| (verb, message))),
        );
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => break,
                next = merged.next() => next,
            };
            let Some((verb, message)) = next else { break };
            let Some(reply) = message.reply else { continue };
            let body = match verb {
                Verb::Ping => serde_json::to_vec(&ping(&identity)),
                Verb::Info => serde_json::to_vec(&info(&identity, &endpoints)),
                Verb::Stats => serde_json::to_vec(&stats(&identity, &endpoints)),
            };
            match body {
                Ok(body) => {
                    if let Err(error) = client.publish(reply, body.into()).await {
                        tracing::debug!(%error, "cannot answer a $SRV request");
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot encode a $SRV reply"),
            }
        }
        // Dropping the subscribers unsubscribes them.
    }
}

fn ping(identity: &Identity) -> Ping<'_> {
    Ping {
        kind: "io.nats.micro.v1.ping_response",
        name: &identity.name,
        id: &identity.id,
        version: &identity.version,
        metadata: HashMap::new(),
    }
}

fn info<'a>(identity: &'a Identity, endpoints: &'a [EndpointInfo]) -> Info<'a> {
    Info {
        kind: "io.nats.micro.v1.info_response",
        name: &identity.name,
        id: &identity.id,
        version: &identity.version,
        description: "jetfn request functions",
        metadata: HashMap::new(),
        endpoints: endpoints
            .iter()
            .map(|endpoint| EndpointInfoJson {
                name: &endpoint.name,
                subject: &endpoint.subject,
                queue_group: QUEUE_GROUP,
                metadata: HashMap::new(),
            })
            .collect(),
    }
}

fn stats<'a>(identity: &'a Identity, endpoints: &'a [EndpointInfo]) -> Stats<'a> {
    let started = time::OffsetDateTime::from(identity.started)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Stats {
        kind: "io.nats.micro.v1.stats_response",
        name: &identity.name,
        id: &identity.id,
        version: &identity.version,
        started,
        metadata: HashMap::new(),
        endpoints: endpoints
            .iter()
            .map(|endpoint| {
                let figures = endpoint.stats.lock().map(|s| {
                    (
                        s.requests,
                        s.errors,
                        s.processing,
                        s.last_error
                            .as_ref()
                            .map(|f| format!("{}:{}", f.code, f.message)),
                    )
                });
                let (requests, errors, processing, last_error) =
                    figures.unwrap_or((0, 0, Duration::ZERO, None));
                let average = if requests == 0 {
                    0
                } else {
                    processing.as_nanos() / u128::from(requests)
                };
                EndpointStatsJson {
                    name: &endpoint.name,
                    subject: &endpoint.subject,
                    queue_group: QUEUE_GROUP,
                    num_requests: requests,
                    num_errors: errors,
                    processing_time: processing.as_nanos(),
                    average_processing_time: average,
                    last_error: last_error.unwrap_or_default(),
                }
            })
            .collect(),
    }
}
