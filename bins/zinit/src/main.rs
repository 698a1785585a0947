//! `zinit`: the node's PID 1 and service supervisor (`zinit init`), and the CLI that talks to it.
//! Compatible with zinit v0.2.14 (units, control socket, CLI); see the `zos-zinit` crate.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use zos_zinit::cli;
use zos_zinit_client::Client;

#[derive(Parser)]
#[command(name = "zinit", version = zos_zinit::COMPAT_VERSION, about = "A process supervisor (zinit v0.2.14 compatible)")]
struct Args {
    /// Debug logging.
    #[arg(short, long)]
    debug: bool,
    /// The control socket.
    #[arg(short, long, default_value = zos_config::paths::ZINIT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the supervisor.
    Init {
        /// The unit directory.
        #[arg(short, long, default_value = zos_config::paths::ZINIT_DIR)]
        config: PathBuf,
        /// Lines kept in the log ring.
        #[arg(short, long, default_value_t = 2000)]
        buffer: usize,
        /// Container mode: shutdown/reboot exit zinit instead of powering off; SIGHUP shuts down too.
        #[arg(long)]
        container: bool,
        /// As PID 1 without --container, do not copy zinit's log to /dev/kmsg (e.g. in a PID namespace).
        #[arg(long)]
        no_kmsg: bool,
    },
    /// List services and their states (the default).
    List,
    /// Show a service's status.
    Status { service: String },
    /// Start a service.
    Start { service: String },
    /// Stop a service.
    Stop { service: String },
    /// Stop a service, wait for it (SIGKILL after its shutdown_timeout), start it again.
    Restart { service: String },
    /// Forget a stopped service.
    Forget { service: String },
    /// Monitor a service (loads <name>.yaml from the unit directory).
    Monitor { service: String },
    /// Send a signal to a service's process group.
    Kill {
        service: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Show the log ring and follow it.
    Log {
        /// Print the current content and exit.
        #[arg(short, long)]
        snapshot: bool,
        /// Only this service's lines.
        filter: Option<String>,
    },
    /// Stop all services and power off (or exit, in container mode).
    Shutdown,
    /// Stop all services and reboot (or exit, in container mode).
    Reboot,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let command = args.command.unwrap_or(Command::List);
    if let Command::Init {
        config,
        buffer,
        container,
        no_kmsg,
    } = command
    {
        let kmsg = std::process::id() == 1 && !container && !no_kmsg;
        zos_zinit::logging::init_logging(args.debug, kmsg);
        let mut cfg = zos_zinit::InitConfig::new(config, args.socket);
        cfg.buffer = buffer;
        cfg.container = container;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        return match runtime.block_on(zos_zinit::run(cfg)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                let e = anyhow::Error::from(e);
                tracing::error!("{e:#}");
                eprintln!("zinit: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(client_command(Client::new(args.socket), command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn client_command(client: Client, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Init { .. } => unreachable!("handled in main"),
        Command::List => {
            let list: BTreeMap<String, String> =
                serde_json::from_value(client.command(&["list"]).await?)
                    .context("invalid list reply")?;
            print!("{}", cli::list_yaml(&list));
        }
        Command::Status { service } => {
            print!("{}", cli::status_yaml(&client.status_raw(&service).await?))
        }
        Command::Start { service } => client.start(&service).await?,
        Command::Stop { service } => client.stop(&service).await?,
        Command::Restart { service } => client.restart(&service).await?,
        Command::Forget { service } => client.forget(&service).await?,
        Command::Monitor { service } => client.monitor(&service).await?,
        Command::Kill { service, signal } => client.kill(&service, &signal).await?,
        Command::Log { snapshot, filter } => {
            cli::log(&client, filter.as_deref(), !snapshot, tokio::io::stdout()).await?
        }
        Command::Shutdown => client.shutdown().await?,
        Command::Reboot => client.reboot().await?,
    }
    Ok(())
}
