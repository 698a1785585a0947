//! `registrar-server`: the Grid v4 node-registrar on SQLite, plus non-interactive farm seeding and zos version
//! setting for sandboxes. Logic lives in `zos-registrar-server`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{ArgAction, Parser, Subcommand};
use zos_grid::keys::{KeyPair, Scheme};
use zos_grid::{Clock, SystemClock};
use zos_registrar_server::{ServerConfig, Store, bootstrap};

#[derive(Parser)]
#[command(
    name = "registrar-server",
    about = "Grid v4 node-registrar server (SQLite)"
)]
struct Args {
    /// SQLite database file (created if missing; `:memory:` for a throw-away one).
    #[arg(long, global = true, env = "REGISTRAR_DB")]
    db: Option<String>,
    /// Log at debug level.
    #[arg(long, global = true)]
    debug: bool,
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// The twin allowed to PUT the zos version.
    #[arg(long, default_value_t = 1)]
    admin_twin: u64,
    /// Accepted X-Auth clock skew, both directions (seconds).
    #[arg(long, default_value_t = 60)]
    auth_skew: i64,
    /// Accepted account-creation clock skew, both directions (seconds).
    #[arg(long, default_value_t = 300)]
    account_window: i64,
    /// A node is online when it reported within this many minutes.
    #[arg(long, default_value_t = 90)]
    online_cutoff_minutes: i64,
    /// Largest page size served.
    #[arg(long, default_value_t = 100)]
    max_page_size: u64,
    /// Refuse v1 (`ts:twin`) X-Auth headers; only request-bound v2 headers are accepted (breaks Go nodes).
    #[arg(long)]
    reject_v1_auth: bool,
    /// Before serving, make sure a farm with this name exists (see `seed-farm`).
    #[arg(long)]
    seed_farm: Option<String>,
    #[command(flatten)]
    farmer: FarmerArgs,
    /// Before serving, publish this zos version (e.g. v4.0.5).
    #[arg(long)]
    zos_version: Option<String>,
    /// Whether the published zos version is safe to upgrade to for every farm.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    safe_to_upgrade: bool,
}

#[derive(clap::Args, Clone)]
struct FarmerArgs {
    /// The farmer's key: a BIP-39 phrase or Substrate secret URI (`phrase//derivation`, `0x<hex seed>`). Without
    /// it a fresh random key owns the farm (nobody can manage it; nodes can still register on it).
    #[arg(long, env = "REGISTRAR_FARMER_MNEMONIC", hide_env_values = true)]
    mnemonic: Option<String>,
    /// Key scheme of the mnemonic.
    #[arg(long, default_value = "ed25519")]
    scheme: Scheme,
    /// The farm's stellar address (default: the one of the farmer's key).
    #[arg(long)]
    stellar_address: Option<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a farmer account and a farm (idempotent) and print the farm id on stdout.
    SeedFarm {
        /// Farm name (ASCII letters and digits, at most 40).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        farmer: FarmerArgs,
    },
    /// Publish the zos version nodes should run.
    SetVersion {
        /// The version, equal to the hub tag nodes will see (e.g. v4.0.5).
        #[arg(long)]
        version: String,
        #[arg(long, default_value_t = true, action = ArgAction::Set)]
        safe_to_upgrade: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    zos_runtime::init_tracing(args.debug);
    zos_runtime::exit(run(args))
}

fn open(db: &Option<String>) -> anyhow::Result<Store> {
    let path = db
        .as_deref()
        .context("--db (or REGISTRAR_DB) is required")?;
    Ok(Store::open(path)?)
}

fn seed(store: &Store, name: &str, f: &FarmerArgs) -> anyhow::Result<u64> {
    let key = match &f.mnemonic {
        Some(uri) => Some(KeyPair::from_uri(uri, f.scheme).context("--mnemonic")?),
        None => None,
    };
    let s = bootstrap::seed_farm(
        store,
        key.as_ref(),
        name,
        f.stellar_address.as_deref(),
        SystemClock.now_nanos(),
    )?;
    if s.created_farm && key.is_none() {
        tracing::warn!(
            farm = name,
            "no --mnemonic: the farm is owned by a fresh random key nobody keeps"
        );
    }
    tracing::info!(
        farm = name,
        farm_id = s.farm_id,
        twin_id = s.twin_id,
        created_farm = s.created_farm,
        created_account = s.created_account,
        "farm ready"
    );
    Ok(s.farm_id)
}

fn run(args: Args) -> anyhow::Result<()> {
    match &args.cmd {
        Some(Cmd::SeedFarm { name, farmer }) => {
            let farm_id = seed(&open(&args.db)?, name, farmer)?;
            println!("{farm_id}");
            Ok(())
        }
        Some(Cmd::SetVersion {
            version,
            safe_to_upgrade,
        }) => {
            let changed = bootstrap::seed_zos_version(&open(&args.db)?, version, *safe_to_upgrade)?;
            tracing::info!(version, safe_to_upgrade, changed, "zos version");
            Ok(())
        }
        None => {
            let s = &args.serve;
            let store = Arc::new(open(&args.db)?);
            if let Some(name) = &s.seed_farm {
                seed(&store, name, &s.farmer)?;
            }
            if let Some(v) = &s.zos_version {
                bootstrap::seed_zos_version(&store, v, s.safe_to_upgrade)?;
            }
            let config = ServerConfig {
                admin_twin: s.admin_twin,
                auth_skew_secs: s.auth_skew,
                account_window_secs: s.account_window,
                online_cutoff_secs: s.online_cutoff_minutes * 60,
                max_page_size: s.max_page_size.max(1),
                accept_v1_auth: !s.reject_v1_auth,
                ..ServerConfig::default()
            };
            let listen = s.listen.clone();
            zos_runtime::block_on(async move {
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("listening on {listen}"))?;
                tracing::info!(addr = %listener.local_addr()?, "registrar listening (routes under /api/v1 and /v1)");
                zos_registrar_server::serve(
                    listener,
                    store,
                    config,
                    Arc::new(SystemClock),
                    zos_runtime::shutdown_signal(),
                )
                .await
                .context("serving")
            })
        }
    }
}
