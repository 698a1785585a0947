//! `zflist`: pack a directory into an rfs `.fl` flist (blocks into stores), unpack, list, or mount one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use zos_flist::{BlockCache, Flist, Kind, MountFlOptions, PackOptions, UnpackOptions, store};

#[derive(Parser)]
#[command(
    name = "zflist",
    version,
    about = "rfs .fl flists: pack, unpack, list, mount"
)]
struct Args {
    /// Log at debug level.
    #[arg(short, long, global = true)]
    debug: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Pack a directory: the metadata into `-m`, the content blocks into the stores.
    Pack {
        /// The flist to write.
        #[arg(short, long)]
        meta: PathBuf,
        /// Store, `[<lo>-<hi>=]<url>` (dir:///path, zdb://host:port/ns, …); repeat for shards/replicas.
        #[arg(short, long = "store", required = true)]
        stores: Vec<String>,
        /// A tag, `key=value` (version, description, author, …).
        #[arg(short, long = "tag")]
        tags: Vec<String>,
        /// Keep passwords in the store URLs written into the flist.
        #[arg(long)]
        no_strip_password: bool,
        /// Encoding threads.
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// The directory to pack.
        dir: PathBuf,
    },
    /// Unpack a flist into a new or empty directory.
    Unpack {
        /// The flist.
        #[arg(short, long)]
        meta: PathBuf,
        /// Block cache directory.
        #[arg(short, long, default_value = "/tmp/zflist-cache")]
        cache: PathBuf,
        /// Stores to use instead of the flist's routes.
        #[arg(short, long = "store")]
        stores: Vec<String>,
        /// Set owners from the flist (root only).
        #[arg(short, long)]
        preserve_ownership: bool,
        /// Destination.
        dir: PathBuf,
    },
    /// List the content of a flist.
    List {
        /// The flist.
        #[arg(short, long)]
        meta: PathBuf,
        /// Mode, owner, size and mtime too; tags and routes first.
        #[arg(short, long)]
        long: bool,
    },
    /// Mount a flist read-only (FUSE) and serve it until unmounted, SIGTERM or SIGINT.
    Mount {
        /// The flist.
        #[arg(short, long)]
        meta: PathBuf,
        /// Block cache directory.
        #[arg(short, long, default_value = "/tmp/zflist-cache")]
        cache: PathBuf,
        /// Stores to use instead of the flist's routes.
        #[arg(short, long = "store")]
        stores: Vec<String>,
        /// FUSE request threads.
        #[arg(long, default_value_t = 4)]
        threads: usize,
        /// Do not pass allow_other (only the mounting user can read).
        #[arg(long)]
        no_allow_other: bool,
        /// Mountpoint.
        mountpoint: PathBuf,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn run(args: Args) -> anyhow::Result<()> {
    match args.cmd {
        Cmd::Pack {
            meta,
            stores,
            tags,
            no_strip_password,
            workers,
            dir,
        } => {
            let routes = stores
                .iter()
                .map(|s| store::parse_range(s))
                .collect::<Result<Vec<_>, _>>()?;
            let tags = tags
                .iter()
                .map(|t| {
                    t.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .with_context(|| format!("tag {t:?} is not key=value"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let opts = PackOptions {
                tags,
                keep_passwords: no_strip_password,
                workers,
            };
            let rt = runtime()?;
            let start = Instant::now();
            let mut last = Instant::now();
            let stats = zos_flist::pack::pack(&dir, &meta, &routes, &opts, rt.handle(), &mut |s| {
                if last.elapsed() >= Duration::from_secs(1) {
                    last = Instant::now();
                    let secs = start.elapsed().as_secs_f64().max(0.001);
                    eprintln!(
                        "packed {} files, {:.1} MiB, {} blocks ({:.1} MiB/s)",
                        s.files,
                        mib(s.bytes),
                        s.blocks,
                        mib(s.bytes) / secs
                    );
                }
            })
            .with_context(|| format!("packing {}", dir.display()))?;
            let secs = start.elapsed().as_secs_f64().max(0.001);
            eprintln!(
                "done: {} inodes, {} files, {:.1} MiB in {} blocks ({} new in the store), {:.1} s, {:.1} MiB/s -> {}",
                stats.inodes,
                stats.files,
                mib(stats.bytes),
                stats.blocks,
                stats.blocks_stored,
                secs,
                mib(stats.bytes) / secs,
                meta.display()
            );
            Ok(())
        }
        Cmd::Unpack {
            meta,
            cache,
            stores,
            preserve_ownership,
            dir,
        } => {
            let flist = Flist::open(&meta)?;
            let rt = runtime()?;
            let store = zos_flist::open_store(&flist, &stores)?;
            let cache = BlockCache::new(&cache, store, rt.handle().clone())?;
            zos_flist::pack::unpack(
                &flist,
                &cache,
                &dir,
                &UnpackOptions {
                    preserve_owner: preserve_ownership,
                },
            )
            .with_context(|| format!("unpacking {} into {}", meta.display(), dir.display()))?;
            eprintln!("unpacked {} inodes into {}", flist.len(), dir.display());
            Ok(())
        }
        Cmd::List { meta, long } => {
            let flist = Flist::open(&meta)?;
            use std::io::Write;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            if long {
                for (k, v) in flist.tags() {
                    writeln!(out, "# tag {k}={v}")?;
                }
                for r in flist.routes() {
                    writeln!(out, "# route {:02x}-{:02x}={}", r.start, r.end, r.url)?;
                }
            }
            for (path, n) in flist.walk() {
                if long {
                    let t = match n.kind {
                        Kind::Dir => 'd',
                        Kind::File => '-',
                        Kind::Symlink => 'l',
                        Kind::BlockDevice => 'b',
                        Kind::CharDevice => 'c',
                        Kind::Fifo => 'p',
                        Kind::Socket => 's',
                    };
                    write!(
                        out,
                        "{t}{:04o} {:>6} {:>6} {:>12} {:>11} {}",
                        n.perm(),
                        n.uid,
                        n.gid,
                        n.size,
                        n.mtime,
                        path.display()
                    )?;
                    if let Some(target) = &n.target {
                        write!(out, " -> {}", String::from_utf8_lossy(target))?;
                    }
                    writeln!(out)?;
                } else {
                    writeln!(out, "{}", path.display())?;
                }
            }
            Ok(())
        }
        Cmd::Mount {
            meta,
            cache,
            stores,
            threads,
            no_allow_other,
            mountpoint,
        } => {
            let rt = runtime()?;
            let mut opts = MountFlOptions::new(cache);
            opts.stores = stores;
            opts.mount.threads = threads;
            opts.mount.allow_other = !no_allow_other;
            opts.mount.fsname = meta.display().to_string();
            let handle = zos_flist::mount_fl(&meta, &mountpoint, &opts, rt.handle())?;
            tracing::info!(flist = %meta.display(), mountpoint = %mountpoint.display(), "mounted");
            let handle = Arc::new(std::sync::Mutex::new(Some(handle)));
            let watcher = handle.clone();
            rt.block_on(async move {
                let alive = async {
                    loop {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        if !watcher
                            .lock()
                            .expect("mount")
                            .as_ref()
                            .is_some_and(|h| h.is_alive())
                        {
                            return;
                        }
                    }
                };
                tokio::select! {
                    _ = zos_runtime::shutdown_signal() => {}
                    _ = alive => tracing::info!("unmounted from outside"),
                }
            });
            if let Some(mut h) = handle.lock().expect("mount").take() {
                h.unmount()
                    .with_context(|| format!("unmounting {}", mountpoint.display()))?;
            }
            tracing::info!(mountpoint = %mountpoint.display(), "unmounted");
            Ok(())
        }
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    zos_runtime::init_tracing(args.debug);
    zos_runtime::exit(run(args))
}
