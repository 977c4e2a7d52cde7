//! The one facade every front end uses (the design's enable_system_proxy,
//! disable_system_proxy, get_proxy_status and restart_proxy, without global statics):
//! an owned object whose calls are serialised, whose no-ops say so, and whose status is
//! measured, not remembered.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::blocklist::{Blocklists, Role, UpdateReport};
use crate::config::{Config, SystemProxyMode};
use crate::events::{BlockEvent, BlockLog};
use crate::health::Health;
use crate::server::{Proxy, ServeError};
use crate::stats::{Stats, StatsSnapshot};
use crate::sysproxy::{self, SysProxyError, SystemProxy, Target};

/// How long a restart waits for the old listener to close (the design's 5 s).
pub const RESTART_WAIT: Duration = Duration::from_secs(5);

/// Errors of service calls, as the UI and CLI show them.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The proxy could not start.
    #[error("cannot start the proxy")]
    Start(#[from] ServeError),
    /// The proxy runs, but the system-proxy step failed (nothing is left half-applied).
    #[error("the proxy is running, but the system proxy was not changed: {0}")]
    SystemProxy(#[source] SysProxyError),
    /// The old listener did not close in time.
    #[error("the old listener did not stop within {0:?}")]
    StopTimeout(Duration),
    /// The caller's input is not usable (a name that is not a host, an unknown list).
    #[error("{0}")]
    Input(String),
    /// A list could not be added.
    #[error(transparent)]
    Lists(#[from] crate::blocklist::ListError),
    /// The user's state could not be saved.
    #[error("cannot save {path}")]
    Save {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl ServiceError {
    /// A short machine-readable kind for `{kind, message}` answers.
    pub fn kind(&self) -> &'static str {
        match self {
            ServiceError::Start(_) => "start",
            ServiceError::SystemProxy(_) => "system_proxy",
            ServiceError::StopTimeout(_) => "stop_timeout",
            ServiceError::Input(_) => "input",
            ServiceError::Lists(_) => "lists",
            ServiceError::Save { .. } => "save",
        }
    }
}

/// What a call changed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Change {
    /// False for a no-op (enable when enabled, disable when disabled).
    pub changed: bool,
    /// One line for the user.
    pub message: String,
}

/// Measured state.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The proxy task runs and its accept loop is alive.
    pub running: bool,
    /// The last periodic health check passed.
    pub healthy: bool,
    /// The bound address, when running.
    pub listen: Option<SocketAddr>,
    /// Seconds since the proxy started.
    pub uptime_secs: Option<u64>,
    /// Health checks run and failed.
    pub health_checks: u64,
    /// Health checks that failed.
    pub health_failures: u64,
    /// The system-proxy step.
    pub system_proxy: SystemProxyStatus,
    /// Lists.
    pub lists: Vec<ListStatus>,
    /// Distinct names loaded.
    pub names: usize,
    /// Seconds left while protection is paused.
    pub paused_secs: Option<u64>,
}

/// The system-proxy part of [`Status`].
#[derive(Debug, Clone, Serialize)]
pub struct SystemProxyStatus {
    /// Whether enable also sets the system proxy.
    pub wanted: bool,
    /// Whether GuardNest's settings are applied now.
    pub applied: bool,
    /// Backend name.
    pub backend: String,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
}

/// One list in [`Status`].
#[derive(Debug, Clone, Serialize)]
pub struct ListStatus {
    /// Display name.
    pub name: String,
    /// Path or URL.
    pub location: String,
    /// `block` or `allow`.
    pub role: &'static str,
    /// Format of the loaded version.
    pub format: Option<String>,
    /// Whether a version is loaded.
    pub loaded: bool,
    /// Names.
    pub entries: usize,
    /// Skipped lines.
    pub skipped: usize,
    /// Last successful check (seconds since the epoch).
    pub last_success: Option<u64>,
    /// Last error.
    pub last_error: Option<String>,
}

/// Counters and block events.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStats {
    /// Connections open now.
    pub connections_active: u64,
    /// Connections accepted in total.
    pub connections_total: u64,
    /// Tunnels established.
    pub tunnels_total: u64,
    /// Plain HTTP requests forwarded.
    pub requests_total: u64,
    /// Requests blocked.
    pub blocked_total: u64,
    /// Bytes client → upstream.
    pub bytes_up: u64,
    /// Bytes upstream → client.
    pub bytes_down: u64,
    /// Failed dials.
    pub dial_failures: u64,
    /// Blocks per list.
    pub blocked_by_list: Vec<(String, u64)>,
    /// Most blocked names.
    pub top_blocked: Vec<(String, u64)>,
    /// Latest blocks, newest last.
    pub recent_blocked: Vec<BlockEvent>,
    /// Blocks per minute over the last hour, oldest first.
    pub blocked_per_minute: Vec<u64>,
    /// Blocks since midnight (UTC).
    pub blocked_today: u64,
}

struct Running {
    addr: SocketAddr,
    shutdown: CancellationToken,
    stopped_accepting: CancellationToken,
    task: JoinHandle<()>,
    health: Arc<Health>,
    started: SystemTime,
}

#[derive(Default)]
struct State {
    running: Option<Running>,
    system_error: Option<String>,
}

/// The proxy as a service: start, stop, restart, and the system proxy with it.
pub struct ProxyService {
    config: Config,
    /// Where the user's own allowlist and added lists are kept.
    data_dir: Option<PathBuf>,
    /// A listen address chosen at run time (the app's "use another port"), over the config's.
    listen: std::sync::Mutex<Option<SocketAddr>>,
    /// Where the control API actually listens (for the PAC URL), once it is bound.
    control_addr: std::sync::Mutex<Option<SocketAddr>>,
    lists: Blocklists,
    system: Arc<SystemProxy>,
    stats: Arc<Stats>,
    blocks: Arc<BlockLog>,
    state: Mutex<State>,
}

impl ProxyService {
    /// A stopped service. `system` is the system-proxy step (its backend may be `None`).
    pub fn new(config: Config, lists: Blocklists, system: SystemProxy) -> Self {
        Self {
            config,
            data_dir: None,
            listen: std::sync::Mutex::new(None),
            control_addr: std::sync::Mutex::new(None),
            lists,
            system: Arc::new(system),
            stats: Arc::default(),
            blocks: Arc::default(),
            state: Mutex::new(State::default()),
        }
    }

    /// The system-proxy step for a configuration: its backend, its file in `data_dir`.
    pub fn system_proxy_for(config: &Config, data_dir: &std::path::Path) -> Result<SystemProxy, SysProxyError> {
        let backend = sysproxy::backend_for(&config.system_proxy.backend)?;
        Ok(SystemProxy::new(backend, data_dir))
    }

    /// Keeps the user's allowlist and added lists in `data_dir` (see [`ProxyService::load_user_state`]).
    pub fn with_data_dir(mut self, data_dir: &std::path::Path) -> Self {
        self.data_dir = Some(data_dir.to_path_buf());
        self
    }

    /// Loads what the user added from the app: their allowlist and their lists. Call once
    /// at start; without a data dir there is nothing to load.
    pub async fn load_user_state(&self) -> Result<(), ServiceError> {
        let Some(dir) = &self.data_dir else { return Ok(()) };
        let allow = dir.join(USER_ALLOWLIST);
        if !allow.exists() {
            let header =
                b"# Names you allowed in GuardNest, one per line. They and their subdomains are never blocked.\n";
            crate::sysproxy::fsutil::write_atomic(&allow, header, false)
                .map_err(|source| ServiceError::Save { path: allow.display().to_string(), source })?;
        }
        self.lists.add_source(user_allowlist_spec(&allow), Role::Allow).await?;
        for l in self.user_lists() {
            if let Err(e) =
                self.lists.add_source(crate::config::SourceSpec::Location(l.location.clone()), l.role()).await
            {
                tracing::warn!(list = %l.location, error = %e, "cannot load a list you added");
            }
        }
        Ok(())
    }

    /// Never blocks `name` (and its subdomains) again: it goes into the user's allowlist,
    /// which survives restarts.
    pub async fn allow_domain(&self, name: &str) -> Result<Change, ServiceError> {
        let host = crate::domain::normalize_name(name.trim())
            .ok_or_else(|| ServiceError::Input(format!("{name:?} is not a host name")))?;
        let dir = self
            .data_dir
            .as_ref()
            .ok_or_else(|| ServiceError::Input("no data directory to keep the allowlist in".into()))?;
        let path = dir.join(USER_ALLOWLIST);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.lines().any(|l| l.trim() == host) {
            return Ok(Change { changed: false, message: format!("{host} is already allowed") });
        }
        let mut new_text = text;
        if !new_text.is_empty() && !new_text.ends_with('\n') {
            new_text.push('\n');
        }
        new_text.push_str(&host);
        new_text.push('\n');
        crate::sysproxy::fsutil::write_atomic(&path, new_text.as_bytes(), false)
            .map_err(|source| ServiceError::Save { path: path.display().to_string(), source })?;
        self.lists.add_source(user_allowlist_spec(&path), Role::Allow).await?;
        self.lists.update(&()).await;
        Ok(Change { changed: true, message: format!("{host} is allowed from now on") })
    }

    /// What the lists say about a name: blocked (by which list and rule) or allowed.
    pub fn check_domain(&self, name: &str) -> Result<crate::blocklist::Verdict, ServiceError> {
        let host = crate::domain::Host::parse(name.trim())
            .map_err(|e| ServiceError::Input(format!("{name:?} is not a host name: {e}")))?;
        Ok(self.lists.check(&host))
    }

    /// Turns blocking off for `minutes`; it comes back by itself.
    pub fn pause(&self, minutes: u64) -> Result<Change, ServiceError> {
        if minutes == 0 || minutes > 24 * 60 {
            return Err(ServiceError::Input("pause for 1 to 1440 minutes".into()));
        }
        self.lists.pause(Duration::from_secs(minutes * 60));
        Ok(Change { changed: true, message: format!("protection paused for {minutes} minutes") })
    }

    /// Ends a pause now.
    pub fn resume(&self) -> Change {
        let changed = self.lists.paused_for().is_some();
        self.lists.resume();
        Change {
            changed,
            message: if changed { "protection resumed".into() } else { "protection was not paused".into() },
        }
    }

    /// Adds a block list (path or URL), kept across restarts, and fetches it now.
    pub async fn add_list(&self, location: &str) -> Result<Change, ServiceError> {
        let location = location.trim();
        let is_url = location.starts_with("http://") || location.starts_with("https://");
        if location.is_empty() || (!is_url && !std::path::Path::new(location).is_absolute()) {
            return Err(ServiceError::Input(format!("{location:?} is not an http(s) URL or an absolute path")));
        }
        let added = self.lists.add_source(crate::config::SourceSpec::Location(location.into()), Role::Block).await?;
        if !added {
            return Ok(Change { changed: false, message: format!("{location} is already a list") });
        }
        let mut lists = self.user_lists();
        lists.push(UserList { location: location.into(), allow: false });
        self.save_user_lists(&lists)?;
        self.lists.update(&()).await;
        let state = self.lists.status().into_iter().find(|s| s.location == location);
        let message = match state {
            Some(s) if s.loaded => format!("added {location}: {} names", s.entries),
            Some(s) => format!("added {location}; not loaded yet: {}", s.last_error.unwrap_or_default()),
            None => format!("added {location}"),
        };
        Ok(Change { changed: true, message })
    }

    /// Removes a list the user added.
    pub async fn remove_list(&self, location: &str) -> Result<Change, ServiceError> {
        let mut lists = self.user_lists();
        let before = lists.len();
        lists.retain(|l| l.location != location);
        if lists.len() == before {
            return Err(ServiceError::Input(format!("{location} is not a list you added")));
        }
        self.save_user_lists(&lists)?;
        self.lists.remove_source(location).await;
        Ok(Change { changed: true, message: format!("removed {location}") })
    }

    /// Lists the user added (from the app), in order.
    pub fn user_lists(&self) -> Vec<UserList> {
        let Some(dir) = &self.data_dir else { return Vec::new() };
        std::fs::read_to_string(dir.join(USER_LISTS))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    fn save_user_lists(&self, lists: &[UserList]) -> Result<(), ServiceError> {
        let dir =
            self.data_dir.as_ref().ok_or_else(|| ServiceError::Input("no data directory to keep lists in".into()))?;
        let path = dir.join(USER_LISTS);
        let json = serde_json::to_vec_pretty(lists)
            .map_err(|e| ServiceError::Save { path: path.display().to_string(), source: std::io::Error::other(e) })?;
        crate::sysproxy::fsutil::write_atomic(&path, &json, false)
            .map_err(|source| ServiceError::Save { path: path.display().to_string(), source })
    }

    /// Listens on `addr` from the next enable or restart on (when the configured port is
    /// taken by another program).
    pub fn set_listen(&self, addr: SocketAddr) {
        *self.listen.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
    }

    fn listen_addr(&self) -> SocketAddr {
        self.listen.lock().unwrap_or_else(|p| p.into_inner()).unwrap_or(self.config.proxy.listen)
    }

    /// Records where the control API listens, so PAC mode can point at it.
    pub fn set_control_addr(&self, addr: SocketAddr) {
        *self.control_addr.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
    }

    /// The lists this service serves.
    pub fn lists(&self) -> &Blocklists {
        &self.lists
    }

    /// Restores settings left by a crashed GuardNest; call once at start, before enable.
    pub async fn repair(&self) -> Result<Option<String>, SysProxyError> {
        let system = self.system.clone();
        let outcome = tokio::task::spawn_blocking(move || system.repair())
            .await
            .unwrap_or_else(|e| Err(SysProxyError::Command { command: "repair".into(), detail: e.to_string() }))?;
        Ok(outcome.map(|o| o.message))
    }

    /// Starts the proxy (and sets the system proxy if configured). A no-op when running.
    pub async fn enable(&self) -> Result<Change, ServiceError> {
        let mut state = self.state.lock().await;
        let was_running = state.running.as_ref().is_some_and(|r| !r.task.is_finished());
        if !was_running {
            state.running = Some(self.start(self.listen_addr()).await?);
        }
        let addr = state.running.as_ref().map(|r| r.addr).expect("started above");
        let mut message = match was_running {
            true => format!("already enabled on {addr}"),
            false => format!("enabled: listening on {addr}"),
        };
        let mut changed = !was_running;
        if self.config.system_proxy.enabled && self.system.has_backend() && !self.system.is_applied() {
            match self.apply_system(addr).await {
                Ok(m) => {
                    state.system_error = None;
                    message += &format!("; {m}");
                    changed = true;
                }
                Err(e) => {
                    state.system_error = Some(e.to_string());
                    return Err(ServiceError::SystemProxy(e));
                }
            }
        }
        Ok(Change { changed, message })
    }

    /// Restores the system proxy and stops the proxy (open connections get the configured
    /// grace). A no-op when stopped.
    pub async fn disable(&self) -> Result<Change, ServiceError> {
        let mut state = self.state.lock().await;
        let mut notes = Vec::new();
        if self.system.is_applied() {
            match self.restore_system().await {
                Ok(m) => notes.push(m),
                Err(e) => {
                    state.system_error = Some(e.to_string());
                    notes.push(format!("could not restore the system proxy: {e}"));
                }
            }
        }
        let Some(running) = state.running.take() else {
            let message = std::iter::once("already disabled".to_string()).chain(notes).collect::<Vec<_>>().join("; ");
            return Ok(Change { changed: false, message });
        };
        running.shutdown.cancel();
        match self.system.stopped(running.addr) {
            Ok(Some(done)) => tracing::info!("{done}"),
            Ok(None) => {}
            Err(warning) => tracing::warn!("{warning}"),
        }
        let grace = self.config.proxy.shutdown_timeout + Duration::from_secs(1);
        let _ = tokio::time::timeout(grace, running.task).await;
        let message = std::iter::once("disabled".to_string()).chain(notes).collect::<Vec<_>>().join("; ");
        Ok(Change { changed: true, message })
    }

    /// Stops the listener, waits for it to close (up to 5 s), starts a new one on the same
    /// address and re-applies the system proxy. Open tunnels of the old one drain in the
    /// background; there is never a moment with two listeners.
    pub async fn restart(&self) -> Result<Change, ServiceError> {
        let mut state = self.state.lock().await;
        let listen = match state.running.take() {
            Some(old) => {
                old.shutdown.cancel();
                if tokio::time::timeout(RESTART_WAIT, old.stopped_accepting.cancelled()).await.is_err() {
                    return Err(ServiceError::StopTimeout(RESTART_WAIT));
                }
                old.addr
            }
            None => self.listen_addr(),
        };
        let running = self.start(listen).await?;
        let addr = running.addr;
        state.running = Some(running);
        if self.config.system_proxy.enabled && self.system.has_backend() {
            if let Err(e) = self.apply_system(addr).await {
                state.system_error = Some(e.to_string());
                return Err(ServiceError::SystemProxy(e));
            }
        }
        Ok(Change { changed: true, message: format!("restarted: listening on {addr}") })
    }

    /// What is true now: the serving task alive, its accept loop running, and the last
    /// periodic self-connect health check passing.
    pub async fn status(&self) -> Status {
        let state = self.state.lock().await;
        let (running, listen, uptime, health) = match &state.running {
            // Alive: the task runs and its accept loop has not stopped. Read from the
            // listener's own state, not by connecting (which would count as traffic).
            Some(r) if !r.task.is_finished() && !r.stopped_accepting.is_cancelled() => {
                let uptime = SystemTime::now().duration_since(r.started).map(|d| d.as_secs()).ok();
                (true, Some(r.addr), uptime, Some(r.health.clone()))
            }
            _ => (false, None, None, None),
        };
        let lists = self
            .lists
            .status()
            .into_iter()
            .map(|s| ListStatus {
                name: s.name,
                location: s.location,
                role: match s.role {
                    Role::Block => "block",
                    Role::Allow => "allow",
                },
                format: s.format.map(|f| f.to_string()),
                loaded: s.loaded,
                entries: s.entries,
                skipped: s.skipped,
                last_success: s
                    .last_success
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs()),
                last_error: s.last_error,
            })
            .collect();
        Status {
            running,
            healthy: running && health.as_ref().is_some_and(|h| h.checks() == 0 || h.last_ok()),
            listen,
            uptime_secs: uptime,
            health_checks: health.as_ref().map_or(0, |h| h.checks()),
            health_failures: health.as_ref().map_or(0, |h| h.failures()),
            system_proxy: SystemProxyStatus {
                wanted: self.config.system_proxy.enabled,
                applied: self.system.is_applied(),
                backend: self.system.backend_name().into(),
                last_error: state.system_error.clone(),
            },
            lists,
            names: self.lists.len(),
            paused_secs: self.lists.paused_for().map(|d| d.as_secs()),
        }
    }

    /// Checks every list now.
    pub async fn update_lists(&self) -> UpdateReport {
        self.lists.update(&()).await
    }

    /// Counters and block events.
    pub fn stats(&self) -> ServiceStats {
        let StatsSnapshot {
            connections_total,
            connections_active,
            tunnels_total,
            requests_total,
            blocked_total,
            dial_failures,
            bytes_up,
            bytes_down,
            ..
        } = self.stats.snapshot();
        ServiceStats {
            connections_active,
            connections_total,
            tunnels_total,
            requests_total,
            blocked_total,
            bytes_up,
            bytes_down,
            dial_failures,
            blocked_by_list: self.blocks.by_list(),
            top_blocked: self.blocks.top(10),
            recent_blocked: self.blocks.recent(50),
            blocked_per_minute: self.blocks.per_minute(),
            blocked_today: self.blocks.today(),
        }
    }

    /// Raw counters (for metrics).
    pub fn counters(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// The PAC file for fail-open mode.
    pub async fn pac(&self) -> Option<String> {
        let addr = self.state.lock().await.running.as_ref().map(|r| r.addr)?;
        let host = sysproxy::host_of(addr);
        Some(format!(
            "function FindProxyForURL(url, host) {{\n  if (isPlainHostName(host) || host == \"localhost\" || shExpMatch(host, \"127.*\")) return \"DIRECT\";\n  return \"PROXY {host}:{}; DIRECT\";\n}}\n",
            addr.port()
        ))
    }

    /// Where the data lives (for the runtime file).
    pub fn config(&self) -> &Config {
        &self.config
    }

    async fn start(&self, listen: SocketAddr) -> Result<Running, ServiceError> {
        let mut proxy_config = self.config.proxy.clone();
        proxy_config.listen = listen;
        let access = crate::access::Access::from_config(&self.config.access).map_err(ServeError::Access)?;
        let proxy = Proxy::bind_with(
            proxy_config,
            self.config.health.clone(),
            self.lists.policy(),
            self.stats.clone(),
            self.blocks.clone(),
            Arc::new(access),
        )
        .await?;
        let addr = proxy.local_addr();
        tracing::info!("listening on {addr}");
        let shutdown = CancellationToken::new();
        let stopped_accepting = proxy.stopped_accepting();
        let health = proxy.health();
        let task = tokio::spawn(proxy.run(shutdown.clone()));
        match self.system.listening(addr) {
            Ok(Some(done)) => tracing::info!("{done}"),
            Ok(None) => {}
            Err(warning) => tracing::warn!("{warning}"),
        }
        Ok(Running { addr, shutdown, stopped_accepting, task, health, started: SystemTime::now() })
    }

    async fn apply_system(&self, addr: SocketAddr) -> Result<String, SysProxyError> {
        let target = match self.config.system_proxy.mode {
            SystemProxyMode::Fixed => Target::Fixed(addr),
            SystemProxyMode::Pac => {
                let recorded = *self.control_addr.lock().unwrap_or_else(|p| p.into_inner());
                let control = recorded
                    .or_else(|| self.config.control.addr().ok().flatten())
                    .ok_or(SysProxyError::Unavailable("pac"))?;
                Target::Pac(format!("http://{control}/proxy.pac"))
            }
        };
        let system = self.system.clone();
        let outcome = tokio::task::spawn_blocking(move || system.apply(&target))
            .await
            .unwrap_or_else(|e| Err(SysProxyError::Command { command: "apply".into(), detail: e.to_string() }))?;
        tracing::info!("{}", outcome.message);
        Ok(outcome.message)
    }

    async fn restore_system(&self) -> Result<String, SysProxyError> {
        let system = self.system.clone();
        let outcome = tokio::task::spawn_blocking(move || system.restore())
            .await
            .unwrap_or_else(|e| Err(SysProxyError::Command { command: "restore".into(), detail: e.to_string() }))?;
        tracing::info!("{}", outcome.message);
        Ok(outcome.message)
    }
}

/// The user's allowlist file in the data dir.
pub const USER_ALLOWLIST: &str = "allowlist.txt";
/// The lists the user added, in the data dir.
pub const USER_LISTS: &str = "user-lists.json";

fn user_allowlist_spec(path: &std::path::Path) -> crate::config::SourceSpec {
    crate::config::SourceSpec::Detailed(crate::config::DetailedSource {
        source: path.display().to_string(),
        name: Some("my allowlist".into()),
        format: Some(crate::blocklist::Format::Plain),
        interval: None,
    })
}

/// A list the user added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct UserList {
    /// Path or URL.
    pub location: String,
    /// An allowlist rather than a block list.
    #[serde(default)]
    pub allow: bool,
}

impl UserList {
    fn role(&self) -> Role {
        if self.allow {
            Role::Allow
        } else {
            Role::Block
        }
    }
}

/// The file through which the CLI finds a running instance: control address and token.
pub fn runtime_file(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("control.json")
}
