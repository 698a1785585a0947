//! `zinit init`: load the unit directory, supervise, serve the control socket, shut down in order.
//!
//! - As PID 1 it reaps every process. Otherwise it makes itself a child subreaper, so orphans of its
//!   services are re-parented to it and reaped (v0.2.14 let them escape).
//! - `shutdown`/`reboot` requests are accepted only as PID 1 or with `--container`.
//! - SIGTERM and SIGINT (and SIGHUP with `--container`) start the ordered shutdown.
//! - After the shutdown: as PID 1 without `--container` it calls reboot(2) (power off or restart; inside a
//!   PID namespace this only ends the namespace); otherwise [`run`] returns and the process exits 0.

use std::path::PathBuf;

use tokio::signal::unix::{SignalKind, signal};

use crate::graph::reject_cycles;
use crate::load::{load_dir, parse_environment};
use crate::manager::{Manager, Options, Power};

/// How `zinit init` runs.
#[derive(Clone, Debug)]
pub struct InitConfig {
    /// The unit directory (`-c`, default `/etc/zinit`).
    pub config_dir: PathBuf,
    /// The control socket (`-s`, default `/var/run/zinit.sock`).
    pub socket: PathBuf,
    /// Log ring size in lines (`-b`, default 2000).
    pub buffer: usize,
    /// `--container`: shutdown/reboot end zinit instead of the machine; SIGHUP also shuts down.
    pub container: bool,
    /// Extra environment for services, read once (default `/etc/environment`; missing is fine).
    pub environment_file: Option<PathBuf>,
}

impl InitConfig {
    /// zinit's defaults.
    pub fn new(config_dir: impl Into<PathBuf>, socket: impl Into<PathBuf>) -> InitConfig {
        InitConfig {
            config_dir: config_dir.into(),
            socket: socket.into(),
            buffer: crate::logs::DEFAULT_CAPACITY,
            container: false,
            environment_file: Some("/etc/environment".into()),
        }
    }
}

/// Why `zinit init` could not run.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("unit directory {path}")]
    ConfigDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("control socket {path}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("installing signal handlers")]
    Signals(#[source] std::io::Error),
    #[error("reboot(2) failed")]
    Reboot(#[source] nix::errno::Errno),
}

/// Run until shut down. Must be called inside a multi-threaded tokio runtime.
pub async fn run(cfg: InitConfig) -> Result<(), InitError> {
    let pid1 = std::process::id() == 1;
    if !pid1 {
        match nix::sys::prctl::set_child_subreaper(true) {
            Ok(()) => tracing::debug!("child subreaper set"),
            Err(e) => tracing::warn!("cannot become a child subreaper ({e}): orphans will escape"),
        }
    }
    let _ = crate::process::reaper();

    let dir_error = |path: &PathBuf| {
        let path = path.clone();
        move |source| InitError::ConfigDir { path, source }
    };
    let config_dir = std::fs::canonicalize(&cfg.config_dir).map_err(dir_error(&cfg.config_dir))?;
    std::env::set_current_dir(&config_dir).map_err(dir_error(&config_dir))?;
    let socket = std::path::absolute(&cfg.socket).map_err(|source| InitError::Socket {
        path: cfg.socket.clone(),
        source,
    })?;

    let environment = cfg
        .environment_file
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| parse_environment(&t))
        .unwrap_or_default();
    let mut opts = Options::new(&config_dir);
    opts.log_capacity = cfg.buffer;
    opts.environment = environment;
    opts.power_allowed = pid1 || cfg.container;
    let (manager, mut power_requests) = Manager::new(opts);

    let listener = crate::server::bind(&socket).map_err(|source| InitError::Socket {
        path: socket.clone(),
        source,
    })?;
    let mut term = signal(SignalKind::terminate()).map_err(InitError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(InitError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(InitError::Signals)?;

    monitor_dir(&manager, &config_dir).map_err(dir_error(&config_dir))?;
    let server = tokio::spawn(crate::server::serve(listener, manager.clone()));
    tracing::info!(
        "zinit ready: units from {}, socket {}{}{}",
        config_dir.display(),
        socket.display(),
        if pid1 { ", PID 1" } else { ", child subreaper" },
        if cfg.container {
            ", container mode"
        } else {
            ""
        }
    );

    let power = loop {
        tokio::select! {
            p = power_requests.recv() => break p.unwrap_or(Power::Off),
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break Power::Off }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break Power::Off }
            _ = hup.recv() => {
                if cfg.container {
                    tracing::info!("SIGHUP: shutting down");
                    break Power::Off;
                }
                tracing::info!("SIGHUP ignored");
            }
        }
    };
    manager.shutdown().await;
    nix::unistd::sync();
    server.abort();
    let _ = std::fs::remove_file(&socket);
    if pid1 && !cfg.container {
        use nix::sys::reboot::{RebootMode, reboot};
        let mode = match power {
            Power::Off => RebootMode::RB_POWER_OFF,
            Power::Reboot => RebootMode::RB_AUTOBOOT,
        };
        tracing::info!("calling reboot(2): {mode:?}");
        return Err(InitError::Reboot(reboot(mode).unwrap_err()));
    }
    tracing::info!("all services stopped ({power:?}): exiting");
    Ok(())
}

/// Monitor every valid unit of `dir`; broken files and services on a dependency cycle are logged and skipped.
fn monitor_dir(manager: &Manager, dir: &std::path::Path) -> std::io::Result<()> {
    let loaded = load_dir(dir)?;
    for e in &loaded.errors {
        tracing::error!("failed to load config file {e}");
    }
    let graph = loaded
        .units
        .iter()
        .map(|(n, u)| (n.clone(), u.after.clone()))
        .collect();
    let (acyclic, cycles) = reject_cycles(&graph);
    for cycle in cycles {
        tracing::error!("dependency cycle {cycle}: these services are not monitored");
    }
    for (name, unit) in loaded.units {
        if acyclic.contains(&name)
            && let Err(e) = manager.monitor(&name, unit)
        {
            tracing::error!("failed to monitor service {name}: {e}");
        }
    }
    Ok(())
}
