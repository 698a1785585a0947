//! The binary as the sandbox uses it: seed a farm (idempotent), set the version, serve with bootstrap flags.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_registrar-server");
const PHRASE: &str = "bottom drive obey lake curtain smoke basket hold race lonely fit walk";

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("REGISTRAR_DB")
        .env_remove("REGISTRAR_FARMER_MNEMONIC")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn seed_farm_twice_prints_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let db = db.to_str().unwrap();
    let (ok, out1, err) = run(&[
        "seed-farm",
        "--db",
        db,
        "--name",
        "sandboxfarm",
        "--mnemonic",
        PHRASE,
    ]);
    assert!(ok, "{err}");
    let (ok, out2, err) = run(&[
        "seed-farm",
        "--db",
        db,
        "--name",
        "sandboxfarm",
        "--mnemonic",
        PHRASE,
    ]);
    assert!(ok, "{err}");
    assert_eq!((out1.trim(), out2.trim()), ("1", "1"));
    let (ok, out3, _) = run(&["seed-farm", "--db", db, "--name", "otherfarm"]);
    assert!(ok);
    assert_eq!(out3.trim(), "2");
    let (ok, _, err) = run(&[
        "seed-farm",
        "--db",
        db,
        "--name",
        "bad-name",
        "--mnemonic",
        PHRASE,
    ]);
    assert!(!ok && err.contains("invalid farm name"), "{err}");
    let (ok, _, err) = run(&["seed-farm", "--name", "x"]);
    assert!(!ok && err.contains("--db"), "{err}");
    let (ok, _, err) = run(&["set-version", "--db", db, "--version", "v4.0.5"]);
    assert!(ok, "{err}");
}

#[test]
fn serve_with_bootstrap_flags() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(BIN)
        .args([
            "--db",
            db.to_str().unwrap(),
            "--listen",
            &addr,
            "--seed-farm",
            "sandboxfarm",
            "--zos-version",
            "v4.0.5",
        ])
        .env("REGISTRAR_FARMER_MNEMONIC", PHRASE)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Kill(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let farm = loop {
        if let Some(r) = http_get(&addr, "/api/v1/farms/1") {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "server did not come up on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(farm.starts_with("HTTP/1.1 200"), "{farm}");
    assert!(farm.contains(r#""farm_name":"sandboxfarm""#), "{farm}");
    let v = http_get(&addr, "/v1/zos/version").unwrap();
    assert!(
        v.contains("\"eyJ2ZXJzaW9uIjoidjQuMC41Iiwic2FmZV90b191cGdyYWRlIjp0cnVlfQ==\""),
        "{v}"
    );
}
