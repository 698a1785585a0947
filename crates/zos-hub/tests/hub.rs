//! The hub server on loopback with the client: listings and their shapes, tags, taglinks, light info with
//! md5, downloads, `.md5`, taglink resolution, publishing with and without the token, path traversal; and the
//! flist HTTP block store against the hub's `/blocks/` route in both layouts.

use std::path::Path;

use zos_hub::{EntryType, Hub, HubClient, ServerConfig, Size};

struct Server {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    async fn start(cfg: ServerConfig) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            zos_hub::serve(&cfg, listener, async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Server {
            base,
            stop: Some(tx),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }
}

fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(data))
}

/// Lays out a hub like the real one: an autobuilder repo with versioned flists and a tag, a tf-zos repo with
/// a taglink, a user repo with a link; plus a symlink escaping the hub.
fn layout(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let hub = Hub::new(dir).unwrap();
    let zos = b"zos flist bytes".repeat(100);
    let mycelium = b"mycelium".repeat(10);
    hub.publish("tf-autobuilder", "zos:v4.0.5.flist", &zos)
        .unwrap();
    hub.publish("tf-autobuilder", "mycelium-v0.5.fl", &mycelium)
        .unwrap();
    hub.tag_add(
        "tf-autobuilder",
        "v4.0.5",
        "zos.flist",
        "tf-autobuilder/zos:v4.0.5.flist",
    )
    .unwrap();
    hub.tag_add(
        "tf-autobuilder",
        "v4.0.5",
        "mycelium.fl",
        "tf-autobuilder/mycelium-v0.5.fl",
    )
    .unwrap();
    hub.taglink_set("tf-zos", "production-v4", "tf-autobuilder/tags/v4.0.5")
        .unwrap();
    hub.symlink_set("user", "latest", "tf-autobuilder/zos:v4.0.5.flist")
        .unwrap();
    hub.symlink_set("user", "same-repo-link", "latest").unwrap(); // same-repo link to a link
    // a hostile link pointing outside the hub
    std::fs::write(dir.join("../outside.flist"), b"secret").unwrap();
    std::os::unix::fs::symlink("../../outside.flist", dir.join("user/escape.flist")).unwrap();
    (zos, mycelium)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_api_and_client() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("public");
    let (zos, mycelium) = layout(&dir);
    let srv = Server::start(ServerConfig {
        dir: dir.clone(),
        blocks: None,
        publish_token: None,
    })
    .await;
    let c = HubClient::new(&srv.base).unwrap();

    let repos: Vec<String> = c
        .repositories()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(repos, ["tf-autobuilder", "tf-zos", "user"]);

    let entries = c.list("tf-autobuilder").await.unwrap();
    let names: Vec<_> = entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    assert_eq!(
        names,
        [
            ("mycelium-v0.5.fl", EntryType::Regular),
            ("v4.0.5", EntryType::Tag),
            ("zos:v4.0.5.flist", EntryType::Regular)
        ]
    );
    let z = entries
        .iter()
        .find(|e| e.name == "zos:v4.0.5.flist")
        .unwrap();
    assert_eq!(
        z.size,
        Size::Text(format!("{:.2} KB", zos.len() as f64 / 1024.0)),
        "listing sizes are strings"
    );
    assert_eq!(z.md5, None, "listings carry no md5");

    let tz = c.list("tf-zos").await.unwrap();
    assert_eq!(tz.len(), 1);
    assert_eq!(tz[0].kind, EntryType::Taglink);
    assert_eq!(tz[0].target.as_deref(), Some("tf-autobuilder/tags/v4.0.5"));
    assert_eq!(
        c.taglink("tf-zos", "production-v4").await.unwrap(),
        "tf-autobuilder/tags/v4.0.5"
    );

    let tag = c.tag("tf-autobuilder", "v4.0.5").await.unwrap();
    assert_eq!(tag.len(), 2);
    assert!(tag.iter().all(|e| e.kind == EntryType::Symlink));
    let pkgs = c.resolve_taglink("tf-zos", "production-v4").await.unwrap();
    let pk: Vec<_> = pkgs
        .iter()
        .map(|p| (p.name.as_str(), p.repo.as_str(), p.file.as_str()))
        .collect();
    assert_eq!(
        pk,
        [
            ("mycelium.fl", "tf-autobuilder", "mycelium-v0.5.fl"),
            ("zos.flist", "tf-autobuilder", "zos:v4.0.5.flist")
        ]
    );

    let light = c.light("tf-autobuilder", "zos:v4.0.5").await.unwrap(); // .flist appended
    assert_eq!(
        light.size,
        Size::Bytes(zos.len() as u64),
        "light sizes are integers"
    );
    assert_eq!(light.md5.as_deref(), Some(md5_hex(&zos).as_str()));
    let link = c.light("user", "latest.flist").await.unwrap();
    assert_eq!(link.kind, EntryType::Symlink);
    assert_eq!(
        link.target.as_deref(),
        Some("../tf-autobuilder/zos:v4.0.5.flist"),
        "raw target in light info"
    );
    assert_eq!(link.md5, light.md5);

    // downloads, with and through links and tags, and the md5 file
    let dl = t.path().join("dl.fl");
    let md5 = c
        .download("tf-autobuilder", "mycelium-v0.5.fl", &dl)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dl).unwrap(), mycelium);
    assert_eq!(md5, md5_hex(&mycelium));
    let via_link = reqwest::get(format!("{}/user/latest.flist", srv.base))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(via_link.as_ref(), zos.as_slice());
    let via_tag = reqwest::get(format!("{}/tf-autobuilder/tags/v4.0.5/zos.flist", srv.base))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(via_tag.as_ref(), zos.as_slice());
    assert_eq!(
        c.flist_hash(&c.flist_url("user", "latest.flist"))
            .await
            .unwrap(),
        md5_hex(&zos)
    );
    // a wrong expected md5 is refused and leaves no file
    let bad = t.path().join("bad.fl");
    let e = c
        .download_url(
            &c.flist_url("user", "latest.flist"),
            &bad,
            Some(&"0".repeat(32)),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("md5 mismatch"), "{e}");
    assert!(!bad.exists());

    // raw shapes: newline-terminated JSON, CORS, error bodies
    let r = reqwest::get(format!("{}/api/flist", srv.base))
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let body = r.text().await.unwrap();
    assert!(body.ends_with("]\n"), "{body:?}");
    let all: Vec<String> = serde_json::from_str(&body).unwrap();
    assert!(all.contains(&"tf-zos/production-v4".to_string()), "{all:?}");
    let light_raw: serde_json::Value = reqwest::get(format!(
        "{}/api/flist/tf-autobuilder/zos:v4.0.5.flist/light",
        srv.base
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(light_raw["size"].is_u64());
    let list_raw: serde_json::Value =
        reqwest::get(format!("{}/api/flist/tf-autobuilder", srv.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert!(list_raw[0]["size"].is_string());
    let r = reqwest::get(format!("{}/api/flist/nobody/x.flist/light", srv.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v,
        serde_json::json!({"status": "error", "message": "user not found"})
    );
    let r = reqwest::get(format!("{}/api/flist/user/none.flist/light", srv.base))
        .await
        .unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["message"],
        "source not found"
    );
    assert_eq!(
        reqwest::get(format!("{}/api/flist/nobody", srv.base))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        reqwest::get(format!("{}/api/flist/user/tags/none", srv.base))
            .await
            .unwrap()
            .status(),
        404
    );
    let info = reqwest::Client::new()
        .request(
            reqwest::Method::from_bytes(b"INFO").unwrap(),
            format!("{}/api/flist/user/latest.flist", srv.base),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        info.json::<serde_json::Value>().await.unwrap()["md5"],
        md5_hex(&zos)
    );

    // hostile paths never leave the hub
    for p in [
        "/user/escape.flist",
        "/user/..%2F..%2Foutside.flist",
        "/..%2Foutside.flist/x",
        "/api/flist/user/escape.flist/light",
        "/api/flist/..%2F..%2Fetc/passwd/light",
    ] {
        let r = reqwest::get(format!("{}{p}", srv.base)).await.unwrap();
        assert!(
            r.status() == 404 || r.status() == 400,
            "{p}: {}",
            r.status()
        );
        assert!(!r.text().await.unwrap().contains("secret"), "{p}");
    }
    let user = c.list("user").await.unwrap();
    assert!(
        !user.iter().any(|e| e.name == "escape.flist"),
        "escaping links are not listed"
    );
    let same = user
        .iter()
        .find(|e| e.name == "same-repo-link.flist")
        .unwrap();
    assert_eq!(same.target.as_deref(), Some("latest.flist"));

    // publishing is disabled without a token
    let e = c
        .publish("user", "x.fl", b"data".to_vec(), "any")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("403"), "{e}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_api_with_token() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("public");
    let srv = Server::start(ServerConfig {
        dir: dir.clone(),
        blocks: None,
        publish_token: Some("s3cret".into()),
    })
    .await;
    let c = HubClient::new(&srv.base).unwrap();
    let e = c
        .publish("repo", "x.fl", b"data".to_vec(), "wrong")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("401"), "{e}");
    let info = c
        .publish("repo", "x.fl", b"data".to_vec(), "s3cret")
        .await
        .unwrap();
    assert_eq!(info.md5.as_deref(), Some(md5_hex(b"data").as_str()));
    assert_eq!(std::fs::read(dir.join("repo/x.fl")).unwrap(), b"data");
    // republish replaces atomically
    c.publish("repo", "x.fl", b"data2".to_vec(), "s3cret")
        .await
        .unwrap();
    assert_eq!(
        c.light("repo", "x.fl").await.unwrap().md5.as_deref(),
        Some(md5_hex(b"data2").as_str())
    );
    c.tag_add("repo", "v1", "x.fl", "repo/x.fl", "s3cret")
        .await
        .unwrap();
    c.taglink_set("links", "prod", "repo/tags/v1", "s3cret")
        .await
        .unwrap();
    let pk = c.resolve_taglink("links", "prod").await.unwrap();
    assert_eq!(pk.len(), 1);
    assert_eq!(pk[0].file, "x.fl");
    // bad names and targets are refused with a reason
    for (repo, name) in [("..", "x.fl"), ("repo", ".hidden.fl"), ("api", "x.fl")] {
        let e = c
            .publish(repo, name, b"d".to_vec(), "s3cret")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("hub answered 40"), "{repo}/{name}: {e}");
    }
    assert!(!t.path().join("x.fl").exists() && !dir.join("x.fl").exists());
    let e = c
        .tag_add("repo", "v1", "y.fl", "../../etc/passwd", "s3cret")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("400"), "{e}");
    let e = c
        .taglink_set("links", "p2", "repo/tags/nope", "s3cret")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("404"), "{e}");
    srv.stop().await;
}

/// The flist HTTP store against the hub's `/blocks/` route: pack into a dir store, serve it, read every block
/// over HTTP from both layouts, and unpack the tree through the hub.
#[test]
fn http_store_against_the_hub() {
    let t = tempfile::tempdir().unwrap();
    let (src, fl, st, dst) = (
        t.path().join("src"),
        t.path().join("x.fl"),
        t.path().join("store"),
        t.path().join("dst"),
    );
    std::fs::create_dir_all(src.join("d")).unwrap();
    let big: Vec<u8> = (0..(3 * zos_flist::BLOCK_SIZE + 99))
        .map(|i| (i * 31 % 253) as u8)
        .collect();
    std::fs::write(src.join("d/big"), &big).unwrap();
    std::fs::write(src.join("small"), b"small file").unwrap();
    std::os::unix::fs::symlink("d/big", src.join("link")).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let routes = vec![(0u8, 255u8, format!("dir://{}", st.display()))];
    zos_flist::pack::pack(
        &src,
        &fl,
        &routes,
        &zos_flist::PackOptions::default(),
        rt.handle(),
        &mut |_| {},
    )
    .unwrap();
    let flist = zos_flist::Flist::open(&fl).unwrap();

    // move one block to the flat layout (older rfs stores)
    let zos_flist::BlockRef::Fl { id, .. } = flist.resolve("small").unwrap().blocks[0].clone()
    else {
        unreachable!()
    };
    let h = hex::encode(id);
    std::fs::rename(st.join(&h[..2]).join(&h), st.join(&h)).unwrap();

    let srv = rt.block_on(Server::start(ServerConfig {
        dir: t.path().join("public"),
        blocks: Some(st.clone()),
        publish_token: None,
    }));
    let url = format!("{}/blocks", srv.base);
    let store = zos_flist::store::open(&url).unwrap();
    // raw gets, both layouts, plus a missing block and a bad id
    let flat = rt.block_on(store.get(&id)).unwrap();
    assert_eq!(flat, std::fs::read(st.join(&h)).unwrap());
    let e = rt.block_on(store.get(&[0u8; 32])).unwrap_err().to_string();
    assert!(e.contains("not found"), "{e}");
    let bad = rt
        .block_on(reqwest::get(format!("{url}/zz/not-hex")))
        .unwrap();
    assert_eq!(bad.status(), 404);
    assert!(
        rt.block_on(store.set(&id, b"x")).is_err(),
        "the HTTP store is read-only"
    );

    // unpack through the hub
    let cache =
        zos_flist::BlockCache::new(t.path().join("cache"), store, rt.handle().clone()).unwrap();
    zos_flist::pack::unpack(&flist, &cache, &dst, &zos_flist::UnpackOptions::default()).unwrap();
    assert!(std::fs::read(dst.join("d/big")).unwrap() == big);
    assert_eq!(std::fs::read(dst.join("small")).unwrap(), b"small file");
    assert_eq!(
        std::fs::read_link(dst.join("link")).unwrap(),
        Path::new("d/big")
    );
    assert_eq!(cache.stats().fetches, 5);
    rt.block_on(srv.stop());
}
