//! What the functions binary's tests share.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::Duration;

use jetfn::testing::{eventually, http_get};

/// The image's binary, built by cargo for the tests.
pub const BINARY: &str = env!("CARGO_BIN_EXE_functions");
/// The example shop's functions, sorted by name.
pub const SHOP_FUNCTIONS: [&str; 5] = [
    "audit_log",
    "charge_payment",
    "order_status",
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

/// Sends SIGTERM to `child` (the signal a pod gets when Kubernetes stops it).
pub fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
}

/// SIGTERM, then `child`'s exit status within [`PATIENCE`] (its drain budget).
pub async fn terminate(child: &mut tokio::process::Child) -> std::process::ExitStatus {
    sigterm(child);
    exit_status(child).await
}

/// `child`'s exit status, within [`PATIENCE`].
pub async fn exit_status(child: &mut tokio::process::Child) -> std::process::ExitStatus {
    tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("exits within the drain budget")
        .expect("status")
}

/// A loopback address nothing listens on (for `JETFN_HTTP_ADDR`).
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], jetfn_test_support::free_port()))
}

/// Whether the binary at `addr` answers `/ready` with 200 within [`PATIENCE`].
pub async fn ready(addr: SocketAddr) -> bool {
    eventually(PATIENCE, || async {
        matches!(http_get(addr, "/ready").await, Ok((200, _)))
    })
    .await
}

/// How many messages the SHOP stream holds on `subject`.
pub async fn stored(js: &async_nats::jetstream::Context, subject: &str) -> u64 {
    use futures::StreamExt;
    let stream = js.get_stream("SHOP").await.expect("stream");
    let counts: Vec<_> = stream
        .info_with_subjects(subject)
        .await
        .expect("stream info")
        .collect()
        .await;
    // An error in the listing fails the test: dropped, it would read as fewer messages.
    counts
        .into_iter()
        .map(|entry| entry.expect("subject count").1 as u64)
        .sum()
}

/// Fails, naming the first differing line, unless `rendered` (what `command` printed) is the
/// checked-in `path` (`checked_in`); `script` is what re-renders it.
pub fn assert_rendered(path: &str, checked_in: &str, rendered: &str, command: &str, script: &str) {
    if rendered != checked_in {
        let line = rendered
            .lines()
            .zip(checked_in.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| rendered.lines().count().min(checked_in.lines().count()));
        panic!(
            "{path} differs from `{command}` (first at line {}: checked in {:?}, rendered {:?}); \
             run {script} and commit the result",
            line + 1,
            checked_in.lines().nth(line),
            rendered.lines().nth(line),
        );
    }
}
