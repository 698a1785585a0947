//! Running external tools (btrfs-progs, blkid, mkfs, parted): every call logged at debug with its arguments,
//! failures carry the command line and its stderr.

use std::ffi::OsStr;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// What a command printed and how it ended.
pub(crate) struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

fn command_line(program: &str, args: &[&OsStr]) -> String {
    let mut line = program.to_string();
    for a in args {
        line.push(' ');
        line.push_str(&a.to_string_lossy());
    }
    line
}

/// Run a command and return its output whatever its exit status.
pub(crate) fn run_any<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<Output> {
    let args: Vec<&OsStr> = args.iter().map(AsRef::as_ref).collect();
    let line = command_line(program, &args);
    tracing::debug!(command = %line, "running");
    let out = Command::new(resolve(program))
        .args(&args)
        .stdin(Stdio::null())
        .env("LC_ALL", "C")
        .output()
        .map_err(|source| Error::Spawn {
            command: line.clone(),
            source,
        })?;
    Ok(Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Run a command that must succeed; returns its stdout.
pub(crate) fn run<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<String> {
    let out = run_any(program, args)?;
    if out.code == Some(0) {
        return Ok(out.stdout);
    }
    let args: Vec<&OsStr> = args.iter().map(AsRef::as_ref).collect();
    Err(failed(&command_line(program, &args), &out))
}

/// The error for a command that ended badly.
pub(crate) fn failed(line: &str, out: &Output) -> Error {
    let status = match out.code {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".to_string(),
    };
    // Tools without udev complain about udevadm; that is noise, not the reason.
    let stderr: Vec<&str> = out
        .stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains("udevadm"))
        .collect();
    let stderr = if stderr.is_empty() {
        out.stdout.trim().to_string()
    } else {
        stderr.join("; ")
    };
    Error::Command {
        command: line.to_string(),
        status,
        stderr,
    }
}

/// Find `program` on PATH or in the usual sbin directories (a daemon's PATH may lack them).
fn find(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        return Some(program.into());
    }
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| std::path::Path::new(d).join(program))
        .find(|p| p.is_file())
}

fn resolve(program: &str) -> std::path::PathBuf {
    find(program).unwrap_or_else(|| program.into())
}

/// Whether `program` can be found.
pub(crate) fn has_program(program: &str) -> bool {
    find(program).is_some()
}
