//! `cargo xtask bench flist`: pack throughput, and sequential and random read throughput of a mounted flist
//! with 1 and 4 readers, cold and warm, against reading the same tree from the local disk in the same run.
//!
//! The tree is 256 MiB (6 files of 32 MiB and 1024 files of 64 KiB, incompressible); set
//! `ZOS_BENCH_FLIST_MIB` to scale it. Blocks go to a directory store on the same disk. "Cold" means page
//! caches dropped (`/proc/sys/vm/drop_caches`) and, for the mount, a fresh block cache and a fresh mount.
//! Needs root and /dev/fuse. Nothing here asserts on time: it prints numbers and ratios.

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use zos_flist::{BlockCache, Flist, MountConfig, PackOptions, store::DirStore};

const BIG_FILES: usize = 6;
const SMALL_SIZE: usize = 64 * 1024;
const RANDOM_READ: usize = 64 * 1024;

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

struct Tree {
    files: Vec<(PathBuf, u64)>,
    total: u64,
}

fn make_tree(root: &Path, mib: usize) -> anyhow::Result<Tree> {
    let total = mib * 1024 * 1024;
    let big = total * 3 / 4 / BIG_FILES;
    let small_count = (total / 4) / SMALL_SIZE;
    let mut files = Vec::new();
    for i in 0..BIG_FILES {
        let rel = PathBuf::from(format!("big/file{i}"));
        files.push((rel, big as u64));
    }
    for i in 0..small_count {
        files.push((
            PathBuf::from(format!("small/d{:02}/f{i:05}", i % 32)),
            SMALL_SIZE as u64,
        ));
    }
    for (i, (rel, size)) in files.iter().enumerate() {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("has a parent"))?;
        std::fs::write(&p, noise(i as u64 + 1, *size as usize))?;
    }
    let total = files.iter().map(|(_, s)| s).sum();
    Ok(Tree { files, total })
}

fn drop_caches() -> bool {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn mibs(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / secs.max(1e-9)
}

/// Read every file fully with `readers` threads (files dealt round-robin); returns MiB/s.
fn seq_read(root: &Path, tree: &Tree, readers: usize) -> anyhow::Result<f64> {
    let start = Instant::now();
    let results: Vec<anyhow::Result<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..readers)
            .map(|r| {
                s.spawn(move || -> anyhow::Result<u64> {
                    let mut buf = vec![0u8; 1024 * 1024];
                    let mut n = 0u64;
                    for (rel, _) in tree.files.iter().skip(r).step_by(readers) {
                        let mut f = std::fs::File::open(root.join(rel))
                            .with_context(|| format!("{}", rel.display()))?;
                        loop {
                            let k = f.read(&mut buf)?;
                            if k == 0 {
                                break;
                            }
                            n += k as u64;
                        }
                    }
                    Ok(n)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("reader thread"))
            .collect()
    });
    let mut total = 0;
    for r in results {
        total += r?;
    }
    if total != tree.total {
        bail!("read {total} bytes, expected {}", tree.total);
    }
    Ok(mibs(total, start.elapsed().as_secs_f64()))
}

/// `count` random 64 KiB reads over the big files with `readers` threads; returns MiB/s.
fn random_read(root: &Path, tree: &Tree, readers: usize, count: usize) -> anyhow::Result<f64> {
    let bigs: Vec<&(PathBuf, u64)> = tree
        .files
        .iter()
        .filter(|(_, s)| *s > SMALL_SIZE as u64)
        .collect();
    let start = Instant::now();
    let results: Vec<anyhow::Result<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..readers)
            .map(|r| {
                let bigs = &bigs;
                s.spawn(move || -> anyhow::Result<u64> {
                    let files: Vec<std::fs::File> = bigs
                        .iter()
                        .map(|(rel, _)| std::fs::File::open(root.join(rel)))
                        .collect::<Result<_, _>>()?;
                    let mut x: u64 = 0x1234_5678 + r as u64 * 7919;
                    let mut buf = vec![0u8; RANDOM_READ];
                    let mut n = 0u64;
                    for _ in 0..count / readers {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let i = (x % files.len() as u64) as usize;
                        let max = bigs[i].1 - RANDOM_READ as u64;
                        let off = ((x >> 16) % max) & !4095;
                        f_read_exact(&files[i], &mut buf, off)?;
                        n += RANDOM_READ as u64;
                    }
                    Ok(n)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("reader thread"))
            .collect()
    });
    let mut total = 0;
    for r in results {
        total += r?;
    }
    Ok(mibs(total, start.elapsed().as_secs_f64()))
}

fn f_read_exact(f: &std::fs::File, buf: &mut [u8], off: u64) -> std::io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let k = f.read_at(&mut buf[got..], off + got as u64)?;
        if k == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
        got += k;
    }
    Ok(())
}

struct Mounted {
    handle: Option<zos_flist::MountHandle>,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut h) = self.handle.take()
            && h.unmount().is_err()
        {
            let _ = h.detach();
        }
    }
}

fn fresh_mount(
    work: &Path,
    fl: &Path,
    store: &Path,
    rt: &tokio::runtime::Runtime,
    n: usize,
) -> anyhow::Result<(Mounted, PathBuf)> {
    let mnt = work.join(format!("mnt{n}"));
    std::fs::create_dir_all(&mnt)?;
    let flist = Arc::new(Flist::open(fl)?);
    let cache = Arc::new(BlockCache::new(
        work.join(format!("cache{n}")),
        Arc::new(DirStore::new(store)),
        rt.handle().clone(),
    )?);
    let handle = zos_flist::fs::mount(flist, cache, &mnt, &MountConfig::default())?;
    Ok((
        Mounted {
            handle: Some(handle),
        },
        mnt,
    ))
}

/// Run the flist benchmark.
pub fn run() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !Path::new("/dev/fuse").exists() {
        bail!("the flist benchmark mounts FUSE: it needs root and /dev/fuse");
    }
    let mib: usize = std::env::var("ZOS_BENCH_FLIST_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let work = tempfile::Builder::new()
        .prefix("zos-bench-flist-")
        .tempdir_in("/var/tmp")?;
    let src = work.path().join("src");
    let store = work.path().join("store");
    let fl = work.path().join("bench.fl");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    println!(
        "flist benchmark: building a {mib} MiB tree in {}",
        work.path().display()
    );
    let tree = make_tree(&src, mib)?;
    let can_drop = drop_caches();
    if !can_drop {
        println!("note: cannot drop page caches; cold mount runs use a fresh cache and mount only");
    }

    // pack (source cold)
    drop_caches();
    let start = Instant::now();
    let routes = vec![(0u8, 255u8, format!("dir://{}", store.display()))];
    let stats = zos_flist::pack::pack(
        &src,
        &fl,
        &routes,
        &PackOptions::default(),
        rt.handle(),
        &mut |_| {},
    )?;
    let pack_secs = start.elapsed().as_secs_f64();
    let pack = mibs(stats.bytes, pack_secs);
    println!(
        "pack: {} files, {} blocks, {:.1} MiB in {:.2} s = {pack:.1} MiB/s (rfs measured here: ~55 MiB/s, ratio {:.2})",
        stats.files,
        stats.blocks,
        stats.bytes as f64 / 1048576.0,
        pack_secs,
        pack / 55.0
    );

    let random_count = (tree.total as usize / 2) / RANDOM_READ; // half the tree's bytes in random reads
    type Case<'a> = (&'a str, usize, bool, bool); // name, readers, random, cold
    let cases: [Case; 8] = [
        ("seq  1 reader  cold", 1, false, true),
        ("seq  1 reader  warm", 1, false, false),
        ("seq  4 readers cold", 4, false, true),
        ("seq  4 readers warm", 4, false, false),
        ("rand 1 reader  cold", 1, true, true),
        ("rand 1 reader  warm", 1, true, false),
        ("rand 4 readers cold", 4, true, true),
        ("rand 4 readers warm", 4, true, false),
    ];
    let measure = |root: &Path, readers: usize, random: bool| -> anyhow::Result<f64> {
        if random {
            random_read(root, &tree, readers, random_count)
        } else {
            seq_read(root, &tree, readers)
        }
    };

    println!(
        "\n{:<22} {:>14} {:>14} {:>8}",
        "MiB/s", "local disk", "flist mount", "ratio"
    );
    let mut mount_no = 0;
    let mut current: Option<(Mounted, PathBuf)> = None;
    for (name, readers, random, cold) in cases {
        // the local disk
        if cold {
            drop_caches();
        } else {
            // the cold mount run dropped the page caches again: warm the local tree first
            measure(&src, readers, random)?;
        }
        let disk = measure(&src, readers, random)?;
        // the mount: cold = fresh block cache + fresh mount + dropped page caches; warm = the same mount again
        if cold {
            drop(current.take());
            mount_no += 1;
            current = Some(fresh_mount(work.path(), &fl, &store, &rt, mount_no)?);
            drop_caches();
        }
        let (_, mnt) = current.as_ref().expect("a mount");
        let fuse = measure(mnt, readers, random)?;
        println!("{name:<22} {disk:>14.1} {fuse:>14.1} {:>8.2}", fuse / disk);
    }
    drop(current);
    println!(
        "\nrfs measured here for reference: pack ~55 MiB/s, full read cold ~46 MiB/s, 4 readers ~20 MiB/s in total"
    );
    Ok(())
}
