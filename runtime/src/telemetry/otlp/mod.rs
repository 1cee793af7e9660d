//! Span export over OTLP/HTTP (`http/protobuf`), the default protocol.
//!
//! The SDK's batch span processor (its queue, batch size and schedule, the standard
//! `OTEL_BSP_*` variables) hands batches to [`HttpExporter`], which encodes them straight into the
//! request body ([`encode`]) and posts it with hyper's HTTP/1.1 client (the hyper axum already
//! brings) on a small runtime of the exporter's own, on the processor's thread:
//! `Content-Type: application/x-protobuf`, the configured headers, a deadline of the configured
//! timeout for the whole export, and up to three retries of what the OTLP specification calls
//! retryable (429, 502, 503, 504, or no answer), after 100 ms, 200 ms, 400 ms (plus jitter) or
//! the server's `Retry-After`, within that deadline. Endpoints are `http://` (a collector or
//! agent beside the process) or `https://` (a hosted collector: rustls, the one async-nats
//! brings, trusting the system's roots and `OTEL_EXPORTER_OTLP_CERTIFICATE`'s); `grpc` goes
//! through `opentelemetry-otlp`'s tonic exporter instead (cargo feature `otlp-grpc`).

mod encode;

mod tls;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, HOST, RETRY_AFTER};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use crate::config::OtlpConfig;
use encode::EncodedResource;
use tls::Tls;

/// Retries after the first attempt.
const RETRIES: u32 = 3;
/// The pause before the first retry; doubled each time.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// An OTLP/HTTP span exporter encoding spans without intermediate protobuf structs.
#[derive(Debug)]
pub(crate) struct HttpExporter {
    endpoint: Uri,
    /// The request target (origin form, `/v1/traces`): what HTTP/1.1 sends to a server.
    target: Uri,
    /// `host:port` to connect to.
    address: String,
    /// For an `https://` endpoint.
    tls: Option<Tls>,
    headers: HeaderMap,
    timeout: Duration,
    /// Made on first use, on the exporting thread: a current-thread runtime, which must not be
    /// made or dropped inside an async context (the batch processor's thread is not one).
    runtime: OnceLock<Result<tokio::runtime::Runtime, String>>,
    resource: EncodedResource,
}

/// What one attempt came to.
enum Attempt {
    /// Exported.
    Done,
    /// Not exported, and trying again will not help.
    Final(String),
    /// Not exported now; retry, after the server's `Retry-After` when it gave one.
    Retry(Option<Duration>),
}

impl HttpExporter {
    /// An exporter for `config` (the endpoint is the full URL, `.../v1/traces`).
    pub(crate) fn new(config: &OtlpConfig) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("OTLP header name {name:?}: {e}"))?;
            let value =
                HeaderValue::from_str(value).map_err(|e| format!("OTLP header {name}: {e}"))?;
            headers.append(name, value);
        }
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        let endpoint: Uri = config
            .endpoint
            .parse()
            .map_err(|e| format!("OTLP endpoint {:?}: {e}", config.endpoint))?;
        let (address, tls) = connection(&endpoint, config)?;
        let authority = endpoint
            .authority()
            .ok_or_else(|| format!("OTLP endpoint {:?}: no host", config.endpoint))?;
        headers.insert(
            HOST,
            HeaderValue::from_str(authority.as_str())
                .map_err(|e| format!("OTLP endpoint {:?}: {e}", config.endpoint))?,
        );
        let target = endpoint
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |path| Uri::from(path.clone()));
        Ok(Self {
            endpoint,
            target,
            address,
            tls,
            headers,
            timeout: config.timeout,
            runtime: OnceLock::new(),
            resource: EncodedResource::default(),
        })
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime, OTelSdkError> {
        self.runtime
            .get_or_init(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| OTelSdkError::InternalFailure(format!("OTLP HTTP runtime: {e}")))
    }

    /// Posts `body`, retrying what may succeed later, within the timeout.
    fn send(&self, body: Vec<u8>) -> OTelSdkResult {
        let runtime = self.runtime()?;
        let deadline = Instant::now() + self.timeout;
        let body = Bytes::from(body);
        let mut pause = FIRST_RETRY;
        for attempt in 0..=RETRIES {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let outcome = runtime.block_on(async {
                tokio::time::timeout(left, self.attempt(body.clone()))
                    .await
                    .unwrap_or(Attempt::Retry(None))
            });
            let retry_after = match outcome {
                Attempt::Done => return Ok(()),
                Attempt::Final(reason) => {
                    return Err(OTelSdkError::InternalFailure(format!(
                        "OTLP export to {}: {reason}",
                        self.endpoint
                    )))
                }
                Attempt::Retry(_) if attempt == RETRIES => break,
                Attempt::Retry(retry_after) => retry_after,
            };
            let jitter =
                Duration::from_millis(rand::random_range(0..=pause.as_millis() as u64 / 2));
            let wait = retry_after.unwrap_or(pause + jitter);
            if Instant::now() + wait >= deadline {
                break;
            }
            std::thread::sleep(wait);
            pause *= 2;
        }
        Err(OTelSdkError::Timeout(self.timeout))
    }

    /// One POST on a new connection (a batch every few seconds does not need a pool).
    async fn attempt(&self, body: Bytes) -> Attempt {
        let Ok(stream) = tokio::net::TcpStream::connect(&self.address).await else {
            return Attempt::Retry(None);
        };
        match &self.tls {
            None => self.post(TokioIo::new(stream), body).await,
            Some(tls) => match tls.connect(stream).await {
                Ok(stream) => self.post(TokioIo::new(stream), body).await,
                Err(attempt) => attempt,
            },
        }
    }

    /// POSTs `body` over `io`, a connection just made.
    async fn post<T>(&self, io: T, body: Bytes) -> Attempt
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let Ok((mut sender, connection)) = hyper::client::conn::http1::handshake(io).await else {
            return Attempt::Retry(None);
        };
        // Drives the connection while the request is answered; ends with it.
        tokio::spawn(connection);
        let mut request = Request::post(self.target.clone());
        if let Some(headers) = request.headers_mut() {
            headers.clone_from(&self.headers);
        }
        let request = match request.body(Full::new(body)) {
            Ok(request) => request,
            Err(error) => return Attempt::Final(error.to_string()),
        };
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(_) => return Attempt::Retry(None),
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Done;
        }
        let retryable = matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS
                | StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT
        );
        if !retryable {
            return Attempt::Final(format!("answered {}", status.as_u16()));
        }
        Attempt::Retry(
            response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map(|seconds| Duration::from_secs(seconds).min(MAX_RETRY_AFTER)),
        )
    }
}

impl SpanExporter for HttpExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let body = encode::request(&self.resource, &batch);
        drop(batch);
        std::future::ready(self.send(body))
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = EncodedResource::new(resource);
    }
}

/// Where `endpoint` is reached, `host:port`, and its TLS when it is `https://`.
fn connection(endpoint: &Uri, config: &OtlpConfig) -> Result<(String, Option<Tls>), String> {
    let https = match endpoint.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(format!(
                "OTLP endpoint {:?}: expected an http:// or https:// URL",
                config.endpoint
            ))
        }
    };
    let authority = endpoint
        .authority()
        .ok_or_else(|| format!("OTLP endpoint {:?}: no host", config.endpoint))?;
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let address = format!("{}:{port}", authority.host());
    let tls = if https {
        Some(Tls::new(authority.host(), config.certificate.as_deref())?)
    } else {
        None
    };
    Ok((address, tls))
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId};
    use opentelemetry::InstrumentationScope;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message;

    use super::*;
    use crate::config::OtlpProtocol;

    /// One received request: its head (lowercased) and body.
    type Received = (String, Vec<u8>);

    /// An HTTP/1.1 receiver answering the given statuses in turn (then 200), with what it got.
    fn receiver(statuses: Vec<(u16, &'static str)>) -> (String, mpsc::Receiver<Received>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/v1/traces", listener.local_addr().expect("addr"));
        let (sent, received) = mpsc::channel();
        std::thread::spawn(move || {
            let mut statuses = statuses.into_iter();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut stream = stream;
                loop {
                    let mut head = String::new();
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(value) = lower.strip_prefix("content-length:") {
                            length = value.trim().parse().unwrap_or(0);
                        }
                        head.push_str(&lower);
                        if line == "\r\n" {
                            break;
                        }
                    }
                    if head.is_empty() {
                        break;
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        break;
                    }
                    let _ = sent.send((head, body));
                    let (status, extra) = statuses.next().unwrap_or((200, ""));
                    let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n{extra}\r\n");
                    if stream.write_all(reply.as_bytes()).is_err() {
                        break;
                    }
                }
            }
        });
        (url, received)
    }

    fn exporter_for(url: &str, headers: &[(&str, &str)], timeout: Duration) -> HttpExporter {
        exporter_with(OtlpConfig {
            endpoint: url.to_owned(),
            protocol: OtlpProtocol::HttpProtobuf,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            timeout,
            certificate: None,
        })
        .expect("exporter")
    }

    /// The exporter of `config`, with a resource.
    pub(super) fn exporter_with(config: OtlpConfig) -> Result<HttpExporter, String> {
        let mut exporter = HttpExporter::new(&config)?;
        exporter.set_resource(&Resource::builder().with_service_name("svc").build());
        Ok(exporter)
    }

    fn one_span() -> Vec<SpanData> {
        let now = std::time::SystemTime::now();
        vec![SpanData {
            span_context: SpanContext::new(
                TraceId::from(5),
                SpanId::from(6),
                TraceFlags::SAMPLED,
                false,
                Default::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Consumer,
            name: "s process".into(),
            start_time: now,
            end_time: now,
            attributes: vec![opentelemetry::KeyValue::new("messaging.system", "nats")],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("jetfn").build(),
        }]
    }

    pub(super) fn export(exporter: &HttpExporter) -> OTelSdkResult {
        futures_executor::block_on(exporter.export(one_span()))
    }

    #[test]
    fn posts_protobuf_with_the_configured_headers() {
        let (url, received) = receiver(vec![]);
        let exporter = exporter_for(&url, &[("api-key", "s3cr=t")], Duration::from_secs(5));
        export(&exporter).expect("exported");
        let (head, body) = received.recv().expect("a request");
        assert!(head.starts_with("post /v1/traces http/1.1"), "{head}");
        assert!(
            head.contains("content-type: application/x-protobuf"),
            "{head}"
        );
        assert!(head.contains("api-key: s3cr=t"), "{head}");
        let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP");
        let spans = &request.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].name, "s process");
    }

    #[test]
    fn retries_what_the_receiver_cannot_take_now_and_not_what_it_refuses() {
        let (url, received) = receiver(vec![(503, ""), (429, "retry-after: 0\r\n")]);
        let exporter = exporter_for(&url, &[], Duration::from_secs(5));
        export(&exporter).expect("exported on the third attempt");
        assert_eq!(received.try_iter().count(), 3);

        let (url, received) = receiver(vec![(400, "")]);
        let exporter = exporter_for(&url, &[], Duration::from_secs(5));
        let error = export(&exporter).expect_err("400 is final");
        assert!(error.to_string().contains("400"), "{error}");
        assert_eq!(received.try_iter().count(), 1);
    }

    #[test]
    fn gives_up_within_the_timeout_when_nobody_listens() {
        // A port nobody listens on: connections are refused, retried, then the export fails.
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let exporter = exporter_for(
            &format!("http://127.0.0.1:{port}/v1/traces"),
            &[],
            Duration::from_secs(2),
        );
        let started = Instant::now();
        assert!(export(&exporter).is_err());
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
}
