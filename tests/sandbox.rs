//! The sandbox node: boot it, see redis and zinit serving inside it, refuse a second `up`, and after `down`
//! find nothing of it left on the host.

use std::process::Command;

mod common;
use common::{Node, xtask};

fn host_traces(name: &str) -> Vec<String> {
    let dir = format!("/var/lib/zos-sandbox/{name}");
    let mut traces = Vec::new();
    if std::path::Path::new(&dir).exists() {
        traces.push(format!("state dir {dir}"));
    }
    let loops = Command::new("losetup")
        .arg("-a")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    traces.extend(
        loops
            .lines()
            .filter(|l| l.contains(&dir))
            .map(|l| format!("loop {l}")),
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    traces.extend(
        mounts
            .lines()
            .filter(|l| l.contains(&dir))
            .map(|l| format!("mount {l}")),
    );
    let procs = Command::new("ps")
        .args(["-eo", "pid,args"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    traces.extend(
        procs
            .lines()
            .filter(|l| l.contains(&dir))
            .map(|l| format!("process {l}")),
    );
    traces
}

#[test]
fn sandbox_node_boots_serves_and_leaves_nothing_behind() {
    if !common::sandbox_prerequisites() {
        return;
    }
    let name = zos_testkit::unique_name("t");
    let uplink;
    let host_redis_socket = std::path::Path::new("/var/run/redis.sock").exists();
    {
        let node = Node(name.clone());
        let (ok, out) = node.up(&[]);
        assert!(ok, "node up failed:\n{out}");
        assert!(out.contains("is up"), "{out}");

        // A second `up` is refused and says why.
        let (ok, out) = node.up(&[]);
        assert!(!ok && out.contains("already up"), "{out}");

        // zinit is PID 1 inside and serves its socket; redis answers on the node's own socket.
        let (ok, out) = node.exec(&["zinit", "list"]);
        assert!(ok, "{out}");
        assert!(out.contains("redis: Running"), "{out}");
        let (ok, out) = xtask(&[
            "node",
            "exec",
            "--name",
            &node.0,
            "--",
            "cat",
            "/proc/1/comm",
        ]);
        assert!(ok && out.trim() == "zinit", "PID 1 is {out:?}");
        let (ok, out) = xtask(&[
            "node",
            "exec",
            "--name",
            &node.0,
            "--",
            "redis-cli",
            "-s",
            "/var/run/redis.sock",
            "ping",
        ]);
        assert!(ok && out.contains("PONG"), "{out}");
        // The uplink is enslaved to the bridge zos, which carries the node's address.
        let (ok, out) = xtask(&[
            "node", "exec", "--name", &node.0, "--", "ip", "-o", "addr", "show", "dev", "zos",
        ]);
        assert!(ok && out.contains("10.232."), "{out}");
        let (ok, out) = xtask(&[
            "node", "exec", "--name", &node.0, "--", "ip", "-o", "link", "show", "master", "zos",
        ]);
        assert!(ok && out.contains("eth0"), "{out}");
        // The node's redis socket lives in the node's private /var/run, not on the host.
        assert_eq!(
            std::path::Path::new("/var/run/redis.sock").exists(),
            host_redis_socket,
            "the node touched the host's /var/run"
        );

        // storaged made its pools from the loop disks: the cache is a subvolume on one of them, mounted on the
        // node's /var/cache, and volumes can be made and listed from the operator CLI.
        let cache = node
            .call(&["storage", "storage", "Cache"])
            .expect("storage Cache");
        let cache_path = cache["Path"].as_str().unwrap_or_default().to_string();
        assert!(
            cache_path.starts_with("/mnt/") && cache_path.ends_with("/zos-cache"),
            "{cache}"
        );
        let (ok, out) = node.exec(&["sh", "-c", "grep ' /var/cache ' /proc/mounts"]);
        assert!(
            ok && out.contains("btrfs"),
            "/var/cache is not the btrfs cache: {out}"
        );
        let loops = node.state("loops").expect("state lists the loop disks");
        let (ok, out) = node.exec(&["sh", "-c", "grep ' /mnt/' /proc/mounts"]);
        assert!(
            ok && loops.split(',').any(|l| out.contains(l)),
            "pools are not on the loop disks {loops}: {out}"
        );
        let created = node
            .call(&[
                "storage",
                "storage",
                "VolumeCreate",
                "sandbox-vol",
                "104857600",
            ])
            .expect("VolumeCreate");
        assert_eq!(created["Name"], "sandbox-vol", "{created}");
        let list = node
            .call(&["storage", "storage", "VolumeList"])
            .expect("VolumeList");
        assert!(
            list.as_array()
                .is_some_and(|v| v.iter().any(|v| v["Name"] == "sandbox-vol")),
            "{list}"
        );

        let (ok, out) = xtask(&["node", "status", "--name", &node.0]);
        assert!(ok && out.contains("zinit list"), "{out}");
        uplink = node
            .state("host_if")
            .expect("the state names the host end of the uplink");
        assert!(std::path::Path::new(&format!("/sys/class/net/{uplink}")).exists());
    }
    // Drop ran `down`.
    let traces = host_traces(&name);
    assert!(traces.is_empty(), "left behind on the host: {traces:#?}");
    assert!(
        !std::path::Path::new(&format!("/sys/class/net/{uplink}")).exists(),
        "link {uplink} left behind"
    );
}
