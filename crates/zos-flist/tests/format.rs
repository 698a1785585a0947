//! The `.fl` format end to end without FUSE: pack a tree into a directory store, read the flist back, check
//! the schema and every inode against the source, unpack and compare every byte and attribute; rfs-style
//! flists written by raw SQL are read; hostile flists are rejected with clear errors; corrupted blocks are
//! detected; the block cache survives crashes.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use common::{Compare, assert_same_tree, build_tree};
use rusqlite::{Connection, params};
use zos_flist::block::{self, BLOCK_SIZE};
use zos_flist::store::{self, DirStore, Store};
use zos_flist::{BlockCache, BlockRef, Flist, Kind, PackOptions, UnpackOptions};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn pack(
    src: &Path,
    fl: &Path,
    store_dir: &Path,
    rt: &tokio::runtime::Runtime,
) -> zos_flist::PackStats {
    let routes = vec![(0u8, 255u8, format!("dir://{}", store_dir.display()))];
    let opts = PackOptions {
        tags: vec![
            ("version".into(), "1.2".into()),
            ("author".into(), "test".into()),
        ],
        ..Default::default()
    };
    let mut calls = 0;
    let stats =
        zos_flist::pack::pack(src, fl, &routes, &opts, rt.handle(), &mut |_| calls += 1).unwrap();
    assert!(calls > 0, "progress is reported");
    stats
}

#[test]
fn pack_read_unpack_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let (src, fl, st, dst) = (
        t.path().join("src"),
        t.path().join("x.fl"),
        t.path().join("store"),
        t.path().join("dst"),
    );
    build_tree(&src);
    let rt = rt();
    let stats = pack(&src, &fl, &st, &rt);
    assert!(
        stats.blocks > stats.blocks_stored,
        "identical blocks are stored once: {stats:?}"
    );

    // no temp or journal files left next to the flist
    let names: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");

    // the schema is rfs's: same tables and columns
    let conn = Connection::open(&fl).unwrap();
    for (table, cols) in [
        (
            "inode",
            "ino,parent,name,size,uid,gid,mode,rdev,ctime,mtime",
        ),
        ("extra", "ino,data"),
        ("block", "ino,id,key"),
        ("tag", "key,value"),
        ("route", "start,end,url"),
    ] {
        let have: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info(?1)")
            .unwrap()
            .query_map([table], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(have.join(","), cols, "table {table}");
    }
    let journal: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "delete");
    let (root_ino, root_parent, root_name): (i64, i64, String) = conn
        .query_row(
            "SELECT ino, parent, name FROM inode ORDER BY ino LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((root_ino, root_parent, root_name.as_str()), (1, 0, "/"));
    let (id_type, id_len): (String, i64) = conn
        .query_row(
            "SELECT typeof(id), length(id) FROM block LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((id_type.as_str(), id_len), ("blob", 32));
    drop(conn);

    // every inode matches the source
    let flist = Flist::open(&fl).unwrap();
    assert_eq!(flist.tag("version"), Some("1.2"));
    assert_eq!(flist.routes().len(), 1);
    assert_eq!(flist.routes()[0].url, format!("dir://{}", st.display()));
    let walked = flist.walk();
    assert_eq!(walked.len(), common::paths(&src).len());
    for (path, node) in &walked {
        let p = src.join(path.strip_prefix("/").unwrap());
        let m = std::fs::symlink_metadata(&p).unwrap();
        let what = path.display().to_string();
        assert_eq!(node.mode, m.mode(), "{what}: mode");
        assert_eq!((node.uid, node.gid), (m.uid(), m.gid()), "{what}: owner");
        assert_eq!(node.mtime, m.mtime(), "{what}: mtime");
        assert_eq!(node.size, m.len(), "{what}: size");
        match node.kind {
            Kind::Symlink => assert_eq!(
                node.target.as_deref().unwrap(),
                std::fs::read_link(&p)
                    .unwrap()
                    .as_os_str()
                    .as_encoded_bytes()
            ),
            Kind::File => assert_eq!(
                node.blocks.len() as u64,
                m.len().div_ceil(BLOCK_SIZE as u64),
                "{what}: blocks"
            ),
            _ => {}
        }
    }
    assert_eq!(flist.resolve("/data/big").unwrap().blocks.len(), 4);
    assert_eq!(flist.resolve("empty").unwrap().blocks.len(), 0);
    assert_eq!(flist.resolve("/fifo").unwrap().kind, Kind::Fifo);

    // unpack and compare everything
    let store: Arc<dyn Store> = Arc::new(DirStore::new(&st));
    let cache = BlockCache::new(t.path().join("cache"), store, rt.handle().clone()).unwrap();
    let root = zos_testkit::is_root();
    zos_flist::pack::unpack(
        &flist,
        &cache,
        &dst,
        &UnpackOptions {
            preserve_owner: root,
        },
    )
    .unwrap();
    assert_same_tree(
        &src,
        &dst,
        Compare {
            owner: root,
            mtime: true,
        },
    );
    // the hole survived as a hole (fewer allocated blocks than the size needs)
    let sparse = std::fs::metadata(dst.join("data/sparse")).unwrap();
    assert!(
        sparse.blocks() * 512 < sparse.len(),
        "sparse regions become holes"
    );

    // unpacking into a non-empty directory is refused
    let e = zos_flist::pack::unpack(&flist, &cache, &dst, &UnpackOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not empty"), "{e}");
}

#[test]
fn reads_at_any_offset_and_size() {
    let t = tempfile::tempdir().unwrap();
    let (src, fl, st) = (
        t.path().join("src"),
        t.path().join("x.fl"),
        t.path().join("store"),
    );
    build_tree(&src);
    let rt = rt();
    pack(&src, &fl, &st, &rt);
    let flist = Flist::open(&fl).unwrap();
    let cache = BlockCache::new(
        t.path().join("cache"),
        Arc::new(DirStore::new(&st)),
        rt.handle().clone(),
    )
    .unwrap();
    let node = flist.resolve("data/big").unwrap();
    let data = std::fs::read(src.join("data/big")).unwrap();
    let bs = BLOCK_SIZE as u64;
    for (off, len) in [
        (0, 1),
        (0, BLOCK_SIZE),
        (bs - 1, 2),
        (bs - 10, 3 * BLOCK_SIZE),
        (3 * bs, 20000),
        (node.size - 1, 10),
        (node.size, 5),
        (node.size + 100, 5),
        (12345, 1_000_000),
    ] {
        let mut buf = vec![0u8; len];
        let n = zos_flist::cache::read_file_at(&cache, node, off, &mut buf).unwrap();
        let end = (off as usize + len).min(data.len());
        let expect = if (off as usize) < data.len() {
            &data[off as usize..end]
        } else {
            &[][..]
        };
        assert_eq!(n, expect.len(), "read of {len} at {off}");
        assert!(&buf[..n] == expect, "content of {len} at {off}");
    }
}

/// A flist written the way rfs writes it (its schema text, raw SQL, flat store layout) reads back.
#[test]
fn reads_an_rfs_written_flist() {
    let t = tempfile::tempdir().unwrap();
    let fl = t.path().join("rfs.fl");
    let st = t.path().join("store");
    std::fs::create_dir_all(&st).unwrap();
    let conn = Connection::open(&fl).unwrap();
    conn.execute_batch(zos_flist::meta::SCHEMA).unwrap();
    let content = common::noise(9, BLOCK_SIZE + 10);
    let ins = |parent: i64, name: &str, size: i64, uid: i64, gid: i64, mode: i64| {
        conn.execute(
            "insert into inode (parent, name, size, uid, gid, mode, rdev, ctime, mtime) values (?, ?, ?, ?, ?, ?, 0, 1, 2)",
            params![parent, name, size, uid, gid, mode],
        )
        .unwrap();
        conn.last_insert_rowid()
    };
    let root = ins(0, "/", 4096, 0, 0, 0o040755);
    let f = ins(root, "file", content.len() as i64, 10, 20, 0o100644);
    let l = ins(root, "link", 4, 0, 0, 0o120777);
    conn.execute(
        "insert into extra(ino, data) values (?, ?)",
        params![l, b"file".to_vec()],
    )
    .unwrap();
    for chunk in content.chunks(BLOCK_SIZE) {
        let b = block::encode(chunk).unwrap();
        std::fs::write(st.join(hex::encode(b.id)), &b.data).unwrap(); // flat (older rfs) layout
        conn.execute(
            "insert into block (ino, id, key) values (?, ?, ?)",
            params![f, &b.id[..], &b.key[..]],
        )
        .unwrap();
    }
    conn.execute(
        "insert into route (start, end, url) values (0, 255, ?)",
        params![format!("dir://{}", st.display())],
    )
    .unwrap();
    conn.execute(
        "insert or replace into tag (key, value) values ('version', '0.1')",
        [],
    )
    .unwrap();
    drop(conn);

    let flist = Flist::open(&fl).unwrap();
    let node = flist.resolve("/file").unwrap();
    assert_eq!(
        (node.uid, node.gid),
        (10, 20),
        "gid comes from the gid column"
    );
    assert_eq!(
        flist.resolve("/link").unwrap().target.as_deref(),
        Some(&b"file"[..])
    );
    let rt = rt();
    let store = zos_flist::open_store(&flist, &[]).unwrap();
    let cache = BlockCache::new(t.path().join("cache"), store, rt.handle().clone()).unwrap();
    let dst = t.path().join("dst");
    zos_flist::pack::unpack(&flist, &cache, &dst, &UnpackOptions::default()).unwrap();
    assert!(std::fs::read(dst.join("file")).unwrap() == content);
}

fn hostile(setup: &str) -> String {
    let t = tempfile::tempdir().unwrap();
    let fl = t.path().join("bad.fl");
    let conn = Connection::open(&fl).unwrap();
    conn.execute_batch(zos_flist::meta::SCHEMA).unwrap();
    conn.execute_batch(setup).unwrap();
    drop(conn);
    match Flist::open(&fl) {
        Ok(_) => panic!("accepted a hostile flist: {setup}"),
        Err(e) => e.to_string(),
    }
}

const ROOT: &str = "insert into inode (ino, parent, name, size, uid, gid, mode, rdev, ctime, mtime) values (1, 0, '/', 0, 0, 0, 16877, 0, 0, 0);";

fn file_row(ino: i64, parent: i64, name: &str, size: i64) -> String {
    format!(
        "insert into inode (ino, parent, name, size, uid, gid, mode, rdev, ctime, mtime) values ({ino}, {parent}, '{name}', {size}, 0, 0, 33188, 0, 0, 0);"
    )
}

fn dir_row(ino: i64, parent: i64, name: &str) -> String {
    format!(
        "insert into inode (ino, parent, name, size, uid, gid, mode, rdev, ctime, mtime) values ({ino}, {parent}, '{name}', 0, 0, 0, 16877, 0, 0, 0);"
    )
}

fn block_row(ino: i64) -> String {
    format!("insert into block (ino, id, key) values ({ino}, randomblob(32), randomblob(32));")
}

#[test]
fn hostile_flists_are_rejected_clearly() {
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "no root inode"),
        (
            format!("{ROOT}{}", file_row(2, 1, "a/b", 0)),
            "contains '/'",
        ),
        (format!("{ROOT}{}", file_row(2, 1, "..", 0)), "not allowed"),
        (format!("{ROOT}{}", file_row(2, 1, ".", 0)), "not allowed"),
        (format!("{ROOT}{}", file_row(2, 1, "", 0)), "empty name"),
        (
            format!(
                "{ROOT}insert into inode values (2, 1, CAST(X'610062' AS TEXT), 0, 0, 0, 33188, 0, 0, 0);"
            ),
            "NUL",
        ),
        (
            format!("{ROOT}{}", file_row(2, 1, &"x".repeat(300), 0)),
            "longer than 255",
        ),
        (
            format!("{ROOT}{}{}", dir_row(2, 3, "a"), dir_row(3, 2, "b")),
            "not reachable from the root",
        ),
        (
            format!("{ROOT}{}", dir_row(2, 2, "self")),
            "not reachable from the root",
        ),
        (
            format!("{ROOT}{}", dir_row(2, 9, "orphan")),
            "does not exist",
        ),
        (
            format!(
                "{ROOT}{}{}",
                file_row(2, 1, "f", 0),
                file_row(3, 2, "child", 0)
            ),
            "not a directory",
        ),
        (
            format!(
                "{ROOT}{}{}",
                file_row(2, 1, "dup", 0),
                file_row(3, 1, "dup", 0)
            ),
            "duplicate name",
        ),
        (
            format!("{ROOT}{}", file_row(2, 1, "huge", 1 << 60)),
            "absurd",
        ),
        (format!("{ROOT}{}", file_row(2, 1, "neg", -5)), "negative"),
        (
            format!("{ROOT}{}", file_row(2, 1, "short", 1_000_000)),
            "0 blocks for a size of 1000000",
        ),
        (
            format!(
                "{ROOT}{}{}{}",
                file_row(2, 1, "long", 10),
                block_row(2),
                block_row(2)
            ),
            "more blocks than its size",
        ),
        (
            format!(
                "{ROOT}{}insert into block values (2, randomblob(16), randomblob(32));",
                file_row(2, 1, "f", 10)
            ),
            "16 bytes, expected 32",
        ),
        (
            format!(
                "{ROOT}{}insert into block values (2, 'abc', randomblob(32));",
                file_row(2, 1, "f", 10)
            ),
            "not a 32-byte blob",
        ),
        (
            format!("{ROOT}{}{}", dir_row(2, 1, "d"), block_row(2)),
            "not a regular file",
        ),
        (
            format!("{ROOT}insert into inode values (2, 1, 'l', 0, 0, 0, 41471, 0, 0, 0);"),
            "symlink without a target",
        ),
        (
            format!(
                "{ROOT}insert into inode values (2, 1, 'l', 0, 0, 0, 41471, 0, 0, 0); insert into extra values (2, '');"
            ),
            "symlink target is empty",
        ),
        (
            format!("{ROOT}insert into inode values (2, 1, 'w', 0, 0, 0, 123, 0, 0, 0);"),
            "unknown file type",
        ),
        (
            format!("{ROOT}insert into inode values (2, 1, 'u', 0, -1, 0, 33188, 0, 0, 0);"),
            "uid -1 is out of range",
        ),
        (
            format!("{ROOT}insert into inode values (2, 1, 'n', NULL, 0, 0, 33188, 0, 0, 0);"),
            "size is NULL",
        ),
        (
            "insert into inode values (1, 0, '/', 0, 0, 0, 33188, 0, 0, 0);".into(),
            "root inode 1 must be a directory",
        ),
        (format!("{ROOT}{}", dir_row(2, 0, "root2")), "second root"),
        (
            format!("{ROOT}insert into route values (5, 300, 'dir:///x');"),
            "not within 0-255",
        ),
        (
            format!("{ROOT}insert into route values (9, 5, 'dir:///x');"),
            "after its end",
        ),
    ];
    for (setup, expect) in cases {
        let e = hostile(&setup);
        assert!(
            e.contains(expect),
            "for {setup:?}: expected {expect:?} in {e:?}"
        );
    }
}

#[test]
fn not_an_flist_is_named() {
    let t = tempfile::tempdir().unwrap();
    let garbage = t.path().join("garbage.fl");
    std::fs::write(
        &garbage,
        b"this is not a database at all, just some bytes ....................................",
    )
    .unwrap();
    let e = Flist::open(&garbage).unwrap_err().to_string();
    assert!(e.contains("garbage.fl") && e.contains("SQLite"), "{e}");

    let other = t.path().join("other.fl");
    Connection::open(&other)
        .unwrap()
        .execute_batch("create table foo(x)")
        .unwrap();
    let e = Flist::open(&other).unwrap_err().to_string();
    assert!(e.contains("table `inode` is missing"), "{e}");

    let cols = t.path().join("cols.fl");
    let c = Connection::open(&cols).unwrap();
    c.execute_batch(&zos_flist::meta::SCHEMA.replace("    gid INTEGER,\n", ""))
        .unwrap();
    drop(c);
    let e = Flist::open(&cols).unwrap_err().to_string();
    assert!(e.contains("no column `gid`"), "{e}");

    let e = Flist::open(t.path().join("missing.fl"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.fl"), "{e}");
}

#[test]
fn corrupted_blocks_are_detected() {
    let t = tempfile::tempdir().unwrap();
    let (src, fl, st) = (
        t.path().join("src"),
        t.path().join("x.fl"),
        t.path().join("store"),
    );
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), common::noise(5, 1000)).unwrap();
    let rt = rt();
    pack(&src, &fl, &st, &rt);
    let flist = Flist::open(&fl).unwrap();
    let node = flist.resolve("f").unwrap();
    let BlockRef::Fl { id, .. } = node.blocks[0].clone() else {
        unreachable!()
    };
    let path = DirStore::new(&st).path_of(&id);

    // flipped byte in the store: the id no longer matches
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad[3] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();
    let cache = BlockCache::new(
        t.path().join("c1"),
        Arc::new(DirStore::new(&st)),
        rt.handle().clone(),
    )
    .unwrap();
    let e = zos_flist::pack::unpack(
        &flist,
        &cache,
        &t.path().join("d1"),
        &UnpackOptions::default(),
    )
    .unwrap_err();
    let chain = format!(
        "{e}: {}",
        std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(
        chain.contains("content hash") && chain.contains(&hex::encode(id)),
        "{chain}"
    );

    // right bytes, wrong key in the flist: decryption fails
    std::fs::write(&path, &good).unwrap();
    let conn = Connection::open(&fl).unwrap();
    conn.execute("update block set key = randomblob(32)", [])
        .unwrap();
    drop(conn);
    let flist = Flist::open(&fl).unwrap();
    let cache = BlockCache::new(
        t.path().join("c2"),
        Arc::new(DirStore::new(&st)),
        rt.handle().clone(),
    )
    .unwrap();
    let e = zos_flist::pack::unpack(
        &flist,
        &cache,
        &t.path().join("d2"),
        &UnpackOptions::default(),
    )
    .unwrap_err();
    let chain = format!(
        "{e}: {}",
        std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(chain.contains("decryption failed"), "{chain}");

    // a block missing from the store is named
    std::fs::remove_file(&path).unwrap();
    let flist2 = Flist::open(&fl).unwrap();
    let cache = BlockCache::new(
        t.path().join("c3"),
        Arc::new(DirStore::new(&st)),
        rt.handle().clone(),
    )
    .unwrap();
    let e = zos_flist::pack::unpack(
        &flist2,
        &cache,
        &t.path().join("d3"),
        &UnpackOptions::default(),
    )
    .unwrap_err();
    let chain = format!(
        "{e}: {}",
        std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(chain.contains("not found"), "{chain}");
}

#[test]
fn cache_never_trusts_truncated_entries() {
    let t = tempfile::tempdir().unwrap();
    let st = t.path().join("store");
    let rt = rt();
    let plain = common::noise(6, BLOCK_SIZE);
    let b = block::encode(&plain).unwrap();
    let store = DirStore::new(&st);
    store.set_sync(&b.id, &b.data).unwrap();
    let bref = BlockRef::Fl {
        id: b.id,
        key: b.key,
    };
    let cache = BlockCache::new(
        t.path().join("cache"),
        Arc::new(store.clone()),
        rt.handle().clone(),
    )
    .unwrap();
    let entry = cache.path_of(&bref);
    // what a crash leaves: a truncated entry written in place (rfs style) and a stray temp file
    std::fs::create_dir_all(entry.parent().unwrap()).unwrap();
    std::fs::write(&entry, &plain[..1000]).unwrap();
    std::fs::write(
        entry.with_file_name(format!("{}.tmp.1.0", hex::encode(b.id))),
        &plain[..10],
    )
    .unwrap();
    let mut buf = vec![0u8; BLOCK_SIZE];
    assert_eq!(
        cache.read_at(&bref, BLOCK_SIZE, 0, &mut buf).unwrap(),
        BLOCK_SIZE
    );
    assert!(buf == plain);
    assert_eq!(
        cache.stats().fetches,
        1,
        "the truncated entry was refetched"
    );
    assert_eq!(std::fs::metadata(&entry).unwrap().len(), BLOCK_SIZE as u64);
    // a complete entry is used without the store
    std::fs::remove_dir_all(&st).unwrap();
    let mut buf2 = vec![0u8; 100];
    assert_eq!(
        cache.read_at(&bref, BLOCK_SIZE, 5000, &mut buf2).unwrap(),
        100
    );
    assert_eq!(buf2, plain[5000..5100]);
    assert_eq!(cache.stats().fetches, 1);
    assert_eq!(cache.stats().hits, 1);
    // the plaintext layout is <hex[0:2]>/<hex[2:4]>/<hex> (rfs's)
    let h = hex::encode(b.id);
    assert!(entry.ends_with(format!("{}/{}/{}", &h[..2], &h[2..4], h)));
}

#[test]
fn concurrent_readers_fetch_a_block_once() {
    let t = tempfile::tempdir().unwrap();
    let st = t.path().join("store");
    let rt = rt();
    let plain = common::noise(7, BLOCK_SIZE);
    let b = block::encode(&plain).unwrap();
    DirStore::new(&st).set_sync(&b.id, &b.data).unwrap();
    let bref = BlockRef::Fl {
        id: b.id,
        key: b.key,
    };
    let cache = Arc::new(
        BlockCache::new(
            t.path().join("cache"),
            Arc::new(DirStore::new(&st)),
            rt.handle().clone(),
        )
        .unwrap(),
    );
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let cache = cache.clone();
            let bref = bref.clone();
            let plain = plain.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1000];
                cache
                    .read_at(&bref, BLOCK_SIZE, i * 1000, &mut buf)
                    .unwrap();
                assert_eq!(buf, plain[i * 1000..i * 1000 + 1000]);
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    assert_eq!(cache.stats().fetches, 1);
}

#[test]
fn cli_store_arguments() {
    let (s, e, u) = store::parse_range("80-ff=zdb://u:pw@h:9900/ns").unwrap();
    assert_eq!((s, e), (0x80, 0xff));
    assert_eq!(store::redact(&u), "zdb://u@h:9900/ns");
}
