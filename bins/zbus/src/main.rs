//! `zbus`: the operator's view of the node bus, in the spirit of systemd's `busctl`.
//!
//! ```text
//! zbus status [MODULE] [--json]                  which modules answer, their objects and workers
//! zbus call MODULE OBJECT[@VERSION] METHOD [ARG…] call a method; arguments are JSON (bare words are strings)
//! zbus listen MODULE OBJECT[@VERSION] STREAM      print a stream's events as JSON lines
//! zbus list [MODULE]                             the objects, methods and streams the contracts declare
//! ```
//! The broker is `unix:///var/run/redis.sock` unless `--broker` (or `ZBUS_BROKER`) says otherwise.
//! `zbus status MODULE` exits 0 only when the module answers: zinit units use it as their readiness test.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod commands;

#[derive(Parser)]
#[command(name = "zbus", version, about = "Inspect and call the node bus")]
struct Cli {
    /// Bus broker address (unix:///path, tcp://host:port or redis://host:port).
    #[arg(long, global = true, env = "ZBUS_BROKER", default_value = zos_bus::DEFAULT_BROKER)]
    broker: String,
    /// Seconds to wait for an answer.
    #[arg(long, global = true, default_value_t = 30.0)]
    timeout: f64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show whether modules answer, with their objects and workers.
    Status {
        /// One module; all known modules when omitted.
        module: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Call a method and print its result as JSON.
    Call {
        module: String,
        /// `name` or `name@version` (the version comes from the contract when omitted).
        object: String,
        method: String,
        /// Arguments as JSON values; a word that is not JSON is taken as a string.
        args: Vec<String>,
    },
    /// Print the events of a stream as JSON lines.
    Listen {
        module: String,
        object: String,
        stream: String,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// List the declared objects, methods and streams.
    List {
        /// Only this module.
        module: Option<String>,
    },
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`zbus list | head`), like other command-line tools.
    // SAFETY: setting a signal disposition to its default before any thread starts has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let timeout = Duration::from_secs_f64(cli.timeout.max(0.001));
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building the tokio runtime")
        .block_on(async {
            match cli.command {
                Command::Status { module, json } => {
                    commands::status::run(&cli.broker, module.as_deref(), json, timeout).await
                }
                Command::Call {
                    module,
                    object,
                    method,
                    args,
                } => {
                    commands::call::run(&cli.broker, &module, &object, &method, &args, timeout)
                        .await
                }
                Command::Listen {
                    module,
                    object,
                    stream,
                    count,
                } => commands::listen::run(&cli.broker, &module, &object, &stream, count).await,
                Command::List { module } => commands::list::run(module.as_deref()),
            }
        });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", commands::chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
