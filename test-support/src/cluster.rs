//! A nats-server cluster with JetStream on loopback, for failover tests.

use std::time::Duration;

use jetfn::testing::{NatsServer, NatsServerBuilder};

use crate::port::free_port;

/// Nodes of one JetStream cluster (`node0`, `node1`, ...), each killed on drop.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` nodes routed to each other, with JetStream.
    pub fn start(size: usize) -> Self {
        let route_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let routes = route_ports
            .iter()
            .map(|port| format!("nats://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = route_ports
            .iter()
            .enumerate()
            .map(|(index, port)| {
                NatsServerBuilder::default()
                    .arg("--cluster_name")
                    .arg("jetfn-test")
                    .arg("--server_name")
                    .arg(&format!("node{index}"))
                    .arg("--cluster")
                    .arg(&format!("nats://127.0.0.1:{port}"))
                    .arg("--routes")
                    .arg(&routes)
                    .start()
            })
            .collect();
        Self { nodes }
    }

    /// Every node's client URL, comma-separated (a `NATS_URL`).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node named `name` (`node0`, ...).
    pub fn node_mut(&mut self, name: &str) -> Option<&mut NatsServer> {
        let index: usize = name.strip_prefix("node")?.parse().ok()?;
        self.nodes.get_mut(index)
    }

    /// A client that knows every node.
    pub async fn client(&self) -> async_nats::Client {
        let addrs: Vec<async_nats::ServerAddr> = self
            .nodes
            .iter()
            .map(|node| {
                node.url()
                    .parse()
                    .unwrap_or_else(|e| panic!("bad URL: {e}"))
            })
            .collect();
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(addrs)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the cluster: {e}"))
    }

    /// Node `index`.
    pub fn node(&self, index: usize) -> &NatsServer {
        &self.nodes[index]
    }

    /// Waits until JetStream answers with a meta leader (a cluster takes a few seconds to elect
    /// one); returns whether it did within `timeout`.
    pub async fn wait_for_jetstream(&self, timeout: Duration) -> bool {
        let js = async_nats::jetstream::new(self.client().await);
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if js.query_account().await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}
