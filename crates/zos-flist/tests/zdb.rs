//! The zdb store against a real redis-server (standing in for a 0-db): unix socket and TCP with a namespace
//! (`SELECT`), get/set of raw ids, pack into it and unpack from it.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zos_flist::store::{Store, StoreError, ZdbStore};
use zos_flist::{BlockCache, Flist, PackOptions, UnpackOptions};
use zos_testkit::RedisServer;

struct TcpRedis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TcpRedis {
    fn start() -> TcpRedis {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(zos_testkit::which("redis-server").unwrap())
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(10));
        }
        TcpRedis {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for TcpRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn get_set_over_unix_socket() {
    if !zos_testkit::require_command("redis-server") {
        return;
    }
    let redis = RedisServer::start();
    let store = ZdbStore::from_url(&format!("zdb://{}", redis.socket().display())).unwrap();
    let id = [7u8; 32];
    assert!(matches!(
        store.get(&id).await,
        Err(StoreError::NotFound { .. })
    ));
    store.set(&id, b"payload").await.unwrap();
    assert_eq!(store.get(&id).await.unwrap(), b"payload");
    // SET only when absent: a second set does not overwrite
    store.set(&id, b"other").await.unwrap();
    assert_eq!(store.get(&id).await.unwrap(), b"payload");
    // the key is the raw 32 bytes
    assert_eq!(redis.cli(&["DBSIZE"]), "1");
    assert_eq!(redis.cli(&["STRLEN", "\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07"]), "7");
}

#[test]
fn pack_into_zdb_namespace_and_unpack() {
    if !zos_testkit::require_command("redis-server") {
        return;
    }
    let redis = TcpRedis::start();
    let t = tempfile::tempdir().unwrap();
    let (src, fl, dst) = (
        t.path().join("src"),
        t.path().join("x.fl"),
        t.path().join("dst"),
    );
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("a"),
        common::noise(1, 3 * zos_flist::BLOCK_SIZE + 5),
    )
    .unwrap();
    std::fs::write(src.join("b"), b"small").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // namespace "3" (redis accepts SELECT 3; it has no namespace passwords, 0-db takes `SELECT ns password`)
    let url = format!("zdb://user@127.0.0.1:{}/3", redis.port);
    let routes = vec![(0u8, 255u8, url)];
    zos_flist::pack::pack(
        &src,
        &fl,
        &routes,
        &PackOptions::default(),
        rt.handle(),
        &mut |_| {},
    )
    .unwrap();
    let flist = Flist::open(&fl).unwrap();
    assert_eq!(
        flist.routes()[0].url,
        format!("zdb://user@127.0.0.1:{}/3", redis.port)
    );
    // the blocks are in db 3, not db 0
    let cli = |db: &str| {
        let out = Command::new(zos_testkit::which("redis-cli").unwrap())
            .args(["-p", &redis.port.to_string(), "-n", db, "DBSIZE"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli("3"), "5");
    assert_eq!(cli("0"), "0");
    let store = zos_flist::open_store(&flist, &[]).unwrap();
    let cache = BlockCache::new(t.path().join("cache"), store, rt.handle().clone()).unwrap();
    zos_flist::pack::unpack(&flist, &cache, &dst, &UnpackOptions::default()).unwrap();
    assert!(std::fs::read(dst.join("a")).unwrap() == std::fs::read(src.join("a")).unwrap());
    assert_eq!(std::fs::read(dst.join("b")).unwrap(), b"small");
}

#[tokio::test]
async fn unreachable_zdb_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = ZdbStore::from_url(&format!("zdb://127.0.0.1:{port}/ns")).unwrap();
    let e = store.get(&[1u8; 32]).await.unwrap_err().to_string();
    assert!(
        e.contains(&format!("127.0.0.1:{port}")) && e.contains("connecting"),
        "{e}"
    );
}
