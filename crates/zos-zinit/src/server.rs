//! The control socket: zinit v0.2.14's line protocol, byte-compatible.
//!
//! One command per connection: the client writes `cmd args…\n`, the line is split with shlex, and the server
//! writes one JSON object, `{"state":"ok","body":…}` or `{"state":"error","body":"<message>"}`, with no
//! trailing newline, then closes. Object keys in bodies are sorted. `log` streams the ring's lines and then
//! follows until the client disconnects; `log snapshot` streams the lines and closes.
//!
//! Commands: `list`, `status S`, `start S`, `stop S`, `restart S` (ours: stop, wait, SIGKILL after the
//! timeout, start; v0.2.14 answers `unknown command 'restart' …`), `monitor S`, `forget S`, `kill S SIG`,
//! `log`, `log snapshot`, `shutdown`, `reboot`.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::manager::{Error, Manager, Power};

/// The longest command line accepted.
const MAX_COMMAND: u64 = 64 * 1024;
/// How long a client may take to send its command (a hang guard).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Create the socket's directory, remove a stale socket, and listen.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    UnixListener::bind(path)
}

/// Serve connections forever.
pub async fn serve(listener: UnixListener, manager: Manager) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle(stream, manager.clone()));
            }
            Err(e) => {
                tracing::warn!("control socket: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// What a command produced.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// `ok` with this JSON body.
    Body(String),
    /// `error` with this message.
    Error(String),
    /// Stream the log (and follow it).
    Log { follow: bool },
}

impl From<Result<(), Error>> for Reply {
    fn from(r: Result<(), Error>) -> Reply {
        match r {
            Ok(()) => Reply::Body("null".into()),
            Err(e) => Reply::Error(e.to_string()),
        }
    }
}

async fn handle(stream: UnixStream, manager: Manager) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    let got = tokio::time::timeout(
        READ_TIMEOUT,
        (&mut reader).take(MAX_COMMAND).read_until(b'\n', &mut line),
    )
    .await;
    if !matches!(got, Ok(Ok(_))) {
        return;
    }
    let command = String::from_utf8_lossy(&line);
    tracing::debug!("control socket: {:?}", command.trim_end());
    match process(&command, &manager).await {
        Reply::Log { follow } => stream_log(&manager, follow, reader, &mut write).await,
        Reply::Body(body) => {
            let _ = write
                .write_all(format!("{{\"state\":\"ok\",\"body\":{body}}}").as_bytes())
                .await;
        }
        Reply::Error(message) => {
            let message = serde_json::to_string(&message).expect("a string serializes");
            let _ = write
                .write_all(format!("{{\"state\":\"error\",\"body\":{message}}}").as_bytes())
                .await;
        }
    }
    let _ = write.shutdown().await;
}

async fn process(command: &str, manager: &Manager) -> Reply {
    let Some(parts) = shlex::split(command) else {
        return Reply::Error("invalid command syntax".into());
    };
    let Some(verb) = parts.first() else {
        return Reply::Error("unknown command".into());
    };
    let arg = |i: usize| parts[i].as_str();
    match (verb.as_str(), parts.len()) {
        ("log", 1) => Reply::Log { follow: true },
        ("log", 2) if arg(1) == "snapshot" => Reply::Log { follow: false },
        ("log", _) => Reply::Error("invalid log command arguments".into()),
        ("list", _) => {
            Reply::Body(serde_json::to_string(&manager.list()).expect("a map serializes"))
        }
        ("shutdown", _) => manager.request_power(Power::Off).into(),
        ("reboot", _) => manager.request_power(Power::Reboot).into(),
        ("status", 2) => match manager.status(arg(1)) {
            Ok(status) => Reply::Body(serde_json::to_string(&status).expect("a status serializes")),
            Err(e) => Reply::Error(e.to_string()),
        },
        ("start", 2) => manager.start(arg(1)).into(),
        ("stop", 2) => manager.stop(arg(1)).into(),
        ("restart", 2) => manager.restart(arg(1)).await.into(),
        ("forget", 2) => manager.forget(arg(1)).into(),
        ("monitor", 2) => manager.monitor_file(arg(1)).into(),
        ("kill", 3) => manager.kill(arg(1), arg(2)).into(),
        (verb, _) => Reply::Error(format!("unknown command '{verb}' or wrong arguments count")),
    }
}

async fn stream_log<R, W>(manager: &Manager, follow: bool, mut reader: R, write: &mut W)
where
    R: AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut follower = manager.ring().follow();
    let mut text = String::new();
    for line in follower.snapshot.drain(..) {
        text.push_str(&line);
        text.push('\n');
    }
    if write.write_all(text.as_bytes()).await.is_err() || !follow {
        return;
    }
    let mut scratch = [0u8; 256];
    loop {
        tokio::select! {
            line = follower.next() => match line {
                Some(line) => {
                    if write.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
            // The client hung up (or sent more than it should): stop following.
            n = reader.read(&mut scratch) => if !matches!(n, Ok(k) if k > 0) { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::Options;

    fn manager() -> Manager {
        Manager::new(Options::new("/nonexistent")).0
    }

    #[tokio::test]
    async fn command_parsing_and_errors_match_v0_2_14() {
        let m = manager();
        let err = |s: &str| Reply::Error(s.to_string());
        assert_eq!(process("list\n", &m).await, Reply::Body("{}".into()));
        assert_eq!(process("list extra\n", &m).await, Reply::Body("{}".into()));
        assert_eq!(
            process("status nope\n", &m).await,
            err("service name \"nope\" unknown")
        );
        assert_eq!(
            process("start nope\n", &m).await,
            err("service name \"nope\" unknown")
        );
        assert_eq!(
            process("stop nope\n", &m).await,
            err("service name \"nope\" unknown")
        );
        assert_eq!(
            process("forget nope\n", &m).await,
            err("service name \"nope\" unknown")
        );
        assert_eq!(
            process("kill nope SIGTERM\n", &m).await,
            err("service name \"nope\" unknown")
        );
        assert_eq!(
            process("kill nope SIGFOO\n", &m).await,
            err("EINVAL: Invalid argument (unknown signal \"SIGFOO\")")
        );
        assert_eq!(
            process("status\n", &m).await,
            err("unknown command 'status' or wrong arguments count")
        );
        assert_eq!(
            process("start a b\n", &m).await,
            err("unknown command 'start' or wrong arguments count")
        );
        assert_eq!(
            process("frobnicate x\n", &m).await,
            err("unknown command 'frobnicate' or wrong arguments count")
        );
        assert_eq!(process("\n", &m).await, err("unknown command"));
        assert_eq!(
            process("status 'unterminated\n", &m).await,
            err("invalid command syntax")
        );
        assert_eq!(process("log\n", &m).await, Reply::Log { follow: true });
        assert_eq!(
            process("log snapshot\n", &m).await,
            Reply::Log { follow: false }
        );
        assert_eq!(
            process("log foo\n", &m).await,
            err("invalid log command arguments")
        );
        assert_eq!(
            process("shutdown\n", &m).await,
            err("shutdown refused: zinit is not PID 1 and was not started with --container")
        );
        assert_eq!(
            process("reboot\n", &m).await,
            err("reboot refused: zinit is not PID 1 and was not started with --container")
        );
        assert!(
            matches!(process("monitor ../etc/passwd\n", &m).await, Reply::Error(e) if e.starts_with("invalid service: invalid service name"))
        );
        assert!(
            matches!(process("monitor missing\n", &m).await, Reply::Error(e) if e.starts_with("failed to load service config: /nonexistent/missing.yaml: "))
        );
    }

    #[tokio::test]
    async fn monitor_rejects_cycles() {
        let m = manager();
        let unit = |after: &[&str]| {
            let mut u = zos_zinit_client::Unit::new("sleep 1000");
            u.after = after.iter().map(|s| s.to_string()).collect();
            u
        };
        // Dependencies that are not monitored keep a and b Blocked: nothing is spawned.
        m.monitor("a", unit(&["b", "z"])).unwrap();
        m.monitor("b", unit(&["c", "z"])).unwrap();
        let err = m.monitor("c", unit(&["a"])).unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle: a -> b -> c -> a");
        let err = m.monitor("self", unit(&["self"])).unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle: self -> self");
        assert_eq!(m.list().len(), 2);
        assert!(matches!(
            m.monitor("a", unit(&[])),
            Err(Error::AlreadyMonitored(_))
        ));
    }
}
