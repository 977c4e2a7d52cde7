//! Making GuardNest the system proxy, as a transaction: read the user's settings, persist
//! them with what we applied and which process we are (PID and start time, never a bare
//! PID: see [`process`]), apply, and on disable (or exit, or at the next
//! start after a crash) restore exactly what was there — but only where the setting still
//! points at us, so another program's later change is never overwritten blindly.
//!
//! The planning is pure functions over flat key → value maps, tested for every backend;
//! each backend is a thin shell that reads and writes those keys with the OS's own tools
//! and checks every exit status (and reads back, since `gsettings` exits 0 even when it
//! wrote nothing).
//!
//! This crate is GuardNest's whole OS layer: besides the backends and their transaction, it
//! holds the firewall hook a backend may need while the proxy listens ([`Backend::listening`]),
//! the private-file helpers ([`fsutil`]), and the addresses this host delivers to itself
//! ([`local`], a gateway's `self`), and the program on the other end of a client's
//! connection ([`peer`]). Only this crate calls the OS's own APIs.

#![warn(missing_docs)]
// No unwrap on locks, I/O or anything a peer controls; tests may.
#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod cmd;
pub mod fsutil;
pub mod gnome;
pub mod kde;
pub mod local;
pub mod login;
pub mod macos;
#[cfg(target_os = "linux")]
mod netlink;
pub mod peer;
pub mod process;
pub mod session;
pub mod upstream;
pub mod windows;

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use gnome::Gnome;
pub use kde::Kde;
pub use macos::Macos;
pub use process::ProcessId;
pub use upstream::{Bypass, BypassStyle, ProxyServer, UserProxy};
pub use windows::Windows;

/// A backend's settings: key → value (an absent key means "unset").
pub type Settings = BTreeMap<String, String>;

/// Errors of the system-proxy step.
#[derive(Debug, thiserror::Error)]
pub enum SysProxyError {
    /// A tool the backend needs is not installed.
    #[error("{tool} not found: cannot change the {backend} proxy settings")]
    MissingTool {
        /// The backend.
        backend: &'static str,
        /// The program.
        tool: String,
    },
    /// A tool ran and failed.
    #[error("{command} failed: {detail}")]
    Command {
        /// What was run.
        command: String,
        /// Exit status and stderr.
        detail: String,
    },
    /// A write did not stick (read back differs).
    #[error("setting {key} did not take effect (wrote {wanted:?}, read back {got:?}){hint}")]
    NotApplied {
        /// The key.
        key: String,
        /// What was written.
        wanted: String,
        /// What was read back.
        got: String,
        /// The backend's likely cause, starting with "; " (empty when it has none).
        hint: &'static str,
    },
    /// The saved snapshot could not be stored or read.
    #[error("system proxy state file {path}: {source}")]
    State {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// This backend cannot run on this OS.
    #[error("the {0} backend is not available on this system")]
    Unavailable(&'static str),
    /// The repair at login cannot be written for this command (nothing was written).
    #[error(transparent)]
    LoginEntry(#[from] login::EntryError),
}

/// Fixed proxy address, or a PAC file that falls back to direct (fail-open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `PROXY host:port` for HTTP and HTTPS.
    Fixed(SocketAddr),
    /// An auto-config URL answering `PROXY host:port; DIRECT`.
    Pac(String),
}

/// One OS mechanism for proxy settings.
pub trait Backend: Send + Sync {
    /// Short name (`gnome`, `kde`, …).
    fn name(&self) -> &'static str;
    /// The keys and values that make GuardNest the proxy (pure).
    fn target_settings(&self, target: &Target) -> Settings;
    /// Reads the current values of `keys` (absent keys are left out).
    fn read(&self, keys: &[String]) -> Result<Settings, SysProxyError>;
    /// Writes values (a value of [`UNSET`] removes the key) and verifies them.
    fn write(&self, values: &Settings) -> Result<(), SysProxyError>;
    /// The exact values to write for `target` given the `current` ones (pure). Most
    /// backends write fixed values; Windows' connection records keep their other fields and
    /// count the change.
    fn settings_for(&self, target: &Target, _current: &Settings) -> Settings {
        self.target_settings(target)
    }
    /// After a write of `target`'s settings: checks that the OS's own readers now see
    /// GuardNest (Windows: WinINet and WinHTTP). A failure rolls the change back.
    fn verify(&self, _target: &Target) -> Result<(), SysProxyError> {
        Ok(())
    }
    /// Whether `current` routes traffic as `wanted` does (see [`points_at`]).
    fn points_at(&self, wanted: &Settings, current: &Settings) -> bool {
        points_at(wanted, current)
    }
    /// The keys [`Backend::user_proxy`] reads.
    fn upstream_keys(&self) -> Vec<String> {
        Vec::new()
    }
    /// The user's own proxy from those keys' values (pure; see [`upstream`]).
    fn user_proxy(&self, _settings: &Settings) -> UserProxy {
        UserProxy::Direct
    }
    /// The proxy now listens on `addr`: open what the OS needs (Windows: a firewall rule
    /// when listening beyond loopback as an administrator); says what it did, if anything.
    /// A failure is a warning.
    fn listening(&self, _addr: SocketAddr) -> Result<Option<String>, SysProxyError> {
        Ok(None)
    }
    /// The proxy stopped listening on `addr`: close what [`Backend::listening`] opened.
    fn stopped(&self, _addr: SocketAddr) -> Result<Option<String>, SysProxyError> {
        Ok(None)
    }
}

/// Written for a key that was absent in the snapshot: remove it again.
pub const UNSET: &str = "\u{0}unset";

/// What is persisted while GuardNest is the system proxy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Transaction {
    /// Backend name.
    pub backend: String,
    /// The process that applied it (`pid`, `started`, `boot` in the file).
    #[serde(flatten)]
    pub owner: ProcessId,
    /// The user's settings before (only the keys we change; [`UNSET`] for absent ones).
    pub saved: Settings,
    /// What we wrote.
    pub applied: Settings,
}

/// Plans the change: the snapshot to keep (absent keys recorded as [`UNSET`]).
pub fn plan_enable(current: &Settings, target: &Settings) -> Settings {
    target.keys().map(|k| (k.clone(), current.get(k).cloned().unwrap_or_else(|| UNSET.to_string()))).collect()
}

/// What a restore writes, and which keys it leaves alone because another program changed
/// them after we applied ours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestorePlan {
    /// Keys to put back.
    pub writes: Settings,
    /// Keys changed by someone else since we applied: left as they are.
    pub foreign: Vec<String>,
}

/// Plans the restore: only keys that still hold what we applied go back to the snapshot.
/// A key that already holds the snapshot's value (a write that never happened) needs
/// nothing and is not another program's.
pub fn plan_restore(saved: &Settings, applied: &Settings, current: &Settings) -> RestorePlan {
    let mut plan = RestorePlan::default();
    for (key, ours) in applied {
        let now = current.get(key).map_or(UNSET, String::as_str);
        let before = saved.get(key).map(String::as_str);
        if now == ours {
            if let Some(before) = before.filter(|b| *b != now) {
                plan.writes.insert(key.clone(), before.to_string());
            }
        } else if before != Some(now) {
            plan.foreign.push(key.clone());
        }
    }
    plan
}

/// What enable and disable report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The backend used.
    pub backend: String,
    /// One line for the user.
    pub message: String,
}

/// The system-proxy step of the service: one backend, its transaction file, one lock.
pub struct SystemProxy {
    backend: Option<Box<dyn Backend>>,
    state_file: PathBuf,
    lock: Mutex<()>,
    /// Registered while a transaction is open, so a machine that reboots without GuardNest
    /// gets the user's settings back at the next login.
    login: Option<login::LoginRepair>,
    /// This process, as a transaction records its owner.
    me: ProcessId,
}

impl SystemProxy {
    /// A system proxy step using `backend` (`None`: do nothing), keeping its transaction in
    /// `data_dir`.
    pub fn new(backend: Option<Box<dyn Backend>>, data_dir: &Path) -> Self {
        Self {
            backend,
            state_file: data_dir.join("system-proxy.json"),
            lock: Mutex::new(()),
            login: None,
            me: ProcessId::current(),
        }
    }

    /// Registers `repair` with the OS while GuardNest holds the system proxy (from the apply
    /// until a clean restore), so it runs at the next login if GuardNest does not restore.
    pub fn with_login_repair(mut self, repair: Option<login::LoginRepair>) -> Self {
        self.login = repair;
        self
    }

    /// The login repair this step registers, if any.
    pub fn login_repair(&self) -> Option<&login::LoginRepair> {
        self.login.as_ref()
    }

    fn register_login_repair(&self) -> Option<String> {
        let login = self.login.as_ref()?;
        login.register().err().map(|e| format!("cannot register the repair at login ({}): {e}", login.describe()))
    }

    fn unregister_login_repair(&self) {
        if let Some(login) = &self.login {
            // A failure is harmless: at the next login the repair finds nothing to do and
            // removes itself.
            let _ = login.unregister();
        }
    }

    /// The backend's name, or `none`.
    pub fn backend_name(&self) -> &'static str {
        self.backend.as_ref().map_or("none", |b| b.name())
    }

    /// Whether a backend is configured (`none` changes nothing).
    pub fn has_backend(&self) -> bool {
        self.backend.is_some()
    }

    /// Runs the backend's [`Backend::listening`] hook: what it did (to log), or why not (a
    /// warning: the proxy serves either way).
    pub fn listening(&self, addr: SocketAddr) -> Result<Option<String>, SysProxyError> {
        self.backend.as_ref().map_or(Ok(None), |b| b.listening(addr))
    }

    /// Runs the backend's [`Backend::stopped`] hook: what it did (to log), or why not.
    pub fn stopped(&self, addr: SocketAddr) -> Result<Option<String>, SysProxyError> {
        self.backend.as_ref().map_or(Ok(None), |b| b.stopped(addr))
    }

    /// Whether a transaction of this very process is open (GuardNest is the system proxy).
    /// One left by an earlier process that had the same PID is not ours.
    pub fn is_applied(&self) -> bool {
        self.load().ok().flatten().is_some_and(|t| t.owner == self.me)
    }

    /// Snapshots, persists, then applies. Applying twice keeps the first snapshot.
    pub fn apply(&self, target: &Target) -> Result<Outcome, SysProxyError> {
        let _one = self.lock.lock();
        let Some(backend) = &self.backend else {
            return Ok(Outcome {
                backend: "none".into(),
                message: "system proxy backend is none: nothing changed".into(),
            });
        };
        let keys: Vec<String> = backend.target_settings(target).into_keys().collect();
        let current = backend.read(&keys)?;
        let wanted = backend.settings_for(target, &current);
        let saved = match self.load()? {
            // Still ours from this run: keep the original snapshot, not our own settings.
            Some(t) if t.owner == self.me => t.saved,
            _ => plan_enable(&current, &wanted),
        };
        let transaction =
            Transaction { backend: backend.name().into(), owner: self.me.clone(), saved, applied: wanted.clone() };
        // Persist before touching anything: a crash from here on is repaired at next start,
        // or at the next login by the registered repair if GuardNest never starts again.
        self.store(&transaction)?;
        let login_warning = self.register_login_repair();
        if let Err(e) = backend.write(&wanted).and_then(|()| backend.verify(target)) {
            // Put back whatever part was written, so nothing is left half-applied.
            let current = backend.read(&keys).unwrap_or_default();
            let plan = plan_restore(&transaction.saved, &transaction.applied, &current);
            let _ = backend.write(&plan.writes);
            let _ = std::fs::remove_file(&self.state_file);
            self.unregister_login_repair();
            return Err(e);
        }
        let mut message = format!("system proxy set ({})", backend.name());
        if let Some(w) = login_warning {
            message += &format!("; {w}");
        }
        Ok(Outcome { backend: backend.name().into(), message })
    }

    /// Restores the snapshot where our settings are still in place; says what it left alone.
    pub fn restore(&self) -> Result<Outcome, SysProxyError> {
        let _one = self.lock.lock();
        self.restore_locked(false)
    }

    /// Restores a transaction left by a GuardNest that is no longer running: its owner (PID
    /// and start time) is gone.
    pub fn repair(&self) -> Result<Option<Outcome>, SysProxyError> {
        self.repair_if(&|owner| !owner.is_alive())
    }

    /// Restores a transaction of another process when `gone` says its owner is gone. A
    /// caller that holds the data dir's instance lock knows every other owner is gone:
    /// the owner held that lock while it lived.
    pub fn repair_if(&self, gone: &dyn Fn(&ProcessId) -> bool) -> Result<Option<Outcome>, SysProxyError> {
        let _one = self.lock.lock();
        match self.load()? {
            Some(t) if t.owner != self.me && gone(&t.owner) => self.restore_locked(true).map(Some),
            _ => Ok(None),
        }
    }

    /// The user's own proxy: the OS's current settings, with the values GuardNest replaced
    /// taken from the open transaction's snapshot (so while GuardNest is the system proxy,
    /// what the user had; otherwise what the OS has now). `None` without a backend.
    pub fn user_proxy(&self) -> Result<Option<UserSettings>, SysProxyError> {
        let _one = self.lock.lock();
        let Some(backend) = &self.backend else { return Ok(None) };
        let keys = backend.upstream_keys();
        let mut settings = backend.read(&keys)?;
        let saved = self.load()?.filter(|t| t.backend == backend.name()).map(|t| t.saved);
        let from_snapshot = saved.is_some();
        overlay(&mut settings, saved.as_ref());
        Ok(Some(UserSettings { backend: backend.name(), proxy: backend.user_proxy(&settings), from_snapshot }))
    }

    /// The open transaction, if any (GuardNest set the system proxy and has not restored it).
    pub fn transaction(&self) -> Result<Option<Transaction>, SysProxyError> {
        self.load()
    }

    /// Without a snapshot (it was lost, or GuardNest was uninstalled mid-session): when the
    /// system proxy is set exactly as GuardNest sets it for one of `candidates` and nothing
    /// answers there (`alive` says no), turn the proxy off, every key back to its default.
    /// A proxy that is alive, or settings that are not GuardNest's, are left alone.
    pub fn switch_off_dead(
        &self,
        candidates: &[Target],
        alive: &dyn Fn(&Target) -> bool,
    ) -> Result<Option<Outcome>, SysProxyError> {
        let _one = self.lock.lock();
        let Some(backend) = &self.backend else { return Ok(None) };
        for candidate in candidates {
            let wanted = backend.target_settings(candidate);
            let keys: Vec<String> = wanted.keys().cloned().collect();
            let current = backend.read(&keys)?;
            if !backend.points_at(&wanted, &current) || alive(candidate) {
                continue;
            }
            let off: Settings = keys.into_iter().map(|k| (k, UNSET.to_string())).collect();
            backend.write(&off)?;
            let at = match candidate {
                Target::Fixed(addr) => addr.to_string(),
                Target::Pac(url) => url.clone(),
            };
            return Ok(Some(Outcome {
                backend: backend.name().into(),
                message: format!(
                    "turned the {} system proxy off: it pointed at GuardNest on {at}, where nothing is running",
                    backend.name()
                ),
            }));
        }
        Ok(None)
    }

    fn restore_locked(&self, repairing: bool) -> Result<Outcome, SysProxyError> {
        let Some(t) = self.load()? else {
            return Ok(Outcome {
                backend: self.backend_name().into(),
                message: "system proxy was not set by GuardNest".into(),
            });
        };
        let backend = match &self.backend {
            Some(b) if b.name() == t.backend => b,
            _ => {
                return Ok(Outcome {
                    backend: t.backend.clone(),
                    message: format!("saved settings are for the {} backend; not restored", t.backend),
                })
            }
        };
        let keys: Vec<String> = t.applied.keys().cloned().collect();
        let current = backend.read(&keys)?;
        let plan = plan_restore(&t.saved, &t.applied, &current);
        backend.write(&plan.writes)?;
        std::fs::remove_file(&self.state_file)
            .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
            .map_err(|source| SysProxyError::State { path: self.state_file.display().to_string(), source })?;
        self.unregister_login_repair();
        let mut message = match repairing {
            true => format!("repaired a crashed session: restored your {} proxy settings", t.backend),
            false => format!("restored your {} proxy settings", t.backend),
        };
        if !plan.foreign.is_empty() {
            message += &format!("; left {} as another program set them", plan.foreign.join(", "));
        }
        Ok(Outcome { backend: t.backend, message })
    }

    fn load(&self) -> Result<Option<Transaction>, SysProxyError> {
        match fsutil::read_to_string_no_follow(&self.state_file) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| SysProxyError::State {
                path: self.state_file.display().to_string(),
                source: std::io::Error::other(e),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SysProxyError::State { path: self.state_file.display().to_string(), source }),
        }
    }

    fn store(&self, t: &Transaction) -> Result<(), SysProxyError> {
        let err = |source| SysProxyError::State { path: self.state_file.display().to_string(), source };
        let json = serde_json::to_vec_pretty(t).map_err(|e| err(std::io::Error::other(e)))?;
        fsutil::write_atomic(&self.state_file, &json, false).map_err(err)
    }
}

/// The user's own proxy as [`SystemProxy::user_proxy`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSettings {
    /// The backend that read it.
    pub backend: &'static str,
    /// What the settings say.
    pub proxy: UserProxy,
    /// Read (partly) from the snapshot of a transaction: GuardNest is the system proxy.
    pub from_snapshot: bool,
}

/// Lays a snapshot over current values (pure): its keys win, an [`UNSET`] one is absent.
pub fn overlay(current: &mut Settings, saved: Option<&Settings>) {
    for (k, v) in saved.into_iter().flatten() {
        match v.as_str() {
            UNSET => current.remove(k),
            _ => current.insert(k.clone(), v.clone()),
        };
    }
}

/// Whether `current` routes traffic as `wanted` does: every key equal (an [`UNSET`] one
/// absent) except the bypass lists, which users edit (pure).
pub fn points_at(wanted: &Settings, current: &Settings) -> bool {
    let bypass = |k: &str| {
        let k = k.to_ascii_lowercase();
        k.contains("ignore") || k.contains("bypass") || k.contains("noproxyfor") || k.contains("override")
    };
    wanted.iter().filter(|(k, _)| !bypass(k)).all(|(k, v)| current.get(k).map_or(UNSET, String::as_str) == v)
}

/// Which OS mechanism to use for the system proxy (`[system_proxy] backend`): one type for
/// the configuration and for choosing the backend, so a name cannot be accepted by one and
/// unknown to the other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// From the OS, and on Linux `XDG_CURRENT_DESKTOP`.
    #[default]
    Auto,
    /// GNOME's gsettings (Firefox and Chromium read them on every Linux desktop).
    Gnome,
    /// KDE Plasma's kioslaverc, and the GNOME keys.
    Kde,
    /// The registry values WinINet and WinHTTP read.
    Windows,
    /// `networksetup`.
    Macos,
    /// Change nothing.
    None,
}

impl BackendKind {
    /// The name, as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Auto => "auto",
            BackendKind::Gnome => "gnome",
            BackendKind::Kde => "kde",
            BackendKind::Windows => "windows",
            BackendKind::Macos => "macos",
            BackendKind::None => "none",
        }
    }
}

/// Chooses a backend: `auto` looks at the desktop on Linux and the OS elsewhere.
pub fn backend_for(kind: BackendKind) -> Result<Option<Box<dyn Backend>>, SysProxyError> {
    Ok(match kind {
        BackendKind::None => None,
        BackendKind::Gnome => Some(Box::new(Gnome::new())),
        BackendKind::Kde => Some(Box::new(Kde::new())),
        BackendKind::Windows => Some(windows_backend()?),
        BackendKind::Macos => Some(Box::new(Macos::new())),
        BackendKind::Auto => auto_backend(),
    })
}

fn windows_backend() -> Result<Box<dyn Backend>, SysProxyError> {
    #[cfg(windows)]
    {
        Ok(Box::new(Windows::new()?))
    }
    #[cfg(not(windows))]
    Err(SysProxyError::Unavailable("windows"))
}

fn auto_backend() -> Option<Box<dyn Backend>> {
    if cfg!(windows) {
        return windows_backend().ok();
    }
    if cfg!(target_os = "macos") {
        return Some(Box::new(Macos::new()));
    }
    let desktop = std::env::var("XDG_CURRENT_DESKTOP").unwrap_or_default().to_ascii_uppercase();
    if desktop.split(':').any(|d| d == "KDE") {
        return Some(Box::new(Kde::new()));
    }
    Some(Box::new(Gnome::new()))
}

/// The host clients should use for a listen address (a wildcard bind means loopback).
pub fn host_of(addr: SocketAddr) -> String {
    match addr.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".into(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    }
}

/// Hosts never sent to the proxy: local names and loopback.
pub const BYPASS: &[&str] = &["localhost", "127.0.0.0/8", "::1"];

#[cfg(test)]
mod tests;
