//! A JetStream cluster with one nats-server per [`Hosts`] host (client port 4222, cluster port
//! 6222, monitoring 8222 on the host's address), for partition tests.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::hosts::{Hosts, HostsError};
use crate::tools::{find_nats_server, INSTALL_HINT};

/// The servers of a cluster on hosts; each one's store is kept across [`NetNats::restart`].
#[derive(Debug)]
pub struct NetNats {
    binary: std::path::PathBuf,
    store: tempfile::TempDir,
    hosts: Vec<usize>,
    /// The index [`Hosts::spawn`] gave each server's process.
    processes: Vec<Option<usize>>,
}

impl NetNats {
    /// Starts one server on each of `on` (host numbers), routed to each other, with JetStream.
    pub fn start(hosts: &mut Hosts, on: &[usize]) -> Result<Self, HostsError> {
        let binary = find_nats_server(Some(Path::new(env!("CARGO_MANIFEST_DIR"))))
            .ok_or_else(|| HostsError::Missing(INSTALL_HINT.to_owned()))?;
        let store = tempfile::Builder::new()
            .prefix("jetfn-netnats-")
            .tempdir()
            .map_err(|e| HostsError::Missing(format!("a temporary directory ({e})")))?;
        let mut cluster = Self {
            binary,
            store,
            hosts: on.to_vec(),
            processes: vec![None; on.len()],
        };
        for index in 0..on.len() {
            cluster.spawn(hosts, index)?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, hosts: &mut Hosts, index: usize) -> Result<(), HostsError> {
        let host = self.hosts[index];
        let addr = hosts.addr(host);
        let routes = self
            .hosts
            .iter()
            .map(|&h| format!("nats://{}:6222", hosts.addr(h)))
            .collect::<Vec<_>>()
            .join(",");
        let mut command = hosts.command(host, &self.binary.display().to_string());
        command
            .args(["-a", &addr.to_string(), "-p", "4222", "-m", "8222", "-js"])
            .args([
                "--server_name",
                &format!("s{index}"),
                "--cluster_name",
                "jetfn-hosts",
            ])
            .args([
                "--cluster",
                &format!("nats://{addr}:6222"),
                "--routes",
                &routes,
            ])
            .arg("-sd")
            .arg(self.store.path().join(format!("s{index}")))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.processes[index] = Some(hosts.spawn(command)?);
        Ok(())
    }

    /// `nats://<addr>:4222` of every server, comma-separated (a `NATS_URL`).
    pub fn urls(&self, hosts: &Hosts) -> String {
        (0..self.hosts.len())
            .map(|index| self.url(hosts, index))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Server `index`'s client URL.
    pub fn url(&self, hosts: &Hosts, index: usize) -> String {
        format!("nats://{}:4222", hosts.addr(self.hosts[index]))
    }

    /// The host server `index` runs on.
    pub fn host(&self, index: usize) -> usize {
        self.hosts[index]
    }

    /// The index of the server named `name` (`s0`, ...).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        name.strip_prefix('s')?
            .parse()
            .ok()
            .filter(|&i: &usize| i < self.hosts.len())
    }

    /// Kills server `index` (SIGKILL) and starts it again with the same store.
    pub fn restart(&mut self, hosts: &mut Hosts, index: usize) -> Result<(), HostsError> {
        if let Some(process) = self.processes[index].take() {
            hosts.kill(process);
        }
        self.spawn(hosts, index)
    }

    /// A client (from the test process) that knows every server.
    pub async fn client(&self, hosts: &Hosts) -> async_nats::Client {
        let addrs: Vec<async_nats::ServerAddr> = (0..self.hosts.len())
            .filter_map(|index| self.url(hosts, index).parse().ok())
            .collect();
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .connect(addrs)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the cluster: {e}"))
    }
}
