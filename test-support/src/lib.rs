//! jetfn's own test tools, kept out of `jetfn::testing` (the user's testing API): a routed
//! nats-server cluster ([`NatsCluster`]), a TCP proxy that freezes or cuts the path to a server
//! ([`TcpProxy`]), hosts in network namespaces and a nats-server cluster across them
//! ([`Hosts`], [`NetNats`], [`NetLeaf`]), a relay that delays every chunk ([`DelayRelay`]), and Prometheus, promtool and a Python Prometheus client found as
//! nats-server is ([`Prometheus`], [`promtool`], [`prometheus_client_python`]), and loopback ports
//! outside the kernel's ephemeral range for servers told theirs in advance ([`free_port`]).
//!
//! A workspace member with `publish = false`, used only as a dev-dependency of `jetfn` and
//! `functions`.

mod cluster;
mod hosts;
mod net_nats;
mod port;
mod prometheus;
mod proxy;
mod relay;
mod tools;

pub use cluster::NatsCluster;
pub use hosts::{Hosts, HostsError};
pub use net_nats::{NetLeaf, NetNats};
pub use port::free_port;
pub use prometheus::{
    http_get_with, prometheus, prometheus_client_python, promtool, url_encode, HttpResponse,
    Prometheus,
};
pub use proxy::TcpProxy;
pub use relay::DelayRelay;
