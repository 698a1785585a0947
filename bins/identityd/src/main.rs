//! identityd: owns the node's ed25519 key and serves `identityd.manager@0.0.1` and `identityd.monitor@0.0.1`.
//!
//! `identityd` runs the daemon. `identityd --id | --farm | --net` print one value on stdout and exit (the log
//! shipper calls them; Go's single-dash spellings `-id`, `-farm`, `-net`, `-root`, `-broker` work too).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "identityd", version, about = "The node identity daemon")]
struct Args {
    /// Where the key lives (default: `[identity] root` of the node config, /var/cache/modules/identityd).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Bus broker (default: `[bus] broker` of the node config).
    #[arg(long)]
    broker: Option<String>,
    /// The installed release's taglink, the source of the running version.
    #[arg(long, default_value = zos_config::paths::TAG_INFO)]
    tag_info: PathBuf,
    /// Print the node public key (base64), asked of the running identityd over the bus, and exit.
    #[arg(long, group = "print")]
    id: bool,
    /// Print the farm id and exit.
    #[arg(long, group = "print")]
    farm: bool,
    /// Print the run mode (development, qa, testing, production) and exit.
    #[arg(long, group = "print")]
    net: bool,
}

/// Go's flag package spells long flags with one dash; accept those spellings.
fn go_style_args() -> Vec<String> {
    const LONG: &[&str] = &["id", "farm", "net", "root", "broker", "tag-info"];
    std::env::args()
        .map(|a| match a.strip_prefix('-') {
            Some(rest)
                if !rest.starts_with('-')
                    && LONG.contains(&rest.split('=').next().unwrap_or("")) =>
            {
                format!("-{a}")
            }
            _ => a,
        })
        .collect()
}

fn main() -> ExitCode {
    let args = Args::parse_from(go_style_args());
    let config = match zos_config::NodeConfig::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: reading the node configuration: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let printing = args.id || args.farm || args.net;
    // Print modes: stdout carries the value only; logs (warnings and worse) go to stderr.
    zos_runtime::init_tracing(config.kernel.debug && !printing);
    let mut cfg = zos_identity::DaemonConfig::from_node_config(&config);
    if let Some(root) = args.root {
        cfg.root = root;
    }
    if let Some(broker) = args.broker {
        cfg.broker = broker;
    }
    cfg.tag_info = args.tag_info;

    if printing {
        let what = if args.id {
            Print::Id
        } else if args.farm {
            Print::Farm
        } else {
            Print::Net
        };
        return zos_runtime::exit(zos_runtime::block_on(print(what, &cfg, &config)));
    }
    zos_runtime::exit(zos_runtime::block_on(async move {
        zos_identity::run(cfg, zos_runtime::shutdown_signal())
            .await
            .context("identityd")
    }))
}

/// What a print-and-exit mode prints.
enum Print {
    Id,
    Farm,
    Net,
}

/// Print one value on stdout, nothing else.
async fn print(
    what: Print,
    cfg: &zos_identity::DaemonConfig,
    config: &zos_config::NodeConfig,
) -> anyhow::Result<()> {
    let value = match what {
        Print::Id => {
            let bus = zos_bus::Client::connect(&cfg.broker)?;
            let client = zos_api::identity::IdentityManagerClient::new(bus)
                .with_timeout(Duration::from_secs(10));
            zos_identity::public_key_base64(&client)
                .await
                .context("asking identityd for the node public key")?
        }
        Print::Farm => match cfg.farm_id {
            Some(id) => id.to_string(),
            None => bail!("this node has no farm: farmer_id is not on the kernel command line"),
        },
        Print::Net => config.kernel.runmode.display_name().to_string(),
    };
    println!("{value}");
    Ok(())
}
