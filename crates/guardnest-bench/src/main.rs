//! `guardnest-bench`: measurements behind GuardNest's performance claims. Not a test:
//! run it in release mode on a quiet machine and read the numbers.
//!
//! `guardnest-bench lists` — list scale: build time, bytes per name, rebuild peak, lookup
//! latency, and the proxy's responsiveness during a rebuild, beside a `HashSet<String>`.

mod alloc;
mod lists;
mod procfs;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

#[derive(Parser)]
#[command(name = "guardnest-bench", about = "GuardNest benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List scale: build, memory, lookups, rebuild under load.
    Lists {
        /// Directory with the real lists (bench-1m.domains.txt.gz, stevenblack-unified.hosts).
        #[arg(long, default_value = "../shared/data/blocklists")]
        data: PathBuf,
    },
    /// (internal) one row of `lists`, in a fresh process.
    #[command(hide = true)]
    ListsRow { structure: String, path: PathBuf },
    /// (internal) the rebuild part of `lists`, in a fresh process.
    #[command(hide = true)]
    ListsRebuild { path: PathBuf },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Lists { data } => lists::run(&data),
        Command::ListsRow { structure, path } => lists::row(&structure, &path),
        Command::ListsRebuild { path } => lists::rebuild_under_load(&path),
    }
}
