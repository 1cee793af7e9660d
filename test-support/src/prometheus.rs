//! A real Prometheus (and promtool) for tests, found as nats-server is: an environment
//! variable, then `PATH`, then the project's `.tools/bin`; without one, a panic with the install
//! hint (never a silent skip).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What to tell a user who lacks a tool.
const INSTALL_HINT: &str = "run ./scripts/install-prometheus.sh (installs Debian's pinned \
     prometheus and promtool into .tools/bin and the pinned Python prometheus-client into \
     .tools/venv-prometheus)";

/// How long Prometheus may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// `tool`, found through the variable `env`, then `PATH`, then `relative` (under `.tools/`) in
/// the working directory, the workspace or any parent of them; panics with the install hint.
fn find(tool: &str, env: &str, relative: &str) -> PathBuf {
    crate::tools::find_tool(
        tool,
        env,
        relative,
        Some(Path::new(env!("CARGO_MANIFEST_DIR"))),
    )
    .unwrap_or_else(|| {
        panic!("{tool} not found: set {env} to the file, put it on PATH, or {INSTALL_HINT}")
    })
}

/// `promtool`: `PROMTOOL_BIN`, `PATH`, `.tools/bin`.
pub fn promtool() -> PathBuf {
    find("promtool", "PROMTOOL_BIN", "bin/promtool")
}

/// `prometheus`: `PROMETHEUS_BIN`, `PATH`, `.tools/bin`.
pub fn prometheus() -> PathBuf {
    find("prometheus", "PROMETHEUS_BIN", "bin/prometheus")
}

/// A Python with the pinned `prometheus-client` package: `PROMETHEUS_CLIENT_PYTHON`, else
/// `.tools/venv-prometheus/bin/python` (never the system's Python, which may lack it).
pub fn prometheus_client_python() -> PathBuf {
    find(
        "python with prometheus-client",
        "PROMETHEUS_CLIENT_PYTHON",
        "venv-prometheus/bin/python",
    )
}

/// An HTTP response: status, headers (names lower-cased) and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The headers, in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl HttpResponse {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// `GET path` over HTTP/1.0 with extra request headers.
pub async fn http_get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<HttpResponse> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// A running Prometheus on a free loopback port with a temporary store, killed on drop.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with this configuration file text (give `rule_files` absolute paths),
    /// and waits until `/-/ready` answers 200. Panics with the install hint when there is no
    /// prometheus.
    pub async fn start(config: &str) -> Self {
        let binary = prometheus();
        let dir = tempfile::Builder::new()
            .prefix("jetfn-prometheus-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config_file.display()));
        let addr = SocketAddr::from(([127, 0, 0, 1], crate::port::free_port()));
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("prometheus.log"))
                    .unwrap_or_else(|e| panic!("cannot create the log: {e}")),
            ))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        let mut prometheus = Prometheus { child, addr, dir };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(response) = http_get_with(addr, "/-/ready", &[]).await {
                if response.status == 200 {
                    break;
                }
            }
            if let Ok(Some(status)) = prometheus.child.try_wait() {
                panic!(
                    "prometheus exited at start ({status}): {}",
                    prometheus.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within {START_TIMEOUT:?}: {}",
                prometheus.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        prometheus
    }

    /// Where its HTTP API listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/<path>` (already URL-encoded), parsed as JSON; panics on a transport error
    /// or a body that is not JSON.
    pub async fn api(&self, path: &str) -> serde_json::Value {
        let response = http_get_with(self.addr, &format!("/api/v1/{path}"), &[])
            .await
            .unwrap_or_else(|e| panic!("GET /api/v1/{path}: {e}"));
        serde_json::from_str(&response.body).unwrap_or_else(|e| {
            panic!(
                "GET /api/v1/{path}: {} is not JSON ({e}): {}",
                response.status, response.body
            )
        })
    }

    /// An instant query: the whole API answer (`status`, `data.result`, `error`).
    pub async fn query(&self, expr: &str) -> serde_json::Value {
        self.api(&format!("query?query={}", url_encode(expr))).await
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encoding of a query parameter value (RFC 3986 unreserved characters kept).
pub fn url_encode(text: &str) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    const VALUE: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(text, VALUE).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_keep_only_unreserved_characters() {
        assert_eq!(
            super::url_encode("sum(rate(x{a=\"b\"}[1m])) > 0.5 ~_-ü"),
            "sum%28rate%28x%7Ba%3D%22b%22%7D%5B1m%5D%29%29%20%3E%200.5%20~_-%C3%BC"
        );
    }
}
