//! An instance's life, written once for every front end: [`Builder::start_up`] and
//! [`ProxyService::shut_down`]. The CLI's `run` and the desktop app both go through here,
//! so they start and stop in the same order, hold the same lock, serve the same control
//! API and leave the same files.
//!
//! Configuration: `--config FILE` when given, else `DATA_DIR/config.toml` when there is
//! one, else the built-in defaults ([`ProxyService::config_for`]): the CLI's commands and
//! the app find the same one.
//!
//! Start: lock the data dir → repair a system proxy left by a GuardNest that died → load
//! the lists (config, cache, what the user added: [`load_lists`]) → what the user chose
//! before (a pause still running; for the app, protection off and the port they picked) →
//! control API and `control.json` → protection on (proxy, then system proxy) → the list
//! updater, and the keeper of today's block count.
//! Stop: protection off (system proxy restored first, open connections drained for the
//! grace) → background tasks cancelled and awaited → `control.json` removed → lock released.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::instance::{Frontend, Holder, InstanceLock, LockError};
use super::status::RepairNote;
use super::user::{self, UserSettings};
use super::{Change, ProxyService, ServiceError};
use crate::blocklist::{Blocklists, ListError};
use crate::config::Config;
use crate::control::{new_token, runtime_path, ControlServer, RuntimeInfo};
use crate::sysproxy::SystemProxy;

/// Above the drain grace: time to restore the system proxy and stop the background tasks.
pub const SHUTDOWN_MARGIN: Duration = Duration::from_secs(5);

/// The configuration file every front end looks for in the data dir.
pub const CONFIG_FILE: &str = "config.toml";

/// Today's block count is written at most this often (and at shut-down).
const KEEP_COUNT_EVERY: Duration = Duration::from_secs(1);

impl ProxyService {
    /// The configuration an instance on `data_dir` runs with: `explicit` when given (the
    /// CLI's `--config`), else `DATA_DIR/config.toml` when it exists, else the defaults.
    pub fn config_for(
        data_dir: &std::path::Path,
        explicit: Option<&std::path::Path>,
    ) -> Result<Config, crate::config::ConfigError> {
        let found = data_dir.join(CONFIG_FILE);
        match explicit {
            Some(path) => Config::from_file(path),
            None if found.is_file() => Config::from_file(&found),
            None => Ok(Config::default()),
        }
    }
}

/// The lists an instance with `config` on `data_dir` serves: the configuration's (with
/// their cached downloads) and what the user added (their allowlist, their lists), whatever
/// flags named the configuration's. `guardnest check` and `guardnest lists` use this to
/// answer as that instance would.
pub async fn load_lists(config: &Config, data_dir: &std::path::Path) -> Result<Blocklists, ListError> {
    let lists = Blocklists::load(&config.blocklist, Some(data_dir))?;
    if data_dir.is_dir() {
        if let Err(e) = user::load_into(&lists, data_dir).await {
            tracing::warn!("cannot load your allowlist and added lists: {}", crate::error_chain(&e));
        }
    }
    Ok(lists)
}

/// Why an instance could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Another GuardNest uses this data dir.
    #[error(transparent)]
    AlreadyRunning(LockError),
    /// The data dir holds a link (or a pipe) where the instance lock goes.
    #[error(transparent)]
    DataDir(LockError),
    /// A list the configuration names could not be loaded.
    #[error("cannot load lists")]
    Lists(#[source] ListError),
    /// The control API's address could not be bound.
    #[error("cannot listen on {addr} for the control API (another GuardNest? use --control ADDR or --control none)")]
    Control {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The control token could not be made.
    #[error("cannot create the control token")]
    Token(#[source] std::io::Error),
}

impl StartError {
    /// The kind and the whole cause chain, for front ends.
    pub fn report(&self) -> super::ErrorReport {
        let kind = match self {
            StartError::AlreadyRunning(_) => super::ErrorKind::AlreadyRunning,
            StartError::Lists(_) => super::ErrorKind::Lists,
            StartError::Control { .. } => super::ErrorKind::ControlApi,
            StartError::Config(_) | StartError::Token(_) | StartError::DataDir(_) => super::ErrorKind::Start,
        };
        let mut report = super::ErrorReport::new(kind, crate::error_chain(self));
        match self {
            StartError::AlreadyRunning(LockError::Held { holder, .. }) => report.holder = holder.clone().map(Box::new),
            StartError::Control { addr, .. } => report.addr = Some(*addr),
            StartError::Lists(e) => report.problem = e.problem().map(Box::new),
            _ => {}
        }
        report
    }
}

/// How to start an instance; see [`ProxyService::builder`].
pub struct Builder {
    config: Config,
    data_dir: PathBuf,
    frontend: Frontend,
    system: Option<SystemProxy>,
    listen: Option<SocketAddr>,
    builtin_lists: Option<Vec<(String, String)>>,
    control_any_port: bool,
    login: Option<Option<crate::sysproxy::login::LoginRepair>>,
    as_left: bool,
    protect: bool,
}

/// A started instance: the service, and how turning protection on went (a taken port is
/// not fatal to the app, which offers another; the CLI exits).
pub struct Started {
    /// The running service.
    pub service: Arc<ProxyService>,
    /// The first enable.
    pub enabled: Result<Change, ServiceError>,
}

impl ProxyService {
    /// Starts building an instance on `data_dir` with `config`.
    pub fn builder(config: Config, data_dir: impl Into<PathBuf>) -> Builder {
        Builder {
            config,
            data_dir: data_dir.into(),
            frontend: Frontend::Cli,
            system: None,
            listen: None,
            builtin_lists: None,
            control_any_port: false,
            login: None,
            as_left: false,
            protect: true,
        }
    }
}

impl Builder {
    /// Which front end runs it (named to a second instance that finds the data dir taken).
    pub fn frontend(mut self, frontend: Frontend) -> Self {
        self.frontend = frontend;
        self
    }

    /// The system-proxy step to use instead of the configured backend's (tests).
    pub fn system_proxy(mut self, system: SystemProxy) -> Self {
        self.system = Some(system);
        self
    }

    /// Listens here instead of the configured address (the port the app's user chose).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// When the control API's port is taken, serve it on any free loopback port instead of
    /// failing (the app: the CLI finds it through `control.json` wherever it is).
    pub fn control_any_port_if_taken(mut self, yes: bool) -> Self {
        self.control_any_port = yes;
        self
    }

    /// The repair registered to run at login while the system proxy is set, instead of
    /// this program's `repair` for this data dir (tests; `None` registers nothing).
    pub fn login_repair(mut self, repair: Option<crate::sysproxy::login::LoginRepair>) -> Self {
        self.login = Some(repair);
        self
    }

    /// Whether to turn protection on at start at all (default; tests that only need the
    /// instance turn it off).
    pub fn protect(mut self, on: bool) -> Self {
        self.protect = on;
        self
    }

    /// Start as the user left it (the app): with protection off if they turned it off
    /// last, on the port they picked. Without this (`guardnest run`) protection comes on,
    /// where the configuration and flags say. A pause kept from an earlier run runs out
    /// either way.
    pub fn as_left(mut self, yes: bool) -> Self {
        self.as_left = yes;
        self
    }

    /// Other built-in lists (name, URL) than [`crate::blocklist::DEFAULT_LISTS`] (tests).
    pub fn builtin_lists(mut self, lists: Vec<(String, String)>) -> Self {
        self.builtin_lists = Some(lists);
        self
    }

    /// Starts the instance, in the one order every front end shares (see the module doc).
    /// Fails only when it cannot run at all; whether protection came on is in
    /// [`Started::enabled`].
    pub async fn start_up(self) -> Result<Started, StartError> {
        let Builder {
            config,
            data_dir,
            frontend,
            system,
            listen,
            builtin_lists,
            control_any_port,
            login,
            as_left,
            protect,
        } = self;
        config.validate()?;
        private_data_dir(&data_dir);
        let holder = Holder { frontend, pid: std::process::id(), listen: None };
        let lock = match InstanceLock::acquire(&data_dir, &holder) {
            Ok(lock) => Some(lock),
            Err(e @ LockError::Held { .. }) => return Err(StartError::AlreadyRunning(e)),
            Err(e @ LockError::NotAFile(_)) => return Err(StartError::DataDir(e)),
            // A read-only or full data dir must not stop the proxy; it just cannot be locked.
            Err(e) => {
                tracing::warn!(
                    "{}; a second GuardNest on it would not be stopped",
                    crate::conn::respond::error_chain(&e)
                );
                None
            }
        };
        let system = system.unwrap_or_else(|| match ProxyService::system_proxy_for(&config, &data_dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "system proxy backend unavailable; the system proxy will not be changed");
                SystemProxy::new(None, &data_dir)
            }
        });
        // While the system proxy is set, a repair is registered to run at the next login.
        let system = system.with_login_repair(login.unwrap_or_else(|| super::repair::login_repair(&data_dir)));
        let lists = match &builtin_lists {
            Some(b) => {
                let b: Vec<(&str, &str)> = b.iter().map(|(n, u)| (n.as_str(), u.as_str())).collect();
                Blocklists::load_with_defaults(&config.blocklist, Some(&data_dir), &b)
            }
            None => Blocklists::load(&config.blocklist, Some(&data_dir)),
        }
        .map_err(StartError::Lists)?;
        let service = Arc::new(ProxyService::new(config.clone(), lists, system).with_data_dir(&data_dir));
        let settings = UserSettings::load(&data_dir);
        match (listen, settings.listen.filter(|_| as_left)) {
            (Some(addr), _) | (None, Some(addr)) => service.set_listen(addr),
            (None, None) => {}
        }
        *service.instance.lock() = lock.map(|l| (l, holder));

        // What a repair at login did while GuardNest was not running is told once, now.
        let mut repaired: Vec<RepairNote> = super::repair::take_record(&data_dir)
            .map(|r| RepairNote {
                at: r.at,
                at_login: r.at_login,
                backend: r.backend.clone().unwrap_or_else(|| service.system.backend_name().to_string()),
                message: r.line(),
            })
            .into_iter()
            .collect();
        // A GuardNest that died with the system proxy set is repaired before anything else
        // touches the system proxy.
        match service.repair().await {
            Ok(Some(message)) => repaired.push(RepairNote {
                at: super::now_secs(),
                at_login: false,
                backend: service.system.backend_name().to_string(),
                message,
            }),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot repair the system proxy settings of a crashed session"),
        }
        for note in &repaired {
            tracing::warn!("{}", note.message);
        }
        *service.repaired.lock() = repaired;
        if let Err(e) = service.load_user_state().await {
            tracing::error!("cannot load your allowlist and added lists: {e}");
        }
        tracing::info!(names = service.lists.len(), lists = service.lists.status().len(), "lists loaded");
        // What the user chose before: a pause still running; protection off (the app).
        service.restore_choices(&settings).await;
        if let Some(kept) = user::load_day_count(&data_dir) {
            service.block_log().restore_today(kept);
        }

        if let Some(addr) = config.control.addr()? {
            let bound = match ControlServer::bind(addr).await {
                Err(e) if control_any_port && e.kind() == std::io::ErrorKind::AddrInUse => {
                    tracing::warn!("the control API's port {addr} is taken; serving it on another port");
                    ControlServer::bind(SocketAddr::new(addr.ip(), 0)).await
                }
                other => other,
            };
            let server = match bound {
                Ok(s) => s,
                Err(source) => {
                    service.release_instance();
                    return Err(StartError::Control { addr, source });
                }
            };
            let token = new_token().map_err(StartError::Token)?;
            let info = RuntimeInfo {
                addr: server.local_addr(),
                token: token.clone(),
                owner: crate::sysproxy::ProcessId::current(),
            };
            // A full or read-only data dir must not stop the proxy; only the CLI loses track of it.
            let runtime = runtime_path(&data_dir);
            match info.store(&runtime) {
                Ok(()) => {
                    *service.runtime_file.lock() = Some(runtime);
                }
                Err(e) => tracing::warn!(
                    "cannot write {}: {e}; `guardnest status` and the other commands will not find this instance",
                    runtime.display()
                ),
            }
            tracing::info!("control API on {}", server.local_addr());
            service.set_control_addr(server.local_addr());
            service.tasks.spawn(server.run(service.clone(), token, service.background.clone()));
        }

        // After the control API, which serves the PAC file in fail-open mode.
        let enabled = match (protect, as_left && settings.protection_off) {
            (true, false) => service.start_protecting().await,
            (true, true) => Ok(Change { changed: false, message: "protection left off, as you left it".into() }),
            (false, _) => Ok(Change { changed: false, message: "protection left off".into() }),
        };
        service.tasks.spawn(service.lists.clone().run_updater(service.background.clone()));
        service.tasks.spawn(keep_day_count(service.clone()));
        watch_the_end(&service);
        Ok(Started { service, enabled })
    }
}

/// Keeps today's block count in the data dir as it changes (at most once per
/// [`KEEP_COUNT_EVERY`]), so that "blocked today" survives a restart, a crash included.
async fn keep_day_count(service: Arc<ProxyService>) {
    let Some(dir) = service.data_dir().map(std::path::Path::to_path_buf) else { return };
    let stop = service.background.clone();
    let mut changes = service.changes();
    let mut kept = service.block_log().day_count();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
        let now = service.block_log().day_count();
        if now == kept {
            continue;
        }
        if let Err(e) = user::save_day_count(&dir, now) {
            tracing::debug!("{}", crate::error_chain(&e));
        }
        kept = now;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(KEEP_COUNT_EVERY) => {}
        }
    }
}

/// Creates the data dir private to the user (0700 on Unix, an owner-only DACL on Windows).
/// One that exists is not widened or narrowed behind the user's back, with one exception:
/// the default data dir, which is GuardNest's alone, is made private when this user owns it
/// and others can use it (an older GuardNest created it 0755). Any other data dir others can
/// use, or one owned by another user, is reported: its files are still never opened through
/// a link, but others could remove or replace them.
fn private_data_dir(data_dir: &std::path::Path) {
    use crate::sysproxy::fsutil;
    let dir = data_dir.display();
    match fsutil::create_private_dir(data_dir) {
        Ok(true) => return,
        Ok(false) => {}
        Err(e) => return tracing::warn!(dir = %dir, error = %e, "cannot create the data directory"),
    }
    let open = match fsutil::exposure(data_dir) {
        Ok(Some(open)) => open,
        Ok(None) => return,
        Err(e) => return tracing::warn!(dir = %dir, error = %e, "cannot check who may use the data directory"),
    };
    let ours = !open.foreign && data_dir == fsutil::data_dir();
    match ours.then(|| fsutil::make_private(data_dir)) {
        Some(Ok(())) => tracing::info!("made the data directory {dir} private to you (mode 700): {open}"),
        Some(Err(e)) => tracing::warn!("the data directory {dir} is not private ({open}) and cannot be made so: {e}"),
        None => tracing::warn!(
            "the data directory {dir} is not private: {open}; GuardNest keeps your proxy settings and its control \
             token there (chmod 700 it, or use another --data-dir)"
        ),
    }
}

/// The machine shutting down (logind) or the session ending (Windows): the user's settings
/// go back first, before the process is told to stop.
fn watch_the_end(service: &Arc<ProxyService>) {
    let weak = Arc::downgrade(service);
    let runtime = tokio::runtime::Handle::current();
    let restore: crate::sysproxy::session::Restore = Arc::new(move || {
        if let Some(service) = weak.upgrade() {
            // Off a runtime thread (a blocking task, or the session window's thread).
            let _ = runtime.block_on(service.stop_protecting(END_GRACE));
        }
    });
    #[cfg(target_os = "linux")]
    service.tasks.spawn(crate::sysproxy::session::before_shutdown(
        None,
        restore,
        service.background.clone().cancelled_owned(),
    ));
    #[cfg(windows)]
    {
        let weak = Arc::downgrade(service);
        let quit: crate::sysproxy::session::Restore = Arc::new(move || {
            if let Some(service) = weak.upgrade() {
                service.request_quit();
            }
        });
        crate::sysproxy::session::on_end_session(restore, quit);
    }
    #[cfg(not(any(target_os = "linux", windows)))]
    let _ = restore;
}

/// Open connections' grace when the machine or the session is ending.
const END_GRACE: Duration = Duration::from_millis(500);

impl ProxyService {
    /// Stops the instance: protection off (the system proxy restored, open connections
    /// given `grace`), the control API and the list updater stopped and awaited,
    /// `control.json` removed and the data dir's lock released. Bounded by `grace` plus
    /// [`SHUTDOWN_MARGIN`] whatever happens.
    pub async fn shut_down(&self, grace: Duration) -> Result<Change, ServiceError> {
        let bound = grace + SHUTDOWN_MARGIN;
        let work = async {
            let result = self.stop_protecting(grace).await;
            self.background.cancel();
            self.tasks.close();
            self.tasks.wait().await;
            if let Some(dir) = self.data_dir() {
                if let Err(e) = user::save_day_count(dir, self.block_log().day_count()) {
                    tracing::debug!("{}", crate::error_chain(&e));
                }
            }
            result
        };
        let result = match tokio::time::timeout(bound, work).await {
            Ok(r) => r,
            Err(_) => Err(ServiceError::StopTimeout(bound)),
        };
        if let Some(file) = self.runtime_file.lock().take() {
            let _ = std::fs::remove_file(file);
        }
        self.release_instance();
        result
    }

    /// Releases the data dir's lock (and the file naming the holder).
    fn release_instance(&self) {
        self.instance.lock().take();
    }

    /// Tells a second instance where this one listens now.
    pub(super) fn describe_instance(&self, listen: Option<SocketAddr>) {
        if let Some((lock, holder)) = self.instance.lock().as_mut() {
            holder.listen = listen;
            lock.describe(holder);
        }
    }
}
