//! `guardnest-bench`: measurements behind GuardNest's performance claims. Not a test:
//! run it in release mode on a quiet machine and read the numbers.
//!
//! `guardnest-bench proxy` — a direct connection, GuardNest and any other proxy side by
//! side (see `bench/run-anchors.sh`).
//! `guardnest-bench lists` — list scale: build time, bytes per name, rebuild peak, lookup
//! latency, and the proxy's responsiveness during a rebuild, beside a `HashSet<String>`.
//! `guardnest-bench login-flood` — valid gateway logins while wrong passwords flood it.
//! `guardnest-bench pac` — a PAC lookup, cold, uncached and cached.
//! `guardnest-bench check` — the quick engine check CI runs: GuardNest against the direct
//! path in one run, as ratios with floors (exit 1 below a floor).

mod alloc;
mod lists;
mod login;
mod pac;
mod procfs;
mod proxy;
mod through;
mod upstream;
#[cfg(target_os = "linux")]
mod who;

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
    /// Proxy throughput, setup rate, latency, memory, HTTP, blocking, half-close, leaks:
    /// a direct connection (the limit) and every target given.
    Proxy {
        /// A proxy to measure: `NAME=ADDR[@PID]` (the PID enables CPU and memory figures).
        #[arg(long = "target", value_name = "NAME=ADDR[@PID]")]
        targets: Vec<proxy::Target>,
        /// Short runs (a smoke test, not a measurement).
        #[arg(long)]
        quick: bool,
        /// Only these scenarios (1-8), e.g. --only 2,5.
        #[arg(long, value_delimiter = ',')]
        only: Vec<u32>,
        /// Tunnels held open for the memory figure (2 descriptors each in this process).
        #[arg(long, default_value_t = 9000)]
        idle_tunnels: usize,
        /// Seconds the idle tunnels stay open before the memory is read (several harness
        /// processes can then hold theirs at the same time; see bench/fifty-thousand.sh).
        #[arg(long, default_value_t = 2)]
        hold_secs: u64,
        /// Tunnels opened and closed for the leak check.
        #[arg(long, default_value_t = 100_000)]
        leak_tunnels: usize,
        /// Rounds of each rate scenario (2, 5, 6), every target once per round in turn;
        /// each figure is the median (one with --quick).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Valid logins (argon2, never cached) during floods of wrong Basic passwords, on the
    /// release `guardnest` binary (build it first: cargo build --release -p guardnest-cli).
    LoginFlood {
        /// The guardnest binary; default: target/release/guardnest of this workspace.
        #[arg(long)]
        guardnest: Option<PathBuf>,
        /// Seconds each sustained flood lasts.
        #[arg(long, default_value_t = 10)]
        secs: u64,
    },
    /// PAC evaluation: µs per lookup, cold (new script), uncached host, cached host.
    Pac,
    /// Who asked: µs to name the program behind one connection, with 500 other processes
    /// running (Linux).
    Who,
    /// The quick engine check: tunnel throughput, tunnel setups and plain-HTTP requests
    /// through the release `guardnest`, each as a ratio to the direct path in the same run;
    /// exits 1 when a ratio is below its floor.
    Check {
        /// The guardnest binary; default: target/release/guardnest of this workspace.
        #[arg(long)]
        guardnest: Option<PathBuf>,
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
        Command::Proxy { targets, quick, only, idle_tunnels, hold_secs, leak_tunnels, rounds } => {
            let rounds = if quick { 1 } else { rounds };
            proxy::run(&targets, &proxy::Options { quick, only, idle_tunnels, hold_secs, leak_tunnels, rounds })
        }
        Command::LoginFlood { guardnest, secs } => {
            let guardnest = guardnest
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/guardnest"));
            login::run(&login::Options { guardnest, secs })
        }
        Command::Pac => pac::run(),
        #[cfg(target_os = "linux")]
        Command::Who => who::run(),
        #[cfg(not(target_os = "linux"))]
        Command::Who => anyhow::bail!("guardnest-bench who measures the Linux lookup"),
        Command::Check { guardnest } => {
            let guardnest = guardnest
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/guardnest"));
            if !check(&guardnest)? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::ListsRow { structure, path } => lists::row(&structure, &path),
        Command::ListsRebuild { path } => lists::rebuild_under_load(&path),
    }
}

/// Starts `guardnest run` on a free loopback port and runs [`proxy::check`] against it.
fn check(binary: &std::path::Path) -> anyhow::Result<bool> {
    use anyhow::Context as _;
    let dir = std::env::temp_dir().join(format!("guardnest-bench-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let list = dir.join("block.txt");
    std::fs::write(&list, "blocked.test\n")?;
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut child = std::process::Command::new(binary)
        .arg("run")
        .arg("--listen")
        .arg(addr.to_string())
        .args(["--control", "none", "--no-default-lists", "--log-level", "warn", "--blocklist"])
        .arg(&list)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {} (cargo build --release -p guardnest-cli)", binary.display()))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            anyhow::bail!("guardnest did not listen on {addr}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    println!("# guardnest-bench check: {} on {addr}", binary.display());
    let target = proxy::Target { name: "guardnest".into(), proxy: Some(addr), pid: Some(child.id()) };
    let result = proxy::check(&target, &proxy::FLOORS);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let ok = result?;
    println!(
        "{}",
        if ok { "check: every ratio at or above its floor" } else { "check: FAILED: a ratio is below its floor" }
    );
    Ok(ok)
}
