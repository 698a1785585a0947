//! The `zbus` binary driven against a real redis-server and real bus servers.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zos_api::bus::{Broker, CallError, Server, StreamSink};
use zos_api::identity::{VersionMonitor, VersionMonitorContract};
use zos_api::zui::{Zui, ZuiContract};
use zos_testkit::RedisServer;
use zos_types::Version;

#[derive(Default)]
struct Dash {
    pushed: Mutex<Vec<(String, Vec<String>)>>,
}

impl Zui for Dash {
    async fn push_errors(&self, label: String, errors: Vec<String>) -> Result<(), CallError> {
        if label.is_empty() {
            return Err(CallError::with_kind(
                "invalid_input",
                "label must not be empty",
            ));
        }
        self.pushed.lock().unwrap().push((label, errors));
        Ok(())
    }
}

struct Versions;

impl VersionMonitor for Versions {
    async fn get_version(&self) -> Result<Version, CallError> {
        Ok("4.0.5".parse().unwrap())
    }
    async fn version(&self, sink: StreamSink<Version>) {
        loop {
            sink.send(&"4.0.5".parse().unwrap()).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn zbus(redis: &RedisServer, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_zbus"))
        .arg("--broker")
        .arg(redis.url())
        .args(["--timeout", "3"])
        .args(args)
        .output()
        .expect("running zbus");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_cli_against_real_servers() {
    if !zos_testkit::require_command("redis-server") {
        return;
    }
    let redis = RedisServer::start();
    let broker = Broker::parse(&redis.url()).unwrap();
    let dash = Arc::new(Dash::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let zui = Server::new("zui", broker.clone()).register(ZuiContract::server(dash.clone()));
    let ident = Server::new("identityd", broker)
        .register(VersionMonitorContract::server(Arc::new(Versions)));
    let servers = tokio::spawn(async move {
        let (a, b) = tokio::join!(
            zui.run(std::future::pending()),
            ident.run(async {
                let _ = stop_rx.await;
            })
        );
        a.unwrap();
        b.unwrap();
    });

    // status of one module: exit 0 and its objects; of a missing module: exit 1 with the reason.
    let redis_ref = &redis;
    let (code, out, _) = tokio::task::block_in_place(|| zbus(redis_ref, &["status", "zui"]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("zui@0.0.1"), "{out}");
    let (code, out, _) =
        tokio::task::block_in_place(|| zbus(redis_ref, &["status", "zui", "--json"]));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["up"], true);
    assert_eq!(v["objects"][0], "zui@0.0.1");
    let (code, _, err) = tokio::task::block_in_place(|| zbus(redis_ref, &["status", "storage"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("no server is serving storage.zbus@1.0"),
        "{err}"
    );
    // status of all known modules: a table with zui up and storage down.
    let (code, out, _) = tokio::task::block_in_place(|| zbus(redis_ref, &["status"]));
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("zui") && l.contains("up")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("storage") && l.contains("down")),
        "{out}"
    );

    // call, typed by the contract: a bare word is a string, JSON is JSON.
    let (code, out, err) = tokio::task::block_in_place(|| {
        zbus(
            redis_ref,
            &[
                "call",
                "zui",
                "zui",
                "PushErrors",
                "disks",
                r#"["sda failed","sdb slow"]"#,
            ],
        )
    });
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "null");
    assert_eq!(
        dash.pushed.lock().unwrap().last().unwrap(),
        &(
            "disks".to_string(),
            vec!["sda failed".to_string(), "sdb slow".to_string()]
        )
    );
    // the remote error message and kind
    let (code, _, err) = tokio::task::block_in_place(|| {
        zbus(redis_ref, &["call", "zui", "zui", "PushErrors", "", "[]"])
    });
    assert_eq!(code, 1);
    assert!(
        err.contains("remote error (invalid_input): label must not be empty"),
        "{err}"
    );
    // unknown method, caught from the contract before sending
    let (code, _, err) =
        tokio::task::block_in_place(|| zbus(redis_ref, &["call", "zui", "zui", "Nope"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("has no method \"Nope\"") && err.contains("PushErrors"),
        "{err}"
    );
    // wrong arguments: the usage line
    let (code, _, err) = tokio::task::block_in_place(|| {
        zbus(
            redis_ref,
            &["call", "zui", "zui", "PushErrors", "x", "notalist"],
        )
    });
    assert_eq!(code, 1);
    assert!(
        err.contains("argument 2 (errors: Vec<String>)")
            && err.contains(
                "usage: zbus call zui zui@0.0.1 PushErrors(label: String, errors: Vec<String>)"
            ),
        "{err}"
    );
    // a typed result
    let (code, out, _) = tokio::task::block_in_place(|| {
        zbus(redis_ref, &["call", "identityd", "monitor", "GetVersion"])
    });
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "\"4.0.5\"");
    // an object the contracts do not know, called generically with an explicit version: the server says so
    let (code, _, err) =
        tokio::task::block_in_place(|| zbus(redis_ref, &["call", "zui", "other@1.0", "X"]));
    assert_eq!(code, 1);
    assert!(err.contains("no server is serving zui.other@1.0"), "{err}");
    // a timeout on a queue nobody serves
    let (code, _, err) = tokio::task::block_in_place(|| {
        zbus(redis_ref, &["call", "storage", "storage", "VolumeList"])
    });
    assert_eq!(code, 1);
    assert!(err.contains("is the storage daemon running?"), "{err}");

    // listen to a stream
    let (code, out, err) = tokio::task::block_in_place(|| {
        zbus(
            redis_ref,
            &["listen", "identityd", "monitor", "Version", "--count", "2"],
        )
    });
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["\"4.0.5\"", "\"4.0.5\""]
    );

    // list
    let (code, out, _) = tokio::task::block_in_place(|| zbus(redis_ref, &["list", "zui"]));
    assert_eq!(code, 0);
    assert!(
        out.contains("PushErrors(label: String, errors: Vec<String>)"),
        "{out}"
    );
    let (code, _, err) = tokio::task::block_in_place(|| zbus(redis_ref, &["list", "nosuchmodule"]));
    assert_eq!(code, 1);
    assert!(err.contains("no objects declared"), "{err}");

    let _ = stop_tx.send(());
    servers.abort();
}
