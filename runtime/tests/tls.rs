//! TLS and NKEY authentication against a real nats-server, with certificates and keys made in
//! the test (rcgen, nkeys): a server-verified connection (`NATS_CA`), mutual TLS
//! (`NATS_CERT`/`NATS_KEY`), a wrong CA (never ready, one clear log line, no crash), an NKEY
//! seed (`NATS_NKEY`), and a credentials file (`NATS_CREDS`) against a server in operator mode
//! with JWTs minted in the test.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::time::Duration;

use async_nats::jetstream;
use common::{start, start_unready, PATIENCE};
use jetfn::testing::{eventually, http_get, NatsServer};
use jetfn::{event_handler, Context, Event, HandlerError};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

// --- certificates --------------------------------------------------------------------------------

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, pem: String| {
            std::fs::write(dir.path().join(name), pem).expect("write PEM");
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "jetfn test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        write("ca.pem", ca.pem());
        for (name, sans, usage) in [
            (
                "server",
                vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
            ("client", vec![], ExtendedKeyUsagePurpose::ClientAuth),
        ] {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(sans).expect("params");
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca).expect("signed");
            write(&format!("{name}.pem"), cert.pem());
            write(&format!("{name}-key.pem"), key.serialize_pem());
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn var(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

/// A plain client trusting `ca` (and presenting `client` when given).
async fn tls_client(
    server: &NatsServer,
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> async_nats::Client {
    let mut options = async_nats::ConnectOptions::new()
        .add_root_certificates(ca.to_owned())
        .require_tls(true);
    if let Some((cert, key)) = client {
        options = options.add_client_certificate(cert.to_owned(), key.to_owned());
    }
    options
        .connect(server.url())
        .await
        .expect("test client over TLS")
}

// --- log capture -----------------------------------------------------------------------------------

/// Warnings logged by the NATS connection (`jetfn::nats`): their fields, as `name=value` text.
static WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let meta = event.metadata();
        if *meta.level() != tracing::Level::WARN || !meta.target().starts_with("jetfn::nats") {
            return;
        }
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
        }
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        WARNINGS.lock().expect("lock").push(fields.0);
    }
}

fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(Capture).with(
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter_level(),
        );
        tracing::subscriber::set_global_default(subscriber).expect("the first subscriber");
    });
}

/// The fmt layer shows warnings and errors only.
trait WithFilterLevel<S>: Sized {
    fn with_filter_level(
        self,
    ) -> tracing_subscriber::filter::Filtered<Self, tracing_subscriber::filter::LevelFilter, S>;
}

impl<S, L: tracing_subscriber::Layer<S>> WithFilterLevel<S> for L
where
    S: tracing::Subscriber,
{
    fn with_filter_level(
        self,
    ) -> tracing_subscriber::filter::Filtered<Self, tracing_subscriber::filter::LevelFilter, S>
    {
        tracing_subscriber::Layer::with_filter(self, tracing_subscriber::filter::LevelFilter::WARN)
    }
}

// --- functions -------------------------------------------------------------------------------------

static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[event_handler(subject = "secure.jobs")]
async fn over_tls(_ctx: Context, event: Event<String>) -> Result<(), HandlerError> {
    SEEN.lock().expect("lock").push(event.data);
    Ok(())
}

async fn processes(js: &jetstream::Context, job: &str) -> bool {
    // `Event<String>` takes the payload as UTF-8 text.
    js.publish("secure.jobs", job.to_owned().into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    eventually(PATIENCE, || async {
        SEEN.lock().expect("lock").iter().any(|seen| seen == job)
    })
    .await
}

// --- tests -----------------------------------------------------------------------------------------

#[tokio::test]
async fn connects_to_a_server_verified_by_nats_ca() {
    capture_logs();
    let pki = Pki::new();
    let server = NatsServer::builder()
        .tls(&pki.path("server.pem"), &pki.path("server-key.pem"))
        .start();
    let runtime = start(&server, "over_tls", &[("NATS_CA", &pki.var("ca.pem"))]).await;
    let js = jetstream::new(tls_client(&server, &pki.path("ca.pem"), None).await);
    assert!(
        processes(&js, "server-verified").await,
        "processed over TLS"
    );
    runtime.stop().await;
}

#[tokio::test]
async fn connects_with_a_client_certificate_to_a_server_that_requires_one() {
    capture_logs();
    let pki = Pki::new();
    let server = NatsServer::builder()
        .tls(&pki.path("server.pem"), &pki.path("server-key.pem"))
        .tls_verify(&pki.path("ca.pem"))
        .start();
    let runtime = start(
        &server,
        "over_tls",
        &[
            ("NATS_CA", &pki.var("ca.pem")),
            ("NATS_CERT", &pki.var("client.pem")),
            ("NATS_KEY", &pki.var("client-key.pem")),
        ],
    )
    .await;
    let client = tls_client(
        &server,
        &pki.path("ca.pem"),
        Some((&pki.path("client.pem"), &pki.path("client-key.pem"))),
    )
    .await;
    assert!(
        processes(&jetstream::new(client), "mutual").await,
        "processed over mutual TLS"
    );
    runtime.stop().await;
}

#[tokio::test]
async fn a_wrong_ca_is_never_ready_logs_one_clear_line_and_does_not_crash() {
    capture_logs();
    let pki = Pki::new();
    let other = Pki::new();
    let server = NatsServer::builder()
        .tls(&pki.path("server.pem"), &pki.path("server-key.pem"))
        .start();
    let wrong_ca = other.var("ca.pem");
    let runtime = start_unready(&server.url(), "over_tls", &[("NATS_CA", &wrong_ca)]).await;
    let addr = runtime.http_addr();
    let lines = || {
        WARNINGS
            .lock()
            .expect("lock")
            .iter()
            .filter(|line| line.contains(&wrong_ca))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(
        eventually(PATIENCE, || async { !lines().is_empty() }).await,
        "a warning naming the CA"
    );
    // Several reconnect attempts (0, 0, 0.2, 0.4, 0.8, 1.6 s apart) later: still one line.
    assert!(
        !runtime.wait_ready(Duration::from_secs(4)).await,
        "never ready"
    );
    let (status, _) = http_get(addr, "/ready").await.expect("GET /ready");
    assert_eq!(status, 503);
    let (status, _) = http_get(addr, "/health").await.expect("GET /health");
    assert_eq!(status, 200, "the process serves on");
    let lines = lines();
    assert_eq!(lines.len(), 1, "one line, not one per retry: {lines:?}");
    println!("the wrong CA's log line: {}", lines[0]);
    assert!(
        lines[0].contains("invalid peer certificate"),
        "{}",
        lines[0]
    );
    runtime.stop().await;
}

#[tokio::test]
async fn connects_with_an_nkey_seed() {
    capture_logs();
    let user = nkeys::KeyPair::new_user();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("server.conf");
    std::fs::write(
        &config,
        format!(
            "authorization {{ users = [ {{ nkey: {} }} ] }}\n",
            user.public_key()
        ),
    )
    .expect("server config");
    let seed = dir.path().join("user.nk");
    std::fs::write(&seed, user.seed().expect("seed")).expect("seed file");
    let server = NatsServer::builder().config_file(&config).start();
    let runtime = start(
        &server,
        "over_tls",
        &[("NATS_NKEY", &seed.display().to_string())],
    )
    .await;
    let client = async_nats::ConnectOptions::with_nkey(user.seed().expect("seed"))
        .connect(server.url())
        .await
        .expect("test client with the NKEY");
    assert!(
        processes(&jetstream::new(client), "nkey").await,
        "processed with NKEY authentication"
    );
    runtime.stop().await;

    // Another user's seed is refused: never ready.
    let stranger = dir.path().join("stranger.nk");
    std::fs::write(&stranger, nkeys::KeyPair::new_user().seed().expect("seed")).expect("seed file");
    let refused = start_unready(
        &server.url(),
        "over_tls",
        &[("NATS_NKEY", &stranger.display().to_string())],
    )
    .await;
    assert!(
        !refused.wait_ready(Duration::from_secs(2)).await,
        "a stranger is not let in"
    );
    refused.stop().await;
}

// --- a credentials file, against a server in operator (JWT) mode ------------------------------------

/// A NATS JWT: `claims` (`nats` and `name`) for `subject`, issued and signed by `issuer`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = serde_json::json!({"typ": "JWT", "alg": "ed25519-nkey"});
    let issued = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = serde_json::json!({
        "jti": format!("jetfn-test-{subject}"),
        "iat": issued,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = issuer.sign(signed.as_bytes()).expect("signature");
    format!("{signed}.{}", b64(&signature))
}

#[tokio::test]
async fn connects_with_a_credentials_file() {
    capture_logs();
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let system = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "jetfn-test",
        serde_json::json!({"type": "operator", "version": 2}),
    );
    let limits = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
        "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
    });
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        "shop",
        serde_json::json!({"limits": limits, "type": "account", "version": 2}),
    );
    let system_jwt = jwt(
        &operator,
        &system.public_key(),
        "SYS",
        serde_json::json!({"type": "account", "version": 2}),
    );
    let user_jwt = jwt(
        &account,
        &user.public_key(),
        "jetfn",
        serde_json::json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2,
        }),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("server.conf");
    std::fs::write(
        &config,
        format!(
            "operator: {operator_jwt}\nsystem_account: {sys}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {acc}: {account_jwt}\n  {sys}: {system_jwt}\n}}\n",
            sys = system.public_key(),
            acc = account.public_key(),
        ),
    )
    .expect("server config");
    let creds = dir.path().join("jetfn.creds");
    std::fs::write(
        &creds,
        format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            user.seed().expect("seed")
        ),
    )
    .expect("creds file");
    let server = NatsServer::builder().config_file(&config).start();
    let runtime = start(
        &server,
        "over_tls",
        &[("NATS_CREDS", &creds.display().to_string())],
    )
    .await;
    let client = async_nats::ConnectOptions::with_credentials_file(&creds)
        .await
        .expect("creds")
        .connect(server.url())
        .await
        .expect("test client with the credentials");
    assert!(
        processes(&jetstream::new(client), "creds").await,
        "processed with JWT authentication"
    );
    runtime.stop().await;
}
