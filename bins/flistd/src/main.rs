//! flistd: mounts flists (read-only FUSE shared per flist, then a bind or an overlay on a storaged volume) and
//! serves `flist.flist@0.0.1`.
//!
//! `flistd` runs the daemon. `flistd fuse …` is the FUSE server of one flist, which the daemon starts in a
//! session of its own so that mounts outlive the daemon (not for operators).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use zos_flistd::HelperCommand;

#[derive(Parser, Debug)]
#[command(name = "flistd", version, about = "The flist mount daemon")]
#[command(args_conflicts_with_subcommands = true)]
struct Args {
    /// Where flists, the cache and the mounts live (default: `[flist] root` of the node config).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Bus broker (default: `[bus] broker` of the node config).
    #[arg(long)]
    broker: Option<String>,
    /// Concurrent bus calls (default: `[flist] workers`).
    #[arg(long)]
    workers: Option<usize>,
    /// Log at debug level.
    #[arg(long)]
    debug: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve the read-only FUSE mount of one flist until it is unmounted (started by the daemon).
    #[command(hide = true)]
    Fuse {
        /// The `.fl` file.
        #[arg(long)]
        meta: PathBuf,
        /// Block cache directory.
        #[arg(long)]
        cache: PathBuf,
        /// Stores replacing the flist's routes.
        #[arg(long = "store")]
        stores: Vec<String>,
        /// Stores tried when the routes fail.
        #[arg(long = "fallback")]
        fallbacks: Vec<String>,
        /// FUSE request threads.
        #[arg(long, default_value_t = 4)]
        threads: usize,
        /// Mountpoint.
        mountpoint: PathBuf,
    },
}

/// This executable, to start FUSE servers with (`<exe> fuse …`). After an upgrade replaced the file, the
/// new one at the same path.
fn helper() -> anyhow::Result<HelperCommand> {
    let exe = std::env::current_exe().context("finding the flistd executable")?;
    let s = exe.to_string_lossy();
    let program = match s.strip_suffix(" (deleted)") {
        Some(p) => PathBuf::from(p),
        None => exe,
    };
    Ok(HelperCommand {
        program,
        args: vec!["fuse".into()],
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Cmd::Fuse {
        meta,
        cache,
        stores,
        fallbacks,
        threads,
        mountpoint,
    }) = args.cmd
    {
        zos_runtime::init_tracing(args.debug);
        let opts = zos_flistd::fuse::ServeOptions {
            meta,
            cache,
            stores,
            fallbacks,
            mountpoint,
            threads,
        };
        return zos_runtime::exit(zos_flistd::fuse::serve(&opts).map_err(anyhow::Error::from));
    }
    let cfg = match zos_config::NodeConfig::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: reading the node configuration: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    zos_runtime::init_tracing(args.debug || cfg.kernel.debug);
    let helper = match helper() {
        Ok(h) => h,
        Err(e) => return zos_runtime::exit(Err(e)),
    };
    let mut daemon = zos_flistd::daemon::DaemonConfig::from_node_config(&cfg, helper);
    if let Some(root) = args.root {
        daemon.module.root = root;
    }
    if let Some(broker) = args.broker {
        daemon.broker = broker;
    }
    if let Some(workers) = args.workers {
        daemon.workers = workers.max(1);
    }
    tracing::info!(root = %daemon.module.root.display(), broker = %daemon.broker,
        workers = daemon.workers, fallback_stores = ?daemon.module.fallback_stores, "flistd starting");
    zos_runtime::exit(zos_runtime::block_on(async move {
        zos_flistd::daemon::run(daemon, zos_runtime::shutdown_signal())
            .await
            .map_err(anyhow::Error::from)
    }))
}
