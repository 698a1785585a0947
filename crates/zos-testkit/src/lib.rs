//! Shared test harness: a real `redis-server` per test, prerequisite checks that fail in CI, unique names.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Whether missing prerequisites must fail tests rather than skip them (`CI=true` or `ZOS_TEST_PRIVILEGED=1`).
pub fn strict() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
        || std::env::var("ZOS_TEST_PRIVILEGED")
            .map(|v| v == "1")
            .unwrap_or(false)
}

/// Check a prerequisite. Returns `true` when met. When not met: panics in CI (strict mode), otherwise prints
/// why the test is skipped and returns `false`.
pub fn prerequisite(met: bool, what: &str) -> bool {
    if met {
        return true;
    }
    if strict() {
        panic!(
            "test prerequisite missing: {what} (CI=true: missing prerequisites fail, they are never skipped)"
        );
    }
    eprintln!("SKIPPED: test prerequisite missing: {what}");
    false
}

/// Skip the calling test (return from it) unless `cond` holds; in CI fail instead.
#[macro_export]
macro_rules! prerequisite {
    ($cond:expr, $what:expr) => {
        if !$crate::prerequisite($cond, $what) {
            return;
        }
    };
}

/// Whether we run as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `name` is an executable on PATH (or an existing absolute path).
pub fn has_command(name: &str) -> bool {
    which(name).is_some()
}

/// Find `name` on PATH, including the sbin directories root's PATH usually has.
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.exists().then_some(p);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// `prerequisite!(is_root(), ...)` as a function returning whether to go on.
pub fn require_root() -> bool {
    prerequisite(is_root(), "root privileges")
}

/// Whether `cmd` is installed (fails in CI when it is not).
pub fn require_command(cmd: &str) -> bool {
    prerequisite(
        has_command(cmd),
        &format!("the `{cmd}` command (run `cargo xtask test`, which installs it)"),
    )
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short name unique across processes and calls: `<prefix><pid % 100000 in base36><counter>`, at most 15
/// characters for prefixes up to 6 characters.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    format!("{prefix}{}{}", base36(pid), base36(n))
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    if n == 0 {
        return "0".into();
    }
    let mut out = Vec::new();
    while n > 0 {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

/// A `redis-server` of our own, on a unix socket in a temp directory. Killed on drop.
pub struct RedisServer {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Start a server and wait until it answers. Panics when redis-server is missing or does not come up.
    pub fn start() -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("zos-redis-")
            .tempdir()
            .expect("temp dir for redis");
        let mut server = RedisServer { dir, child: None };
        server.spawn();
        server
    }

    /// The socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// The broker URL in Go zbus form (`unix:///…/redis.sock`).
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn spawn(&mut self) {
        let bin = which("redis-server")
            .expect("redis-server is not installed (run `cargo xtask test`, which installs it)");
        let child = Command::new(bin)
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning redis-server");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut s) = std::os::unix::net::UnixStream::connect(self.socket()) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                if s.write_all(b"PING\r\n").is_ok() {
                    let mut buf = [0u8; 7];
                    if s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n" {
                        return;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "redis-server did not answer on {} within 10s",
            self.socket().display()
        );
    }

    /// Kill the server (its data is lost; the socket disappears).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Kill and start again on the same socket.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Run a redis command through `redis-cli` and return its output (for assertions on raw keys).
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(which("redis-cli").expect("redis-cli is not installed"))
            .arg("-s")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("running redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A daemon started by a test, SIGKILLed on drop. Its stderr is echoed to the test's output (prefixed with its
/// name) and kept, so a test can wait for a log line (e.g. a failpoint) and read what it said.
pub struct ChildProcess {
    name: String,
    child: Child,
    lines: Mutex<mpsc::Receiver<String>>,
    seen: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ChildProcess {
    /// Spawn `cmd` with stdin and stdout on /dev/null and stderr captured.
    pub fn spawn(name: &str, cmd: &mut Command) -> ChildProcess {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (prefix, kept) = (name.to_string(), seen.clone());
        let reader = std::thread::spawn(move || {
            // Drains until the child exits, so it never blocks on a full pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{prefix}: {line}");
                kept.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(line.clone());
                let _ = tx.send(line);
            }
        });
        ChildProcess {
            name: name.to_string(),
            child,
            lines: Mutex::new(rx),
            seen,
            reader: Some(reader),
        }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Everything it printed on stderr so far (all of it, once it has exited).
    pub fn output(&mut self) -> String {
        if self.try_wait().is_some()
            && let Some(reader) = self.reader.take()
        {
            let _ = reader.join();
        }
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// Wait for a stderr line containing `text`; `Err` with the reason when it exits or `limit` passes first.
    pub fn wait_for_line(&self, text: &str, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) if line.contains(text) => return Ok(()),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(format!("{} exited without printing {text:?}", self.name));
                }
                Err(mpsc::RecvTimeoutError::Timeout) if left.is_zero() => {
                    return Err(format!(
                        "{} did not print {text:?} within {limit:?}",
                        self.name
                    ));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Whether it printed a line containing `text` (without waiting).
    pub fn printed(&self, text: &str) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|l| l.contains(text))
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for the exit; after `limit`, SIGKILL and panic (a daemon must stop on SIGTERM).
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        let output = self.output();
        panic!(
            "{} did not exit within {limit:?} of SIGTERM:\n{output}",
            self.name
        );
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our own child, not yet reaped.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            self.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_short_and_distinct() {
        let a = unique_name("zt");
        let b = unique_name("zt");
        assert_ne!(a, b);
        assert!(a.len() <= 15, "{a}");
    }
}
