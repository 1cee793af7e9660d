//! A JetStream cluster with one nats-server per [`Hosts`] host (client port 4222, cluster port
//! 6222, monitoring 8222, leaf nodes 7422 on the host's address), for partition tests; and a
//! leaf server on another host, with a JetStream domain of its own, linked to that cluster.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::hosts::{Hosts, HostsError};
use crate::tools::{find_nats_server, INSTALL_HINT};

/// The port leaf servers connect to on every cluster server.
const LEAF_PORT: u16 = 7422;

/// The servers of a cluster on hosts; each one's store is kept across [`NetNats::restart`].
#[derive(Debug)]
pub struct NetNats {
    binary: std::path::PathBuf,
    store: tempfile::TempDir,
    hosts: Vec<usize>,
    /// The cluster's JetStream domain, if any.
    domain: Option<String>,
    /// The route URLs each server is given, when not the servers' own (through relays).
    routes: Option<Vec<String>>,
    /// The index [`Hosts::spawn`] gave each server's process.
    processes: Vec<Option<usize>>,
}

/// A leaf server on a host of its own, with JetStream in its own domain, whose leaf link goes
/// to every server of a [`NetNats`] cluster. Stops when its [`Hosts`] are dropped.
#[derive(Debug)]
pub struct NetLeaf {
    host: usize,
    _store: tempfile::TempDir,
}

impl NetLeaf {
    /// Starts a leaf server on `host` in JetStream domain `domain`, linked to `hub`.
    pub fn start(
        hosts: &mut Hosts,
        host: usize,
        domain: &str,
        hub: &NetNats,
    ) -> Result<Self, HostsError> {
        let store = temporary_store("jetfn-netleaf-")?;
        let addr = hosts.addr(host);
        let remotes = (0..hub.hosts.len())
            .map(|index| {
                format!(
                    "\"nats-leaf://{}:{LEAF_PORT}\"",
                    hosts.addr(hub.hosts[index])
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut config = common_config(&addr.to_string(), "leaf", domain, store.path());
        let _ = writeln!(
            config,
            "leafnodes {{ reconnect: \"250ms\", remotes: [ {{ urls: [{remotes}] }} ] }}"
        );
        let file = store.path().join("leaf.conf");
        std::fs::write(&file, config).map_err(|e| HostsError::Command {
            command: format!("write {}", file.display()),
            output: e.to_string(),
        })?;
        let mut command = hosts.command(host, &hub.binary.display().to_string());
        command
            .arg("-c")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        hosts.spawn(command)?;
        Ok(Self {
            host,
            _store: store,
        })
    }

    /// The host the leaf server runs on.
    pub fn host(&self) -> usize {
        self.host
    }

    /// The leaf server's client URL.
    pub fn url(&self, hosts: &Hosts) -> String {
        format!("nats://{}:4222", hosts.addr(self.host))
    }
}

fn temporary_store(prefix: &str) -> Result<tempfile::TempDir, HostsError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| HostsError::Missing(format!("a temporary directory ({e})")))
}

/// What every server's configuration file starts with: listeners on `addr`, JetStream.
fn common_config(addr: &str, name: &str, domain: &str, store: &Path) -> String {
    let domain = if domain.is_empty() {
        String::new()
    } else {
        format!(", domain: \"{domain}\"")
    };
    format!(
        "server_name: \"{name}\"\nlisten: \"{addr}:4222\"\nhttp: \"{addr}:8222\"\n\
         jetstream {{ store_dir: \"{}\"{domain} }}\n",
        store.join(name).display()
    )
}

impl NetNats {
    /// Starts one server on each of `on` (host numbers), routed to each other, with JetStream.
    pub fn start(hosts: &mut Hosts, on: &[usize]) -> Result<Self, HostsError> {
        Self::start_in(hosts, on, None)
    }

    /// As [`NetNats::start`], with JetStream in `domain` (a hub for [`NetLeaf`] servers).
    pub fn start_in(
        hosts: &mut Hosts,
        on: &[usize],
        domain: Option<&str>,
    ) -> Result<Self, HostsError> {
        let binary = find_nats_server(Some(Path::new(env!("CARGO_MANIFEST_DIR"))))
            .ok_or_else(|| HostsError::Missing(INSTALL_HINT.to_owned()))?;
        let mut cluster = Self {
            binary,
            store: temporary_store("jetfn-netnats-")?,
            hosts: on.to_vec(),
            domain: domain.map(str::to_owned),
            routes: None,
            processes: vec![None; on.len()],
        };
        for index in 0..on.len() {
            cluster.spawn(hosts, index)?;
        }
        Ok(cluster)
    }

    /// As [`NetNats::start`], each server's routes going to `routes` (`host:port` each, e.g.
    /// [`DelayRelay`](super::DelayRelay)s in front of the servers' cluster port 6222) instead
    /// of the servers themselves.
    pub fn start_routed(
        hosts: &mut Hosts,
        on: &[usize],
        routes: Vec<String>,
    ) -> Result<Self, HostsError> {
        let binary = find_nats_server(Some(Path::new(env!("CARGO_MANIFEST_DIR"))))
            .ok_or_else(|| HostsError::Missing(INSTALL_HINT.to_owned()))?;
        let mut cluster = Self {
            binary,
            store: temporary_store("jetfn-netnats-")?,
            hosts: on.to_vec(),
            domain: None,
            routes: Some(routes),
            processes: vec![None; on.len()],
        };
        for index in 0..on.len() {
            cluster.spawn(hosts, index)?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, hosts: &mut Hosts, index: usize) -> Result<(), HostsError> {
        let addr = hosts.addr(self.hosts[index]);
        let routes = match &self.routes {
            Some(routes) => routes.clone(),
            None => self
                .hosts
                .iter()
                .map(|&h| format!("{}:6222", hosts.addr(h)))
                .collect(),
        };
        let routes = routes
            .iter()
            .map(|route| format!("\"nats://{route}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let domain = self.domain.as_deref().unwrap_or_default();
        let mut config = common_config(
            &addr.to_string(),
            &format!("s{index}"),
            domain,
            self.store.path(),
        );
        let _ = writeln!(
            config,
            "cluster {{ name: \"jetfn-hosts\", listen: \"{addr}:6222\", routes: [{routes}], \
             no_advertise: true }}\n\
             leafnodes {{ listen: \"{addr}:{LEAF_PORT}\" }}"
        );
        let file = self.store.path().join(format!("s{index}.conf"));
        std::fs::write(&file, config).map_err(|e| HostsError::Command {
            command: format!("write {}", file.display()),
            output: e.to_string(),
        })?;
        let mut command = hosts.command(self.hosts[index], &self.binary.display().to_string());
        command
            .arg("-c")
            .arg(&file)
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

    /// Stops server `index` gracefully (SIGTERM: it hands the leadership of its streams and
    /// consumers over first; SIGKILL after `grace`) and starts it again with the same store.
    pub fn restart_gracefully(
        &mut self,
        hosts: &mut Hosts,
        index: usize,
        grace: Duration,
    ) -> Result<(), HostsError> {
        if let Some(process) = self.processes[index].take() {
            hosts.terminate(process, grace);
        }
        self.spawn(hosts, index)
    }

    /// Server `index`'s monitoring address (`/healthz`, `/jsz`).
    pub fn monitoring(&self, hosts: &Hosts, index: usize) -> std::net::SocketAddr {
        (hosts.addr(self.hosts[index]), 8222).into()
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
