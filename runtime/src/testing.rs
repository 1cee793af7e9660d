//! Testing your functions (feature `testing`): [`TestApp`] runs the real runtime in the test
//! process against a real nats-server of its own and tells how each published message ended;
//! [`TestContext`] and [`Event::new`](crate::Event::new) call a handler as a plain async
//! function, recording what it publishes.
//!
//! ```no_run
//! # async fn example() {
//! use jetfn::testing::TestApp;
//!
//! let app = TestApp::new().functions(["charge_payment"]).start().await;
//! let settled = app.publish("shop.inventory.reserved", &"order-1").await;
//! assert!(settled.is_acked());
//! # }
//! ```
//!
//! Below them, [`NatsServer`] is the server harness they use (also for tests that need a server
//! and nothing else): [`NatsServer::start`] runs `nats-server` with JetStream on random loopback ports and a
//! temporary store, reads the ports it chose from its ports file (no log scraping, no fixed
//! sleeps: polling with a deadline), and kills it on drop. [`NatsServer::restart`] brings it back
//! on the same ports and store. The binary is found through `NATS_SERVER_BIN`, then `PATH`, then
//! the project's `.tools/bin`; without one, `start` panics with an install hint.
//!
//! ```no_run
//! # async fn example() {
//! let server = jetfn::testing::NatsServer::start();
//! let client = async_nats::connect(server.url()).await.unwrap();
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::local_server::{find_nats_server, INSTALL_HINT};

mod app;
mod context;

pub use app::{RequestError, RunningApp, Settled, TestApp};
pub use context::{Output, TestContext};

/// How long a server may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running nats-server with JetStream, killed on drop.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    store: tempfile::TempDir,
    extra_args: Vec<String>,
    child: Option<Child>,
    port: u16,
    monitor_port: u16,
}

/// Options for [`NatsServer`]: authentication, TLS, a configuration file.
#[derive(Debug, Default, Clone)]
pub struct NatsServerBuilder {
    args: Vec<String>,
}

impl NatsServerBuilder {
    /// Require this user and password.
    pub fn user(mut self, user: &str, password: &str) -> Self {
        self.args.extend([
            "--user".into(),
            user.into(),
            "--pass".into(),
            password.into(),
        ]);
        self
    }

    /// Require this token.
    pub fn token(mut self, token: &str) -> Self {
        self.args.extend(["--auth".into(), token.into()]);
        self
    }

    /// Serve TLS with this certificate and key (PEM files); clients must use TLS.
    pub fn tls(mut self, cert: &Path, key: &Path) -> Self {
        self.args.push("--tls".into());
        self.args.push("--tlscert".into());
        self.args.push(cert.display().to_string());
        self.args.push("--tlskey".into());
        self.args.push(key.display().to_string());
        self
    }

    /// Require a client certificate signed by this CA (mutual TLS); use with
    /// [`NatsServerBuilder::tls`].
    pub fn tls_verify(mut self, ca: &Path) -> Self {
        self.args.push("--tlsverify".into());
        self.args.push("--tlscacert".into());
        self.args.push(ca.display().to_string());
        self
    }

    /// Run with this configuration file (`-c`), e.g. for NKEY or JWT authentication; the
    /// harness's own flags (ports, JetStream, store) still apply.
    pub fn config_file(mut self, path: &Path) -> Self {
        self.args.push("-c".into());
        self.args.push(path.display().to_string());
        self
    }

    /// Any other nats-server argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// Starts the server; panics with an install hint when there is no nats-server.
    pub fn start(self) -> NatsServer {
        let binary = find_nats_server(Some(Path::new(env!("CARGO_MANIFEST_DIR"))))
            .unwrap_or_else(|| panic!("{INSTALL_HINT}"));
        let store = tempfile::Builder::new()
            .prefix("jetfn-nats-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary store: {e}"));
        let mut server = NatsServer {
            binary,
            store,
            extra_args: self.args,
            child: None,
            port: 0,
            monitor_port: 0,
        };
        server.spawn();
        server
    }
}

impl NatsServer {
    /// Starts a server with JetStream on random ports.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// A server with options.
    pub fn builder() -> NatsServerBuilder {
        NatsServerBuilder::default()
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The monitoring port (`/jsz`, `/varz`, ...).
    pub fn monitor_port(&self) -> u16 {
        self.monitor_port
    }

    /// `http://127.0.0.1:<monitoring port>` (`/jsz`, `/varz`, ...).
    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.monitor_port)
    }

    /// Connects a plain client (no authentication).
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test server {}: {e}", self.url()))
    }

    /// Kills the server (its store is kept) until [`NatsServer::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts the server on the same ports with the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        let ports_dir = self.store.path().join("ports");
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", ports_dir.display()));
        let port = |p: u16| {
            if p == 0 {
                "-1".to_owned()
            } else {
                p.to_string()
            }
        };
        let log_path = self.store.path().join("nats-server.log");
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
        let child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-js"])
            .args(["-p", &port(self.port), "-m", &port(self.monitor_port)])
            .arg("-sd")
            .arg(self.store.path().join("data"))
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.binary.display()));
        let ports_file = ports_dir.join(format!("nats-server_{}.ports", child.id()));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let ports = loop {
            if let Some(ports) = read_ports(&ports_file) {
                break ports;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "nats-server exited at start ({status}); args: {:?}; its log ends:\n{}",
                    self.extra_args,
                    log_tail(&log_path)
                );
            }
            assert!(
                Instant::now() < deadline,
                "nats-server wrote no ports file within {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        (self.port, self.monitor_port) = ports;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last lines of the server's log (why it exited), or why there are none.
fn log_tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(5)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

#[derive(serde::Deserialize)]
struct PortsFile {
    nats: Vec<String>,
    monitoring: Vec<String>,
}

fn read_ports(path: &Path) -> Option<(u16, u16)> {
    let text = std::fs::read_to_string(path).ok()?;
    let ports: PortsFile = serde_json::from_str(&text).ok()?;
    let port_of =
        |urls: &[String]| -> Option<u16> { urls.first()?.rsplit(':').next()?.parse().ok() };
    Some((port_of(&ports.nats)?, port_of(&ports.monitoring)?))
}

/// A minimal `GET` over HTTP/1.0 for tests: returns the status code and the body. (The same
/// request the `healthcheck` command makes.)
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    crate::probe::http_get(addr, path).await
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
