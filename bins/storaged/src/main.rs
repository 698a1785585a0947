//! storaged: turns the node's disks into btrfs pools, mounts the system cache, and serves
//! `storage.storage@0.0.1` (volumes, virtual disks, zdb devices) once that is done.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use zos_config::NodeConfig;

/// Turn disks into btrfs pools and serve storage on the bus.
#[derive(Parser, Debug)]
#[command(name = "storaged", version)]
struct Args {
    /// Bus broker URL (default: `[bus] broker` of the node configuration).
    #[arg(long)]
    broker: Option<String>,
    /// Node configuration file (default: `ZOS_CONFIG` or /etc/zos/config.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Concurrent bus calls (default: `[storage] workers`).
    #[arg(long)]
    workers: Option<usize>,
    /// Where health flags such as `limited-cache` are set.
    #[arg(long, default_value = zos_config::paths::FLAGS_DIR)]
    flags_dir: PathBuf,
    /// Log at debug level.
    #[arg(long)]
    debug: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = match NodeConfig::load_from(args.config.as_deref())
        .context("loading the node configuration")
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    zos_runtime::init_tracing(args.debug || cfg.kernel.debug);
    let broker = args
        .broker
        .clone()
        .unwrap_or_else(|| cfg.bus.broker.clone());
    let workers = args.workers.unwrap_or(cfg.storage.workers);
    let opts = zos_storage::Options::from_config(&cfg, &args.flags_dir);
    tracing::info!(broker = %broker, workers, devices = ?opts.devices, "storaged starting");
    zos_runtime::exit(zos_runtime::block_on(async move {
        zos_storage::daemon::run(opts, &broker, workers, zos_runtime::shutdown_signal())
            .await
            .map_err(anyhow::Error::from)
    }))
}
