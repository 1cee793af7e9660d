//! What the functions binary's tests share.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::Duration;

use jetfn::testing::{eventually, http_get};

/// The image's binary, built by cargo for the tests.
pub const BINARY: &str = env!("CARGO_BIN_EXE_functions");
/// The example shop's functions, sorted by name.
pub const SHOP_FUNCTIONS: [&str; 4] = [
    "audit_log",
    "charge_payment",
    "reserve_inventory",
    "send_notification",
];
/// How long a test waits for what should take a moment.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Runs the binary to completion with only `env` set, in an empty temporary directory (so no
/// stray `jetfn.toml` or variable of the caller's shapes the result).
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("temporary directory");
    Command::new(BINARY)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(dir.path())
        .output()
        .expect("run the functions binary")
}

/// A loopback address nothing listens on (for `JETFN_HTTP_ADDR`).
pub fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// Whether the binary at `addr` answers `/ready` with 200 within [`PATIENCE`].
pub async fn ready(addr: SocketAddr) -> bool {
    eventually(PATIENCE, || async {
        matches!(http_get(addr, "/ready").await, Ok((200, _)))
    })
    .await
}
