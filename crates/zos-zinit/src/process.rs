//! Spawning and reaping.
//!
//! zinit reaps every child itself: its services, their test commands, and (as PID 1 or as a child subreaper)
//! every orphan re-parented to it. One thread per process blocks in `waitid(P_ALL, WEXITED | WNOWAIT)`, which
//! waits for an exit without collecting it, then takes the spawn lock and collects every exited child with
//! `waitpid(-1, WNOHANG)`. The exit status of a process we spawned goes to whoever waits for it; orphans are
//! just reaped. Spawning holds the same lock, so an exit is never collected before its waiter is registered,
//! and a failed `exec` (which the standard library waits for itself) is never stolen.
//!
//! Nothing else in the process may wait for children: use [`reaper`] for every spawn.

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::process::Command;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use crate::state::ExitStatus;

/// The process-wide reaper.
pub struct Reaper {
    waiters: Mutex<HashMap<i32, oneshot::Sender<ExitStatus>>>,
    /// Bumped on every spawn, to wake the reaper thread when it had no children.
    spawned: (Mutex<u64>, Condvar),
}

/// A process we spawned.
pub struct Spawned {
    /// Its pid (also its process group id: every child gets its own group).
    pub pid: i32,
    /// Its stdout, when piped.
    pub stdout: Option<pipe::Receiver>,
    /// Its stderr, when piped.
    pub stderr: Option<pipe::Receiver>,
    /// Resolves with the exit status once reaped.
    pub exit: oneshot::Receiver<ExitStatus>,
}

/// The process-wide reaper, started on first use.
pub fn reaper() -> &'static Reaper {
    static REAPER: OnceLock<&'static Reaper> = OnceLock::new();
    REAPER.get_or_init(|| {
        let reaper: &'static Reaper = Box::leak(Box::new(Reaper {
            waiters: Mutex::new(HashMap::new()),
            spawned: (Mutex::new(0), Condvar::new()),
        }));
        std::thread::Builder::new()
            .name("zinit-reaper".into())
            .spawn(move || reaper.run())
            .expect("starting the reaper thread");
        reaper
    })
}

impl Reaper {
    fn run(&self) {
        loop {
            // Read before waiting, so a spawn racing with an ECHILD answer is not slept through.
            let seen = *self
                .spawned
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // SAFETY: siginfo_t is plain data; zeroed is a valid value for waitid to fill.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waitid only writes into `info`.
            let r =
                unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
            if r == 0 {
                self.reap();
                continue;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => {}
                Some(libc::ECHILD) => {
                    // No children: sleep until the next spawn (orphans only come from our own descendants).
                    let (lock, cvar) = &self.spawned;
                    let guard = lock
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let _ = cvar
                        .wait_timeout_while(guard, Duration::from_secs(1), |n| *n == seen)
                        .expect("reaper lock");
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Collect every exited child.
    fn reap(&self) {
        let mut waiters = self
            .waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            let mut status = 0;
            // SAFETY: waitpid only writes the status integer we pass.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid > 0 {
                let Some(exit) = ExitStatus::from_raw(pid, status) else {
                    continue;
                };
                match waiters.remove(&pid) {
                    Some(tx) => {
                        let _ = tx.send(exit);
                    }
                    None => tracing::debug!("reaped orphan {pid}: {exit}"),
                }
                continue;
            }
            if pid < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // 0: children remain but none exited; ECHILD: no children at all.
            break;
        }
    }

    /// Spawn `cmd` and register for its exit. The command should put the child in its own process group.
    /// Call inside a tokio runtime (the pipes are registered with it).
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<Spawned> {
        let mut waiters = self
            .waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut child = cmd.spawn()?;
        let pid = child.id() as i32;
        let (tx, exit) = oneshot::channel();
        waiters.insert(pid, tx);
        drop(waiters);
        {
            let (lock, cvar) = &self.spawned;
            *lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
            cvar.notify_all();
        }
        // The std::process::Child is dropped without waiting: the reaper owns the exit status.
        let stdout = child
            .stdout
            .take()
            .map(|s| pipe::Receiver::from_owned_fd(OwnedFd::from(s)))
            .transpose()?;
        let stderr = child
            .stderr
            .take()
            .map(|s| pipe::Receiver::from_owned_fd(OwnedFd::from(s)))
            .transpose()?;
        Ok(Spawned {
            pid,
            stdout,
            stderr,
            exit,
        })
    }
}

/// Send `signal` to the process group `pgid`. Errors other than "no such process" are returned.
pub fn killpg(pgid: i32, signal: nix::sys::signal::Signal) -> Result<(), nix::errno::Errno> {
    if pgid <= 1 {
        // Never signal "every process" or init by accident.
        return Err(nix::errno::Errno::EINVAL);
    }
    match nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), signal) {
        Err(nix::errno::Errno::ESRCH) => Ok(()),
        other => other,
    }
}

/// The pids whose parent is this process (read from /proc). Empty when the mounted /proc belongs to another
/// PID namespace (its pids would mean other processes here).
pub fn children() -> Vec<i32> {
    let me = std::process::id() as i32;
    let own_proc = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str()?.parse::<i32>().ok())
        == Some(me);
    if !own_proc {
        tracing::warn!("/proc is not from this PID namespace: not looking for left-over children");
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|pid| parent_of(*pid) == Some(me))
        .collect()
}

/// The parent pid of `pid`, from `/proc/<pid>/stat` (the field after the parenthesised command name).
pub fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn spawn_reports_exit_status_and_output() {
        let reaper = reaper();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.process_group(0);
        let mut p = reaper.spawn(&mut cmd).unwrap();
        let mut out = String::new();
        p.stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        let mut err = String::new();
        p.stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .await
            .unwrap();
        let exit = p.exit.await.unwrap();
        assert_eq!(
            exit,
            ExitStatus::Exited {
                pid: p.pid,
                code: 3
            }
        );
        assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"));

        let mut cmd = Command::new("sh");
        cmd.args(["-c", "kill -TERM $$"]);
        cmd.process_group(0);
        let p = reaper.spawn(&mut cmd).unwrap();
        let exit = p.exit.await.unwrap();
        assert_eq!(
            exit.to_string(),
            format!("Signaled(Pid({}), SIGTERM, false)", p.pid)
        );
    }

    #[tokio::test]
    async fn spawn_errors_are_returned_not_stolen() {
        let reaper = reaper();
        for _ in 0..20 {
            let err = reaper.spawn(Command::new("/nonexistent/zinit-test-binary").process_group(0));
            assert_eq!(err.err().map(|e| e.kind()), Some(io::ErrorKind::NotFound));
        }
    }

    #[tokio::test]
    async fn children_are_found_in_proc() {
        let p = reaper()
            .spawn(Command::new("sleep").arg("100").process_group(0))
            .unwrap();
        let me = std::process::id() as i32;
        let kids = children();
        assert!(kids.contains(&p.pid), "{} not in {kids:?}", p.pid);
        assert!(
            kids.iter()
                .all(|pid| parent_of(*pid) == Some(me) || parent_of(*pid).is_none())
        );
        killpg(p.pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        let exit = p.exit.await.unwrap();
        assert_eq!(
            exit,
            ExitStatus::Signaled {
                pid: p.pid,
                signal: libc::SIGKILL,
                core_dumped: false
            }
        );
    }

    #[test]
    fn parent_of_reads_proc() {
        let me = std::process::id() as i32;
        // SAFETY: getppid cannot fail.
        let parent = unsafe { libc::getppid() };
        assert_eq!(parent_of(me), Some(parent));
        assert_eq!(parent_of(-5), None);
    }

    #[test]
    fn killpg_refuses_dangerous_targets() {
        assert_eq!(
            killpg(0, nix::sys::signal::Signal::SIGTERM),
            Err(nix::errno::Errno::EINVAL)
        );
        assert_eq!(
            killpg(1, nix::sys::signal::Signal::SIGTERM),
            Err(nix::errno::Errno::EINVAL)
        );
        assert_eq!(
            killpg(-1, nix::sys::signal::Signal::SIGTERM),
            Err(nix::errno::Errno::EINVAL)
        );
    }
}
