//! `hub-server`: a local 0-hub over a directory (flists, tags, taglinks, md5s, blocks), and the commands that
//! lay that directory out (publish a flist, add it to a tag, point a taglink at a tag).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use zos_hub::{Hub, ServerConfig};

#[derive(Parser)]
#[command(
    name = "hub-server",
    version,
    about = "A local 0-hub serving flists and blocks from a directory"
)]
struct Args {
    /// The public directory (`<repo>/<name>.flist|.fl`, `.tag-<tag>/`, taglinks).
    #[arg(long, global = true, default_value = "/var/lib/hub/public")]
    dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// A directory block store to serve under /blocks/ (use `http://<listen>/blocks` as the flist's store).
    #[arg(long)]
    blocks: Option<PathBuf>,
    /// Enable the publish API (PUT …) for requests with `Authorization: Bearer <token>`.
    #[arg(long, env = "HUB_PUBLISH_TOKEN")]
    publish_token: Option<String>,
    /// Log at debug level.
    #[arg(short, long, global = true)]
    debug: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Copy a flist file into a repository.
    Publish {
        /// Repository.
        #[arg(long)]
        repo: String,
        /// Name in the repository (default: the file's name).
        #[arg(long)]
        name: Option<String>,
        /// The flist file.
        file: PathBuf,
    },
    /// Add a flist to a tag: `<repo>/.tag-<tag>/<package>` → `<target>`.
    Tag {
        /// Repository holding the tag.
        #[arg(long)]
        repo: String,
        /// Tag name.
        #[arg(long)]
        tag: String,
        /// Package name in the tag (`zos.flist`).
        #[arg(long)]
        package: String,
        /// `<repo2>/<file>` the package points at.
        target: String,
    },
    /// Point a taglink `<repo>/<link>` at `<repo2>/tags/<tag>`.
    Taglink {
        /// Repository holding the taglink.
        #[arg(long)]
        repo: String,
        /// Taglink name (`production-v4`).
        #[arg(long)]
        link: String,
        /// `<repo2>/tags/<tag>`.
        target: String,
    },
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    zos_runtime::init_tracing(args.debug);
    zos_runtime::exit(run(args))
}

fn run(args: Args) -> anyhow::Result<()> {
    let print = |e: zos_hub::Entry| println!("{}", serde_json_line(&e));
    match args.cmd {
        Some(Cmd::Publish { repo, name, file }) => {
            let hub = Hub::new(&args.dir)?;
            let name = match name {
                Some(n) => n,
                None => file
                    .file_name()
                    .context("the file has no name")?
                    .to_string_lossy()
                    .into_owned(),
            };
            print(hub.publish_file(&repo, &name, &file)?);
            Ok(())
        }
        Some(Cmd::Tag {
            repo,
            tag,
            package,
            target,
        }) => {
            print(Hub::new(&args.dir)?.tag_add(&repo, &tag, &package, &target)?);
            Ok(())
        }
        Some(Cmd::Taglink { repo, link, target }) => {
            print(Hub::new(&args.dir)?.taglink_set(&repo, &link, &target)?);
            Ok(())
        }
        None => zos_runtime::block_on(async move {
            let cfg = ServerConfig {
                dir: args.dir.clone(),
                blocks: args.blocks.clone(),
                publish_token: args.publish_token,
            };
            let listener = tokio::net::TcpListener::bind(&args.listen)
                .await
                .with_context(|| format!("listening on {}", args.listen))?;
            tracing::info!(listen = %listener.local_addr()?, dir = %args.dir.display(), "hub serving");
            zos_hub::serve(&cfg, listener, zos_runtime::shutdown_signal())
                .await
                .context("serving")
        }),
    }
}

fn serde_json_line(e: &zos_hub::Entry) -> String {
    format!(
        "{} {:?} {}{}",
        e.name,
        e.kind,
        e.md5.as_deref().unwrap_or(""),
        e.target
            .as_deref()
            .map(|t| format!(" -> {t}"))
            .unwrap_or_default()
    )
}
