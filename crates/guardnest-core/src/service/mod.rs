//! The one facade every front end uses: an owned object whose calls are serialised,
//! whose no-ops say so, and whose status is measured, not remembered. The original design's
//! four application commands are [`ProxyService::enable`], [`ProxyService::disable`],
//! [`ProxyService::status`] and [`ProxyService::restart`]; its global statics are this
//! object's fields.
//!
//! It is the one brain behind every front end: protection on or off, the pause and its
//! end, the port, the user's allowlist and lists are changed only through its calls, each
//! a `Transition`: made under one lock, kept in the data dir when it ends, and announced
//! to every watcher ([`ProxyService::changes`]) whoever made it — the window, the tray, the
//! CLI through the control API, or a pause running out.
//!
//! An instance's life (lock, repair, lists, control API, protection, updater, and the way
//! back) is in [`lifecycle`]; what the user added in [`user`]; the pause in `pause`; what
//! front ends read in `report`, in the shapes of [`status`]; the data dir's lock in
//! [`instance`]. The children build on this module (and
//! on `status` and `instance` below it), never the other way round: no import cycle.

mod error;
pub mod instance;
pub mod kept;
pub mod lifecycle;
mod pause;
pub mod repair;
mod report;
pub mod status;
pub mod user;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::blocklist::{Blocklists, UpdateReport};
use crate::config::{Config, SystemProxyMode, UpstreamMode};
use crate::conn::route::Router;
use crate::events::BlockLog;
use crate::health::Health;
use crate::server::{Proxy, ServeError};
use crate::stats::Stats;
use crate::sysproxy::{self, SysProxyError, SystemProxy, Target};

pub use error::{InputError, ServiceError};
pub use instance::{Frontend, Holder};
pub use status::{
    and_list, minutes, plural, CheckAnswer, ErrorKind, ErrorReport, InputReason, ListStatus, MissingList, Protection,
    RepairNote, ServiceStats, Status, SystemProxyStatus, Unprotected, UpstreamStatus,
};

/// How long a restart waits for the old listener to close (the design's 5 s).
pub const RESTART_WAIT: Duration = Duration::from_secs(5);

/// How long "Pause" pauses when no length is given: the window's button, the tray's item,
/// `guardnest pause` and the control API's `/v1/pause` all use this one value.
pub const PAUSE_DEFAULT_MINUTES: u64 = 15;

/// The longest pause, in minutes (a day).
pub const PAUSE_MAX_MINUTES: u64 = 24 * 60;

/// What a call changed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Change {
    /// False for a no-op (enable when enabled, disable when disabled).
    pub changed: bool,
    /// One line for the user.
    pub message: String,
}

struct Running {
    addr: SocketAddr,
    shutdown: CancellationToken,
    stopped_accepting: CancellationToken,
    task: JoinHandle<()>,
    health: Arc<Health>,
    started: SystemTime,
    /// Where its allowed traffic goes.
    router: Arc<Router>,
}

#[derive(Default)]
struct State {
    running: Option<Running>,
    system_error: Option<String>,
    /// Why the last enable could not start the proxy (cleared by the next that does).
    start_error: Option<ErrorReport>,
    /// The user turned protection off (with `disable`, from any front end), and has not
    /// turned it on since.
    protection_off: bool,
    /// The port the user chose (`listen_on_port`), if they did.
    chosen_listen: Option<SocketAddr>,
    /// What was last kept in the data dir (none: nothing yet).
    saved: Option<Kept>,
}

/// What a transition keeps in the data dir (`settings.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Kept {
    protection_off: bool,
    paused_until: Option<u64>,
    listen: Option<SocketAddr>,
}

/// One change of what the service does, made under its one lock. However it ends — done,
/// failed or returned early — dropping it keeps what the user chose in the data dir (if it
/// changed) and announces the change to every watcher: the one place where both happen.
struct Transition<'a> {
    service: &'a ProxyService,
    state: tokio::sync::MutexGuard<'a, State>,
}

impl std::ops::Deref for Transition<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

impl std::ops::DerefMut for Transition<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.state
    }
}

impl Drop for Transition<'_> {
    fn drop(&mut self) {
        self.service.settle(&mut self.state);
    }
}

/// Tells every watcher that something they show has changed.
fn announce(changes: &crate::events::Changes) {
    changes.bump();
}

/// Seconds since the epoch.
fn now_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The proxy as a service: start, stop, restart, and the system proxy with it.
pub struct ProxyService {
    config: Config,
    /// Where the user's own allowlist and added lists are kept.
    data_dir: Option<PathBuf>,
    /// Where to listen: a port chosen at run time (the app's "use another port"), or the
    /// port a `:0` listen address got at the first enable, kept for the process's life.
    listen: parking_lot::Mutex<Option<SocketAddr>>,
    /// Where the control API actually listens (for the PAC URL), once it is bound.
    control_addr: parking_lot::Mutex<Option<SocketAddr>>,
    lists: Blocklists,
    system: Arc<SystemProxy>,
    stats: Arc<Stats>,
    blocks: Arc<BlockLog>,
    state: Mutex<State>,
    /// A started instance's background work (control API, list updater), stopped by
    /// [`ProxyService::shut_down`].
    background: CancellationToken,
    tasks: TaskTracker,
    /// A started instance's lock on its data dir, and how it describes itself.
    instance: parking_lot::Mutex<Option<(instance::InstanceLock, Holder)>>,
    /// The `control.json` a started instance wrote (removed at shut-down).
    runtime_file: parking_lot::Mutex<Option<PathBuf>>,
    /// What was repaired before this start, if anything.
    repaired: parking_lot::Mutex<Vec<RepairNote>>,
    /// Cancelled when someone asks the whole instance to quit (`guardnest stop`, the
    /// uninstaller): the front end then stops as on Ctrl-C.
    quit: CancellationToken,
}

impl ProxyService {
    /// A stopped service, for embedding (tests, benchmarks): no lock, no control API, no
    /// updater. Front ends use [`ProxyService::builder`]. `system` is the system-proxy step
    /// (its backend may be `None`).
    pub fn new(config: Config, lists: Blocklists, system: SystemProxy) -> Self {
        let blocks = Arc::new(BlockLog::with_changes(lists.changes().clone()));
        Self {
            config,
            data_dir: None,
            listen: parking_lot::Mutex::new(None),
            control_addr: parking_lot::Mutex::new(None),
            lists,
            system: Arc::new(system),
            stats: Arc::default(),
            blocks,
            state: Mutex::new(State::default()),
            background: CancellationToken::new(),
            tasks: TaskTracker::new(),
            instance: parking_lot::Mutex::new(None),
            runtime_file: parking_lot::Mutex::new(None),
            repaired: parking_lot::Mutex::new(Vec::new()),
            quit: CancellationToken::new(),
        }
    }

    /// Asks the front end running this instance to stop it and exit, as Ctrl-C would
    /// (the system proxy restored first). Returns at once.
    pub fn request_quit(&self) {
        tracing::info!("asked to quit");
        self.quit.cancel();
    }

    /// Cancelled when [`ProxyService::request_quit`] was called: front ends wait on it
    /// beside their own signals.
    pub fn quit_requested(&self) -> CancellationToken {
        self.quit.clone()
    }

    /// How long a client has for a request head (`[proxy] request_timeout`); the control
    /// API gives its clients the same.
    pub fn request_timeout(&self) -> Duration {
        self.config.proxy.request_timeout
    }

    /// The system-proxy step for a configuration: its backend, its file in `data_dir`.
    pub fn system_proxy_for(config: &Config, data_dir: &std::path::Path) -> Result<SystemProxy, SysProxyError> {
        let backend = sysproxy::backend_for(config.system_proxy.backend)?;
        Ok(SystemProxy::new(backend, data_dir))
    }

    /// Keeps the user's allowlist and added lists in `data_dir` (see [`user`]).
    pub fn with_data_dir(mut self, data_dir: &std::path::Path) -> Self {
        self.data_dir = Some(data_dir.to_path_buf());
        self
    }

    /// Listens on `addr` from the next enable or restart on (when the configured port is
    /// taken by another program).
    pub fn set_listen(&self, addr: SocketAddr) {
        *self.listen.lock() = Some(addr);
    }

    fn listen_addr(&self) -> SocketAddr {
        self.listen.lock().unwrap_or(self.config.proxy.listen)
    }

    /// Listens on port `port` (on the configured address's IP, loopback for a wildcard)
    /// from now on, and protects there: the proxy moves to it (the new port is bound before
    /// the old listener closes, so a taken port changes nothing), or starts there.
    pub async fn listen_on_port(&self, port: u16) -> Result<Change, ServiceError> {
        if port == 0 {
            return Err(InputError::Port.into());
        }
        let ip = self.config.proxy.listen.ip();
        let ip = if ip.is_unspecified() { std::net::IpAddr::from([127, 0, 0, 1]) } else { ip };
        let wanted = SocketAddr::new(ip, port);
        let mut t = self.transition().await;
        match t.running.as_ref().filter(|r| !r.task.is_finished()).map(|r| r.addr) {
            Some(addr) if addr == wanted => {}
            Some(_) => {
                let new = self.start(wanted).await?;
                if let Some(old) = t.running.replace(new) {
                    old.shutdown.cancel(); // its open connections drain by themselves
                    log_hook(self.system.stopped(old.addr));
                }
                t.start_error = None;
                t.chosen_listen = Some(wanted);
                self.set_listen(wanted);
                return self.system_after_move(&mut t, wanted).await;
            }
            None => {}
        }
        self.set_listen(wanted);
        let change = self.switch_on(&mut t).await?;
        t.chosen_listen = Some(wanted);
        t.protection_off = false;
        Ok(change)
    }

    /// After the listener moved: the system proxy points at the new address.
    async fn system_after_move(&self, t: &mut Transition<'_>, addr: SocketAddr) -> Result<Change, ServiceError> {
        let mut message = format!("moved: listening on {addr}");
        if self.config.system_proxy.enabled && self.system.has_backend() {
            match self.apply_system(addr).await {
                Ok(m) => {
                    t.system_error = None;
                    message += &format!("; {m}");
                }
                Err(e) => {
                    t.system_error = Some(e.to_string());
                    return Err(ServiceError::SystemProxy(e));
                }
            }
        }
        Ok(Change { changed: true, message })
    }

    /// Records where the control API listens, so PAC mode can point at it.
    pub fn set_control_addr(&self, addr: SocketAddr) {
        *self.control_addr.lock() = Some(addr);
    }

    /// Where the control API listens, if it does.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        *self.control_addr.lock()
    }

    /// The lists this service serves.
    pub fn lists(&self) -> &Blocklists {
        &self.lists
    }

    /// A receiver that sees every change a window shows: the switch, a block, a list, a
    /// pause and its end, the port, the allowlist. Counters (bytes, connections) change
    /// without it.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.lists.changes().subscribe()
    }

    /// Starts a transition: the one lock, and on its end the data dir and the watchers.
    async fn transition(&self) -> Transition<'_> {
        Transition { service: self, state: self.state.lock().await }
    }

    /// The end of a transition: keeps what the user chose, if it changed, then announces.
    fn settle(&self, state: &mut State) {
        let kept = Kept {
            protection_off: state.protection_off,
            paused_until: self.lists.paused_until(),
            listen: state.chosen_listen,
        };
        if state.saved.as_ref() != Some(&kept) {
            if let Some(dir) = &self.data_dir {
                let saved = kept::UserSettings::update(dir, |s| {
                    s.protection_off = kept.protection_off;
                    s.paused_until = kept.paused_until;
                    if kept.listen.is_some() {
                        s.listen = kept.listen;
                    }
                });
                if let Err(e) = saved {
                    tracing::warn!("{}", crate::error_chain(&e));
                }
            }
            state.saved = Some(kept);
        }
        announce(self.lists.changes());
    }

    /// What was kept by an earlier run: where the transitions start from (nothing is
    /// written until something changes).
    pub(crate) async fn restore_choices(&self, settings: &user::UserSettings) {
        let mut state = self.state.lock().await;
        state.protection_off = settings.protection_off;
        state.chosen_listen = settings.listen;
        if let Some(until) = settings.paused_until.filter(|u| *u > now_secs()) {
            self.lists.pause_until(until);
            self.watch_pause_end(until);
        }
        state.saved = Some(Kept {
            protection_off: settings.protection_off,
            paused_until: self.lists.paused_until(),
            listen: settings.listen,
        });
    }

    /// Restores settings left by a crashed GuardNest; [`lifecycle::Builder::start_up`] calls it
    /// first. An instance holding its data dir's lock knows any other snapshot's owner is
    /// gone (the owner held the lock while it lived); without the lock, the owner's PID and
    /// start time decide.
    pub async fn repair(&self) -> Result<Option<String>, SysProxyError> {
        let system = self.system.clone();
        let locked = self.instance.lock().is_some();
        let outcome = tokio::task::spawn_blocking(move || match locked {
            true => system.repair_if(&|_| true),
            false => system.repair(),
        })
        .await
        .unwrap_or_else(|e| Err(SysProxyError::Command { command: "repair".into(), detail: e.to_string() }))?;
        Ok(outcome.map(|o| o.message))
    }

    /// Turns protection on: starts the proxy (and sets the system proxy if configured) and
    /// ends a pause, so that "on" always means blocking. Kept as the user's choice. A no-op
    /// when already blocking.
    pub async fn enable(&self) -> Result<Change, ServiceError> {
        let mut t = self.transition().await;
        t.protection_off = false;
        let resumed = self.lists.paused_until().is_some();
        self.lists.resume();
        let mut change = self.switch_on(&mut t).await?;
        if resumed {
            change.changed = true;
            change.message = match change.message.strip_prefix("already enabled on ") {
                Some(addr) => format!("resumed: blocking again on {addr}"),
                None => format!("{}; the pause ended", change.message),
            };
        }
        Ok(change)
    }

    /// Protection on as an instance starts: not recorded as the user's choice, and a pause
    /// kept from an earlier run is left to run out.
    pub(crate) async fn start_protecting(&self) -> Result<Change, ServiceError> {
        let mut t = self.transition().await;
        self.switch_on(&mut t).await
    }

    /// Starts the proxy if it is not running, and sets the system proxy if configured.
    async fn switch_on(&self, t: &mut Transition<'_>) -> Result<Change, ServiceError> {
        let was_running = t.running.as_ref().is_some_and(|r| !r.task.is_finished());
        if !was_running {
            match self.start(self.listen_addr()).await {
                Ok(running) => {
                    t.running = Some(running);
                    t.start_error = None;
                }
                Err(e) => {
                    t.start_error = Some(e.report());
                    return Err(e);
                }
            }
        }
        let addr = t.running.as_ref().map(|r| r.addr).expect("started above");
        let mut message = match was_running {
            true => format!("already enabled on {addr}"),
            false => format!("enabled: listening on {addr}"),
        };
        let mut changed = !was_running;
        if self.config.system_proxy.enabled && self.system.has_backend() && !self.system.is_applied() {
            match self.apply_system(addr).await {
                Ok(m) => {
                    t.system_error = None;
                    message += &format!("; {m}");
                    changed = true;
                    if let Some(kept) = t.running.as_ref().and_then(|r| kept_in_use(&self.config, &r.router)) {
                        tracing::info!("{kept}");
                        message += &format!("; {kept}");
                    }
                }
                Err(e) => {
                    t.system_error = Some(e.to_string());
                    return Err(ServiceError::SystemProxy(e));
                }
            }
        }
        Ok(Change { changed, message })
    }

    /// Turns protection off: restores the system proxy and stops the proxy (open
    /// connections get the configured grace); a pause ends with it. Kept as the user's
    /// choice (the app then starts with protection off). A no-op when stopped.
    pub async fn disable(&self) -> Result<Change, ServiceError> {
        let mut t = self.transition().await;
        t.protection_off = true;
        self.lists.resume();
        self.switch_off(&mut t, self.config.proxy.shutdown_timeout).await
    }

    /// Protection off as an instance stops or the session ends: not recorded as the user's
    /// choice, and a pause is kept (a start before its end stays paused).
    pub(crate) async fn stop_protecting(&self, grace: Duration) -> Result<Change, ServiceError> {
        let mut t = self.transition().await;
        self.switch_off(&mut t, grace).await
    }

    async fn switch_off(&self, t: &mut Transition<'_>, grace: Duration) -> Result<Change, ServiceError> {
        let mut notes = Vec::new();
        if self.system.is_applied() {
            match self.restore_system().await {
                Ok(m) => notes.push(m),
                Err(e) => {
                    t.system_error = Some(e.to_string());
                    notes.push(format!("could not restore the system proxy: {e}"));
                }
            }
        }
        let Some(running) = t.running.take() else {
            let message = std::iter::once("already disabled".to_string()).chain(notes).collect::<Vec<_>>().join("; ");
            return Ok(Change { changed: false, message });
        };
        running.shutdown.cancel();
        log_hook(self.system.stopped(running.addr));
        // The proxy's own drain is bounded by its shutdown_timeout; this waits at most `grace`.
        let _ =
            tokio::time::timeout(grace.min(self.config.proxy.shutdown_timeout) + Duration::from_secs(1), running.task)
                .await;
        self.describe_instance(None);
        let message = std::iter::once("disabled".to_string()).chain(notes).collect::<Vec<_>>().join("; ");
        Ok(Change { changed: true, message })
    }

    /// Stops the listener, waits for it to close (up to 5 s), starts a new one on the same
    /// address and re-applies the system proxy. Open tunnels of the old one drain in the
    /// background; there is never a moment with two listeners.
    pub async fn restart(&self) -> Result<Change, ServiceError> {
        let mut t = self.transition().await;
        let listen = match t.running.take() {
            Some(old) => {
                old.shutdown.cancel();
                if tokio::time::timeout(RESTART_WAIT, old.stopped_accepting.cancelled()).await.is_err() {
                    return Err(ServiceError::StopTimeout(RESTART_WAIT));
                }
                old.addr
            }
            None => self.listen_addr(),
        };
        let running = match self.start(listen).await {
            Ok(r) => r,
            Err(e) => {
                t.start_error = Some(e.report());
                return Err(e);
            }
        };
        let addr = running.addr;
        t.running = Some(running);
        t.start_error = None;
        if self.config.system_proxy.enabled && self.system.has_backend() {
            if let Err(e) = self.apply_system(addr).await {
                t.system_error = Some(e.to_string());
                return Err(ServiceError::SystemProxy(e));
            }
        }
        Ok(Change { changed: true, message: format!("restarted: listening on {addr}") })
    }

    /// Checks every list now.
    pub async fn update_lists(&self) -> UpdateReport {
        self.lists.update(&()).await
    }

    /// The block log (lifecycle keeps today's count in the data dir).
    pub(crate) fn block_log(&self) -> &Arc<BlockLog> {
        &self.blocks
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

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The data dir, if it keeps one.
    pub fn data_dir(&self) -> Option<&std::path::Path> {
        self.data_dir.as_deref()
    }

    /// The user's own proxy settings, for `[upstream] mode = "system"`: read on a blocking
    /// thread (through the snapshot while GuardNest is the system proxy). `Err` says why
    /// there are none.
    async fn user_settings(&self) -> Result<sysproxy::UserSettings, String> {
        if self.config.upstream.mode != UpstreamMode::System {
            return Err(String::new());
        }
        let system = self.system.clone();
        match tokio::task::spawn_blocking(move || system.user_proxy()).await {
            Ok(Ok(Some(user))) => Ok(user),
            Ok(Ok(None)) => Err("no system proxy backend to read them from".into()),
            Ok(Err(e)) => Err(crate::conn::respond::error_chain(&e)),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn start(&self, listen: SocketAddr) -> Result<Running, ServiceError> {
        let mut proxy_config = self.config.proxy.clone();
        proxy_config.listen = listen;
        let access = crate::access::Access::from_config(&self.config.access).map_err(ServeError::Access)?;
        let user = self.user_settings().await;
        let upstream = self.config.upstream.clone();
        let proxy = Proxy::bind_routed(
            proxy_config,
            self.config.health.clone(),
            self.lists.policy(),
            self.stats.clone(),
            self.blocks.clone(),
            Arc::new(access),
            move |own| match &user {
                Err(why) if upstream.mode == UpstreamMode::System => {
                    tracing::warn!("cannot read your system proxy settings ({why}): allowed traffic goes direct");
                    Router::direct(&format!("your system proxy settings could not be read: {why}"))
                }
                _ => Router::new(&upstream, user.as_ref().ok(), Some(own)),
            },
        )
        .await?;
        let router = proxy.router();
        self.lists.set_upstream(router.clone());
        let addr = proxy.local_addr();
        if listen.port() == 0 {
            // Port 0 picked a free port: keep it for the life of the process, so disable and
            // enable (and the system proxy pointing at it) stay on one address.
            self.set_listen(addr);
        }
        // Said before "listening on", which scripts and a second instance wait for.
        self.describe_instance(Some(addr));
        tracing::info!("listening on {addr}");
        let shutdown = CancellationToken::new();
        let stopped_accepting = proxy.stopped_accepting();
        let health = proxy.health();
        let task = tokio::spawn(proxy.run(shutdown.clone()));
        log_hook(self.system.listening(addr));
        Ok(Running { addr, shutdown, stopped_accepting, task, health, started: SystemTime::now(), router })
    }

    async fn apply_system(&self, addr: SocketAddr) -> Result<String, SysProxyError> {
        let target = match self.config.system_proxy.mode {
            SystemProxyMode::Fixed => Target::Fixed(addr),
            SystemProxyMode::Pac => {
                let control = self
                    .control_addr()
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

/// The one line that tells the user their own proxy stays in use (GuardNest chains through
/// it), when it came from their system settings.
fn kept_in_use(config: &Config, router: &Router) -> Option<String> {
    (config.upstream.mode == UpstreamMode::System && router.is_chained())
        .then(|| format!("your own proxy stays in use through GuardNest: {}", router.describe()))
}

/// Logs what a listener hook of the OS layer did (the Windows firewall rule), or why it
/// failed: a warning, never an error of the service.
fn log_hook(outcome: Result<Option<String>, SysProxyError>) {
    match outcome {
        Ok(Some(done)) => tracing::info!("{done}"),
        Ok(None) => {}
        Err(warning) => tracing::warn!("{}", crate::conn::respond::error_chain(&warning)),
    }
}
