//! TLS for an `https://` OTLP endpoint: rustls with the ring provider (what async-nats already
//! compiles), trusting the system's root certificates and those of
//! `OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE`.

use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::Attempt;

/// The connector of an `https://` endpoint and the name its certificate must carry.
pub(super) struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("name", &self.name).finish()
    }
}

impl Tls {
    /// TLS to `host` (a DNS name or an IP address, as the endpoint's URL has it), trusting the
    /// system's roots and the PEM certificates in `certificate`.
    pub(super) fn new(host: &str, certificate: Option<&Path>) -> Result<Self, String> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("OTLP endpoint host {host:?}: {e}"))?;
        let mut roots = RootCertStore::empty();
        // Unreadable system certificates are skipped: the ones that load still count.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if let Some(path) = certificate {
            let trusted = read_certificates(path)?;
            for cert in trusted {
                roots
                    .add(cert)
                    .map_err(|e| format!("OTLP certificate {}: {e}", path.display()))?;
            }
        }
        if roots.is_empty() {
            return Err(
                "OTLP over https: no trusted root certificate (none in the system's \
                 store; name a PEM file in OTEL_EXPORTER_OTLP_CERTIFICATE)"
                    .to_owned(),
            );
        }
        let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("OTLP TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }

    /// The TLS handshake over `stream`; a certificate the roots do not vouch for is final (it
    /// will not verify on a retry), anything else may pass next time.
    pub(super) async fn connect(&self, stream: TcpStream) -> Result<TlsStream<TcpStream>, Attempt> {
        self.connector
            .connect(self.name.clone(), stream)
            .await
            .map_err(|error| match error.kind() {
                std::io::ErrorKind::InvalidData => Attempt::Final(format!("TLS: {error}")),
                _ => Attempt::Retry(None),
            })
    }
}

/// The certificates of a PEM file; none at all is an error.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("OTLP certificate {}: {e}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!(
            "OTLP certificate {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::pki_types::PrivateKeyDer;
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::TlsAcceptor;

    use super::super::tests::{export, exporter_with};
    use super::*;
    use crate::config::{OtlpConfig, OtlpProtocol};

    /// A CA's certificate (PEM) and a server certificate for 127.0.0.1 it signed, with its key.
    fn pki() -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("CA");
        let key = KeyPair::generate().expect("key");
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("params")
            .signed_by(&key, &ca)
            .expect("signed");
        let key = PrivateKeyDer::try_from(key.serialize_der()).expect("key DER");
        (ca.pem(), server.der().clone(), key)
    }

    /// What an HTTPS receiver got.
    struct Received {
        /// Each request's head (lowercased) and body.
        requests: mpsc::Receiver<(String, Vec<u8>)>,
        /// TCP connections accepted, handshakes completed or not.
        connections: Arc<AtomicUsize>,
    }

    /// An HTTPS receiver on 127.0.0.1 answering 200 to every request.
    fn https_receiver(
        cert: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
    ) -> (String, Received) {
        let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("https://{}/v1/traces", listener.local_addr().expect("addr"));
        let (sent, requests) = mpsc::channel();
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                while let Ok((stream, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    // A handshake the client refuses ends this connection, not the receiver.
                    let Ok(mut stream) = acceptor.accept(stream).await else {
                        continue;
                    };
                    let mut bytes = Vec::new();
                    let mut chunk = [0; 4096];
                    let (head, body) = loop {
                        let Ok(n @ 1..) = stream.read(&mut chunk).await else {
                            return;
                        };
                        bytes.extend_from_slice(&chunk[..n]);
                        let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|line| line.strip_prefix("content-length:"))
                            .and_then(|value| value.trim().parse().ok())
                            .expect("content-length");
                        if bytes.len() >= end + 4 + length {
                            break (head, bytes[end + 4..end + 4 + length].to_vec());
                        }
                    };
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    stream.write_all(reply).await.expect("reply");
                    let _ = sent.send((head, body));
                }
            });
        });
        let received = Received {
            requests,
            connections,
        };
        (url, received)
    }

    fn config(url: &str, certificate: &Path) -> OtlpConfig {
        OtlpConfig {
            endpoint: url.to_owned(),
            protocol: OtlpProtocol::HttpProtobuf,
            headers: Vec::new(),
            timeout: Duration::from_secs(5),
            certificate: Some(certificate.to_owned()),
        }
    }

    #[test]
    fn exports_over_https_to_a_collector_its_certificate_file_vouches_for() {
        let (ca, cert, key) = pki();
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca).expect("write CA");
        let (url, received) = https_receiver(cert, key);
        let exporter = exporter_with(config(&url, &ca_file)).expect("exporter");
        export(&exporter).expect("exported over TLS");
        let (head, body) = received.requests.recv().expect("a request");
        assert!(head.starts_with("post /v1/traces http/1.1"), "{head}");
        let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP");
        assert_eq!(request.resource_spans[0].scope_spans[0].spans.len(), 1);
    }

    #[test]
    fn a_collector_nobody_vouches_for_gets_nothing_and_is_not_asked_again() {
        let (_, cert, key) = pki();
        // Another CA: the roots are not empty, and none of them signed the receiver's cert.
        let (other_ca, _, _) = pki();
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_file = dir.path().join("other.pem");
        std::fs::write(&ca_file, other_ca).expect("write CA");
        let (url, received) = https_receiver(cert, key);
        let exporter = exporter_with(config(&url, &ca_file)).expect("exporter");
        let error = export(&exporter)
            .expect_err("an unverified collector")
            .to_string();
        assert!(error.contains("TLS"), "{error}");
        // Final: one connection, not retried (a retryable failure connects four times).
        assert_eq!(received.connections.load(Ordering::SeqCst), 1);
        assert!(
            received.requests.try_recv().is_err(),
            "the receiver got a request"
        );
    }

    #[test]
    fn a_certificate_file_without_certificates_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing PEM here\n").expect("write");
        let error = Tls::new("collector.example", Some(&empty)).expect_err("no certificate");
        assert!(
            error.contains("empty.pem") && error.contains("no PEM certificate"),
            "{error}"
        );
    }
}
