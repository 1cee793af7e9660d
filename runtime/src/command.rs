//! What the one-shot commands (`manifests`, `provision`, `healthcheck`, `dlq`, ...) share: the
//! exit code and line for bad configuration, and a small runtime to run async work to its end.

use std::process::ExitCode;

/// Exit code for unusable configuration.
pub(crate) const EXIT_CONFIG: u8 = 2;

/// Prints the one line naming what is wrong with the configuration; exit code 2.
pub(crate) fn config_error(error: impl std::fmt::Display) -> ExitCode {
    eprintln!("jetfn: invalid configuration: {error}");
    ExitCode::from(EXIT_CONFIG)
}

/// Runs `future` to its end on a current-thread runtime (a command's async work).
pub(crate) fn block_on<T>(
    future: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?
        .block_on(future)
}

/// The file name of this binary as it was started (`argv[0]`), without extension; `jetfn` when
/// the platform does not tell.
#[cfg(feature = "deploy")]
pub(crate) fn binary_name() -> String {
    std::env::args()
        .next()
        .as_deref()
        .and_then(|path| std::path::Path::new(path).file_stem())
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "jetfn".to_owned())
}
