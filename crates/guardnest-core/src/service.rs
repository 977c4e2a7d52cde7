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
}

impl ServiceError {
    /// A short machine-readable kind for `{kind, message}` answers.
    pub fn kind(&self) -> &'static str {
        match self {
            ServiceError::Start(_) => "start",
            ServiceError::SystemProxy(_) => "system_proxy",
            ServiceError::StopTimeout(_) => "stop_timeout",
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
    /// The proxy task runs and its listener accepts a connection now.
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
            state.running = Some(self.start(self.config.proxy.listen).await?);
        }
        let addr = state.running.as_ref().map(|r| r.addr).expect("started above");
        let mut message = match was_running {
            true => format!("already enabled on {addr}"),
            false => format!("enabled: listening on {addr}"),
        };
        let mut changed = !was_running;
        if self.config.system_proxy.enabled && !self.system.is_applied() {
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
        #[cfg(windows)]
        if let Some(warning) = sysproxy::windows::remove_firewall_rule(running.addr) {
            tracing::warn!("cannot remove the firewall rule: {warning}");
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
            None => self.config.proxy.listen,
        };
        let running = self.start(listen).await?;
        let addr = running.addr;
        state.running = Some(running);
        if self.config.system_proxy.enabled {
            if let Err(e) = self.apply_system(addr).await {
                state.system_error = Some(e.to_string());
                return Err(ServiceError::SystemProxy(e));
            }
        }
        Ok(Change { changed: true, message: format!("restarted: listening on {addr}") })
    }

    /// What is true now: the task alive and the listener accepting (a real connect).
    pub async fn status(&self) -> Status {
        let state = self.state.lock().await;
        let (running, listen, uptime, health) = match &state.running {
            Some(r) if !r.task.is_finished() => {
                let probe = crate::health::reachable(r.addr);
                let accepts = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(probe))
                    .await
                    .is_ok_and(|c| c.is_ok());
                let uptime = SystemTime::now().duration_since(r.started).map(|d| d.as_secs()).ok();
                (accepts, Some(r.addr), uptime, Some(r.health.clone()))
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
        let proxy = Proxy::bind_with(
            proxy_config,
            self.config.health.clone(),
            self.lists.policy(),
            self.stats.clone(),
            self.blocks.clone(),
        )
        .await?;
        let addr = proxy.local_addr();
        tracing::info!("listening on {addr}");
        let shutdown = CancellationToken::new();
        let stopped_accepting = proxy.stopped_accepting();
        let health = proxy.health();
        let task = tokio::spawn(proxy.run(shutdown.clone()));
        #[cfg(windows)]
        if let Some(warning) = sysproxy::windows::add_firewall_rule(addr) {
            tracing::warn!("cannot add the firewall rule: {warning}");
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

/// The file through which the CLI finds a running instance: control address and token.
pub fn runtime_file(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("control.json")
}
