//! What every daemon binary shares: tracing to stderr, the shutdown signal, error printing.
//!
//! A daemon's `main` is:
//! ```text
//! fn main() -> std::process::ExitCode {
//!     let args = Args::parse();
//!     zos_runtime::init_tracing(args.debug);
//!     zos_runtime::exit(zos_runtime::block_on(mydaemon::run(cfg, zos_runtime::shutdown_signal())))
//! }
//! ```

use std::future::Future;
use std::process::ExitCode;

/// Log to stderr at `info` (or `debug`), unless `RUST_LOG` says otherwise.
pub fn init_tracing(debug: bool) {
    let default = if debug { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// Completes when the process gets SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

/// Run a future on a fresh multi-threaded runtime.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime")
        .block_on(fut)
}

/// Print an error with its cause chain and turn the result into an exit code.
pub fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
