//! The supervisor: the table of monitored services, one supervision task per service, and the operations the
//! control socket exposes.
//!
//! Lifecycle of a service (zinit v0.2.14, with its defects fixed):
//! 1. While the target is Up, wait until every `after` dependency is monitored and `Running` (not a oneshot)
//!    or `Success`; the state is `Blocked` meanwhile.
//! 2. Spawn the command in a new process group. A spawn error gives `Failure` (not retried).
//! 3. Without a test (or for a oneshot) the state is `Running` at once; otherwise `Spawned` until the test
//!    exits 0. The test is retried every `test_interval`, is killed after `test_timeout`, and is killed when
//!    the service exits. A test that cannot be spawned gives `TestFailure` and is retried at the same pace.
//! 4. On exit the state is `Success` or `Error(..)`. A oneshot stops there. Anything else is restarted after
//!    an exponential backoff (2 s, doubling, capped; reset after a run longer than the stability period, or
//!    by `start`), going back to step 1.
//!
//! `stop` sends `signal.stop` to the process group and SIGKILLs it after `shutdown_timeout`.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use zos_zinit_client::{LogMode, RawStatus, Unit, UnitError, parse_signal, validate_name};

use crate::graph::{Cycle, Graph, find_cycle, shutdown_plan};
use crate::load::{LoadError, load_file};
use crate::logs::{Ring, Stream};
use crate::process::{Spawned, killpg, reaper};
use crate::state::{State, Target};

/// Restart backoff of long-running services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay (v0.2.14's fixed delay: 2 s).
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
    /// A run at least this long resets the delay to `initial`.
    pub stable: Duration,
}

impl Backoff {
    /// The delay before the next restart: `current`, or `initial` again after a stable run of `ran`.
    pub fn delay(&self, current: Duration, ran: Duration) -> Duration {
        if ran >= self.stable {
            self.initial
        } else {
            current.min(self.max)
        }
    }

    /// The delay after `current` was slept in full: doubled, capped.
    pub fn grow(&self, current: Duration) -> Duration {
        current.saturating_mul(2).min(self.max)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(60),
            stable: Duration::from_secs(30),
        }
    }
}

/// How the manager behaves.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where `monitor <name>` reads `<name>.yaml`.
    pub config_dir: PathBuf,
    /// Lines kept in the log ring.
    pub log_capacity: usize,
    /// Variables added to zinit's own environment for every service (from `/etc/environment`).
    pub environment: Vec<(String, String)>,
    /// Restart backoff.
    pub restart: Backoff,
    /// Pause between failed test runs.
    pub test_interval: Duration,
    /// A test running longer than this is killed and counts as failed.
    pub test_timeout: Duration,
    /// Whether `shutdown`/`reboot` requests are accepted (PID 1 or `--container`).
    pub power_allowed: bool,
}

impl Options {
    /// Defaults for a unit directory.
    pub fn new(config_dir: impl Into<PathBuf>) -> Options {
        Options {
            config_dir: config_dir.into(),
            log_capacity: crate::logs::DEFAULT_CAPACITY,
            environment: Vec::new(),
            restart: Backoff::default(),
            test_interval: Duration::from_secs(2),
            test_timeout: Duration::from_secs(60),
            power_allowed: false,
        }
    }
}

/// What a `shutdown` or `reboot` request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    Off,
    Reboot,
}

/// Why an operation failed. The messages are zinit v0.2.14's, which clients match on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("service name \"{0}\" unknown")]
    Unknown(String),
    #[error("service \"{0}\" already monitored")]
    AlreadyMonitored(String),
    #[error("service \"{0}\" is up")]
    IsUp(String),
    #[error("service \"{0}\" is down")]
    IsDown(String),
    #[error("zinit is shutting down")]
    ShuttingDown,
    #[error("failed to load service config: {0}")]
    Load(LoadError),
    #[error("invalid service: {0}")]
    Invalid(UnitError),
    #[error("EINVAL: Invalid argument (unknown signal {0:?})")]
    BadSignal(String),
    #[error("dependency cycle: {0}")]
    Cycle(Cycle),
    #[error("sending {signal} to service \"{name}\": {errno}")]
    Signal {
        name: String,
        signal: &'static str,
        errno: nix::errno::Errno,
    },
    #[error("{0} refused: zinit is not PID 1 and was not started with --container")]
    PowerRefused(&'static str),
}

/// The supervisor. Cheap to clone.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

struct Inner {
    table: Mutex<Table>,
    changes: watch::Sender<u64>,
    ring: Ring,
    opts: Options,
    shutting_down: AtomicBool,
    power: mpsc::UnboundedSender<Power>,
}

#[derive(Default)]
struct Table {
    services: BTreeMap<String, Entry>,
    next_generation: u64,
}

struct Entry {
    unit: Arc<Unit>,
    state: State,
    target: Target,
    /// The running process (and process group), 0 when none.
    pid: i32,
    /// Whether a supervision task runs for this entry.
    scheduled: bool,
    /// Distinguishes this entry from an earlier one of the same name (forget + monitor).
    generation: u64,
    /// Counts spawns, so late events about an earlier process are ignored.
    spawn_seq: u64,
    /// `stop` was called while the current process ran: its exit is not a crash.
    stop_requested: bool,
    /// Counts `start` calls, which cut a restart backoff short.
    kicks: u64,
}

impl Table {
    fn live(&mut self, name: &str, generation: u64) -> Option<&mut Entry> {
        self.services
            .get_mut(name)
            .filter(|e| e.generation == generation)
    }

    fn get(&mut self, name: &str) -> Result<&mut Entry, Error> {
        self.services
            .get_mut(name)
            .ok_or_else(|| Error::Unknown(name.to_string()))
    }

    /// v0.2.14's `can_schedule`: every dependency is monitored and Running (not a oneshot) or Success.
    fn can_schedule(&self, unit: &Unit) -> bool {
        unit.after.iter().all(|dep| match self.services.get(dep) {
            Some(d) => (d.state == State::Running && !d.unit.oneshot) || d.state == State::Success,
            None => false,
        })
    }

    fn graph(&self) -> Graph {
        self.services
            .iter()
            .map(|(n, e)| (n.clone(), e.unit.after.clone()))
            .collect()
    }
}

/// What ended a run.
enum AfterExit {
    /// The loop ends (oneshot, target Down, or the entry is gone).
    End,
    /// Restart; `stopped`: the exit was asked for (no backoff), `ran`: how long the process lived.
    Restart { stopped: bool, ran: Duration },
}

impl Manager {
    /// A manager with no services, and the receiver of `shutdown`/`reboot` requests.
    pub fn new(opts: Options) -> (Manager, mpsc::UnboundedReceiver<Power>) {
        let (power, requests) = mpsc::unbounded_channel();
        let inner = Inner {
            table: Mutex::new(Table::default()),
            changes: watch::channel(0).0,
            ring: Ring::new(opts.log_capacity),
            opts,
            shutting_down: AtomicBool::new(false),
            power,
        };
        (
            Manager {
                inner: Arc::new(inner),
            },
            requests,
        )
    }

    /// The log ring.
    pub fn ring(&self) -> &Ring {
        &self.inner.ring
    }

    /// Whether a shutdown has started.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn changed(&self) {
        self.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn check_not_shutting_down(&self) -> Result<(), Error> {
        if self.is_shutting_down() {
            Err(Error::ShuttingDown)
        } else {
            Ok(())
        }
    }

    // ----- operations -----

    /// Start supervising `unit` under `name` (target Up).
    pub fn monitor(&self, name: &str, unit: Unit) -> Result<(), Error> {
        validate_name(name).map_err(Error::Invalid)?;
        unit.validate().map_err(Error::Invalid)?;
        self.check_not_shutting_down()?;
        let mut table = self.table();
        if table.services.contains_key(name) {
            return Err(Error::AlreadyMonitored(name.to_string()));
        }
        let mut graph = table.graph();
        graph.insert(name.to_string(), unit.after.clone());
        if let Some(cycle) = find_cycle(&graph) {
            return Err(Error::Cycle(cycle));
        }
        let generation = table.next_generation;
        table.next_generation += 1;
        table.services.insert(
            name.to_string(),
            Entry {
                unit: Arc::new(unit),
                state: State::Unknown,
                target: Target::Up,
                pid: 0,
                scheduled: true,
                generation,
                spawn_seq: 0,
                stop_requested: false,
                kicks: 0,
            },
        );
        drop(table);
        tracing::info!("monitoring service {name}");
        self.changed();
        tokio::spawn(self.clone().supervise(name.to_string(), generation));
        Ok(())
    }

    /// `monitor <name>`: load `<config_dir>/<name>.yaml` and monitor it.
    pub fn monitor_file(&self, name: &str) -> Result<(), Error> {
        validate_name(name).map_err(Error::Invalid)?;
        self.check_not_shutting_down()?;
        if self.table().services.contains_key(name) {
            return Err(Error::AlreadyMonitored(name.to_string()));
        }
        let unit = load_file(&self.inner.opts.config_dir.join(format!("{name}.yaml")))
            .map_err(Error::Load)?;
        self.monitor(name, unit)
    }

    /// Set the target Up and make sure a supervision task runs; cuts a restart backoff short.
    pub fn start(&self, name: &str) -> Result<(), Error> {
        self.check_not_shutting_down()?;
        let mut table = self.table();
        let entry = table.get(name)?;
        entry.target = Target::Up;
        entry.kicks += 1;
        let spawn = (!entry.scheduled).then(|| {
            entry.scheduled = true;
            entry.generation
        });
        drop(table);
        self.changed();
        if let Some(generation) = spawn {
            tokio::spawn(self.clone().supervise(name.to_string(), generation));
        }
        Ok(())
    }

    /// Set the target Down and send the stop signal to the process group; SIGKILL follows after the unit's
    /// `shutdown_timeout` if the process is still there. Returns at once.
    pub fn stop(&self, name: &str) -> Result<(), Error> {
        let (pid, generation, seq, unit) = {
            let mut table = self.table();
            let entry = table.get(name)?;
            entry.target = Target::Down;
            if entry.pid != 0 {
                entry.stop_requested = true;
            }
            (
                entry.pid,
                entry.generation,
                entry.spawn_seq,
                entry.unit.clone(),
            )
        };
        self.changed();
        if pid == 0 {
            return Ok(());
        }
        let signal = unit.stop_signal().unwrap_or(Signal::SIGTERM);
        tracing::info!("stopping service {name} ({signal} to process group {pid})");
        killpg(pid, signal).map_err(|errno| Error::Signal {
            name: name.into(),
            signal: signal.as_str(),
            errno,
        })?;
        let manager = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            sleep(Duration::from_secs(unit.shutdown_timeout)).await;
            let still = manager
                .table()
                .live(&name, generation)
                .is_some_and(|e| e.spawn_seq == seq && e.pid == pid);
            if still {
                tracing::warn!(
                    "service {name} did not stop within {}s: sending SIGKILL to process group {pid}",
                    unit.shutdown_timeout
                );
                let _ = killpg(pid, Signal::SIGKILL);
            }
        });
        Ok(())
    }

    /// Send a signal (by name, any case) to the service's process group.
    pub fn kill(&self, name: &str, signal: &str) -> Result<(), Error> {
        let sig = parse_signal(signal).ok_or_else(|| Error::BadSignal(signal.to_string()))?;
        let pid = self.table().get(name)?.pid;
        if pid == 0 {
            return Err(Error::IsDown(name.to_string()));
        }
        killpg(pid, sig).map_err(|errno| Error::Signal {
            name: name.into(),
            signal: sig.as_str(),
            errno,
        })
    }

    /// Stop supervising a service whose target is Down and whose process is gone.
    pub fn forget(&self, name: &str) -> Result<(), Error> {
        let mut table = self.table();
        let entry = table.get(name)?;
        if entry.target == Target::Up || entry.pid != 0 {
            return Err(Error::IsUp(name.to_string()));
        }
        table.services.remove(name);
        drop(table);
        tracing::info!("forgot service {name}");
        self.changed();
        Ok(())
    }

    /// Stop, wait for the exit (SIGKILL after `shutdown_timeout`), then start. Not in v0.2.14's protocol.
    pub async fn restart(&self, name: &str) -> Result<(), Error> {
        self.check_not_shutting_down()?;
        self.stop_and_wait(name).await?;
        self.start(name)
    }

    /// The service's status (the `status` body).
    pub fn status(&self, name: &str) -> Result<RawStatus, Error> {
        let table = self
            .inner
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = table
            .services
            .get(name)
            .ok_or_else(|| Error::Unknown(name.to_string()))?;
        let after = entry
            .unit
            .after
            .iter()
            .map(|dep| {
                let state = table.services.get(dep).map_or(State::Unknown, |d| d.state);
                (dep.clone(), state.to_string())
            })
            .collect();
        Ok(RawStatus {
            after,
            name: name.to_string(),
            pid: entry.pid as u32,
            state: entry.state.to_string(),
            target: entry.target.to_string(),
        })
    }

    /// Every service's state (the `list` body).
    pub fn list(&self) -> BTreeMap<String, String> {
        self.table()
            .services
            .iter()
            .map(|(n, e)| (n.clone(), e.state.to_string()))
            .collect()
    }

    /// Ask for a power-off or reboot (handled by whoever owns the request receiver). Refused unless
    /// [`Options::power_allowed`].
    pub fn request_power(&self, power: Power) -> Result<(), Error> {
        if !self.inner.opts.power_allowed {
            return Err(Error::PowerRefused(match power {
                Power::Off => "shutdown",
                Power::Reboot => "reboot",
            }));
        }
        let _ = self.inner.power.send(power);
        Ok(())
    }

    /// Stop every service, dependants before their dependencies, each with SIGKILL after its
    /// `shutdown_timeout`; then SIGKILL whatever child processes are left. Further `monitor`/`start` fail.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        let plan = shutdown_plan(&self.table().graph());
        tracing::info!("shutting down: {plan:?}");
        for wave in plan {
            let mut stops = tokio::task::JoinSet::new();
            for name in wave {
                let manager = self.clone();
                stops.spawn(async move {
                    if let Err(e) = manager.stop_and_wait(&name).await {
                        tracing::warn!("stopping {name}: {e}");
                    }
                });
            }
            while stops.join_next().await.is_some() {}
        }
        for pid in crate::process::children() {
            tracing::info!("killing left-over process {pid}");
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    /// Stop and wait until the process is gone: `shutdown_timeout`, then SIGKILL and a few more seconds.
    async fn stop_and_wait(&self, name: &str) -> Result<(), Error> {
        self.stop(name)?;
        let (pid, generation, seq, grace) = {
            let mut table = self.table();
            let e = table.get(name)?;
            (
                e.pid,
                e.generation,
                e.spawn_seq,
                Duration::from_secs(e.unit.shutdown_timeout),
            )
        };
        if pid == 0 {
            return Ok(());
        }
        let gone = |m: &Manager| {
            m.table()
                .live(name, generation)
                .is_none_or(|e| e.spawn_seq != seq || e.pid == 0)
        };
        if self.wait_for(grace, || gone(self)).await {
            return Ok(());
        }
        let _ = killpg(pid, Signal::SIGKILL);
        if !self.wait_for(Duration::from_secs(5), || gone(self)).await {
            tracing::error!("service {name} (pid {pid}) survived SIGKILL for 5s");
        }
        Ok(())
    }

    /// Wait until `done` holds (checked on every change), at most `limit`.
    async fn wait_for(&self, limit: Duration, done: impl Fn() -> bool) -> bool {
        let mut rx = self.inner.changes.subscribe();
        let deadline = Instant::now() + limit;
        loop {
            rx.borrow_and_update();
            if done() {
                return true;
            }
            tokio::select! {
                _ = sleep_until(deadline) => return done(),
                r = rx.changed() => if r.is_err() { return done() },
            }
        }
    }

    // ----- supervision -----

    async fn supervise(self, name: String, generation: u64) {
        let backoff = self.inner.opts.restart;
        let mut delay = backoff.initial;
        let mut failures = 0u32;
        loop {
            if !self.wait_dependencies(&name, generation).await {
                return;
            }
            let Some((spawned, seq, unit)) = self.spawn_service(&name, generation) else {
                return;
            };
            match self.run(&name, generation, spawned, seq, unit).await {
                AfterExit::End => return,
                AfterExit::Restart { stopped: true, .. } => {
                    delay = backoff.initial;
                    failures = 0;
                    continue;
                }
                AfterExit::Restart { ran, .. } => {
                    if ran >= backoff.stable {
                        if failures > 1 {
                            tracing::info!("service {name} ran for {ran:?}: restart backoff reset");
                        }
                        failures = 0;
                    }
                    delay = backoff.delay(delay, ran);
                    failures += 1;
                }
            }
            if failures == 2 {
                tracing::warn!(
                    "service {name} keeps exiting: restarting with backoff up to {:?}",
                    backoff.max
                );
            }
            match self.backoff(&name, generation, delay).await {
                None => return,
                Some(true) => delay = backoff.initial,
                Some(false) => delay = backoff.grow(delay),
            }
        }
    }

    /// Step 1: wait until the dependencies allow a spawn. `false`: the loop must end.
    async fn wait_dependencies(&self, name: &str, generation: u64) -> bool {
        let mut rx = self.inner.changes.subscribe();
        loop {
            rx.borrow_and_update();
            let blocked_now = {
                let mut table = self.table();
                let Some(entry) = table.live(name, generation) else {
                    return false;
                };
                if entry.target == Target::Down {
                    entry.scheduled = false;
                    return false;
                }
                let unit = entry.unit.clone();
                if table.can_schedule(&unit) {
                    return true;
                }
                let entry = table.live(name, generation).expect("entry checked above");
                let first = entry.state != State::Blocked;
                entry.state = State::Blocked;
                first
            };
            if blocked_now {
                self.changed();
            }
            if rx.changed().await.is_err() {
                return false;
            }
        }
    }

    /// Step 2: spawn under the table lock (the target is re-checked). `None`: the loop ends.
    fn spawn_service(&self, name: &str, generation: u64) -> Option<(Spawned, u64, Arc<Unit>)> {
        let mut table = self.table();
        let entry = table.live(name, generation)?;
        if entry.target == Target::Down {
            entry.scheduled = false;
            return None;
        }
        let unit = entry.unit.clone();
        let spawned = unit
            .argv()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))
            .and_then(|argv| reaper().spawn(&mut self.command(&argv, &unit)));
        match spawned {
            Err(e) => {
                entry.state = State::Failure;
                entry.scheduled = false;
                drop(table);
                tracing::error!("service {name}: cannot spawn {:?}: {e}", unit.exec);
                self.changed();
                None
            }
            Ok(mut spawned) => {
                entry.pid = spawned.pid;
                entry.spawn_seq += 1;
                entry.stop_requested = false;
                entry.state = if unit.oneshot || unit.test.trim().is_empty() {
                    State::Running
                } else {
                    State::Spawned
                };
                let seq = entry.spawn_seq;
                drop(table);
                tracing::debug!("service {name}: spawned pid {}", spawned.pid);
                self.inner.ring.push_start_marker(name);
                self.pump_output(name, &mut spawned);
                self.changed();
                Some((spawned, seq, unit))
            }
        }
    }

    /// Steps 3 and 4: run the test, wait for the exit, record it, decide what comes next.
    async fn run(
        &self,
        name: &str,
        generation: u64,
        spawned: Spawned,
        seq: u64,
        unit: Arc<Unit>,
    ) -> AfterExit {
        let test = (!unit.oneshot && !unit.test.trim().is_empty()).then(|| {
            TestRun::start(
                self.clone(),
                name.to_string(),
                generation,
                seq,
                unit.clone(),
            )
        });
        let started = Instant::now();
        let pid = spawned.pid;
        let exit = spawned.exit.await.ok();
        if let Some(test) = test {
            test.cancel();
        }
        let (next, stopped) = {
            let mut table = self.table();
            let Some(entry) = table.live(name, generation) else {
                return AfterExit::End;
            };
            entry.pid = 0;
            entry.state = match exit {
                Some(e) if e.success() => State::Success,
                Some(e) => State::Error(e),
                None => State::Unknown,
            };
            let stopped = std::mem::take(&mut entry.stop_requested);
            let end = unit.oneshot || entry.target == Target::Down;
            if end {
                entry.scheduled = false;
            }
            let next = if end {
                AfterExit::End
            } else {
                AfterExit::Restart {
                    stopped,
                    ran: started.elapsed(),
                }
            };
            (next, stopped || end && entry.target == Target::Down)
        };
        match exit {
            Some(e) => tracing::debug!("service {name} exited: {e}"),
            None => tracing::warn!("service {name}: lost track of pid {pid}"),
        }
        self.changed();
        if stopped {
            // The service was stopped: whatever is left of its process group goes too.
            let _ = killpg(pid, Signal::SIGKILL);
        }
        next
    }

    /// Sleep `delay` before a restart. `None`: the loop ends (target Down or entry gone); `Some(true)`: cut
    /// short by `start`; `Some(false)`: slept the whole delay.
    async fn backoff(&self, name: &str, generation: u64, delay: Duration) -> Option<bool> {
        let kicks = self.table().live(name, generation)?.kicks;
        let deadline = Instant::now() + delay;
        let mut rx = self.inner.changes.subscribe();
        loop {
            rx.borrow_and_update();
            {
                let mut table = self.table();
                let entry = table.live(name, generation)?;
                if entry.target == Target::Down {
                    entry.scheduled = false;
                    return None;
                }
                if entry.kicks != kicks {
                    return Some(true);
                }
            }
            tokio::select! {
                _ = sleep_until(deadline) => return Some(false),
                r = rx.changed() => if r.is_err() { return None },
            }
        }
    }

    fn command(&self, argv: &[String], unit: &Unit) -> Command {
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .envs(self.inner.opts.environment.iter().map(|(k, v)| (k, v)))
            .envs(&unit.env)
            .current_dir(if unit.dir.is_empty() {
                "/"
            } else {
                unit.dir.as_str()
            })
            .stdin(Stdio::null())
            .process_group(0);
        match unit.log {
            LogMode::Ring => cmd.stdout(Stdio::piped()).stderr(Stdio::piped()),
            LogMode::Stdout => cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit()),
            LogMode::None => cmd.stdout(Stdio::null()).stderr(Stdio::null()),
        };
        cmd
    }

    fn pump_output(&self, prefix: &str, spawned: &mut Spawned) {
        for (stream, pipe) in [
            (Stream::Stdout, spawned.stdout.take()),
            (Stream::Stderr, spawned.stderr.take()),
        ] {
            if let Some(pipe) = pipe {
                let ring = self.inner.ring.clone();
                let prefix = prefix.to_string();
                tokio::spawn(async move { ring.pump(prefix, stream, pipe).await });
            }
        }
    }

    /// Set the state of the current process's run, if it is still `Spawned`/`TestFailure`.
    fn test_result(&self, name: &str, generation: u64, seq: u64, state: State) {
        let changed = {
            let mut table = self.table();
            match table.live(name, generation) {
                Some(e)
                    if e.spawn_seq == seq
                        && matches!(e.state, State::Spawned | State::TestFailure) =>
                {
                    let changed = e.state != state;
                    e.state = state;
                    changed
                }
                _ => false,
            }
        };
        if changed {
            self.changed();
        }
    }
}

/// A running test loop.
struct TestRun {
    task: tokio::task::JoinHandle<()>,
    cell: Arc<Mutex<TestCell>>,
}

#[derive(Default)]
struct TestCell {
    cancelled: bool,
    /// The test process running now, 0 when none.
    pid: i32,
}

impl TestRun {
    fn start(
        manager: Manager,
        name: String,
        generation: u64,
        seq: u64,
        unit: Arc<Unit>,
    ) -> TestRun {
        let cell = Arc::new(Mutex::new(TestCell::default()));
        let task = tokio::spawn(Self::run(
            manager,
            name,
            generation,
            seq,
            unit,
            cell.clone(),
        ));
        TestRun { task, cell }
    }

    /// Stop testing: kill the test process (and its group) and end the loop.
    fn cancel(self) {
        let pid = {
            let mut cell = self
                .cell
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            cell.cancelled = true;
            std::mem::take(&mut cell.pid)
        };
        if pid != 0 {
            let _ = killpg(pid, Signal::SIGKILL);
        }
        self.task.abort();
    }

    async fn run(
        manager: Manager,
        name: String,
        generation: u64,
        seq: u64,
        unit: Arc<Unit>,
        cell: Arc<Mutex<TestCell>>,
    ) {
        let opts = &manager.inner.opts;
        let argv = match unit.test_argv() {
            Ok(Some(argv)) => argv,
            _ => return,
        };
        let prefix = format!("{name}/test");
        let mut reported = false;
        loop {
            let spawned = {
                let mut cell = cell
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if cell.cancelled {
                    return;
                }
                let spawned = reaper().spawn(&mut manager.command(&argv, &unit));
                if let Ok(s) = &spawned {
                    cell.pid = s.pid;
                }
                spawned
            };
            match spawned {
                Err(e) => {
                    if !reported {
                        tracing::error!("service {name}: cannot spawn test {:?}: {e}", unit.test);
                        reported = true;
                    }
                    manager.test_result(&name, generation, seq, State::TestFailure);
                }
                Ok(mut spawned) => {
                    manager.pump_output(&prefix, &mut spawned);
                    let pid = spawned.pid;
                    let exit = timeout(opts.test_timeout, spawned.exit).await;
                    cell.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .pid = 0;
                    match exit {
                        Ok(Ok(status)) if status.success() => {
                            manager.test_result(&name, generation, seq, State::Running);
                            tracing::info!("service {name} is running (test passed)");
                            return;
                        }
                        Ok(Ok(_)) => {
                            // Spawned again after a test that could not run before.
                            manager.test_result(&name, generation, seq, State::Spawned);
                        }
                        Ok(Err(_)) => {}
                        Err(_) => {
                            tracing::warn!(
                                "service {name}: test ran longer than {:?}, killed",
                                opts.test_timeout
                            );
                            let _ = killpg(pid, Signal::SIGKILL);
                        }
                    }
                }
            }
            sleep(opts.test_interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets_after_a_stable_run() {
        let b = Backoff::default();
        let short = Duration::from_millis(100);
        let mut delay = b.initial;
        let mut slept = Vec::new();
        for _ in 0..8 {
            delay = b.delay(delay, short);
            slept.push(delay.as_secs());
            delay = b.grow(delay);
        }
        assert_eq!(slept, vec![2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(b.delay(delay, b.stable), b.initial);
        assert_eq!(b.delay(delay, b.stable - short), b.max);
    }
}
