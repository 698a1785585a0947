//! The real `zinit` binary, run as an ordinary process (child subreaper) in `--container` mode, driven
//! through its control socket, its CLI and the client library.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const SLEEPER: &str = "exec: sleep 1000\n";

#[test]
fn protocol_bytes_match_the_recorded_exchanges() {
    let z = Zinit::start(&[
        ("init", "exec: \"true\"\noneshot: true\n"),
        ("web", "exec: sleep 1000\ntest: \"false\"\nafter: [init]\n"),
        ("app", "exec: sleep 1000\nafter: [web]\n"),
        ("fail", "exec: sh -c \"exit 3\"\noneshot: true\n"),
        ("missing", "exec: /nonexistent/zinit-test/binary\n"),
    ]);
    z.wait_state("init", "Success");
    z.wait_state("missing", "Failure");
    z.wait_status("fail", "exited 3", |s| s.state.starts_with("Error(Exited("));
    let web = z.wait_state("web", "Spawned");
    assert!(web.pid > 0);
    z.wait_state("app", "Blocked");

    // §B.6, byte for byte apart from the pids.
    let recorded = [
        (
            "list\n",
            r#"{"state":"ok","body":{"app":"Blocked","fail":"Error(Exited(Pid(25380), 3))","init":"Success","missing":"Failure","web":"Spawned"}}"#,
        ),
        (
            "status web\n",
            r#"{"state":"ok","body":{"after":{"init":"Success"},"name":"web","pid":25532,"state":"Spawned","target":"Up"}}"#,
        ),
        (
            "status nope\n",
            r#"{"state":"error","body":"service name \"nope\" unknown"}"#,
        ),
        (
            "monitor app\n",
            r#"{"state":"error","body":"service \"app\" already monitored"}"#,
        ),
    ];
    for (request, reply) in recorded {
        assert_eq!(
            normalize_pids(&z.raw_str(request)),
            normalize_pids(reply),
            "{request:?}"
        );
    }
    let web_status = z.raw_str("status web\n");
    assert!(
        web_status.contains(&format!("\"pid\":{}", web.pid)),
        "{web_status}"
    );

    // More of the protocol: null bodies, the error texts, no trailing newline anywhere.
    let exchanges = [
        (
            "status app\n",
            r#"{"state":"ok","body":{"after":{"web":"Spawned"},"name":"app","pid":0,"state":"Blocked","target":"Up"}}"#,
        ),
        (
            "kill web SIGFOO\n",
            r#"{"state":"error","body":"EINVAL: Invalid argument (unknown signal \"SIGFOO\")"}"#,
        ),
        (
            "kill app SIGTERM\n",
            r#"{"state":"error","body":"service \"app\" is down"}"#,
        ),
        (
            "forget web\n",
            r#"{"state":"error","body":"service \"web\" is up"}"#,
        ),
        (
            "start\n",
            r#"{"state":"error","body":"unknown command 'start' or wrong arguments count"}"#,
        ),
        (
            "bogus\n",
            r#"{"state":"error","body":"unknown command 'bogus' or wrong arguments count"}"#,
        ),
        (
            "status 'web\n",
            r#"{"state":"error","body":"invalid command syntax"}"#,
        ),
        (
            "log x y\n",
            r#"{"state":"error","body":"invalid log command arguments"}"#,
        ),
        ("stop app\n", r#"{"state":"ok","body":null}"#),
        ("forget app\n", r#"{"state":"ok","body":null}"#),
        (
            "status app\n",
            r#"{"state":"error","body":"service name \"app\" unknown"}"#,
        ),
        ("monitor app\n", r#"{"state":"ok","body":null}"#),
        (
            "monitor ../etc/app\n",
            r#"{"state":"error","body":"invalid service: invalid service name \"../etc/app\": contains '/'"}"#,
        ),
        (
            "monitor ..\n",
            r#"{"state":"error","body":"invalid service: invalid service name \"..\": not a file name"}"#,
        ),
    ];
    for (request, reply) in exchanges {
        assert_eq!(z.raw_str(request), reply, "{request:?}");
    }
    let missing = z.raw_str("monitor ghost\n");
    assert!(
        missing.starts_with(r#"{"state":"error","body":"failed to load service config: "#)
            && missing.contains("ghost.yaml"),
        "{missing}"
    );

    // `log snapshot`: raw lines, each ending in a newline, then close.
    let snapshot = z.raw_str("log snapshot\n");
    assert!(snapshot.ends_with('\n'), "{snapshot:?}");
    for name in ["init", "web", "fail"] {
        assert!(
            snapshot.contains(&format!("[-] {name}: ------------ [start] ------------\n")),
            "{snapshot}"
        );
    }
}

#[test]
fn lifecycle_start_stop_monitor_forget_kill() {
    let z = Zinit::start(&[("svc", SLEEPER)]);
    let first = z.wait_state("svc", "Running");
    assert!(first.pid > 0 && first.target == "Up");
    assert!(alive(first.pid as i32));

    // kill: a signal to the process group; the service dies and, target still Up, comes back.
    assert_eq!(
        z.raw_str("kill svc sigusr1\n"),
        r#"{"state":"ok","body":null}"#
    );
    let second = z.wait_status("svc", "respawned", |s| {
        s.state == "Running" && s.pid != 0 && s.pid != first.pid
    });
    assert!(!alive(first.pid as i32));
    let log = z.log_snapshot();
    assert_eq!(
        log.iter()
            .filter(|l| *l == "[-] svc: ------------ [start] ------------")
            .count(),
        2,
        "{log:?}"
    );

    // stop: target Down, SIGTERM to the group, no restart.
    assert_eq!(
        z.raw_str("forget svc\n"),
        r#"{"state":"error","body":"service \"svc\" is up"}"#
    );
    assert_eq!(z.raw_str("stop svc\n"), r#"{"state":"ok","body":null}"#);
    let stopped = z.wait_status("svc", "stopped", |s| s.pid == 0);
    assert_eq!(stopped.target, "Down");
    assert_eq!(
        stopped.state,
        format!("Error(Signaled(Pid({}), SIGTERM, false))", second.pid)
    );
    assert_eq!(
        z.raw_str("kill svc SIGTERM\n"),
        r#"{"state":"error","body":"service \"svc\" is down"}"#
    );

    // start again, stop again, then forget and monitor from the file.
    assert_eq!(z.raw_str("start svc\n"), r#"{"state":"ok","body":null}"#);
    let third = z.wait_status("svc", "restarted", |s| s.state == "Running" && s.pid != 0);
    assert_ne!(third.pid, second.pid);
    assert_eq!(third.target, "Up");
    z.raw("stop svc\n");
    z.wait_status("svc", "stopped", |s| s.pid == 0);
    assert_eq!(z.raw_str("forget svc\n"), r#"{"state":"ok","body":null}"#);
    assert!(z.list().is_empty());
    assert_eq!(z.raw_str("monitor svc\n"), r#"{"state":"ok","body":null}"#);
    z.wait_state("svc", "Running");

    // A unit added after init is only picked up by monitor.
    z.write_unit("late", SLEEPER);
    assert!(!z.list().contains_key("late"));
    assert_eq!(z.raw_str("monitor late\n"), r#"{"state":"ok","body":null}"#);
    z.wait_state("late", "Running");
}

#[test]
fn stop_signals_the_whole_process_group_and_reaps_it() {
    let z = Zinit::start(&[(
        "group",
        "exec: sh -c 'sleep 1000 & echo $! > child.pid; wait'\ndir: {dir}\nsignal:\n  stop: sigint\n",
    )]);
    let status = z.wait_state("group", "Running");
    let child = read_pid(&z.path("child.pid"));
    assert!(alive(child));
    assert_eq!(
        zos_zinit::process::parent_of(child),
        Some(status.pid as i32)
    );
    z.raw("stop group\n");
    let stopped = z.wait_status("group", "stopped", |s| s.pid == 0);
    assert!(
        stopped.state.starts_with("Error(Signaled(") || stopped.state.starts_with("Error(Exited("),
        "{stopped:?}"
    );
    // The background child got the signal too, and (re-parented to zinit) was reaped: no zombie is left.
    z.wait_until("the group's child is gone", || !exists(child));
}

#[test]
fn restart_backoff_grows() {
    let z = Zinit::start(&[(
        "crash",
        "exec: sh -c 'echo started $(date +%s%N); exit 1'\n",
    )]);
    let starts = || -> Vec<u128> {
        z.log_snapshot()
            .iter()
            .filter_map(|l| l.strip_prefix("[+] crash: started "))
            .map(|t| t.parse().unwrap())
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut times = starts();
    while times.len() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "hang guard: only {} starts\n{}",
            times.len(),
            z.zinit_log()
        );
        std::thread::sleep(Duration::from_millis(200));
        times = starts();
    }
    let gaps: Vec<u128> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.windows(2).all(|g| g[1] > g[0]),
        "restart gaps must grow: {gaps:?} ns"
    );
    // Between runs the state is the last exit.
    let s = z.status("crash");
    assert!(
        s.state == "Running" || s.state.starts_with("Error(Exited(Pid("),
        "{s:?}"
    );
    // `start` cuts a backoff short: the next gap is shorter than the last one (which was >= 8 s).
    z.wait_status("crash", "between runs", |s| s.pid == 0);
    z.raw("start crash\n");
    z.wait_until("a start right after `start`", || {
        starts().len() > times.len()
    });
    let kicked = starts();
    let last_gap = kicked[times.len()] - kicked[times.len() - 1];
    assert!(
        last_gap < *gaps.last().unwrap(),
        "start did not cut the backoff short: {last_gap} ns after {gaps:?}"
    );
}

#[test]
fn oneshot_dependants_wait_for_success() {
    let z = Zinit::start(&[
        (
            "setup",
            "exec: sh -c 'while [ ! -e go ]; do sleep 0.05; done'\noneshot: true\ndir: {dir}\n",
        ),
        ("app", "exec: sleep 1000\nafter: [setup]\n"),
        ("bad", "exec: sh -c 'exit 2'\noneshot: true\n"),
        ("needs-bad", "exec: sleep 1000\nafter: [bad]\n"),
        ("needs-ghost", "exec: sleep 1000\nafter: [ghost]\n"),
    ]);
    // A running oneshot does not satisfy its dependants.
    z.wait_state("setup", "Running");
    let app = z.wait_state("app", "Blocked");
    assert_eq!(app.pid, 0);
    assert_eq!(app.after["setup"], "Running");
    std::fs::write(z.path("go"), "").unwrap();
    z.wait_state("setup", "Success");
    let app = z.wait_state("app", "Running");
    assert_eq!(app.after["setup"], "Success");

    // A failed oneshot is not restarted and keeps its dependants blocked.
    let bad = z.wait_status("bad", "failed", |s| s.state.starts_with("Error("));
    assert!(bad.state.ends_with(", 2))"), "{bad:?}");
    let needs_bad = z.status("needs-bad");
    assert_eq!((needs_bad.state.as_str(), needs_bad.pid), ("Blocked", 0));
    assert_eq!(
        z.log_snapshot()
            .iter()
            .filter(|l| *l == "[-] bad: ------------ [start] ------------")
            .count(),
        1
    );

    // A dependency that is not monitored reports Unknown and blocks until it is monitored and running.
    let s = z.wait_state("needs-ghost", "Blocked");
    assert_eq!(s.after["ghost"], "Unknown");
    z.write_unit("ghost", SLEEPER);
    z.raw("monitor ghost\n");
    z.wait_state("needs-ghost", "Running");
}

#[test]
fn test_gating() {
    let z = Zinit::start(&[
        (
            "svc",
            "exec: sleep 1000\ntest: sh -c 'echo probing; test -e ready'\ndir: {dir}\n",
        ),
        ("dependant", "exec: sleep 1000\nafter: [svc]\n"),
        (
            "untestable",
            "exec: sleep 1000\ntest: /nonexistent/zinit-test/probe\n",
        ),
        (
            "slowtest",
            "exec: sleep 1000\ntest: sh -c 'echo $$ > test.pid; sleep 1000'\ndir: {dir}\n",
        ),
    ]);
    // Spawned while the test fails (it is retried: several probes), the dependant Blocked.
    z.wait_until("two failed probes", || {
        z.log_snapshot()
            .iter()
            .filter(|l| *l == "[+] svc/test: probing")
            .count()
            >= 2
    });
    let s = z.status("svc");
    assert_eq!(s.state, "Spawned");
    assert!(s.pid > 0 && alive(s.pid as i32));
    assert_eq!(z.state("dependant"), "Blocked");
    std::fs::write(z.path("ready"), "").unwrap();
    z.wait_state("svc", "Running");
    z.wait_state("dependant", "Running");

    // A test that cannot be spawned: TestFailure, the service itself runs.
    let u = z.wait_state("untestable", "TestFailure");
    assert!(u.pid > 0 && alive(u.pid as i32));

    // The test process is killed when its service exits.
    z.wait_state("slowtest", "Spawned");
    let test_pid = read_pid(&z.path("test.pid"));
    assert!(alive(test_pid));
    z.raw("stop slowtest\n");
    z.wait_status("slowtest", "stopped", |s| s.pid == 0);
    z.wait_until("the test process is gone", || !exists(test_pid));
}

#[test]
fn stop_escalates_to_sigkill_after_shutdown_timeout() {
    let stubborn = "exec: sh -c \"trap '' TERM; echo ready; while true; do sleep 0.1; done\"\nshutdown_timeout: 1\n";
    let z = Zinit::start(&[("stubborn", stubborn), ("other", stubborn)]);
    let s = z.wait_state("stubborn", "Running");
    z.wait_until("the TERM trap is set", || {
        z.log_snapshot()
            .contains(&"[+] stubborn: ready".to_string())
    });
    assert_eq!(
        z.raw_str("stop stubborn\n"),
        r#"{"state":"ok","body":null}"#
    );
    let stopped = z.wait_status("stubborn", "killed", |s| s.pid == 0);
    assert_eq!(
        stopped.state,
        format!("Error(Signaled(Pid({}), SIGKILL, false))", s.pid)
    );
    assert!(
        z.zinit_log()
            .contains("did not stop within 1s: sending SIGKILL")
    );

    // Server-side restart: stop, wait, SIGKILL, start, in one request.
    let o = z.wait_state("other", "Running");
    z.wait_until("the TERM trap is set", || {
        z.log_snapshot().contains(&"[+] other: ready".to_string())
    });
    assert_eq!(
        z.raw_str("restart other\n"),
        r#"{"state":"ok","body":null}"#
    );
    let after = z.status("other");
    assert_eq!(after.target, "Up");
    assert!(
        !alive(o.pid as i32),
        "the old process must be gone when restart returns"
    );
    z.wait_status("other", "running again", |s| {
        s.state == "Running" && s.pid != o.pid && s.pid != 0
    });
}

#[test]
fn invalid_utf8_output_does_not_kill_the_service() {
    let junk = r#"exec: sh -c 'i=0; while true; do printf "\377\376 junk %s\n" $i; printf "\300 err\n" >&2; i=$((i+1)); sleep 0.02; done'
"#;
    let z = Zinit::start(&[("junk", junk)]);
    let s = z.wait_state("junk", "Running");
    z.wait_until("50 lines of junk", || {
        z.log_snapshot()
            .iter()
            .filter(|l| l.starts_with("[+] junk: "))
            .count()
            >= 50
    });
    let log = z.log_snapshot();
    assert!(
        log.contains(&"[+] junk: \u{fffd}\u{fffd} junk 0".to_string()),
        "{log:?}"
    );
    assert!(log.iter().any(|l| l == "[-] junk: \u{fffd} err"), "{log:?}");
    let now = z.status("junk");
    assert_eq!(
        (now.state.as_str(), now.pid),
        ("Running", s.pid),
        "the service must still be the same process"
    );
}

#[test]
fn orphans_are_reaped_by_the_subreaper() {
    let z = Zinit::start(&[(
        "parent",
        "exec: sh -c '(sleep 1 & echo $! > orphan.pid); exec sleep 1000'\ndir: {dir}\n",
    )]);
    z.wait_state("parent", "Running");
    let orphan = read_pid(&z.path("orphan.pid"));
    // Its parent (the subshell) is gone: the orphan belongs to zinit now, not to the host's init.
    if alive(orphan) {
        z.wait_until("re-parenting", || {
            zos_zinit::process::parent_of(orphan).is_none_or(|p| p == z.pid)
        });
    }
    // When it exits, zinit reaps it: no zombie stays behind.
    z.wait_until("the orphan is reaped", || !exists(orphan));
}

#[test]
fn dependency_cycles_are_rejected() {
    let z = Zinit::start(&[
        ("a", "exec: sleep 1000\nafter: [b]\n"),
        ("b", "exec: sleep 1000\nafter: [a]\n"),
        ("c", "exec: sleep 1000\nafter: [a]\n"),
        ("d", SLEEPER),
    ]);
    z.wait_state("d", "Running");
    let list = z.list();
    assert_eq!(list.keys().collect::<Vec<_>>(), vec!["c", "d"]);
    assert_eq!(list["c"], "Blocked");
    assert!(
        z.zinit_log()
            .contains("dependency cycle a -> b -> a: these services are not monitored"),
        "{}",
        z.zinit_log()
    );

    // At monitor time too.
    assert_eq!(
        z.raw_str("monitor a\n"),
        r#"{"state":"ok","body":null}"#,
        "a alone (b not monitored) is fine"
    );
    assert_eq!(
        z.raw_str("monitor b\n"),
        r#"{"state":"error","body":"dependency cycle: a -> b -> a"}"#
    );
    z.write_unit("selfish", "exec: sleep 1000\nafter: [selfish]\n");
    assert_eq!(
        z.raw_str("monitor selfish\n"),
        r#"{"state":"error","body":"dependency cycle: selfish -> selfish"}"#
    );
    assert_eq!(z.list().keys().collect::<Vec<_>>(), vec!["a", "c", "d"]);
}

#[test]
fn cli_prints_yaml_like_v0_2_14() {
    let z = Zinit::start(&[
        ("base", "exec: \"true\"\noneshot: true\n"),
        ("web", "exec: sleep 1000\nafter: [base]\n"),
    ]);
    let web = z.wait_state("web", "Running");

    let out = z.cli(&["list"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "---\nbase: Success\nweb: Running\n"
    );
    let out = z.cli(&[]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "---\nbase: Success\nweb: Running\n",
        "no subcommand = list"
    );

    let out = z.cli(&["status", "web"]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "---\nname: web\npid: {}\nstate: Running\ntarget: Up\nafter:\n  base: Success\n",
            web.pid
        )
    );

    let out = z.cli(&["status", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "service name \"nope\" unknown\n"
    );

    let out = Command::new(BIN).arg("-V").output().unwrap();
    let version = String::from_utf8(out.stdout).unwrap();
    // zos splits on a space into exactly two tokens and parses the second as semver >= 0.2.9.
    let parts: Vec<&str> = version.split(' ').collect();
    assert_eq!(parts.len(), 2, "{version:?}");
    assert_eq!(parts[0], "zinit");
    let v: Vec<u32> = parts[1]
        .trim()
        .trim_start_matches('v')
        .split('.')
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(v.as_slice() >= [0, 2, 9].as_slice(), "{version}");

    // log -s with a filter: only that service's lines, `web/test` lines excluded.
    let out = z.cli(&["log", "-s", "web"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, "[-] web: ------------ [start] ------------\n");
    let out = z.cli(&["log", "--snapshot", "ghost"]);
    assert_eq!(out.status.code(), Some(1));

    // restart, stop, start, kill, forget, monitor through the CLI.
    assert!(z.cli(&["restart", "web"]).status.success());
    z.wait_status("web", "restarted", |s| {
        s.state == "Running" && s.pid != web.pid && s.pid != 0
    });
    assert!(z.cli(&["kill", "web", "SIGSTOP"]).status.success());
    z.wait_until("web is stopped (T)", || {
        let pid = z.status("web").pid;
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") T "))
    });
    assert!(z.cli(&["kill", "web", "SIGCONT"]).status.success());
    assert!(z.cli(&["stop", "web"]).status.success());
    z.wait_status("web", "stopped", |s| s.pid == 0);
    assert!(z.cli(&["forget", "web"]).status.success());
    assert!(z.cli(&["monitor", "web"]).status.success());
    let out = z.cli(&["monitor", "web"]);
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "service \"web\" already monitored\n"
    );
    assert!(z.cli(&["start", "web"]).status.success());
    z.wait_state("web", "Running");

    // shutdown in container mode: services stopped, zinit exits 0.
    let mut z = z;
    assert!(z.cli(&["shutdown"]).status.success());
    assert!(z.wait_exit().success());
    assert!(!z.socket.exists());
}

#[test]
fn shutdown_stops_dependants_first_then_exits() {
    let unit = |name: &str, after: &str| {
        format!(
            "exec: sh -c 'trap \"echo {name} >> {{dir}}/order; exit 0\" TERM; while true; do sleep 0.05; done'\nafter: [{after}]\n"
        )
    };
    let (base, mid, top, side) = (
        unit("base", ""),
        unit("mid", "base"),
        unit("top", "mid"),
        unit("side", "base"),
    );
    // One that ignores SIGTERM (killed after its shutdown_timeout), one whose child escaped its process group.
    let stubborn = "exec: sh -c \"trap '' TERM; echo ready; while true; do sleep 0.1; done\"\nshutdown_timeout: 1\n";
    let escaper =
        "exec: sh -c 'setsid sleep 1000 & echo $! > {dir}/escaped.pid; exec sleep 1000'\n";
    let mut z = Zinit::start(&[
        ("base", &base),
        ("mid", &mid),
        ("top", &top),
        ("side", &side),
        ("stubborn", stubborn),
        ("escaper", escaper),
    ]);
    for name in ["base", "mid", "top", "side", "stubborn", "escaper"] {
        z.wait_state(name, "Running");
    }
    z.wait_until("the TERM trap is set", || {
        z.log_snapshot()
            .contains(&"[+] stubborn: ready".to_string())
    });
    let escaped = read_pid(&z.path("escaped.pid"));
    assert!(alive(escaped));
    let stubborn_pid = z.status("stubborn").pid as i32;
    let pids: Vec<i32> = ["base", "mid", "top", "side"]
        .iter()
        .map(|n| z.status(n).pid as i32)
        .collect();
    assert_eq!(z.raw_str("shutdown\n"), r#"{"state":"ok","body":null}"#);
    let status = z.wait_exit();
    assert!(status.success(), "{status:?}\n{}", z.zinit_log());
    let order = std::fs::read_to_string(z.path("order")).unwrap();
    let order: Vec<&str> = order.lines().collect();
    let pos = |n: &str| {
        order
            .iter()
            .position(|x| *x == n)
            .unwrap_or_else(|| panic!("{n} not stopped: {order:?}"))
    };
    assert!(
        pos("top") < pos("mid") && pos("mid") < pos("base") && pos("side") < pos("base"),
        "{order:?}"
    );
    for pid in pids {
        assert!(!alive(pid));
    }
    assert!(!alive(stubborn_pid), "SIGKILLed after its shutdown_timeout");
    assert!(
        !alive(escaped),
        "a child that left its process group is killed at shutdown too"
    );
    assert!(
        z.zinit_log().contains("killing left-over process"),
        "{}",
        z.zinit_log()
    );
}

#[test]
fn sigterm_shuts_down_gracefully_and_power_commands_need_container_or_pid1() {
    let mut z = Zinit::start_with(
        &[(
            "svc",
            "exec: sh -c 'trap \"echo stopped > {dir}/svc.out; exit 0\" TERM; while true; do sleep 0.05; done'\n",
        )],
        &[],
    );
    let s = z.wait_state("svc", "Running");
    for command in ["shutdown", "reboot"] {
        assert_eq!(
            z.raw_str(&format!("{command}\n")),
            format!(
                r#"{{"state":"error","body":"{command} refused: zinit is not PID 1 and was not started with --container"}}"#
            )
        );
    }
    assert_eq!(
        z.state("svc"),
        "Running",
        "a refused shutdown stops nothing"
    );
    z.signal(libc::SIGTERM);
    assert!(z.wait_exit().success());
    assert_eq!(
        std::fs::read_to_string(z.path("svc.out")).unwrap(),
        "stopped\n"
    );
    assert!(!alive(s.pid as i32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_library_against_the_real_binary() {
    use zos_zinit_client::{Error, StateKind, Target, Unit};
    let z = Zinit::start(&[]);
    let client = z.client();
    assert!(client.list().await.unwrap().is_empty());
    assert!(!client.exists("svc").await.unwrap());
    assert!(matches!(client.status("svc").await, Err(Error::UnknownService(n)) if n == "svc"));

    let mut unit = Unit::new("sh -c 'echo hello from $GREETING; exec sleep 1000'");
    unit.env.insert("GREETING".into(), "the unit".into());
    unit.test = format!("test -e {}", z.path("ready").display());
    assert!(client.add_service(&z.etc, "svc", &unit).await.unwrap());
    assert!(z.etc.join("svc.yaml").exists());
    assert!(
        !client.add_service(&z.etc, "svc", &unit).await.unwrap(),
        "second add: already monitored"
    );
    z.wait_state("svc", "Spawned");

    let status = client.status("svc").await.unwrap();
    assert_eq!(status.state.kind, StateKind::Spawned);
    assert!(!status.state.exited());
    assert!(matches!(
        client.start_wait("svc", Duration::from_millis(500)).await,
        Err(Error::StartTimeout { .. })
    ));
    std::fs::write(z.path("ready"), "").unwrap();
    client.start_wait("svc", HANG).await.unwrap();
    assert_eq!(
        client.status("svc").await.unwrap().state.kind,
        StateKind::Running
    );
    let lines = client.log_snapshot().await.unwrap();
    assert!(
        lines.contains(&"[+] svc: hello from the unit".to_string()),
        "{lines:?}"
    );

    client.stop_wait("svc", HANG).await.unwrap();
    let status = client.status("svc").await.unwrap();
    assert_eq!(status.target, Target::Down);
    assert_eq!(status.pid, 0);
    assert!(status.state.exited());
    let parsed = status.state.to_string();
    assert!(
        parsed.starts_with("error(signaled(pid(") && parsed.ends_with("), sigterm, false))"),
        "{parsed}"
    );

    // stop_wait on a service ignoring SIGTERM with a long shutdown_timeout: the client's own deadline kills it.
    let mut stubborn =
        Unit::new("sh -c \"trap '' TERM; echo ready; while true; do sleep 0.1; done\"");
    stubborn.shutdown_timeout = 600;
    client
        .add_service(&z.etc, "stubborn", &stubborn)
        .await
        .unwrap();
    client.start_wait("stubborn", HANG).await.unwrap();
    z.wait_until("trap set", || {
        z.log_snapshot()
            .contains(&"[+] stubborn: ready".to_string())
    });
    client
        .stop_wait("stubborn", Duration::from_millis(300))
        .await
        .unwrap();
    let status = client.status("stubborn").await.unwrap();
    assert!(status.state.raw.contains("SIGKILL"), "{status:?}");

    // restart, kill errors, remove.
    client.start_wait("svc", HANG).await.unwrap();
    let before = client.status("svc").await.unwrap().pid;
    client.restart("svc").await.unwrap();
    client.start_wait("svc", HANG).await.unwrap();
    assert_ne!(client.status("svc").await.unwrap().pid, before);
    assert!(
        matches!(client.kill("svc", "SIGNOPE").await, Err(Error::Zinit { message, .. }) if message.contains("SIGNOPE"))
    );
    assert!(matches!(
        client.monitor("svc").await,
        Err(Error::AlreadyMonitored(_))
    ));
    client.remove_service(&z.etc, "svc", HANG).await.unwrap();
    assert!(!client.exists("svc").await.unwrap());
    assert!(!z.etc.join("svc.yaml").exists());

    // Bad input is refused before anything is written.
    assert!(matches!(
        client.add_service(&z.etc, "../x", &unit).await,
        Err(Error::Unit(_))
    ));
    assert!(matches!(
        client.add_service(&z.etc, "x", &Unit::default()).await,
        Err(Error::Unit(_))
    ));
    assert!(!z.etc.join("x.yaml").exists());

    // Following the log: the snapshot, then a live line.
    let mut follow = client.log_follow().await.unwrap();
    let first = follow.next_line().await.unwrap().unwrap();
    assert!(
        first.starts_with("[-] svc: ") || first.starts_with("[+] svc"),
        "{first}"
    );
    client
        .add_service(
            &z.etc,
            "late",
            &Unit::new("sh -c 'echo live line; exec sleep 1000'"),
        )
        .await
        .unwrap();
    let found = tokio::time::timeout(HANG, async {
        while let Some(line) = follow.next_line().await.unwrap() {
            if line == "[+] late: live line" {
                return true;
            }
        }
        false
    })
    .await
    .expect("hang guard");
    assert!(found);
}
