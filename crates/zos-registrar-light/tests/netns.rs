//! Address changes of the registered interface reach the registrar: a bridge named `zos` in a network
//! namespace this test creates, with the registrar, identityd and registrar_light all living in that namespace
//! (the test's runtime thread enters it). The schedules are an hour away and the interface poll too, so only the
//! netlink notifications can trigger the updates.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use zos_api::registrar::RegistrationPhase;
use zos_registrar_light::FarmSource;
use zos_testkit::RedisServer;

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn create() -> Netns {
        let name = zos_testkit::unique_name("zrl");
        ip(&["netns", "add", &name]);
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_address_change_of_the_interface_updates_the_registration() {
    if !zos_testkit::require_root() || !zos_testkit::require_command("ip") || !have_redis() {
        return;
    }
    let ns = Netns::create();
    let name = ns.0.clone();
    let thread = std::thread::spawn(move || {
        let file = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("entering the namespace");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(body(&name));
    });
    if let Err(panic) = thread.join() {
        drop(ns);
        std::panic::resume_unwind(panic);
    }
}

async fn body(ns: &str) {
    let n = |args: &[&str]| {
        let mut all = vec!["-n", ns];
        all.extend_from_slice(args);
        ip(&all)
    };
    n(&["link", "set", "lo", "up"]);
    n(&["link", "add", "zos", "type", "bridge"]);
    n(&["link", "set", "zos", "up"]);
    n(&["addr", "add", "10.99.0.2/24", "dev", "zos"]);
    let link: serde_json::Value = serde_json::from_str(&n(&["-j", "link", "show", "zos"])).unwrap();
    let mac = link[0]["address"].as_str().unwrap().to_string();

    let redis = RedisServer::start();
    let registrar = Registrar::start().await;
    let identity = Identity::start(&redis, [3; 32], None);
    let (_f, flags) = flags_dir();
    let mut cfg = light_config(
        &redis,
        &registrar.url(),
        FarmSource::fixed(Some(registrar.farm_id as u32)),
        &flags,
    );
    cfg.interface = "zos".into();
    let light = Light::start(cfg);
    let state = wait_registered(&redis).await;
    let node = registrar.node_of(&identity.key).unwrap();
    assert_eq!(node.interfaces.len(), 1);
    assert_eq!(node.interfaces[0].name, "zos");
    assert_eq!(node.interfaces[0].mac, mac);
    assert_eq!(node.interfaces[0].ips, vec!["10.99.0.2"]);

    let ips_become = async |want: &[&str]| {
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        wait_for(
            &format!("ips {want:?}"),
            Duration::from_secs(30),
            || async {
                registrar
                    .node_of(&identity.key)
                    .filter(|n| n.interfaces[0].ips == want)
            },
        )
        .await
    };
    n(&["addr", "add", "10.99.1.7/24", "dev", "zos"]);
    ips_become(&["10.99.0.2", "10.99.1.7"]).await;
    n(&["addr", "del", "10.99.0.2/24", "dev", "zos"]);
    ips_become(&["10.99.1.7"]).await;
    n(&["addr", "add", "2001:db8::7/64", "dev", "zos", "nodad"]);
    let node = ips_become(&["10.99.1.7", "2001:db8::7"]).await;

    // Same node all along.
    assert_eq!(node.node_id, u64::from(state.node_id));
    let now = registrar_client(&redis).state().await.unwrap();
    assert_eq!(now.phase, RegistrationPhase::Registered);
    assert_eq!(now.node_id, state.node_id);
    assert_eq!(registrar.nodes().len(), 1);
    light.stop().await.unwrap();
    identity.stop().await;
}
