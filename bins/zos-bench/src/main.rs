//! Benchmarks, run by `cargo xtask bench <what>` in release mode. Each measures a baseline in the same run and
//! prints ratios against it; none asserts on time.

use clap::{Parser, Subcommand};

mod bus;
mod flist;

#[derive(Parser)]
#[command(
    name = "zos-bench",
    about = "Benchmarks that print ratios against a baseline measured in the same run"
)]
struct Cli {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Bus round trip against the raw Redis floor of the zbus pattern.
    Bus {
        /// Fewer calls (a smoke run).
        #[arg(long)]
        quick: bool,
    },
    /// flist pack and mounted-read throughput against the local disk.
    Flist,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().what {
        What::Bus { quick } => bus::run(quick),
        What::Flist => flist::run(),
    }
}
