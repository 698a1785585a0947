//! Test harness: a real `zinit init` child process with a temp unit directory and socket, killed with every
//! process it started when the test ends (pass or fail).
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use zos_zinit_client::{Client, RawStatus};

pub const BIN: &str = env!("CARGO_BIN_EXE_zinit");
/// Hang guard for anything a test waits for.
pub const HANG: Duration = Duration::from_secs(60);

pub struct Zinit {
    pub dir: tempfile::TempDir,
    pub etc: PathBuf,
    pub socket: PathBuf,
    child: Option<Child>,
    pub pid: i32,
}

impl Zinit {
    /// `zinit init --container` on these units (name, yaml).
    pub fn start(units: &[(&str, &str)]) -> Zinit {
        Zinit::start_with(units, &["--container"])
    }

    /// `zinit init` with extra arguments; `{dir}` in unit text is replaced by the test's directory.
    pub fn start_with(units: &[(&str, &str)], args: &[&str]) -> Zinit {
        Zinit::start_wrapped(units, &[], args)
    }

    /// Like [`Zinit::start_with`], with zinit run by a wrapper command (`unshare --pid --fork ...`).
    pub fn start_wrapped(units: &[(&str, &str)], wrapper: &[&str], args: &[&str]) -> Zinit {
        let dir = tempfile::Builder::new()
            .prefix("zinit-test-")
            .tempdir()
            .expect("temp dir");
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        let socket = dir.path().join("run/zinit.sock");
        for (name, text) in units {
            write_unit(
                &etc,
                name,
                &text.replace("{dir}", dir.path().to_str().unwrap()),
            );
        }
        let log = std::fs::File::create(dir.path().join("zinit.log")).unwrap();
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let child = command
            .arg("-s")
            .arg(&socket)
            .arg("init")
            .arg("-c")
            .arg(&etc)
            .args(args)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawning zinit");
        let pid = child.id() as i32;
        let z = Zinit {
            dir,
            etc,
            socket,
            child: Some(child),
            pid,
        };
        z.wait_until("the control socket answers", || {
            UnixStream::connect(&z.socket).is_ok()
        });
        z
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn client(&self) -> Client {
        Client::new(&self.socket)
    }

    /// One raw exchange: write `line`, read to EOF.
    pub fn raw(&self, line: &str) -> Vec<u8> {
        let mut s = UnixStream::connect(&self.socket).expect("connect");
        s.set_read_timeout(Some(HANG)).unwrap();
        s.write_all(line.as_bytes()).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).expect("read reply");
        out
    }

    pub fn raw_str(&self, line: &str) -> String {
        String::from_utf8(self.raw(line)).expect("utf-8 reply")
    }

    pub fn status(&self, name: &str) -> RawStatus {
        let reply: serde_json::Value =
            serde_json::from_slice(&self.raw(&format!("status {name}\n"))).unwrap();
        assert_eq!(reply["state"], "ok", "status {name}: {reply}");
        serde_json::from_value(reply["body"].clone()).unwrap()
    }

    pub fn list(&self) -> BTreeMap<String, String> {
        let reply: serde_json::Value = serde_json::from_slice(&self.raw("list\n")).unwrap();
        serde_json::from_value(reply["body"].clone()).unwrap()
    }

    pub fn state(&self, name: &str) -> String {
        self.status(name).state
    }

    /// Wait until the service's status satisfies `pred` (hang guard: panics with zinit's log).
    pub fn wait_status(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&RawStatus) -> bool,
    ) -> RawStatus {
        let mut last = None;
        self.wait_until(&format!("{name}: {what}"), || {
            let s = self.status(name);
            let ok = pred(&s);
            last = Some(s);
            ok
        });
        last.unwrap()
    }

    pub fn wait_state(&self, name: &str, state: &str) -> RawStatus {
        self.wait_status(name, &format!("state {state}"), |s| s.state == state)
    }

    pub fn wait_until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + HANG;
        while !cond() {
            if Instant::now() > deadline {
                panic!(
                    "hang guard: waited {HANG:?} for {what}\n--- zinit log ---\n{}",
                    self.zinit_log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_snapshot(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.raw("log snapshot\n"))
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// zinit's own output (stdout and stderr).
    pub fn zinit_log(&self) -> String {
        std::fs::read_to_string(self.path("zinit.log")).unwrap_or_default()
    }

    /// Run the CLI against this zinit.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("running the zinit CLI")
    }

    /// Wait for zinit to exit (hang guard).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("zinit already reaped");
        let deadline = Instant::now() + HANG;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "hang guard: zinit did not exit\n--- zinit log ---\n{}",
                    self.zinit_log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(self.pid, sig) };
    }

    pub fn write_unit(&self, name: &str, text: &str) {
        write_unit(
            &self.etc,
            name,
            &text.replace("{dir}", self.dir.path().to_str().unwrap()),
        );
    }
}

pub fn write_unit(etc: &Path, name: &str, text: &str) {
    std::fs::write(etc.join(format!("{name}.yaml")), text).unwrap();
}

/// Every descendant of `root` (by walking /proc parent links).
pub fn descendants(root: i32) -> Vec<i32> {
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(ppid) = zos_zinit::process::parent_of(pid) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut queue = VecDeque::from([root]);
    while let Some(p) = queue.pop_front() {
        for c in children.get(&p).into_iter().flatten() {
            out.push(*c);
            queue.push_back(*c);
        }
    }
    out
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}

/// Whether `/proc/<pid>` exists at all (zombies included).
pub fn exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

pub fn read_pid(path: &Path) -> i32 {
    let deadline = Instant::now() + HANG;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "hang guard: no pid in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `Pid(123)` → `Pid(N)`, `"pid":123` → `"pid":N`.
pub fn normalize_pids(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        let next = ["Pid(", "\"pid\":"]
            .iter()
            .filter_map(|p| rest.find(p).map(|i| (i, p.len())))
            .min();
        let Some((i, len)) = next else {
            out.push_str(rest);
            break;
        };
        out.push_str(&rest[..i + len]);
        rest = &rest[i + len..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        out.push('N');
        rest = &rest[digits..];
    }
    out
}

impl Drop for Zinit {
    fn drop(&mut self) {
        // Everything zinit started (services run in their own process groups; orphans are re-parented to it).
        let mut victims = descendants(self.pid);
        if self.child.is_some() {
            victims.push(self.pid);
        }
        for pid in victims {
            // SAFETY: kill has no memory effects; the pids are our own descendants.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}
