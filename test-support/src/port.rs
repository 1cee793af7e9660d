//! Loopback ports for servers that must be told theirs before they start (cluster routes,
//! Prometheus, the functions binary's HTTP address).
//!
//! A port taken from `bind(0)` and released lies in the kernel's ephemeral range, where the very
//! next `bind(0)` of another server or the source port of any outgoing connection may take it
//! before the server it was meant for starts (a cluster node then exits at start: seen in CI).
//! These ports come from below that range, where neither happens; each is handed out once per
//! process and is free when handed out.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};
use std::net::TcpListener;
use std::sync::Mutex;

/// The lowest port handed out.
const LOWEST: u16 = 10_000;

/// A loopback port below the ephemeral range that nothing listens on now and this process has
/// not handed out before.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let top = ephemeral_low();
    assert!(top > LOWEST, "the ephemeral range starts at {top}");
    let random = RandomState::new();
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for attempt in 0u64..10_000 {
        let port = LOWEST + (random.hash_one(attempt) % u64::from(top - LOWEST)) as u16;
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free loopback port in {LOWEST}..{top}");
}

/// The first port of the kernel's ephemeral range (`net.ipv4.ip_local_port_range`).
fn ephemeral_low() -> u16 {
    const PATH: &str = "/proc/sys/net/ipv4/ip_local_port_range";
    match std::fs::read_to_string(PATH) {
        Ok(text) => text
            .split_whitespace()
            .next()
            .and_then(|low| low.parse().ok())
            .unwrap_or_else(|| panic!("cannot read {PATH}: {text:?}")),
        // Not Linux: the IANA dynamic range.
        Err(_) => 49_152,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_below_the_ephemeral_range_bindable_and_never_handed_out_twice() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        for port in ports {
            assert!((LOWEST..ephemeral_low()).contains(&port), "{port}");
            TcpListener::bind(("127.0.0.1", port)).expect("free");
        }
    }
}
