//! The zinit unit: one YAML file `<name>.yaml` in the unit directory (zinit v0.2.14 schema).
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `exec` | required | command line, split with shlex (no shell); argv\[0\] is looked up in PATH |
//! | `test` | `""` | readiness command; the service stays `Spawned` until it exits 0 |
//! | `oneshot` | `false` | run once, never restart; dependants wait for `Success` |
//! | `after` | `[]` | services that must be `Running` (or `Success` for a oneshot) before each spawn |
//! | `signal.stop` | `sigterm` | signal `stop` sends to the process group (a name like `SIGINT`, any case) |
//! | `log` | `ring` | `ring`, `stdout` or `none` (`null` is accepted as `none`) |
//! | `env` | `{}` | added to zinit's environment and `/etc/environment` |
//! | `dir` | `""` | working directory; empty means `/` |
//! | `shutdown_timeout` | `10` | seconds to wait for the service to stop before SIGKILL |
//!
//! Unknown keys are ignored, as in v0.2.14; [`Unit::unknown_keys`] lists them so callers can warn.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// `shutdown_timeout` when the unit does not set one (seconds).
pub const DEFAULT_SHUTDOWN_TIMEOUT: u64 = 10;

/// Every key the schema knows (top level).
const KNOWN_KEYS: &[&str] = &[
    "exec",
    "test",
    "oneshot",
    "after",
    "signal",
    "log",
    "env",
    "dir",
    "shutdown_timeout",
];

/// Why a unit or a service name was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitError {
    #[error("invalid yaml: {0}")]
    Yaml(String),
    #[error("missing exec directive")]
    MissingExec,
    #[error(
        "{field}: cannot split {value:?} into arguments (unbalanced quotes or trailing backslash)"
    )]
    BadCommandLine { field: &'static str, value: String },
    #[error("signal.stop: unknown signal {0:?} (expected a name like SIGTERM)")]
    BadSignal(String),
    #[error("after: invalid dependency name {name:?}: {reason}")]
    BadDependency { name: String, reason: String },
    #[error("env: invalid variable name {0:?}")]
    BadEnvName(String),
    #[error("invalid service name {name:?}: {reason}")]
    BadName { name: String, reason: &'static str },
}

/// How a service's output is handled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogMode {
    /// stdout and stderr go to zinit's in-memory ring (`zinit log`).
    #[default]
    Ring,
    /// The service inherits zinit's stdout and stderr.
    Stdout,
    /// Output is discarded (`/dev/null`).
    None,
}

impl<'de> Deserialize<'de> for LogMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LogMode;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("one of `ring`, `stdout`, `none` (or `null`)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LogMode, E> {
                match v {
                    "ring" => Ok(LogMode::Ring),
                    "stdout" => Ok(LogMode::Stdout),
                    "none" | "null" => Ok(LogMode::None),
                    other => Err(E::unknown_variant(
                        other,
                        &["ring", "stdout", "none", "null"],
                    )),
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<LogMode, E> {
                Ok(LogMode::None)
            }
            fn visit_none<E: de::Error>(self) -> Result<LogMode, E> {
                Ok(LogMode::None)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// The `signal:` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Signals {
    /// Signal sent by `stop` (default `sigterm`).
    pub stop: String,
}

impl Default for Signals {
    fn default() -> Self {
        Signals {
            stop: "sigterm".into(),
        }
    }
}

impl Signals {
    fn is_default(&self) -> bool {
        self.stop.eq_ignore_ascii_case("sigterm")
    }
}

/// One zinit unit (`/etc/zinit/<name>.yaml`). Serializes to the YAML zinit v0.2.14 reads, leaving out
/// defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Unit {
    /// The command line (shlex-split, no shell).
    pub exec: String,
    /// Readiness command; empty means ready as soon as spawned.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub test: String,
    /// Run once and never restart.
    #[serde(skip_serializing_if = "is_false")]
    pub oneshot: bool,
    /// Seconds to wait after the stop signal before SIGKILL (also used at shutdown).
    #[serde(skip_serializing_if = "is_default_timeout")]
    pub shutdown_timeout: u64,
    /// Services that must be up before this one starts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Signals (`signal.stop`).
    #[serde(skip_serializing_if = "Signals::is_default")]
    pub signal: Signals,
    /// Output handling.
    pub log: LogMode,
    /// Extra environment variables.
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "env_map"
    )]
    pub env: BTreeMap<String, String>,
    /// Working directory (empty: `/`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dir: String,
}

impl Default for Unit {
    fn default() -> Self {
        Unit {
            exec: String::new(),
            test: String::new(),
            oneshot: false,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            after: Vec::new(),
            signal: Signals::default(),
            log: LogMode::Ring,
            env: BTreeMap::new(),
            dir: String::new(),
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_default_timeout(t: &u64) -> bool {
    *t == DEFAULT_SHUTDOWN_TIMEOUT
}

/// `env:` values may be written as YAML numbers or booleans (`PORT: 80`); they are taken as their text.
fn env_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct Scalar(String);
    impl<'de> Deserialize<'de> for Scalar {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Scalar;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a string, number or boolean")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
                fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
                fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                    Ok(Scalar(String::new()))
                }
            }
            d.deserialize_any(V)
        }
    }
    let raw: Option<BTreeMap<String, Scalar>> = Option::deserialize(deserializer)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect())
}

impl Unit {
    /// A unit running `exec` with every other field at its default.
    pub fn new(exec: impl Into<String>) -> Unit {
        Unit {
            exec: exec.into(),
            ..Unit::default()
        }
    }

    /// Parse and validate a unit file's text.
    pub fn from_yaml(text: &str) -> Result<Unit, UnitError> {
        // An empty document is a unit with every field defaulted (and so fails on the missing exec).
        let unit: Unit = if text.trim().is_empty() {
            Unit::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| UnitError::Yaml(e.to_string()))?
        };
        unit.validate()?;
        Ok(unit)
    }

    /// The top-level keys of a unit file that the schema does not know (zinit ignores them; a typo such as
    /// `afer:` is worth a warning).
    pub fn unknown_keys(text: &str) -> Vec<String> {
        match serde_yaml::from_str::<serde_yaml::Value>(text) {
            Ok(serde_yaml::Value::Mapping(map)) => map
                .keys()
                .filter_map(|k| k.as_str())
                .filter(|k| !KNOWN_KEYS.contains(k))
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Serialize to the YAML zinit reads.
    pub fn to_yaml(&self) -> Result<String, UnitError> {
        serde_yaml::to_string(self).map_err(|e| UnitError::Yaml(e.to_string()))
    }

    /// Check the unit as zinit does at load time, plus what v0.2.14 only found out at spawn time.
    pub fn validate(&self) -> Result<(), UnitError> {
        self.argv()?;
        if !self.test.trim().is_empty() {
            split_command("test", &self.test)?;
        }
        self.stop_signal()?;
        for dep in &self.after {
            validate_name(dep).map_err(|e| match e {
                UnitError::BadName { name, reason } => UnitError::BadDependency {
                    name,
                    reason: reason.into(),
                },
                other => other,
            })?;
        }
        for key in self.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(UnitError::BadEnvName(key.clone()));
            }
        }
        Ok(())
    }

    /// `exec` split into argv.
    pub fn argv(&self) -> Result<Vec<String>, UnitError> {
        split_command("exec", &self.exec)
    }

    /// `test` split into argv; `None` when there is no test.
    pub fn test_argv(&self) -> Result<Option<Vec<String>>, UnitError> {
        if self.test.trim().is_empty() {
            return Ok(None);
        }
        split_command("test", &self.test).map(Some)
    }

    /// The signal `stop` sends.
    pub fn stop_signal(&self) -> Result<nix::sys::signal::Signal, UnitError> {
        parse_signal(&self.signal.stop)
            .ok_or_else(|| UnitError::BadSignal(self.signal.stop.clone()))
    }
}

/// Split a command line as zinit does (shlex, POSIX-like quoting, no variable expansion).
pub fn split_command(field: &'static str, line: &str) -> Result<Vec<String>, UnitError> {
    match shlex::split(line) {
        Some(argv) if argv.is_empty() && field == "exec" => Err(UnitError::MissingExec),
        Some(argv) if argv.is_empty() => Err(UnitError::BadCommandLine {
            field,
            value: line.into(),
        }),
        Some(argv) => Ok(argv),
        None => Err(UnitError::BadCommandLine {
            field,
            value: line.into(),
        }),
    }
}

/// Parse a signal name as zinit does: upper-cased, with the `SIG` prefix (`sigterm`, `SIGKILL`).
pub fn parse_signal(name: &str) -> Option<nix::sys::signal::Signal> {
    nix::sys::signal::Signal::from_str(&name.to_uppercase()).ok()
}

/// Check a service name: it becomes a file name (`<name>.yaml`) and a word of the line protocol, so it must
/// not be empty, contain `/`, whitespace, quotes, backslashes or control characters, or be `.`/`..`.
pub fn validate_name(name: &str) -> Result<(), UnitError> {
    let bad = |reason| {
        Err(UnitError::BadName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name == "." || name == ".." {
        return bad("not a file name");
    }
    if name.contains('/') {
        return bad("contains '/'");
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("contains whitespace or a control character");
    }
    if name.chars().any(|c| matches!(c, '\'' | '"' | '\\')) {
        return bad("contains a quote or a backslash");
    }
    if name.len() > 200 {
        return bad("longer than 200 bytes");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_v0_2_14() {
        let u = Unit::from_yaml("exec: redis-server\n").unwrap();
        assert_eq!(u.exec, "redis-server");
        assert_eq!(u.test, "");
        assert!(!u.oneshot);
        assert_eq!(u.shutdown_timeout, 10);
        assert!(u.after.is_empty());
        assert_eq!(u.signal.stop, "sigterm");
        assert_eq!(u.stop_signal().unwrap(), nix::sys::signal::Signal::SIGTERM);
        assert_eq!(u.log, LogMode::Ring);
        assert!(u.env.is_empty());
        assert_eq!(u.dir, "");
    }

    #[test]
    fn every_field_parses() {
        let text = r#"
exec: sh -c 'echo "a b"; exit 3'
test: test -f /tmp/x
oneshot: true
after: [a, b]
signal:
  stop: sigint
log: stdout
env:
  A: "1"
  PORT: 80
  ON: true
dir: /tmp
shutdown_timeout: 3
"#;
        let u = Unit::from_yaml(text).unwrap();
        assert_eq!(u.argv().unwrap(), vec!["sh", "-c", "echo \"a b\"; exit 3"]);
        assert_eq!(
            u.test_argv().unwrap().unwrap(),
            vec!["test", "-f", "/tmp/x"]
        );
        assert!(u.oneshot);
        assert_eq!(u.after, vec!["a", "b"]);
        assert_eq!(u.stop_signal().unwrap(), nix::sys::signal::Signal::SIGINT);
        assert_eq!(u.log, LogMode::Stdout);
        assert_eq!(u.env["A"], "1");
        assert_eq!(u.env["PORT"], "80");
        assert_eq!(u.env["ON"], "true");
        assert_eq!(u.dir, "/tmp");
        assert_eq!(u.shutdown_timeout, 3);
    }

    #[test]
    fn log_modes_and_null_alias() {
        for (text, want) in [
            ("ring", LogMode::Ring),
            ("stdout", LogMode::Stdout),
            ("none", LogMode::None),
            ("null", LogMode::None),
            ("~", LogMode::None),
            ("'null'", LogMode::None),
        ] {
            let u = Unit::from_yaml(&format!("exec: x\nlog: {text}\n")).unwrap();
            assert_eq!(u.log, want, "log: {text}");
        }
        let err = Unit::from_yaml("exec: x\nlog: file\n").unwrap_err();
        assert!(
            matches!(&err, UnitError::Yaml(m) if m.contains("unknown variant `file`")),
            "{err}"
        );
    }

    #[test]
    fn validation_errors_name_the_problem() {
        assert_eq!(
            Unit::from_yaml("test: true\n").unwrap_err(),
            UnitError::MissingExec
        );
        assert_eq!(Unit::from_yaml("").unwrap_err(), UnitError::MissingExec);
        assert_eq!(
            Unit::from_yaml("exec: '   '\n").unwrap_err(),
            UnitError::MissingExec
        );
        assert_eq!(
            Unit::from_yaml("exec: x\nsignal:\n  stop: sigfoo\n").unwrap_err(),
            UnitError::BadSignal("sigfoo".into())
        );
        assert!(matches!(
            Unit::from_yaml("exec: \"echo 'unterminated\"\n").unwrap_err(),
            UnitError::BadCommandLine { field: "exec", .. }
        ));
        assert!(matches!(
            Unit::from_yaml("exec: x\ntest: \"a 'b\"\n").unwrap_err(),
            UnitError::BadCommandLine { field: "test", .. }
        ));
        assert!(matches!(
            Unit::from_yaml("exec: x\nafter: [../etc]\n").unwrap_err(),
            UnitError::BadDependency { .. }
        ));
        assert!(matches!(
            Unit::from_yaml("exec: x\nshutdown_timeout: -1\n").unwrap_err(),
            UnitError::Yaml(_)
        ));
        assert!(matches!(
            Unit::from_yaml("- exec: x\n").unwrap_err(),
            UnitError::Yaml(_)
        ));
        assert!(matches!(
            Unit::from_yaml("exec: x\nenv:\n  'A=B': c\n").unwrap_err(),
            UnitError::BadEnvName(_)
        ));
    }

    #[test]
    fn unknown_keys_are_ignored_but_reported() {
        let text = "exec: x\nafer: [a]\nlog: ring\n";
        let u = Unit::from_yaml(text).unwrap();
        assert!(u.after.is_empty());
        assert_eq!(Unit::unknown_keys(text), vec!["afer"]);
        assert!(Unit::unknown_keys("exec: x\n").is_empty());
    }

    #[test]
    fn signal_names_parse_case_insensitively() {
        assert_eq!(
            parse_signal("sigkill"),
            Some(nix::sys::signal::Signal::SIGKILL)
        );
        assert_eq!(
            parse_signal("SIGHUP"),
            Some(nix::sys::signal::Signal::SIGHUP)
        );
        assert_eq!(parse_signal("TERM"), None);
        assert_eq!(parse_signal("SIGFOO"), None);
    }

    #[test]
    fn shlex_split_is_posix_like_without_expansion() {
        assert_eq!(
            split_command("exec", "a  'b c'  \"d $HOME\" e\\ f").unwrap(),
            vec!["a", "b c", "d $HOME", "e f"]
        );
        assert_eq!(
            split_command("exec", "").unwrap_err(),
            UnitError::MissingExec
        );
        assert!(split_command("exec", "a \"b").is_err());
        assert!(split_command("exec", "a \\").is_err());
    }

    #[test]
    fn names_are_sanitised() {
        for ok in [
            "redis",
            "node-ready",
            "vm-3f2a.1",
            "a_b",
            ".hidden",
            "zdb@1",
        ] {
            validate_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "", ".", "..", "../x", "a/b", "a b", "a\nb", "a'b", "a\"b", "a\\b",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn yaml_round_trip_leaves_out_defaults() {
        let mut u = Unit::new("zbusd --module x");
        assert_eq!(u.to_yaml().unwrap(), "exec: zbusd --module x\nlog: ring\n");
        u.test = "zbus status x".into();
        u.after = vec!["boot".into()];
        u.oneshot = true;
        u.env.insert("K".into(), "v".into());
        u.log = LogMode::Stdout;
        u.shutdown_timeout = 20;
        u.signal.stop = "sigint".into();
        u.dir = "/var".into();
        let text = u.to_yaml().unwrap();
        assert_eq!(Unit::from_yaml(&text).unwrap(), u);
    }
}
