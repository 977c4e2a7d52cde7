//! `guardnest stop` and `guardnest start-again`: stopping every GuardNest of this user the
//! way Ctrl-C does (the user's proxy settings restored first), for upgrades and the
//! uninstaller, and starting again what an upgrade stopped.
//!
//! The instance on the data dir is asked through its control API; with `--all`, every other
//! GuardNest process of this user too (SIGTERM on Unix; on Windows `WM_CLOSE` to its hidden
//! session window). What does not quit in time is ended, and the repair then puts back the
//! settings a killed or crashed GuardNest left. Processes are told apart by PID and start
//! time, so a PID reused by another program is never signalled.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use guardnest_core::control::{runtime_path, Quitting, RuntimeInfo};
use guardnest_core::service::instance::is_held;
use guardnest_core::service::repair::{repair, RepairError};
use guardnest_core::sysproxy::process::{self, Found, ProcessId};
use serde::{Deserialize, Serialize};

use crate::cli::{StartAgainArgs, StopArgs};
use crate::client::Instance;

/// How a stopped GuardNest was started, to start it again after an upgrade.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stopped {
    /// Program and arguments.
    pub command: Vec<String>,
    /// Where it was started.
    pub cwd: Option<PathBuf>,
}

/// `guardnest stop`.
pub fn stop(args: &StopArgs) -> anyhow::Result<ExitCode> {
    let data_dir = args.common.data_dir();
    let within = args.timeout;
    let mut stopped: Vec<Stopped> = Vec::new();
    let mut asked: Vec<(ProcessId, String)> = Vec::new();
    let mut left: Vec<String> = Vec::new();

    // 1. The instance on the data dir, through its control API.
    if let Some((owner, answer)) = ask_data_dir_instance(args) {
        println!("{}", answer.message);
        stopped.push(Stopped { command: answer.command, cwd: answer.cwd });
        asked.push((owner, format!("GuardNest on {}", data_dir.display())));
    }

    // 2. Every other GuardNest process of this user.
    if args.all {
        let known: Vec<u32> = asked.iter().map(|(p, _)| p.pid).collect();
        for Found { id, exe, command } in process::guardnest_processes() {
            if known.contains(&id.pid) {
                continue;
            }
            let what = format!("{} ({id})", exe.display());
            if process::ask_to_quit(&id) {
                println!("asked {what} to stop");
            } else {
                println!("{what} cannot be asked to stop (no session window); ending it");
                process::kill(&id);
            }
            if !command.is_empty() && is_long_running(&command) {
                stopped.push(Stopped { command, cwd: None });
            } else if command.is_empty() && exe.file_stem().is_some_and(|s| s.eq_ignore_ascii_case("guardnest-app")) {
                // Windows does not give another process's arguments: the app starts again
                // in the tray, as at login.
                stopped.push(Stopped { command: vec![exe.display().to_string(), "--hidden".into()], cwd: None });
            }
            asked.push((id, what));
        }
    }

    // 3. Wait for each (bounded); end what did not quit. Its settings come back in step 4.
    let deadline = Instant::now() + within;
    for (id, what) in &asked {
        let rest = deadline.saturating_duration_since(Instant::now());
        if process::wait_gone(id, rest) {
            continue;
        }
        eprintln!("guardnest: {what} did not stop within {}; ending it", humantime::format_duration(within));
        process::kill(id);
        if !process::wait_gone(id, Duration::from_secs(5)) {
            left.push(what.clone());
        }
    }
    // The data dir's lock goes with its holder, whatever answered.
    let lock_deadline = Instant::now() + Duration::from_secs(5);
    while is_held(&data_dir) && Instant::now() < lock_deadline {
        std::thread::sleep(Duration::from_millis(50));
    }

    // 4. Settings a killed or crashed GuardNest left, and the repair entry at login.
    let config = guardnest_core::ProxyService::config_for(&data_dir, None).unwrap_or_default();
    match repair(&config, &data_dir, None, false) {
        Ok(message) => println!("{message}"),
        Err(e @ RepairError::Live { .. }) => left.push(e.to_string()),
        Err(e) => return Err(e).context("cannot put your proxy settings back"),
    }

    if let Some(file) = &args.save_running {
        let json = serde_json::to_vec_pretty(&stopped)?;
        std::fs::write(file, json).with_context(|| format!("cannot write {}", file.display()))?;
    }
    if asked.is_empty() {
        println!("no GuardNest was running");
    }
    if !left.is_empty() {
        eprintln!("guardnest: still running: {}", left.join("; "));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The data dir's instance, asked to quit: its process and its answer. `None` when none
/// runs there (no control file, or the one recorded is gone).
fn ask_data_dir_instance(args: &StopArgs) -> Option<(ProcessId, Quitting)> {
    let data_dir = args.common.data_dir();
    let info = RuntimeInfo::load(&runtime_path(&data_dir)).ok()?;
    if !info.owner.is_alive() {
        return None;
    }
    let instance = Instance::find(&args.common).ok()?;
    match instance.call(reqwest::Method::POST, "/v1/quit") {
        Ok(v) => serde_json::from_value(v).ok().map(|q| (info.owner, q)),
        Err(_) => {
            // It does not answer: ask it the OS's way (and step 3 ends it if need be).
            process::ask_to_quit(&info.owner);
            let message = format!("GuardNest ({}) did not answer its control API; asked it to stop", info.owner);
            Some((info.owner, Quitting { changed: true, message, command: Vec::new(), cwd: None }))
        }
    }
}

/// `guardnest run …` or the app: worth starting again. Not a passing `status` or `repair`.
fn is_long_running(command: &[String]) -> bool {
    let exe = Path::new(&command[0]);
    let app = exe.file_stem().is_some_and(|s| s.eq_ignore_ascii_case("guardnest-app"));
    match app {
        true => command.get(1).is_none_or(|a| a.starts_with("--")),
        false => command.get(1).is_some_and(|a| a == "run"),
    }
}

/// `guardnest start-again FILE`: starts, detached, what `stop --save-running FILE` stopped.
pub fn start_again(args: &StartAgainArgs) -> anyhow::Result<ExitCode> {
    let text = match std::fs::read_to_string(&args.file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("nothing to start again ({} does not exist)", args.file.display());
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", args.file.display())),
    };
    let stopped: Vec<Stopped> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a list of stopped GuardNests", args.file.display()))?;
    let mut failed = false;
    for s in stopped.iter().filter(|s| !s.command.is_empty()) {
        match spawn_detached(s) {
            Ok(pid) => println!("started again: {} (PID {pid})", s.command.join(" ")),
            Err(e) => {
                eprintln!("guardnest: cannot start {}: {e}", s.command.join(" "));
                failed = true;
            }
        }
    }
    if stopped.is_empty() {
        println!("nothing to start again");
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Starts `s` on its own: no console, no shared process group, standard streams closed.
fn spawn_detached(s: &Stopped) -> std::io::Result<u32> {
    let mut cmd = std::process::Command::new(&s.command[0]);
    cmd.args(&s.command[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(dir) = s.cwd.as_ref().filter(|d| d.is_dir()) {
        cmd.current_dir(dir);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        cmd.process_group(0);
    }
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt as _;
        const DETACHED_PROCESS: u32 = 0x0000_0008;
        const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
        cmd.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP);
    }
    Ok(cmd.spawn()?.id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_long_running_commands_are_started_again() {
        let c = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert!(is_long_running(&c("/usr/bin/guardnest run --system-proxy")));
        assert!(!is_long_running(&c("/usr/bin/guardnest status")));
        assert!(!is_long_running(&c("/usr/bin/guardnest repair --at-login")));
        assert!(is_long_running(&c("/usr/bin/guardnest-app")));
        assert!(is_long_running(&c("/usr/bin/guardnest-app --hidden")));
        assert!(!is_long_running(&c("/usr/bin/guardnest-app repair --data-dir x")));
    }
}
