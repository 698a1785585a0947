//! Service states, exit statuses and targets, with zinit v0.2.14's exact (Rust `Debug`) spellings.

use std::fmt;

pub use zos_zinit_client::Target;

/// How a process ended (what `waitpid` reported).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// Normal exit with a code.
    Exited { pid: i32, code: i32 },
    /// Killed by a signal.
    Signaled {
        pid: i32,
        signal: i32,
        core_dumped: bool,
    },
}

impl ExitStatus {
    /// Decode a raw `waitpid` status; `None` for stop/continue notifications.
    pub fn from_raw(pid: i32, status: i32) -> Option<ExitStatus> {
        if libc::WIFEXITED(status) {
            Some(ExitStatus::Exited {
                pid,
                code: libc::WEXITSTATUS(status),
            })
        } else if libc::WIFSIGNALED(status) {
            Some(ExitStatus::Signaled {
                pid,
                signal: libc::WTERMSIG(status),
                core_dumped: libc::WCOREDUMP(status),
            })
        } else {
            None
        }
    }

    /// Whether the process exited with code 0.
    pub fn success(self) -> bool {
        matches!(self, ExitStatus::Exited { code: 0, .. })
    }
}

/// A signal's name as nix's `Debug` prints it (`SIGTERM`); real-time signals by number.
pub fn signal_name(signal: i32) -> String {
    match nix::sys::signal::Signal::try_from(signal) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("SIG{signal}"),
    }
}

impl fmt::Display for ExitStatus {
    /// `Exited(Pid(25380), 3)`, `Signaled(Pid(25532), SIGTERM, false)`.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match *self {
            ExitStatus::Exited { pid, code } => write!(f, "Exited(Pid({pid}), {code})"),
            ExitStatus::Signaled {
                pid,
                signal,
                core_dumped,
            } => {
                write!(
                    f,
                    "Signaled(Pid({pid}), {}, {core_dumped})",
                    signal_name(signal)
                )
            }
        }
    }
}

/// A service's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Initial state (nothing happened yet).
    Unknown,
    /// Some `after` dependency is not satisfied.
    Blocked,
    /// Started; the test has not passed yet.
    Spawned,
    /// The test passed (or there is none); a oneshot is Running while it runs.
    Running,
    /// Exited with code 0.
    Success,
    /// Exited otherwise.
    Error(ExitStatus),
    /// The test command could not be spawned.
    TestFailure,
    /// The command could not be spawned.
    Failure,
}

impl State {
    /// Whether a process is (supposed to be) alive in this state.
    pub fn is_active(self) -> bool {
        matches!(self, State::Spawned | State::Running)
    }
}

impl fmt::Display for State {
    /// The protocol string: `Running`, `Error(Exited(Pid(25380), 3))`, ...
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            State::Unknown => f.write_str("Unknown"),
            State::Blocked => f.write_str("Blocked"),
            State::Spawned => f.write_str("Spawned"),
            State::Running => f.write_str("Running"),
            State::Success => f.write_str("Success"),
            State::Error(status) => write!(f, "Error({status})"),
            State::TestFailure => f.write_str("TestFailure"),
            State::Failure => f.write_str("Failure"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_strings_are_byte_exact() {
        assert_eq!(State::Unknown.to_string(), "Unknown");
        assert_eq!(State::Blocked.to_string(), "Blocked");
        assert_eq!(State::Spawned.to_string(), "Spawned");
        assert_eq!(State::Running.to_string(), "Running");
        assert_eq!(State::Success.to_string(), "Success");
        assert_eq!(State::TestFailure.to_string(), "TestFailure");
        assert_eq!(State::Failure.to_string(), "Failure");
        assert_eq!(
            State::Error(ExitStatus::Exited {
                pid: 25380,
                code: 3
            })
            .to_string(),
            "Error(Exited(Pid(25380), 3))"
        );
        assert_eq!(
            State::Error(ExitStatus::Signaled {
                pid: 25532,
                signal: libc::SIGTERM,
                core_dumped: false
            })
            .to_string(),
            "Error(Signaled(Pid(25532), SIGTERM, false))"
        );
        assert_eq!(
            State::Error(ExitStatus::Signaled {
                pid: 7,
                signal: libc::SIGSEGV,
                core_dumped: true
            })
            .to_string(),
            "Error(Signaled(Pid(7), SIGSEGV, true))"
        );
        assert_eq!(Target::Up.to_string(), "Up");
        assert_eq!(Target::Down.to_string(), "Down");
    }

    #[test]
    fn raw_wait_statuses_decode() {
        // exit(3): status 3 << 8
        assert_eq!(
            ExitStatus::from_raw(10, 3 << 8),
            Some(ExitStatus::Exited { pid: 10, code: 3 })
        );
        assert!(ExitStatus::from_raw(10, 0).unwrap().success());
        // killed by SIGKILL, no core
        assert_eq!(
            ExitStatus::from_raw(11, libc::SIGKILL),
            Some(ExitStatus::Signaled {
                pid: 11,
                signal: libc::SIGKILL,
                core_dumped: false
            })
        );
        // stopped by SIGSTOP (0x7f marker): not an exit
        assert_eq!(ExitStatus::from_raw(12, (libc::SIGSTOP << 8) | 0x7f), None);
        assert_eq!(signal_name(libc::SIGPIPE), "SIGPIPE");
        assert_eq!(signal_name(40), "SIG40");
    }

    #[test]
    fn the_client_parses_what_we_print() {
        let s = State::Error(ExitStatus::Exited { pid: 1, code: 2 }).to_string();
        let parsed = zos_zinit_client::ServiceState::parse(&s).unwrap();
        assert_eq!(parsed.kind, zos_zinit_client::StateKind::Error);
        assert!(parsed.exited());
        let parsed =
            zos_zinit_client::ServiceState::parse(&State::TestFailure.to_string()).unwrap();
        assert_eq!(parsed.kind, zos_zinit_client::StateKind::TestFailure);
    }
}
