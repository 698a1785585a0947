//! The control-socket client (zinit v0.2.14 line protocol: one command per connection, one JSON reply).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::time::{Instant, sleep, timeout};

use crate::state::{RawStatus, ServiceState, ServiceStatus, StateKind, Target};
use crate::unit::{Unit, UnitError, validate_name};

/// How long one request may take before the client gives up (a hang guard; zinit answers at once).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the `*_wait` helpers poll `status`.
const POLL: Duration = Duration::from_millis(200);
/// How long `restart` may take (the server waits up to the unit's `shutdown_timeout` before SIGKILL).
const RESTART_TIMEOUT: Duration = Duration::from_secs(600);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting to zinit at {socket} (is zinit running?)")]
    Connect {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to zinit at {socket}")]
    Io {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("zinit at {socket} did not answer `{command}` within {timeout:?}")]
    Timeout {
        socket: PathBuf,
        command: String,
        timeout: Duration,
    },
    #[error("`{command}`: invalid reply from zinit: {message}")]
    Protocol { command: String, message: String },
    /// zinit does not monitor this service (`service name "x" unknown`).
    #[error("service name \"{0}\" unknown")]
    UnknownService(String),
    /// `monitor` of a service that is already monitored.
    #[error("service \"{0}\" already monitored")]
    AlreadyMonitored(String),
    /// Any other error zinit reported; `message` is its text.
    #[error("{message}")]
    Zinit { command: String, message: String },
    #[error(transparent)]
    Unit(#[from] UnitError),
    #[error("writing unit file {path}")]
    WriteUnit {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("service {name:?} did not reach Running/Success within {timeout:?} (state {state})")]
    StartTimeout {
        name: String,
        timeout: Duration,
        state: String,
    },
    #[error("service {name:?} failed to start (state {state})")]
    StartFailed { name: String, state: String },
    #[error("service {name:?} did not exit within {timeout:?} even after SIGKILL (state {state})")]
    StopTimeout {
        name: String,
        timeout: Duration,
        state: String,
    },
    #[error("service {name:?}: target changed to {target} by someone else while waiting")]
    TargetChanged { name: String, target: Target },
}

#[derive(Deserialize)]
struct Envelope {
    state: String,
    body: Value,
}

/// A client for one zinit control socket. Cheap to clone; every request opens its own connection.
#[derive(Clone, Debug)]
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
}

impl Default for Client {
    /// The node's zinit (`/var/run/zinit.sock`).
    fn default() -> Self {
        Client::new(zos_config::paths::ZINIT_SOCKET)
    }
}

impl Client {
    /// A client for the zinit listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Change the per-request hang guard (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn connect(&self) -> Result<UnixStream, Error> {
        UnixStream::connect(&self.socket)
            .await
            .map_err(|source| Error::Connect {
                socket: self.socket.clone(),
                source,
            })
    }

    fn io(&self, source: std::io::Error) -> Error {
        Error::Io {
            socket: self.socket.clone(),
            source,
        }
    }

    /// Send one command line and return the raw reply bytes (read to EOF).
    pub async fn raw(&self, line: &str) -> Result<Vec<u8>, Error> {
        self.raw_with_timeout(line, self.timeout).await
    }

    async fn raw_with_timeout(&self, line: &str, limit: Duration) -> Result<Vec<u8>, Error> {
        let exchange = async {
            let mut stream = self.connect().await?;
            stream
                .write_all(format!("{line}\n").as_bytes())
                .await
                .map_err(|e| self.io(e))?;
            stream.flush().await.map_err(|e| self.io(e))?;
            let mut reply = Vec::new();
            stream
                .read_to_end(&mut reply)
                .await
                .map_err(|e| self.io(e))?;
            Ok(reply)
        };
        match timeout(limit, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                socket: self.socket.clone(),
                command: line.to_string(),
                timeout: limit,
            }),
        }
    }

    /// Send a command (words are quoted as needed) and return the `body` of an `ok` reply.
    pub async fn command(&self, words: &[&str]) -> Result<Value, Error> {
        self.command_with_timeout(words, self.timeout).await
    }

    async fn command_with_timeout(&self, words: &[&str], limit: Duration) -> Result<Value, Error> {
        let line = join(words);
        let reply = self.raw_with_timeout(&line, limit).await?;
        let envelope: Envelope = serde_json::from_slice(&reply).map_err(|e| Error::Protocol {
            command: line.clone(),
            message: format!("{e} in {:?}", String::from_utf8_lossy(&reply)),
        })?;
        match envelope.state.as_str() {
            "ok" => Ok(envelope.body),
            "error" => {
                let message = match envelope.body {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                Err(classify(line, message))
            }
            other => Err(Error::Protocol {
                command: line,
                message: format!("unknown reply state {other:?}"),
            }),
        }
    }

    async fn unit_command(&self, words: &[&str]) -> Result<(), Error> {
        self.command(words).await.map(|_| ())
    }

    /// Every monitored service with its state.
    pub async fn list(&self) -> Result<BTreeMap<String, ServiceState>, Error> {
        let body = self.command(&["list"]).await?;
        let raw: BTreeMap<String, String> =
            serde_json::from_value(body).map_err(|e| Error::Protocol {
                command: "list".into(),
                message: e.to_string(),
            })?;
        raw.into_iter()
            .map(|(name, state)| match ServiceState::parse(&state) {
                Some(s) => Ok((name, s)),
                None => Err(Error::Protocol {
                    command: "list".into(),
                    message: format!("invalid service state value {state:?} for {name:?}"),
                }),
            })
            .collect()
    }

    /// The raw `status` body, exactly as zinit sent it.
    pub async fn status_raw(&self, name: &str) -> Result<RawStatus, Error> {
        let body = self.command(&["status", name]).await?;
        serde_json::from_value(body).map_err(|e| Error::Protocol {
            command: format!("status {name}"),
            message: e.to_string(),
        })
    }

    /// One service's status, parsed.
    pub async fn status(&self, name: &str) -> Result<ServiceStatus, Error> {
        let raw = self.status_raw(name).await?;
        let protocol = |message: String| Error::Protocol {
            command: format!("status {name}"),
            message,
        };
        let state = ServiceState::parse(&raw.state)
            .ok_or_else(|| protocol(format!("invalid service state value {:?}", raw.state)))?;
        let target = match raw.target.as_str() {
            "Up" => Target::Up,
            "Down" => Target::Down,
            other => return Err(protocol(format!("invalid target {other:?}"))),
        };
        Ok(ServiceStatus {
            name: raw.name,
            pid: raw.pid,
            state,
            target,
            after: raw.after,
        })
    }

    /// Whether zinit monitors `name`.
    pub async fn exists(&self, name: &str) -> Result<bool, Error> {
        match self.status_raw(name).await {
            Ok(_) => Ok(true),
            Err(Error::UnknownService(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Set the target to Up (returns at once).
    pub async fn start(&self, name: &str) -> Result<(), Error> {
        self.unit_command(&["start", name]).await
    }

    /// Set the target to Down and send the stop signal (returns at once; zinit SIGKILLs after the unit's
    /// `shutdown_timeout`).
    pub async fn stop(&self, name: &str) -> Result<(), Error> {
        self.unit_command(&["stop", name]).await
    }

    /// Load `<name>.yaml` from zinit's unit directory and start supervising it.
    pub async fn monitor(&self, name: &str) -> Result<(), Error> {
        self.unit_command(&["monitor", name]).await
    }

    /// Stop supervising a stopped service (the unit file stays).
    pub async fn forget(&self, name: &str) -> Result<(), Error> {
        self.unit_command(&["forget", name]).await
    }

    /// Send a signal (`SIGTERM`, `sigkill`, ...) to the service's process group.
    pub async fn kill(&self, name: &str, signal: &str) -> Result<(), Error> {
        self.unit_command(&["kill", name, signal]).await
    }

    /// Stop every service in reverse dependency order, then power off (or exit, in `--container` mode).
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.unit_command(&["shutdown"]).await
    }

    /// Like [`Client::shutdown`], then reboot.
    pub async fn reboot(&self) -> Result<(), Error> {
        self.unit_command(&["reboot"]).await
    }

    /// Restart a service: stop, wait for the exit (SIGKILL after its `shutdown_timeout`), start. Uses the
    /// server-side `restart` command of our zinit; against a v0.2.14 server it does what its CLI does (stop,
    /// poll `status` once a second up to 20 times, `kill SIGKILL` if still up, start).
    pub async fn restart(&self, name: &str) -> Result<(), Error> {
        match self
            .command_with_timeout(&["restart", name], RESTART_TIMEOUT.max(self.timeout))
            .await
        {
            Err(Error::Zinit { message, .. })
                if message.starts_with("unknown command 'restart'") => {}
            other => return other.map(|_| ()),
        }
        self.stop(name).await?;
        for _ in 0..20 {
            let status = self.status(name).await?;
            if status.pid == 0 && status.target == Target::Down {
                return self.start(name).await;
            }
            sleep(Duration::from_secs(1)).await;
        }
        self.kill(name, "SIGKILL").await?;
        self.start(name).await
    }

    /// Start a service and wait until it is `Running` or `Success`. Fails at once when the target is changed
    /// back to Down by someone else or the service fails to spawn, and at the deadline otherwise.
    pub async fn start_wait(&self, name: &str, limit: Duration) -> Result<(), Error> {
        self.start(name).await?;
        let deadline = Instant::now() + limit;
        loop {
            let status = self.status(name).await?;
            if status.target != Target::Up {
                return Err(Error::TargetChanged {
                    name: name.into(),
                    target: status.target,
                });
            }
            if matches!(status.state.kind, StateKind::Running | StateKind::Success) {
                return Ok(());
            }
            if status.state.is(&StateKind::Failure) {
                return Err(Error::StartFailed {
                    name: name.into(),
                    state: status.state.raw,
                });
            }
            if Instant::now() >= deadline {
                return Err(Error::StartTimeout {
                    name: name.into(),
                    timeout: limit,
                    state: status.state.raw,
                });
            }
            sleep(POLL).await;
        }
    }

    /// Stop a service and wait until it has exited; at the deadline send SIGKILL and wait for that too.
    /// A zero `limit` only sends the stop (like the Go client).
    pub async fn stop_wait(&self, name: &str, limit: Duration) -> Result<(), Error> {
        self.stop(name).await?;
        if limit.is_zero() {
            return Ok(());
        }
        let deadline = Instant::now() + limit;
        let mut killed_at: Option<Instant> = None;
        loop {
            let status = self.status(name).await?;
            if status.target != Target::Down {
                return Err(Error::TargetChanged {
                    name: name.into(),
                    target: status.target,
                });
            }
            if status.pid == 0 || status.state.exited() {
                return Ok(());
            }
            let now = Instant::now();
            match killed_at {
                None if now >= deadline => {
                    match self.kill(name, "SIGKILL").await {
                        // It exited between the status and the kill.
                        Err(Error::Zinit { message, .. }) if message.ends_with("is down") => {
                            return Ok(());
                        }
                        other => other?,
                    }
                    killed_at = Some(now);
                }
                Some(at) if now >= at + Duration::from_secs(5) => {
                    return Err(Error::StopTimeout {
                        name: name.into(),
                        timeout: limit,
                        state: status.state.raw,
                    });
                }
                _ => {}
            }
            sleep(POLL).await;
        }
    }

    /// The log ring's current content (`log snapshot`), one entry per line, invalid UTF-8 replaced.
    pub async fn log_snapshot(&self) -> Result<Vec<String>, Error> {
        let bytes = self.raw("log snapshot").await?;
        Ok(String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// Follow the log (`log`): the ring's content, then new lines as they come, until dropped.
    pub async fn log_follow(&self) -> Result<LogStream, Error> {
        let mut stream = self.connect().await?;
        stream.write_all(b"log\n").await.map_err(|e| self.io(e))?;
        Ok(LogStream {
            reader: BufReader::new(stream),
            socket: self.socket.clone(),
        })
    }

    /// Write `<dir>/<name>.yaml` atomically and monitor it. Returns `false` when zinit already monitored a
    /// service of that name: the file is replaced, but zinit keeps running the old definition until the
    /// service is forgotten and monitored again.
    pub async fn add_service(&self, dir: &Path, name: &str, unit: &Unit) -> Result<bool, Error> {
        write_unit(dir, name, unit)?;
        match self.monitor(name).await {
            Ok(()) => Ok(true),
            Err(Error::AlreadyMonitored(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Stop (waiting up to `limit`, then SIGKILL), forget and delete `<dir>/<name>.yaml`. A service zinit does
    /// not know is only deleted from disk.
    pub async fn remove_service(
        &self,
        dir: &Path,
        name: &str,
        limit: Duration,
    ) -> Result<(), Error> {
        validate_name(name)?;
        if self.exists(name).await? {
            self.stop_wait(name, limit).await?;
            self.forget(name).await?;
        }
        let path = dir.join(format!("{name}.yaml"));
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::WriteUnit { path, source: e })
            }
            _ => Ok(()),
        }
    }
}

/// A followed log (see [`Client::log_follow`]).
pub struct LogStream {
    reader: BufReader<UnixStream>,
    socket: PathBuf,
}

impl LogStream {
    /// The next line (without its newline), or `None` when zinit closed the stream.
    pub async fn next_line(&mut self) -> Result<Option<String>, Error> {
        let mut buf = Vec::new();
        let n = self
            .reader
            .read_until(b'\n', &mut buf)
            .await
            .map_err(|source| Error::Io {
                socket: self.socket.clone(),
                source,
            })?;
        if n == 0 {
            return Ok(None);
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
    }
}

/// Write `<dir>/<name>.yaml` atomically (temporary file, fsync, rename, fsync of the directory). The unit and
/// the name are validated first; nothing is written when they are invalid.
pub fn write_unit(dir: &Path, name: &str, unit: &Unit) -> Result<PathBuf, Error> {
    validate_name(name)?;
    unit.validate()?;
    let text = unit.to_yaml()?;
    let path = dir.join(format!("{name}.yaml"));
    let tmp = dir.join(format!(".{name}.yaml.{}.tmp", std::process::id()));
    let wrap = |source| Error::WriteUnit {
        path: path.clone(),
        source,
    };
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(wrap)?;
    Ok(path)
}

/// Join words into one command line, quoting those that need it.
fn join(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| match shlex::try_quote(w) {
            Ok(q) => q.into_owned(),
            Err(_) => w.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Map zinit's error texts to typed errors (zos matches `^service name ".*" unknown$` and `already monitored`).
fn classify(command: String, message: String) -> Error {
    if let Some(name) = message
        .strip_prefix("service name \"")
        .and_then(|r| r.strip_suffix("\" unknown"))
    {
        return Error::UnknownService(name.to_string());
    }
    if let Some(name) = message
        .strip_prefix("service \"")
        .and_then(|r| r.strip_suffix("\" already monitored"))
    {
        return Error::AlreadyMonitored(name.to_string());
    }
    Error::Zinit { command, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_like_the_go_client() {
        assert!(
            matches!(classify("status x".into(), "service name \"x\" unknown".into()), Error::UnknownService(n) if n == "x")
        );
        assert!(matches!(
            classify("monitor app".into(), "service \"app\" already monitored".into()),
            Error::AlreadyMonitored(n) if n == "app"
        ));
        assert!(matches!(
            classify("kill x SIGFOO".into(), "EINVAL: Invalid argument".into()),
            Error::Zinit { .. }
        ));
    }

    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(join(&["status", "web"]), "status web");
        assert_eq!(join(&["kill", "web", "SIGKILL"]), "kill web SIGKILL");
        assert_eq!(join(&["status", "a b"]), "status 'a b'");
    }

    #[test]
    fn write_unit_is_atomic_and_validates() {
        let dir = tempfile::tempdir().unwrap();
        let unit = Unit::new("sleep 100");
        let path = write_unit(dir.path(), "svc", &unit).unwrap();
        assert_eq!(path, dir.path().join("svc.yaml"));
        assert_eq!(
            Unit::from_yaml(&std::fs::read_to_string(&path).unwrap()).unwrap(),
            unit
        );
        // Only the unit file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("svc.yaml")]);

        assert!(matches!(
            write_unit(dir.path(), "../evil", &unit),
            Err(Error::Unit(UnitError::BadName { .. }))
        ));
        assert!(matches!(
            write_unit(dir.path(), "empty", &Unit::default()),
            Err(Error::Unit(UnitError::MissingExec))
        ));
        assert!(!dir.path().join("empty.yaml").exists());
    }

    /// A v0.2.14 server (which has no `restart`), faked: records the commands, answers like v0.2.14.
    #[tokio::test]
    async fn restart_falls_back_to_the_v0_2_14_cli_sequence() {
        use tokio::io::AsyncBufReadExt;
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("zinit.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                tokio::io::BufReader::new(read)
                    .read_line(&mut line)
                    .await
                    .unwrap();
                let line = line.trim_end().to_string();
                let reply = match line.as_str() {
                    "restart web" => {
                        r#"{"state":"error","body":"unknown command 'restart' or wrong arguments count"}"#
                    }
                    "status web" => {
                        r#"{"state":"ok","body":{"after":{},"name":"web","pid":0,"state":"Error(Signaled(Pid(7), SIGTERM, false))","target":"Down"}}"#
                    }
                    _ => r#"{"state":"ok","body":null}"#,
                };
                log.lock().unwrap().push(line);
                write.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        Client::new(&socket).restart("web").await.unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            vec!["restart web", "stop web", "status web", "start web"]
        );
    }

    #[tokio::test]
    async fn connect_error_names_the_socket() {
        let err = Client::new("/nonexistent/zinit.sock")
            .list()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/zinit.sock"), "{err}");
    }
}
