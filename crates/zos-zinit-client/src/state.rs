//! Service states and targets as the zos Go client reads them.
//!
//! zinit reports states as Rust `Debug` strings (`Running`, `Error(Exited(Pid(25380), 3))`). Like the Go client,
//! [`ServiceState::parse`] matches `^(\w+)(?:\((.+)\))?$` and lower-cases both parts; a state counts as
//! [exited](ServiceState::exited) when it is success, error, failure or blocked.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The kind of a state (the word before the parenthesis, lower-cased).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StateKind {
    Unknown,
    Blocked,
    Spawned,
    Running,
    Success,
    Error,
    TestFailure,
    Failure,
    /// A word this client does not know (kept lower-cased).
    Other(String),
}

impl StateKind {
    fn from_lower(word: &str) -> StateKind {
        match word {
            "unknown" => StateKind::Unknown,
            "blocked" => StateKind::Blocked,
            "spawned" => StateKind::Spawned,
            "running" => StateKind::Running,
            "success" => StateKind::Success,
            "error" => StateKind::Error,
            "testfailure" => StateKind::TestFailure,
            "failure" => StateKind::Failure,
            other => StateKind::Other(other.to_string()),
        }
    }

    /// The lower-case word.
    pub fn as_str(&self) -> &str {
        match self {
            StateKind::Unknown => "unknown",
            StateKind::Blocked => "blocked",
            StateKind::Spawned => "spawned",
            StateKind::Running => "running",
            StateKind::Success => "success",
            StateKind::Error => "error",
            StateKind::TestFailure => "testfailure",
            StateKind::Failure => "failure",
            StateKind::Other(s) => s,
        }
    }
}

/// A parsed service state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceState {
    /// The state's kind.
    pub kind: StateKind,
    /// What is inside the parenthesis, lower-cased (`exited(pid(25380), 3)`), or empty.
    pub reason: String,
    /// The string zinit sent.
    pub raw: String,
}

impl ServiceState {
    /// Parse a state string. Text that does not match the pattern gives `None` (the Go client errors with
    /// "invalid service state value").
    pub fn parse(text: &str) -> Option<ServiceState> {
        let word_len = text
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        if word_len == 0 {
            return None;
        }
        let (word, rest) = text.split_at(word_len);
        let reason = if rest.is_empty() {
            ""
        } else {
            // `\((.+)\)$`: an opening parenthesis right after the word, the last character a closing one,
            // at least one character between, and no newline (`.` does not match it).
            let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
            if inner.is_empty() || inner.contains('\n') {
                return None;
            }
            inner
        };
        Some(ServiceState {
            kind: StateKind::from_lower(&word.to_lowercase()),
            reason: reason.to_lowercase(),
            raw: text.to_string(),
        })
    }

    /// Whether the state is `kind`.
    pub fn is(&self, kind: &StateKind) -> bool {
        &self.kind == kind
    }

    /// Whether the service is not running: success, error, failure or blocked (the Go client's `Exited`).
    pub fn exited(&self) -> bool {
        matches!(
            self.kind,
            StateKind::Success | StateKind::Error | StateKind::Failure | StateKind::Blocked
        )
    }
}

impl fmt::Display for ServiceState {
    /// The Go client's form: `error(exited(pid(25380), 3))`.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.kind.as_str())?;
        if !self.reason.is_empty() {
            write!(f, "({})", self.reason)?;
        }
        Ok(())
    }
}

/// What zinit tries to achieve for a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    Up,
    Down,
}

impl Target {
    /// The exact protocol string (`Up`/`Down`).
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Up => "Up",
            Target::Down => "Down",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The raw body of `status <name>` (the keys zinit sends, sorted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawStatus {
    /// Each `after` dependency with its state string (`Unknown` when not monitored).
    pub after: BTreeMap<String, String>,
    pub name: String,
    pub pid: u32,
    pub state: String,
    pub target: String,
}

/// `status <name>`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceStatus {
    pub name: String,
    /// The process id, 0 when no process runs.
    pub pid: u32,
    pub state: ServiceState,
    pub target: Target,
    /// Each dependency's state string.
    pub after: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_the_go_client() {
        let s = ServiceState::parse("Error(Exited(Pid(25380), 3))").unwrap();
        assert_eq!(s.kind, StateKind::Error);
        assert_eq!(s.reason, "exited(pid(25380), 3)");
        assert_eq!(s.to_string(), "error(exited(pid(25380), 3))");
        assert!(s.exited());

        let s = ServiceState::parse("Error(Signaled(Pid(25532), SIGTERM, false))").unwrap();
        assert_eq!(s.reason, "signaled(pid(25532), sigterm, false)");

        for (text, kind, exited) in [
            ("Running", StateKind::Running, false),
            ("Spawned", StateKind::Spawned, false),
            ("Unknown", StateKind::Unknown, false),
            ("TestFailure", StateKind::TestFailure, false),
            ("Success", StateKind::Success, true),
            ("Failure", StateKind::Failure, true),
            ("Blocked", StateKind::Blocked, true),
        ] {
            let s = ServiceState::parse(text).unwrap();
            assert_eq!(s.kind, kind, "{text}");
            assert_eq!(s.reason, "");
            assert_eq!(s.exited(), exited, "{text}");
            assert_eq!(s.raw, text);
        }
        assert_eq!(
            ServiceState::parse("Weird").unwrap().kind,
            StateKind::Other("weird".into())
        );
    }

    #[test]
    fn rejects_what_the_regex_rejects() {
        for bad in [
            "",
            "(x)",
            "Error()",
            "Error(x",
            "Error x",
            "Error(a\nb)",
            "Run-ning",
        ] {
            assert!(ServiceState::parse(bad).is_none(), "{bad:?} accepted");
        }
        // The greedy `.+` takes everything up to the last parenthesis.
        assert_eq!(ServiceState::parse("A(b)(c)").unwrap().reason, "b)(c");
    }
}
