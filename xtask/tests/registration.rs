//! End to end, in the sandbox node: the node registers on the host-side registrar by itself, even when the
//! registrar is away at boot; its ids are readable over the bus; it keeps its identity across a restart of
//! identityd and a reboot of the whole node without registering twice; and it re-registers when its address
//! changes.

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

fn xtask(args: &[&str]) -> (bool, String) {
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

/// Removes the node even when an assertion fails.
struct Node(String);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = xtask(&["node", "down", "--name", &self.0]);
    }
}

impl Node {
    fn exec(&self, argv: &[&str]) -> (bool, String) {
        let mut args = vec!["node", "exec", "--name", &self.0, "--"];
        args.extend_from_slice(argv);
        xtask(&args)
    }

    /// A bus call inside the node, its JSON result.
    fn call(&self, argv: &[&str]) -> Result<serde_json::Value, String> {
        let mut args = vec!["zbus", "--timeout", "5", "call"];
        args.extend_from_slice(argv);
        let (ok, out) = self.exec(&args);
        if !ok {
            return Err(out);
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

    fn subnet(&self) -> String {
        std::fs::read_to_string(format!("/var/lib/zos-sandbox/{}/state", self.0))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("subnet=").map(str::to_string))
            .expect("state has the subnet")
    }

    /// GET from the host-side registrar.
    fn registrar_get(&self, path: &str) -> serde_json::Value {
        let addr = format!("10.232.{}.1:8080", self.subnet());
        let mut s = std::net::TcpStream::connect(&addr).expect("registrar reachable from the host");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET /api/v1{path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        serde_json::from_str(body).unwrap_or_else(|e| panic!("registrar {path}: {e}: {text}"))
    }
}

fn eventually<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
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

#[test]
fn node_registers_by_itself_and_keeps_its_identity() {
    if !zos_testkit::require_root() {
        return;
    }
    for cmd in [
        "unshare",
        "nsenter",
        "losetup",
        "ip",
        "redis-server",
        "btrfs",
    ] {
        if !zos_testkit::require_command(cmd) {
            return;
        }
    }
    let node = Node(zos_testkit::unique_name("r"));

    // The registrar is away when the node boots: the node comes up, and says registration is in progress.
    let (ok, out) = xtask(&["node", "up", "--name", &node.0, "--no-registrar"]);
    assert!(ok, "node up failed:\n{out}");
    let state = node
        .call(&["registrar", "registrar", "State"])
        .expect("registrar_light answers");
    assert_eq!(state["State"], "in-progress", "{state}");
    assert!(
        !state["Reason"].as_str().unwrap_or("").is_empty(),
        "the reason is given: {state}"
    );
    let err = node
        .call(&["registrar", "registrar", "NodeID"])
        .unwrap_err();
    assert!(err.contains("in progress"), "{err}");

    // The registrar comes back: the node registers without help.
    let (ok, out) = xtask(&["node", "registrar", "start", "--name", &node.0]);
    assert!(ok, "{out}");
    let node_id = eventually("registration", Duration::from_secs(180), || {
        node.call(&["registrar", "registrar", "NodeID"])
            .map(|v| v.as_u64().unwrap_or(0))
            .and_then(|id| {
                if id > 0 {
                    Ok(id)
                } else {
                    Err(format!("node id {id}"))
                }
            })
    });
    let twin_id = node
        .call(&["registrar", "registrar", "TwinID"])
        .unwrap()
        .as_u64()
        .unwrap();
    let identity = node.call(&["identityd", "manager", "NodeID"]).unwrap();

    // The registrar's record is this node's: its twin, its farm, its address on the zos bridge.
    let record = node.registrar_get(&format!("/nodes/{node_id}"));
    assert_eq!(record["twin_id"], twin_id, "{record}");
    assert_eq!(record["farm_id"], 1, "{record}");
    let node_ip = format!("10.232.{}.2", node.subnet());
    assert!(
        record.to_string().contains(&node_ip),
        "the record lists the node's address {node_ip}: {record}"
    );
    let account = node.registrar_get(&format!("/accounts?twin_id={twin_id}"));
    let pk = node.call(&["identityd", "manager", "PublicKey"]).unwrap();
    assert_eq!(account["public_key"], pk, "the account is the node key's");

    // identityd restarts: same identity, same registration.
    let (ok, out) = node.exec(&["zinit", "restart", "identityd"]);
    assert!(ok, "{out}");
    let again = eventually("identityd back", Duration::from_secs(60), || {
        node.call(&["identityd", "manager", "NodeID"])
    });
    assert_eq!(again, identity);

    // The whole node reboots: same identity, same node id, and still one node on the farm.
    let (ok, out) = xtask(&["node", "reboot", "--name", &node.0]);
    assert!(ok, "reboot failed:\n{out}");
    assert_eq!(
        node.call(&["identityd", "manager", "NodeID"]).unwrap(),
        identity
    );
    let after = eventually(
        "registration after reboot",
        Duration::from_secs(180),
        || {
            node.call(&["registrar", "registrar", "NodeID"])
                .map(|v| v.as_u64().unwrap_or(0))
        },
    );
    assert_eq!(after, node_id, "the rebooted node kept its node id");
    let nodes = node.registrar_get("/nodes?farm_id=1");
    assert_eq!(
        nodes.as_array().map(Vec::len),
        Some(1),
        "no duplicate registration: {nodes}"
    );

    // Its address changes: it updates its record.
    let new_ip = format!("10.232.{}.7", node.subnet());
    let (ok, out) = node.exec(&["ip", "addr", "add", &format!("{new_ip}/24"), "dev", "zos"]);
    assert!(ok, "{out}");
    eventually(
        "re-registration with the new address",
        Duration::from_secs(120),
        || {
            let record = node.registrar_get(&format!("/nodes/{node_id}"));
            if record.to_string().contains(&new_ip) {
                Ok(())
            } else {
                Err(record.to_string())
            }
        },
    );
}
