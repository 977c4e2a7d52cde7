//! "My internet stopped working": putting the user's own proxy settings back with no
//! GuardNest running. `guardnest repair` runs this, and so does the entry registered to run
//! once at the next login while GuardNest holds the system proxy (`--at-login`).
//!
//! With the snapshot of a GuardNest that is gone, the snapshot is restored exactly. Without
//! one (it was lost), a system proxy set exactly as GuardNest sets it, pointing at an
//! address where nothing answers, is turned off. A live GuardNest is never touched.
//!
//! "Gone" is decided by what dies with a GuardNest, never by a bare PID: the data dir's
//! instance lock (an OS lock every instance holds while it lives), and the owner's PID
//! together with its start time.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::instance::{holder_of, is_held};
use crate::config::Config;
use crate::control::{runtime_path, RuntimeInfo};
use crate::sysproxy::login::LoginRepair;
use crate::sysproxy::{SysProxyError, SystemProxy, Target};

/// How long a listener has to answer before it counts as dead.
const ALIVE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a repair at login leaves for the next GuardNest to tell the user.
pub const RECORD: &str = "repaired.json";

/// Why nothing was repaired.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// A live GuardNest holds the settings: stopping it restores them.
    #[error("GuardNest (pid {pid}) is running and holds the system proxy: `guardnest disable` or stopping it puts your settings back")]
    Live {
        /// Its process.
        pid: u32,
    },
    /// The settings could not be read or written.
    #[error(transparent)]
    System(#[from] SysProxyError),
}

/// A repair that happened, as the next start reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repaired {
    /// When (seconds since the epoch).
    pub at: u64,
    /// What was put back.
    pub message: String,
    /// Whether it ran at login, by itself (not at GuardNest's own start).
    pub at_login: bool,
    /// The system-proxy backend whose settings were put back.
    #[serde(default)]
    pub backend: Option<String>,
}

impl Repaired {
    /// One line: what, and when (UTC).
    pub fn line(&self) -> String {
        let when = humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(self.at));
        match self.at_login {
            true => format!("at login ({when}), GuardNest {}", self.message),
            false => format!("at start ({when}), GuardNest {}", self.message),
        }
    }
}

/// The command the OS runs at login to repair: this program, `repair`, this data dir. The
/// paths go as they are (not as displayed, which would replace what is not Unicode: another
/// path), the data dir made absolute, since the login runs elsewhere; the entry refuses what
/// its format cannot hold.
pub fn login_command(data_dir: &Path) -> Option<Vec<OsString>> {
    let exe = std::env::current_exe().ok()?;
    let data_dir = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    Some(vec![
        exe.into_os_string(),
        "repair".into(),
        "--data-dir".into(),
        data_dir.into_os_string(),
        "--at-login".into(),
    ])
}

/// The login repair of this OS for `data_dir`'s instance.
pub fn login_repair(data_dir: &Path) -> Option<LoginRepair> {
    LoginRepair::for_this_os(login_command(data_dir)?)
}

/// Puts the user's settings back (see the module doc); the message says what was done.
/// `extra_listen` is one more address whose proxy settings count as GuardNest's.
pub fn repair(
    config: &Config,
    data_dir: &Path,
    extra_listen: Option<SocketAddr>,
    at_login: bool,
) -> Result<String, RepairError> {
    let login = login_repair(data_dir);
    let system = system_for(config, data_dir)?;
    if let Some(t) = system.transaction()? {
        // The snapshot's owner held the data dir's lock while it lived: a free lock means it
        // is gone, whatever process has its PID now. A held lock is a live GuardNest, which
        // owns the snapshot or repaired it when it started.
        if !t.owner.is_current() && (is_held(data_dir) || t.owner.is_alive()) {
            // Windows deletes a RunOnce entry as it runs it: the live instance keeps its own.
            if at_login {
                if let Some(l) = &login {
                    let _ = l.register();
                }
            }
            let pid = holder_of(data_dir).map_or(t.owner.pid, |h| h.pid);
            return Err(RepairError::Live { pid });
        }
        let message = system.repair_if(&|_| true)?.map_or_else(|| "nothing to repair".to_string(), |o| o.message);
        forget_stale_runtime(data_dir);
        finish(&login, data_dir, at_login, &message, Some(system.backend_name()));
        return Ok(message);
    }
    if is_held(data_dir) {
        if let Some(h) = holder_of(data_dir) {
            return Err(RepairError::Live { pid: h.pid });
        }
    }
    let outcome = system.switch_off_dead(&candidates(config, data_dir, extra_listen), &alive)?;
    forget_stale_runtime(data_dir);
    let (message, repaired) = match outcome {
        Some(o) => (o.message, Some(system.backend_name())),
        None => (
            format!(
                "nothing to repair: the {} system proxy does not point at a stopped GuardNest",
                system.backend_name()
            ),
            None,
        ),
    };
    finish(&login, data_dir, at_login, &message, repaired);
    Ok(message)
}

/// The entry has done its work; a repair at login is recorded for the next start to tell.
/// `repaired`: the backend whose settings were put back, if any were.
fn finish(login: &Option<LoginRepair>, data_dir: &Path, at_login: bool, message: &str, repaired: Option<&str>) {
    if let Some(l) = login {
        let _ = l.unregister();
    }
    if let (true, Some(backend)) = (at_login, repaired) {
        let at = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let record = Repaired {
            at,
            message: message.trim_start_matches("repaired a crashed session: ").to_string(),
            at_login,
            backend: Some(backend.to_string()),
        };
        if let Ok(json) = serde_json::to_vec_pretty(&record) {
            let _ = crate::sysproxy::fsutil::write_atomic(&data_dir.join(RECORD), &json, false);
        }
    }
}

/// The repair a login left, taken (read and removed) so that it is told once.
pub fn take_record(data_dir: &Path) -> Option<Repaired> {
    let path: PathBuf = data_dir.join(RECORD);
    let record =
        crate::sysproxy::fsutil::read_to_string_no_follow(&path).ok().and_then(|t| serde_json::from_str(&t).ok());
    let _ = std::fs::remove_file(path);
    record
}

/// What a GuardNest on this data dir may have set: its listen address (and `extra`), and
/// the PAC URL of its control API (configured, or the one a stale runtime file names).
fn candidates(config: &Config, data_dir: &Path, extra: Option<SocketAddr>) -> Vec<Target> {
    let mut out: Vec<Target> =
        [Some(config.proxy.listen), extra].into_iter().flatten().filter(|a| a.port() != 0).map(Target::Fixed).collect();
    let stale = RuntimeInfo::load(&runtime_path(data_dir)).ok().filter(|i| !i.owner.is_alive());
    for addr in [config.control.addr().ok().flatten(), stale.map(|i| i.addr)].into_iter().flatten() {
        out.push(Target::Pac(format!("http://{addr}/proxy.pac")));
    }
    out
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
fn forget_stale_runtime(data_dir: &Path) {
    let path = runtime_path(data_dir);
    if RuntimeInfo::load(&path).is_ok_and(|i| !i.owner.is_alive()) && !is_held(data_dir) {
        let _ = std::fs::remove_file(path);
    }
}

/// A system-proxy step as [`repair`] builds it (tests use their own backend).
pub fn system_for(config: &Config, data_dir: &Path) -> Result<SystemProxy, SysProxyError> {
    Ok(crate::service::ProxyService::system_proxy_for(config, data_dir)?.with_login_repair(login_repair(data_dir)))
}
