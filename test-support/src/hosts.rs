//! Several hosts on one machine, for partition tests: network namespaces joined by veth pairs
//! to one bridge, each with an address the harness assigns, and faults made by `iptables` DROP
//! rules inside the hosts' namespaces (a partition, both ways or one way; heal).
//!
//! The test process stays in the root namespace with the bridge's address, so it reaches every
//! host (a partition never includes it). Everything is named `jf<pid>x<k>...`: [`Hosts::drop`]
//! removes what this set made (its processes, namespaces, veths and bridge), also when a test
//! panics; [`Hosts::create`] first removes what earlier test processes that no longer run left
//! behind (a test killed by a signal). Needs root, `ip` and `iptables`:
//! [`Hosts::create`] says which is missing in one line.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Why the hosts could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostsError {
    /// A requirement is missing (root, `ip`, `iptables`).
    #[error("multi-host tests need {0}")]
    Missing(String),
    /// A command failed.
    #[error("`{command}` failed: {output}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr, or why it could not run.
        output: String,
    },
}

/// Sets of hosts made by this process so far (part of their names).
static SETS: AtomicU32 = AtomicU32::new(0);

/// Hosts `0..n` on one bridge; removed on drop.
#[derive(Debug)]
pub struct Hosts {
    prefix: String,
    subnet: [u8; 3],
    count: usize,
    children: Vec<Child>,
}

impl Hosts {
    /// Makes `count` hosts (at most 200), after removing stale sets of earlier test processes.
    pub fn create(count: usize) -> Result<Self, HostsError> {
        check_requirements()?;
        remove_stale();
        let set = SETS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let id = pid.wrapping_mul(31).wrapping_add(set);
        let hosts = Self {
            prefix: format!("jf{pid}x{set}"),
            subnet: [10, 100 + (id % 100) as u8, ((id / 100) % 250) as u8],
            count: count.min(200),
            children: Vec::new(),
        };
        hosts.build()?;
        Ok(hosts)
    }

    fn build(&self) -> Result<(), HostsError> {
        let bridge = self.bridge();
        run("ip", &["link", "add", &bridge, "type", "bridge"])?;
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", self.gateway()),
                "dev",
                &bridge,
            ],
        )?;
        run("ip", &["link", "set", &bridge, "up"])?;
        for host in 0..self.count {
            let (ns, veth, inner) = (
                self.namespace(host),
                self.veth(host),
                format!("{}p", self.veth(host)),
            );
            run("ip", &["netns", "add", &ns])?;
            run(
                "ip",
                &["link", "add", &veth, "type", "veth", "peer", "name", &inner],
            )?;
            run("ip", &["link", "set", &veth, "master", &bridge, "up"])?;
            run("ip", &["link", "set", &inner, "netns", &ns])?;
            let exec = |args: &[&str]| {
                let mut all = vec!["netns", "exec", &ns];
                all.extend_from_slice(args);
                run("ip", &all)
            };
            exec(&["ip", "link", "set", "lo", "up"])?;
            exec(&["ip", "link", "set", &inner, "name", "eth0"])?;
            exec(&[
                "ip",
                "addr",
                "add",
                &format!("{}/24", self.addr(host)),
                "dev",
                "eth0",
            ])?;
            exec(&["ip", "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    /// How many hosts.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Host `host`'s address.
    pub fn addr(&self, host: usize) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 1 + host as u8)
    }

    /// The test process's address on the bridge (never partitioned).
    pub fn gateway(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 254)
    }

    /// `program` to run on `host` (`ip netns exec <host> program`).
    pub fn command(&self, host: usize, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.namespace(host), program]);
        command
    }

    /// Spawns `command` (made by [`Hosts::command`]) and kills it on drop; returns its index
    /// for [`Hosts::kill`].
    pub fn spawn(&mut self, mut command: Command) -> Result<usize, HostsError> {
        let child = command.spawn().map_err(|e| HostsError::Command {
            command: format!("{command:?}"),
            output: e.to_string(),
        })?;
        self.children.push(child);
        Ok(self.children.len() - 1)
    }

    /// Kills the process [`Hosts::spawn`] returned `index` for (SIGKILL), and waits for it.
    pub fn kill(&mut self, index: usize) {
        if let Some(child) = self.children.get_mut(index) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process [`Hosts::spawn`] returned `index` for as an orchestrator does: SIGTERM,
    /// then SIGKILL if it has not exited within `grace`. Waits for it.
    pub fn terminate(&mut self, index: usize, grace: std::time::Duration) {
        let Some(child) = self.children.get_mut(index) else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .stderr(Stdio::null())
                .status();
            let deadline = std::time::Instant::now() + grace;
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Cuts `host` off from each of `others`, both ways.
    pub fn partition(&self, host: usize, others: &[usize]) -> Result<(), HostsError> {
        for &other in others {
            self.drop_from(host, other)?;
            self.drop_from(other, host)?;
        }
        Ok(())
    }

    /// Packets from `from` no longer reach `to` (one way: `to` still reaches `from`).
    pub fn drop_from(&self, from: usize, to: usize) -> Result<(), HostsError> {
        let source = self.addr(from).to_string();
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.namespace(to),
                "iptables",
                "-A",
                "INPUT",
                "-s",
                &source,
                "-j",
                "DROP",
            ],
        )
    }

    /// Drops each packet into and out of every host with probability `probability` (loss on
    /// every link, the test process's included), until [`Hosts::heal`].
    pub fn lose(&self, probability: f64) -> Result<(), HostsError> {
        let probability = probability.clamp(0.0, 1.0).to_string();
        for host in 0..self.count {
            for chain in ["INPUT", "OUTPUT"] {
                run(
                    "ip",
                    &[
                        "netns",
                        "exec",
                        &self.namespace(host),
                        "iptables",
                        "-A",
                        chain,
                        "-m",
                        "statistic",
                        "--mode",
                        "random",
                        "--probability",
                        &probability,
                        "-j",
                        "DROP",
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// Removes every DROP rule: all hosts reach each other again.
    pub fn heal(&self) -> Result<(), HostsError> {
        for host in 0..self.count {
            for chain in ["INPUT", "OUTPUT"] {
                run(
                    "ip",
                    &[
                        "netns",
                        "exec",
                        &self.namespace(host),
                        "iptables",
                        "-F",
                        chain,
                    ],
                )?;
            }
        }
        Ok(())
    }

    fn namespace(&self, host: usize) -> String {
        format!("{}h{host}", self.prefix)
    }

    fn veth(&self, host: usize) -> String {
        format!("{}v{host}", self.prefix)
    }

    fn bridge(&self) -> String {
        format!("{}b", self.prefix)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        remove_set(&self.prefix);
    }
}

fn check_requirements() -> Result<(), HostsError> {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if !works("id", &["-u"]) || capture("id", &["-u"]).trim() != "0" {
        return Err(HostsError::Missing(
            "root (network namespaces, veth pairs, a bridge)".into(),
        ));
    }
    if !works("ip", &["-V"]) {
        return Err(HostsError::Missing(
            "`ip` (iproute2: apt-get install iproute2)".into(),
        ));
    }
    if !works("iptables", &["-V"]) {
        return Err(HostsError::Missing(
            "`iptables` (apt-get install iptables)".into(),
        ));
    }
    Ok(())
}

/// Removes the sets of test processes that no longer run.
fn remove_stale() {
    let mut prefixes: Vec<String> = capture("ip", &["netns", "list"])
        .lines()
        .chain(capture("ip", &["-o", "link", "show"]).lines())
        .filter_map(|line| {
            let word = line
                .split_whitespace()
                .find(|word| word.starts_with("jf"))?
                .trim_end_matches(':');
            let word = word.split('@').next()?;
            let rest = word.strip_prefix("jf")?;
            let (pid, set) = rest.split_once('x')?;
            let set: String = set.chars().take_while(char::is_ascii_digit).collect();
            let pid: u32 = pid.parse().ok()?;
            let running = std::path::Path::new(&format!("/proc/{pid}")).exists();
            (!running && !set.is_empty()).then(|| format!("jf{pid}x{set}"))
        })
        .collect();
    prefixes.sort();
    prefixes.dedup();
    for prefix in prefixes {
        remove_set(&prefix);
    }
}

/// Kills what runs in the set's namespaces and deletes them, its veths and its bridge.
fn remove_set(prefix: &str) {
    for ns in capture("ip", &["netns", "list"])
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|ns| ns.starts_with(prefix) && ns[prefix.len()..].starts_with('h'))
    {
        for pid in capture("ip", &["netns", "pids", ns]).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
        let _ = run("ip", &["netns", "delete", ns]);
    }
    for link in capture("ip", &["-o", "link", "show"])
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .map(|name| {
            name.trim_end_matches(':')
                .split('@')
                .next()
                .unwrap_or(name)
                .to_owned()
        })
        .filter(|name| name.starts_with(prefix) && !name.ends_with('p'))
    {
        let _ = run("ip", &["link", "delete", &link]);
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), HostsError> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| HostsError::Command {
            command: format!("{program} {}", args.join(" ")),
            output: e.to_string(),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(HostsError::Command {
            command: format!("{program} {}", args.join(" ")),
            output: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

fn capture(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default()
}
