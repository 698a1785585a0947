//! registrar_light: registers the node on the grid registrar and serves `registrar.registrar@0.0.1` (the
//! node's registration) and `api-gateway.api-gateway@0.0.1` (the registrar, for every other daemon).
//!
//! Reads the node configuration (`[registrar] url, geoip_urls, relays, interface, ...`, kernel `farmer_id`);
//! serves the bus at once and registers in the background, retrying forever.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use zos_config::NodeConfig;

/// Register the node on the grid registrar and serve the registrar gateway.
#[derive(Parser, Debug)]
#[command(name = "registrar_light", version)]
struct Args {
    /// Bus broker URL (default: `[bus] broker` of the node configuration).
    #[arg(long)]
    broker: Option<String>,
    /// Node configuration file (default: `ZOS_CONFIG` or /etc/zos/config.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where health flags such as `limited-cache` are read.
    #[arg(long, default_value = zos_config::paths::FLAGS_DIR)]
    flags_dir: PathBuf,
    /// Log at debug level.
    #[arg(long)]
    debug: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let node = match NodeConfig::load_from(args.config.as_deref())
        .context("loading the node configuration")
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    zos_runtime::init_tracing(args.debug || node.kernel.debug);
    let mut cfg = zos_registrar_light::Config::from_node_config(&node, &args.flags_dir);
    if let Some(broker) = args.broker {
        cfg.broker = broker;
    }
    tracing::info!(broker = %cfg.broker, registrar = %cfg.registrar_url, farm = ?node.kernel.farm_id, "registrar_light");
    zos_runtime::exit(zos_runtime::block_on(async move {
        zos_registrar_light::run(cfg, zos_runtime::shutdown_signal())
            .await
            .context("registrar_light")
    }))
}
