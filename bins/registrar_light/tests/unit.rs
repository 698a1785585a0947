//! `zinit/registrar_light.yaml`: a valid unit that starts after `boot` and `identityd`, and whose readiness
//! test (`zbus status registrar`) passes as soon as the daemon serves the bus, before any registration (the
//! registrar and identityd are not even running here).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zos_testkit::RedisServer;
use zos_zinit_client::Unit;

const BIN: &str = env!("CARGO_BIN_EXE_registrar_light");

fn unit() -> Unit {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../zinit/registrar_light.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        Unit::unknown_keys(&text).is_empty(),
        "{:?}",
        Unit::unknown_keys(&text)
    );
    let unit = Unit::from_yaml(&text).unwrap();
    unit.validate().unwrap();
    unit
}

#[test]
fn the_unit_runs_the_daemon_after_boot_and_identityd() {
    let unit = unit();
    assert_eq!(unit.argv().unwrap(), vec!["registrar_light"]);
    assert_eq!(unit.after, vec!["boot", "identityd"]);
    assert!(!unit.oneshot);
    assert_eq!(
        unit.test_argv().unwrap().unwrap(),
        vec!["zbus", "status", "registrar"]
    );
}

#[test]
fn the_readiness_test_passes_once_the_bus_answers() {
    if !zos_testkit::require_command("redis-server") {
        return;
    }
    // The zbus CLI built next to this binary (cargo builds every workspace binary before running tests).
    let zbus: PathBuf = Path::new(BIN).parent().unwrap().join("zbus");
    if !zos_testkit::prerequisite(
        zbus.exists(),
        "the zbus binary next to registrar_light (cargo build -p zbus-cli)",
    ) {
        return;
    }
    let test = unit().test_argv().unwrap().unwrap();
    let redis = RedisServer::start();
    let ready = || {
        Command::new(&zbus)
            .args(&test[1..])
            .env("ZBUS_BROKER", redis.url())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(!ready(), "nothing serves the module yet");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        format!(
            "[bus]\nbroker = {:?}\n[registrar]\nurl = \"http://127.0.0.1:1\"\ngeoip_urls = []\n",
            redis.url()
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("cmdline"), "farmer_id=1 runmode=dev\n").unwrap();
    let mut child = Command::new(BIN)
        .arg("--flags-dir")
        .arg(dir.path().join("flags"))
        .env("ZOS_CONFIG", dir.path().join("config.toml"))
        .env("ZOS_CMDLINE", dir.path().join("cmdline"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut passed = false;
    while Instant::now() < deadline {
        if ready() {
            passed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(passed, "`zbus status registrar` never passed within 30s");
}
