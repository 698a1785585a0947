//! What the sandbox tests share: running xtask, a node that is removed even when a test fails.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

/// Run `xtask ARGS`; whether it succeeded and everything it printed.
pub fn xtask(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("running xtask");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A sandbox node by name, brought down when dropped (test passed or not).
pub struct Node(pub String);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = xtask(&["node", "down", "--name", &self.0]);
    }
}

impl Node {
    /// A node with a fresh unique name (not booted yet).
    pub fn unique(prefix: &str) -> Node {
        Node(zos_testkit::unique_name(prefix))
    }

    /// `cargo xtask node up --name <name> EXTRA...`.
    pub fn up(&self, extra: &[&str]) -> (bool, String) {
        let mut args = vec!["node", "up", "--name", &self.0];
        args.extend_from_slice(extra);
        xtask(&args)
    }

    /// Run a command inside the node.
    pub fn exec(&self, argv: &[&str]) -> (bool, String) {
        let mut args = vec!["node", "exec", "--name", &self.0, "--"];
        args.extend_from_slice(argv);
        xtask(&args)
    }

    /// A bus call inside the node, its JSON result.
    pub fn call(&self, argv: &[&str]) -> Result<serde_json::Value, String> {
        let mut args = vec!["zbus", "--timeout", "30", "call"];
        args.extend_from_slice(argv);
        let (ok, out) = self.exec(&args);
        if !ok {
            return Err(out);
        }
        if let Ok(v) = serde_json::from_str(out.trim()) {
            return Ok(v);
        }
        let json_start = out
            .find(['{', '[', '"'])
            .or_else(|| out.find(|c: char| c.is_ascii_digit()))
            .ok_or(out.clone())?;
        serde_json::Deserializer::from_str(&out[json_start..])
            .into_iter::<serde_json::Value>()
            .next()
            .and_then(Result::ok)
            .ok_or(out)
    }

    pub fn subnet(&self) -> String {
        self.state("subnet").expect("state has the subnet")
    }

    /// GET from the host-side registrar.
    pub fn registrar_get(&self, path: &str) -> serde_json::Value {
        let addr = format!("10.232.{}.1:8080", self.subnet());
        let mut s = std::net::TcpStream::connect(&addr).expect("registrar reachable from the host");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET /api/v1{path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        serde_json::from_str(body).unwrap_or_else(|e| panic!("registrar {path}: {e}: {text}"))
    }

    /// A value recorded in the node's state file.
    pub fn state(&self, key: &str) -> Option<String> {
        std::fs::read_to_string(format!("/var/lib/zos-sandbox/{}/state", self.0))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
    }
}

/// Every prerequisite of booting a sandbox node (fails in CI when one is missing).
pub fn sandbox_prerequisites() -> bool {
    zos_testkit::require_root()
        && [
            "unshare",
            "nsenter",
            "losetup",
            "ip",
            "redis-server",
            "btrfs",
        ]
        .iter()
        .all(|c| zos_testkit::require_command(c))
}

/// Retry `f` every 500 ms until it succeeds; panic with its last error after `limit`.
pub fn eventually<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match f() {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("{what}: not within {limit:?}; last: {last}");
}
