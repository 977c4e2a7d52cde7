//! `guardnest repair`: the user's proxy settings back, with no GuardNest running.

use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use guardnest_core::config::Config;
use guardnest_core::control::{runtime_path, RuntimeInfo};
use guardnest_core::sysproxy::{process_alive, Target};
use guardnest_core::ProxyService;

use crate::cli::RepairArgs;

/// How long a listener has to answer before it counts as dead.
const ALIVE_TIMEOUT: Duration = Duration::from_secs(1);

pub fn repair(args: RepairArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    let data_dir = args.common.data_dir();
    let system = ProxyService::system_proxy_for(&config, &data_dir).context("no system-proxy backend here")?;

    // 1. A snapshot left by a GuardNest that is gone: restore exactly what was there.
    if let Some(t) = system.transaction().context("cannot read the saved settings")? {
        if process_alive(t.pid) {
            anyhow::bail!(
                "GuardNest (pid {}) is running and holds the system proxy: `guardnest disable` or stopping it \
                 puts your settings back",
                t.pid
            );
        }
        let outcome = system.repair().context("cannot restore your proxy settings")?;
        println!("{}", outcome.map_or_else(|| "nothing to repair".to_string(), |o| o.message));
        forget_stale_runtime(&data_dir);
        return Ok(ExitCode::SUCCESS);
    }

    // 2. No snapshot: turn off a system proxy that is GuardNest's and points at nothing.
    let mut candidates = Vec::new();
    for addr in [Some(config.proxy.listen), args.listen].into_iter().flatten() {
        if addr.port() != 0 {
            candidates.push(Target::Fixed(addr));
        }
    }
    let stale = RuntimeInfo::load(&runtime_path(&data_dir)).ok().filter(|i| !process_alive(i.pid));
    for addr in [config.control.addr().ok().flatten(), stale.map(|i| i.addr)].into_iter().flatten() {
        candidates.push(Target::Pac(format!("http://{addr}/proxy.pac")));
    }
    let outcome = system.switch_off_dead(&candidates, &alive).context("cannot change the system proxy")?;
    forget_stale_runtime(&data_dir);
    match outcome {
        Some(o) => println!("{}", o.message),
        None => println!(
            "nothing to repair: the {} system proxy does not point at a stopped GuardNest",
            system.backend_name()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether something accepts connections where the target points.
fn alive(target: &Target) -> bool {
    let addr: Option<SocketAddr> = match target {
        Target::Fixed(addr) => Some(*addr),
        Target::Pac(url) => url
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .and_then(|hostport| hostport.parse().ok()),
    };
    addr.is_some_and(|a| TcpStream::connect_timeout(&a, ALIVE_TIMEOUT).is_ok())
}

/// A runtime file whose process is gone only misleads `guardnest status`.
fn forget_stale_runtime(data_dir: &std::path::Path) {
    let path = runtime_path(data_dir);
    if RuntimeInfo::load(&path).is_ok_and(|i| !process_alive(i.pid)) {
        let _ = std::fs::remove_file(path);
    }
}
