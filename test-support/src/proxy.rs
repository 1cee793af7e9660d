//! A TCP proxy between a client and a server that can freeze the path (stop forwarding without
//! closing anything: no FIN, no RST, as when a node's network goes away), thaw it, or cut it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Path {
    /// Nothing is forwarded; every socket stays open.
    frozen: bool,
    /// Bumped by [`TcpProxy::cut`]: connections accepted before it are closed.
    cuts: u64,
    /// The proxy was dropped: every connection ends.
    closed: bool,
}

/// A TCP proxy on `127.0.0.1:<random port>` forwarding to one upstream address, for network
/// fault tests. It needs a tokio runtime; dropping it closes every connection.
///
/// ```no_run
/// # async fn example() {
/// let server = jetfn::testing::NatsServer::start();
/// let proxy = jetfn_test_support::TcpProxy::start(server.port()).await;
/// // Point the client at `proxy.url()`, then:
/// proxy.freeze(); // the path goes dead without closing
/// proxy.thaw();   // it comes back
/// proxy.cut();    // every connection through it is closed (new ones are accepted)
/// # }
/// ```
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    path: watch::Sender<Path>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a random loopback port and forwards to `127.0.0.1:<upstream_port>`; panics
    /// when it cannot listen.
    pub async fn start(upstream_port: u16) -> Self {
        let upstream = SocketAddr::from(([127, 0, 0, 1], upstream_port));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("the proxy cannot listen: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the proxy has no address: {e}"));
        let (path, watcher) = watch::channel(Path {
            frozen: false,
            cuts: 0,
            closed: false,
        });
        let acceptor = tokio::spawn(accept(listener, upstream, watcher));
        Self {
            addr,
            path,
            acceptor,
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `nats://127.0.0.1:<port>` of the proxy.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Stops forwarding in both directions, keeping every connection open; new connections are
    /// accepted but get nothing through either.
    pub fn freeze(&self) {
        self.path.send_modify(|path| path.frozen = true);
    }

    /// Forwards again, what was held first.
    pub fn thaw(&self) {
        self.path.send_modify(|path| path.frozen = false);
    }

    /// Closes every connection made so far (both sides see the close); later ones go through.
    pub fn cut(&self) {
        self.path.send_modify(|path| path.cuts += 1);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.path.send_modify(|path| path.closed = true);
        self.acceptor.abort();
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, path: watch::Receiver<Path>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let path = path.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return; // the upstream is down: the client sees its connection closed
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let generation = path.borrow().cuts;
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::join!(
                pump(client_read, server_write, path.clone(), generation),
                pump(server_read, client_write, path, generation),
            );
        });
    }
}

/// Copies `from` to `to` while the path flows; holds while it is frozen; ends on a cut.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut path: watch::Receiver<Path>,
    generation: u64,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if !flowing(&mut path, generation).await {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            () = ended(&mut path, generation) => return,
        };
        let n = match read {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        // Bytes read just as the path froze are held until it thaws.
        if !flowing(&mut path, generation).await {
            return;
        }
        let written = tokio::select! {
            written = to.write_all(&buffer[..n]) => written,
            () = ended(&mut path, generation) => return,
        };
        if written.is_err() {
            return;
        }
    }
}

fn is_ended(path: &Path, generation: u64) -> bool {
    path.closed || path.cuts != generation
}

/// Waits while the path is frozen; `false` when the connection is to end.
async fn flowing(path: &mut watch::Receiver<Path>, generation: u64) -> bool {
    match path
        .wait_for(|path| is_ended(path, generation) || !path.frozen)
        .await
    {
        Ok(path) => !is_ended(&path, generation),
        Err(_) => false,
    }
}

/// Resolves when the connection is to end (cut, or the proxy dropped).
async fn ended(path: &mut watch::Receiver<Path>, generation: u64) {
    let _ = path.wait_for(|path| is_ended(path, generation)).await;
}
