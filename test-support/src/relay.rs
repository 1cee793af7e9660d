//! A TCP relay in the test process that holds every chunk for a settable delay, each way: link
//! delay for the multi-host tests without `tc netem` (which this kernel lacks).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Forwards every connection accepted on its address to one upstream address, each chunk
/// delayed by [`DelayRelay::set_delay`] (zero at first). Needs a tokio runtime; dropping it
/// closes every connection.
#[derive(Debug)]
pub struct DelayRelay {
    addr: SocketAddr,
    delay: watch::Sender<Duration>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl DelayRelay {
    /// Listens on a free port of `ip` and forwards to `upstream`.
    pub async fn start(ip: IpAddr, upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        let (delay, watcher) = watch::channel(Duration::ZERO);
        let acceptor = tokio::spawn(accept(listener, upstream, watcher));
        Ok(Self {
            addr,
            delay,
            acceptor,
        })
    }

    /// The address to connect to instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Holds every chunk read from now on for `delay` before it is written on (order kept).
    pub fn set_delay(&self, delay: Duration) {
        self.delay.send_replace(delay);
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        // The acceptor owns every connection's task: they end with it.
        self.acceptor.abort();
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, delay: watch::Receiver<Duration>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let delay = delay.clone();
        connections.spawn(async move {
            let Ok(outbound) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            tokio::join!(
                pipe(in_read, out_write, delay.clone()),
                pipe(out_read, in_write, delay)
            );
        });
        while connections.try_join_next().is_some() {}
    }
}

/// Copies `from` to `to`, each chunk written once its delay has passed.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: watch::Receiver<Duration>) {
    let (queue, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(read @ 1..) = from.read(&mut buffer).await {
            let at = Instant::now() + *delay.borrow();
            if queue.send((at, buffer[..read].to_vec())).is_err() {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
