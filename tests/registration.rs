//! End to end, in the sandbox node: the node registers on the host-side registrar by itself, even when the
//! registrar is away at boot; its ids are readable over the bus; it keeps its identity across a restart of
//! identityd and a reboot of the whole node without registering twice; and it re-registers when its address
//! changes.

use std::time::Duration;

mod common;
use common::{Node, eventually, xtask};

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
    let (ok, out) = node.up(&["--no-registrar"]);
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
