//! zinit as PID 1 of a fresh PID namespace (how the sandbox node runs it): it reaps everything, accepts
//! `shutdown`/`reboot`, stops the services in order and calls reboot(2), which ends the namespace with
//! SIGINT (power off) or SIGHUP (reboot). Needs root and `unshare`.

mod common;

use std::os::unix::process::ExitStatusExt;

use common::*;

const WRAPPER: &[&str] = &["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"];

fn prerequisites() -> bool {
    zos_testkit::require_root() && zos_testkit::require_command("unshare")
}

fn units() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "base",
            "exec: sh -c 'trap \"echo base >> {dir}/order; exit 0\" TERM; while true; do sleep 0.05; done'\n",
        ),
        (
            "top",
            "exec: sh -c 'trap \"echo top >> {dir}/order; exit 0\" TERM; while true; do sleep 0.05; done'\nafter: [base]\n",
        ),
        (
            "orphans",
            "exec: sh -c '(sleep 0.5 & echo $! > {dir}/orphan.pid); exec sleep 1000'\n",
        ),
    ]
}

/// The host pid of a process that has `ns_pid` in the namespace below `root`.
fn host_pid(root: i32, ns_pid: i32) -> Option<i32> {
    descendants(root).into_iter().find(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|l| l.split_whitespace().last().map(|p| p == ns_pid.to_string()))
                .unwrap_or(false)
        })
    })
}

fn run_and_power(command: &str) -> (Zinit, std::process::ExitStatus) {
    // --no-kmsg: the namespace shares the host's kernel log.
    let mut z = Zinit::start_wrapped(&units(), WRAPPER, &["--no-kmsg"]);
    let base = z.wait_state("base", "Running");
    z.wait_state("top", "Running");
    z.wait_state("orphans", "Running");
    // zinit is PID 1 of the namespace: the services' pids are small namespace pids.
    assert!(base.pid > 1);

    // The orphan's parent exited at once; PID 1 (zinit) inherits it and reaps it when it exits.
    let orphan_ns = read_pid(&z.path("orphan.pid"));
    if let Some(orphan) = host_pid(z.pid, orphan_ns) {
        z.wait_until("the orphan is reaped", || !exists(orphan));
    }

    assert_eq!(
        z.raw_str(&format!("{command}\n")),
        r#"{"state":"ok","body":null}"#
    );
    let status = z.wait_exit();
    let order = std::fs::read_to_string(z.path("order")).unwrap_or_default();
    assert_eq!(
        order,
        "top\nbase\n",
        "ordered shutdown before reboot(2)\n{}",
        z.zinit_log()
    );
    (z, status)
}

#[test]
fn shutdown_as_pid1_powers_off_the_namespace() {
    if !prerequisites() {
        return;
    }
    let (z, status) = run_and_power("shutdown");
    // unshare re-raises the signal its child (our PID 1) died of: SIGINT means reboot(RB_POWER_OFF).
    assert_eq!(
        status.signal(),
        Some(libc::SIGINT),
        "{status:?}\n{}",
        z.zinit_log()
    );
}

#[test]
fn reboot_as_pid1_restarts_the_namespace() {
    if !prerequisites() {
        return;
    }
    let (z, status) = run_and_power("reboot");
    assert_eq!(
        status.signal(),
        Some(libc::SIGHUP),
        "{status:?}\n{}",
        z.zinit_log()
    );
}

#[test]
fn container_mode_as_pid1_exits_cleanly_on_sigterm() {
    if !prerequisites() {
        return;
    }
    let mut z = Zinit::start_wrapped(&units(), WRAPPER, &["--container"]);
    z.wait_state("top", "Running");
    // SIGTERM to zinit itself (the namespace's PID 1, seen from the host): ordered shutdown, exit 0.
    let zinit = descendants(z.pid)[0];
    assert_eq!(zos_zinit::process::parent_of(zinit), Some(z.pid));
    // SAFETY: kill has no memory effects; `zinit` is our own descendant.
    unsafe { libc::kill(zinit, libc::SIGTERM) };
    let status = z.wait_exit();
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", z.zinit_log());
    assert_eq!(
        std::fs::read_to_string(z.path("order")).unwrap(),
        "top\nbase\n"
    );
}
