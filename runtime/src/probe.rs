//! A minimal HTTP/1.0 `GET` over a TCP stream, and the `healthcheck` command built on it: a
//! distroless image has no shell and no curl, so Docker's `HEALTHCHECK` runs the binary itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;

/// How long `healthcheck` waits for `/health`.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// `GET path` over HTTP/1.0 (the server closes the connection after the response): returns the
/// status code and the body.
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The `healthcheck` command: exit 0 when this host's `/health` (at `JETFN_HTTP_ADDR`, a
/// wildcard address replaced by loopback) answers 200 within 3 s, else 1.
pub(crate) fn healthcheck(config: &Config) -> ExitCode {
    let addr = local(config.http_addr);
    let checked = crate::command::block_on(async {
        match tokio::time::timeout(HEALTHCHECK_TIMEOUT, http_get(addr, "/health")).await {
            Ok(Ok((200, _))) => Ok(()),
            Ok(Ok((status, _))) => Err(format!("http://{addr}/health answered {status}")),
            Ok(Err(error)) => Err(format!("http://{addr}/health: {error}")),
            Err(_) => Err(format!(
                "http://{addr}/health did not answer within {HEALTHCHECK_TIMEOUT:?}"
            )),
        }
    });
    match checked {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("jetfn healthcheck: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Where to reach a listener bound to `addr` from this host: a wildcard address (`0.0.0.0`,
/// `::`) becomes the loopback address of its family.
fn local(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_addresses_become_loopback() {
        let cases = [
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("[::]:9000", "[::1]:9000"),
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("10.1.2.3:8080", "10.1.2.3:8080"),
        ];
        for (bound, reached) in cases {
            let bound: SocketAddr = bound.parse().expect("address");
            assert_eq!(local(bound).to_string(), reached, "{bound}");
        }
    }

    #[tokio::test]
    async fn get_reads_the_status_and_the_body() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = vec![0; 1024];
            let n = socket.read(&mut request).await.expect("read");
            let request = String::from_utf8_lossy(&request[..n]).into_owned();
            socket
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nnope")
                .await
                .expect("write");
            request
        });
        let (status, body) = http_get(addr, "/ready").await.expect("response");
        assert_eq!((status, body.as_str()), (503, "nope"));
        let request = server.await.expect("server");
        assert!(request.starts_with("GET /ready HTTP/1.0\r\n"), "{request}");
    }
}
