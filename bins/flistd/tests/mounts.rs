//! flistd in-process over the real bus, against a real storaged on a btrfs loop device and a real hub on
//! loopback: overlay mounts on storaged volumes, read-only mounts, shared read-only FUSE mounts, bad input,
//! a dead FUSE server replaced, and unmounts that leave nothing behind.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::Duration;

use common::{MIB, World, assert_same_as_source, eventually, fs, gone};
use zos_api::flist::MountOptions;

fn rw(limit: u64) -> MountOptions {
    MountOptions {
        read_only: false,
        limit,
        ..Default::default()
    }
}

fn ro() -> MountOptions {
    MountOptions {
        read_only: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlay_on_a_storaged_volume_shared_read_only_mount_and_clean_unmount() {
    if !common::prerequisites() {
        return;
    }
    let mut w = World::new().await;
    let opts = w.options();
    w.serve(opts).await;
    let flist = w.flist();
    let storage = w.storage();
    let url = w.url("test/tree.fl");
    let hash = w.md5();

    // The hub's hash, and a writable mount of 64 MiB.
    assert_eq!(flist.flist_hash(url.clone()).await.unwrap(), hash);
    let path = flist
        .mount("web".into(), url.clone(), rw(64 * MIB))
        .await
        .unwrap();
    assert_eq!(Path::new(&path), w.mountpoint("web"));
    assert!(flist.exists("web".into()).await.unwrap());
    assert_eq!(flist.hash_from_root_path("web".into()).await.unwrap(), hash);
    assert!(w.root.join("flist").join(&hash).is_file());

    // Its layers: the flist's read-only FUSE mount, an overlay whose upper dir is on the storaged volume
    // named after the mount, of the size asked for.
    let vol = storage.volume_lookup("web".into()).await.unwrap();
    assert_eq!(vol.usage.size, 64 * MIB);
    let vol_path = Path::new(&vol.path).to_path_buf();
    assert!(vol_path.starts_with(w.env.mount_root()), "{vol_path:?}");
    let ro_mount = w.mount_at(&w.ro(&hash)).expect("the read-only mount");
    assert_eq!(ro_mount.fstype, "fuse");
    let overlay = w.mount_at(Path::new(&path)).expect("the overlay");
    assert_eq!(overlay.fstype, "overlay");
    assert!(
        overlay
            .super_options
            .contains(&format!("lowerdir={}", w.ro(&hash).display())),
        "{overlay:?}"
    );
    assert!(
        overlay
            .super_options
            .contains(&format!("upperdir={}/rw", vol_path.display())),
        "{overlay:?}"
    );

    // The merged view reads back identical to the source tree (content, modes, owners, links).
    assert_same_as_source(&w.src, Path::new(&path), false).await;

    // Writes land in the volume's upper dir; the lower layer and the source stay as they were.
    let merged = Path::new(&path).to_path_buf();
    fs({
        let merged = merged.clone();
        move || {
            std::fs::write(merged.join("new-file"), b"fresh").unwrap();
            std::fs::write(merged.join("hello.txt"), b"changed\n").unwrap();
            std::fs::remove_file(merged.join("empty")).unwrap();
            std::fs::create_dir(merged.join("data/newdir")).unwrap();
        }
    })
    .await;
    let upper = vol_path.join("rw");
    assert_eq!(std::fs::read(upper.join("new-file")).unwrap(), b"fresh");
    assert_eq!(
        std::fs::read(upper.join("hello.txt")).unwrap(),
        b"changed\n"
    );
    let whiteout = std::fs::symlink_metadata(upper.join("empty")).unwrap();
    assert!(
        whiteout.file_type().is_char_device() && whiteout.rdev() == 0,
        "a deletion is a whiteout in the upper dir"
    );
    assert!(upper.join("data/newdir").is_dir());
    let lower = w.ro(&hash);
    assert_eq!(
        fs({
            let lower = lower.clone();
            move || std::fs::read(lower.join("hello.txt")).unwrap()
        })
        .await,
        b"hello world\n"
    );
    assert!(lower.join("empty").exists());
    assert!(!lower.join("new-file").exists());
    assert_eq!(
        std::fs::read(w.src.join("hello.txt")).unwrap(),
        b"hello world\n"
    );
    assert_eq!(
        std::fs::read(merged.join("hello.txt")).unwrap(),
        b"changed\n"
    );
    assert!(!merged.join("empty").exists());

    // Mounting the same name again with the same flist gives the same path; with another flist is refused.
    assert_eq!(
        flist
            .mount("web".into(), url.clone(), rw(64 * MIB))
            .await
            .unwrap(),
        path
    );
    let other = w.publish("other.fl", &std::fs::read(&w.published).unwrap());
    let err = flist
        .mount("web".into(), other.clone(), rw(64 * MIB))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some("conflict"), "{err}");
    let err = flist
        .mount("web".into(), url.clone(), ro())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some("conflict"), "{err}");

    // A second mount of the same flist shares the read-only FUSE mount (one server for the flist).
    let pid = w.server_pid(&hash).expect("the FUSE server");
    let path2 = flist.mount("web2".into(), url.clone(), ro()).await.unwrap();
    assert_eq!(w.server_pid(&hash), Some(pid));
    let fuse_mounts = w
        .mounts()
        .into_iter()
        .filter(|m| m.source == format!("flistd:{pid}"))
        .count();
    assert_eq!(fuse_mounts, 2, "ro/<hash> and its bind on mountpoint/web2");
    assert_eq!(
        std::fs::read(Path::new(&path2).join("hello.txt")).unwrap(),
        b"hello world\n",
        "the other mount does not see the first one's writes"
    );

    // Resizing the writable layer resizes the volume.
    assert_eq!(
        flist
            .update_mount_size("web".into(), 96 * MIB)
            .await
            .unwrap(),
        path
    );
    assert_eq!(
        storage
            .volume_lookup("web".into())
            .await
            .unwrap()
            .usage
            .size,
        96 * MIB
    );

    // Unmounting one mount keeps the shared read-only mount for the other.
    flist.unmount("web".into()).await.unwrap();
    assert!(!flist.exists("web".into()).await.unwrap());
    assert!(!storage.volume_exists("web".into()).await.unwrap());
    assert!(!w.mountpoint("web").exists());
    assert!(w.mount_at(&w.ro(&hash)).is_some());
    assert_eq!(
        std::fs::read(Path::new(&path2).join("hello.txt")).unwrap(),
        b"hello world\n"
    );
    let err = flist.unmount("web".into()).await.unwrap_err();
    assert_eq!(err.kind(), Some("not_found"), "{err}");

    // Unmounting the last one leaves nothing: no mounts, no directories, no records, no FUSE server.
    flist.unmount("web2".into()).await.unwrap();
    assert!(w.mounts().is_empty(), "{:?}", w.mounts());
    assert!(!w.ro(&hash).exists());
    assert!(!w.mountpoint("web2").exists());
    assert_eq!(std::fs::read_dir(w.root.join("state")).unwrap().count(), 0);
    assert!(
        eventually(Duration::from_secs(20), || gone(pid)).await,
        "the FUSE server exits once its mount is gone"
    );
    assert!(storage.volume_list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_only_mounts_refuse_writes_and_take_no_volume() {
    if !common::prerequisites() {
        return;
    }
    let mut w = World::new().await;
    // No fallback store: the flist's own route is dead, so the mount's store override is what reads.
    let mut opts = w.options();
    opts.fallback_stores.clear();
    w.serve(opts).await;
    let flist = w.flist();
    let storage = w.storage();
    let url = w.url("test/tree.fl");
    let options = MountOptions {
        read_only: true,
        storage: w.hub_blocks(),
        ..Default::default()
    };
    let path = flist
        .mount("app".into(), url.clone(), options)
        .await
        .unwrap();
    let bind = w.mount_at(Path::new(&path)).unwrap();
    assert_eq!(bind.fstype, "fuse", "a bind of the read-only mount");
    assert_same_as_source(&w.src, Path::new(&path), true).await;
    let p = Path::new(&path).to_path_buf();
    let (create, modify) = fs(move || {
        (
            std::fs::write(p.join("new"), b"x").unwrap_err(),
            std::fs::OpenOptions::new()
                .write(true)
                .open(p.join("hello.txt"))
                .unwrap_err(),
        )
    })
    .await;
    assert_eq!(create.raw_os_error(), Some(libc::EROFS), "{create}");
    assert_eq!(modify.raw_os_error(), Some(libc::EROFS), "{modify}");
    assert!(!storage.volume_exists("app".into()).await.unwrap());
    let err = flist
        .update_mount_size("app".into(), 64 * MIB)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some("invalid_input"), "{err}");
    assert!(err.to_string().contains("read-only"), "{err}");

    flist.unmount("app".into()).await.unwrap();
    assert!(w.mounts().is_empty(), "{:?}", w.mounts());

    // Without the override (and no fallbacks) nothing can fetch the blocks: the flist's own route is
    // really dead, the override is what served them. The metadata is local, so the mount itself works.
    // (The blocks read so far are cached: empty the cache first.)
    std::fs::remove_dir_all(w.root.join("cache")).unwrap();
    std::fs::create_dir(w.root.join("cache")).unwrap();
    let path = flist
        .mount("plain".into(), url.clone(), ro())
        .await
        .unwrap();
    assert!(Path::new(&path).join("data/big").is_file());
    let p = Path::new(&path).join("data/big");
    let err = fs(move || std::fs::read(p).unwrap_err()).await;
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    flist.unmount("plain".into()).await.unwrap();
    assert!(w.mounts().is_empty(), "{:?}", w.mounts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_refused_clearly_and_changes_nothing() {
    if !common::prerequisites() {
        return;
    }
    let mut w = World::new().await;
    let opts = w.options();
    w.serve(opts).await;
    let flist = w.flist();
    let storage = w.storage();
    let url = w.url("test/tree.fl");
    let path = flist
        .mount("keep".into(), url.clone(), rw(32 * MIB))
        .await
        .unwrap();
    std::fs::write(Path::new(&path).join("mine"), b"precious").unwrap();
    let state_before = std::fs::read_dir(w.root.join("state")).unwrap().count();
    let flists_before = std::fs::read_dir(w.root.join("flist")).unwrap().count();
    let volumes_before = storage.volume_list().await.unwrap().len();

    // Names that escape the mount directory or cannot name a volume.
    for bad in [
        "",
        "..",
        "../keep",
        "a/b",
        ".hidden",
        "a b",
        "a,b",
        &"x".repeat(129),
    ] {
        let err = flist
            .mount(bad.into(), url.clone(), rw(0))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), Some("invalid_input"), "{bad:?}: {err}");
        assert!(err.to_string().contains("invalid mount name"), "{err}");
        for err in [
            flist.unmount(bad.into()).await.unwrap_err(),
            flist.exists(bad.into()).await.unwrap_err(),
            flist.hash_from_root_path(bad.into()).await.unwrap_err(),
        ] {
            assert_eq!(err.kind(), Some("invalid_input"), "{bad:?}: {err}");
        }
    }
    // URLs: not http, not a .fl, a legacy .flist.
    for (bad, why) in [
        ("ftp://hub/test/tree.fl", "scheme"),
        ("tree.fl", "relative URL"),
        (&w.url("test/tree.tar.gz"), "ending in .fl"),
        (&w.url("test/tree.flist"), "legacy .flist"),
    ] {
        let err = flist
            .mount("n".into(), bad.to_string(), rw(0))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), Some("invalid_input"), "{bad}: {err}");
        assert!(err.to_string().contains(why), "{bad}: {err}");
    }
    // Options.
    let err = flist
        .mount(
            "n".into(),
            url.clone(),
            MountOptions {
                persisted_volume: "/no/such/dir".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some("invalid_input"), "{err}");
    assert!(err.to_string().contains("PersistedVolume"), "{err}");
    // A flist the hub does not have.
    let err = flist
        .mount("n".into(), w.url("test/missing.fl"), rw(0))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some("not_found"), "{err}");
    let err = flist
        .flist_hash(w.url("test/missing.fl"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some("not_found"), "{err}");
    // Something that is not a flist.
    let junk = w.publish("junk.fl", b"this is not an sqlite file at all, just text");
    let err = flist.mount("n".into(), junk, rw(0)).await.unwrap_err();
    assert_eq!(err.kind(), Some("invalid_input"), "{err}");
    assert!(err.to_string().contains("not a valid flist"), "{err}");

    // A download that does not match the md5 the hub publishes. The hub caches md5s by size and mtime:
    // ask for it, then change one byte of the file keeping both.
    // (Not the test flist itself: flistd would use its verified copy and download nothing.)
    let mut other = std::fs::read(&w.published).unwrap();
    other.extend_from_slice(b"trailing bytes");
    let tampered_url = w.publish("tampered.fl", &other);
    let published_md5 = flist.flist_hash(tampered_url.clone()).await.unwrap();
    let file = w.hub_public.join("test/tampered.fl");
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(
        flist.flist_hash(tampered_url.clone()).await.unwrap(),
        published_md5,
        "the hub still publishes the old md5"
    );
    let err = flist
        .mount("n".into(), tampered_url, rw(0))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some("invalid_input"), "{err}");
    assert!(err.to_string().contains("md5 mismatch"), "{err}");
    assert!(err.to_string().contains(&published_md5), "{err}");

    // Unknown names.
    assert!(!flist.exists("nope".into()).await.unwrap());
    for err in [
        flist.unmount("nope".into()).await.unwrap_err(),
        flist.hash_from_root_path("nope".into()).await.unwrap_err(),
        flist
            .update_mount_size("nope".into(), 64 * MIB)
            .await
            .unwrap_err(),
    ] {
        assert_eq!(err.kind(), Some("not_found"), "{err}");
        assert!(err.to_string().contains("\"nope\""), "{err}");
    }

    // Nothing was stored or changed by any of it.
    assert_eq!(
        std::fs::read_dir(w.root.join("state")).unwrap().count(),
        state_before
    );
    assert_eq!(
        std::fs::read_dir(w.root.join("flist")).unwrap().count(),
        flists_before,
        "no bad download kept"
    );
    assert_eq!(storage.volume_list().await.unwrap().len(), volumes_before);
    assert!(!w.mountpoint("n").exists());
    assert_eq!(
        std::fs::read(Path::new(&path).join("mine")).unwrap(),
        b"precious"
    );
    assert_same_as_source(&w.src, &w.ro(&w.md5()), true).await;
    flist.unmount("keep".into()).await.unwrap();
    assert!(w.mounts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_fuse_server_is_replaced_and_writes_survive() {
    if !common::prerequisites() {
        return;
    }
    let mut w = World::new().await;
    let opts = w.options();
    let module = w.serve(opts).await;
    let flist = w.flist();
    let url = w.url("test/tree.fl");
    let hash = w.md5();
    let path = flist
        .mount("vm".into(), url.clone(), rw(64 * MIB))
        .await
        .unwrap();
    let ropath = flist.mount("ro".into(), url.clone(), ro()).await.unwrap();
    std::fs::write(Path::new(&path).join("kept"), b"written before the crash").unwrap();

    // Nothing to do while all is well.
    let stats = module.reconcile().await;
    assert_eq!((stats.alive, stats.remounted), (2, 0), "{stats:?}");

    // The FUSE server dies: both mounts stop working.
    let pid = w.server_pid(&hash).unwrap();
    common::kill(pid);
    assert!(eventually(Duration::from_secs(20), || gone(pid)).await);
    let p = Path::new(&ropath).join("hello.txt");
    let err = fs(move || std::fs::read(p).unwrap_err()).await;
    assert!(
        matches!(
            err.raw_os_error(),
            Some(libc::ENOTCONN | libc::ECONNABORTED)
        ),
        "a mount whose FUSE server died: {err}"
    );

    // The check (run every 30 s by the daemon) replaces the server and mounts both names again.
    let stats = module.reconcile().await;
    assert_eq!((stats.alive, stats.remounted), (0, 2), "{stats:?}");
    let new_pid = w.server_pid(&hash).unwrap();
    assert_ne!(new_pid, pid);
    assert_same_as_source(&w.src, Path::new(&ropath), true).await;
    assert_eq!(
        std::fs::read(Path::new(&path).join("kept")).unwrap(),
        b"written before the crash"
    );
    assert_eq!(
        std::fs::read(Path::new(&path).join("data/big")).unwrap(),
        std::fs::read(w.src.join("data/big")).unwrap()
    );
    flist.unmount("vm".into()).await.unwrap();
    flist.unmount("ro".into()).await.unwrap();
    assert!(w.mounts().is_empty(), "{:?}", w.mounts());
}
