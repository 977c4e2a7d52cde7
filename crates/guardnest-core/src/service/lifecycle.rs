//! An instance's life, written once for every front end: [`Builder::start_up`] and
//! [`ProxyService::shut_down`]. The CLI's `run` and the desktop app both go through here,
//! so they start and stop in the same order, hold the same lock, serve the same control
//! API and leave the same files.
//!
//! Start: lock the data dir → repair a system proxy left by a GuardNest that died → load
//! the lists (config, cache, what the user added) → control API and `control.json` →
//! protection on (proxy, then system proxy) → the list updater.
//! Stop: protection off (system proxy restored first, open connections drained for the
//! grace) → background tasks cancelled and awaited → `control.json` removed → lock released.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::instance::{Frontend, Holder, InstanceLock, LockError};
use super::{Change, ProxyService, ServiceError};
use crate::blocklist::{Blocklists, ListError};
use crate::config::Config;
use crate::control::{new_token, runtime_path, ControlServer, RuntimeInfo};
use crate::sysproxy::SystemProxy;

/// Above the drain grace: time to restore the system proxy and stop the background tasks.
pub const SHUTDOWN_MARGIN: Duration = Duration::from_secs(5);

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
        super::ErrorReport { kind, message: crate::conn::respond::error_chain(self) }
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

    /// Whether to turn protection on at start (default); the app starts with it off when
    /// the user had turned it off.
    pub fn protect(mut self, on: bool) -> Self {
        self.protect = on;
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
        let Builder { config, data_dir, frontend, system, listen, builtin_lists, control_any_port, login, protect } =
            self;
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
        if let Some(addr) = listen {
            service.set_listen(addr);
        }
        *service.instance.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = lock.map(|l| (l, holder));

        // What a repair at login did while GuardNest was not running is told once, now.
        let mut repaired: Vec<String> = super::repair::take_record(&data_dir).map(|r| r.line()).into_iter().collect();
        // A GuardNest that died with the system proxy set is repaired before anything else
        // touches the system proxy.
        match service.repair().await {
            Ok(Some(message)) => repaired.push(message),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot repair the system proxy settings of a crashed session"),
        }
        for line in &repaired {
            tracing::warn!("{line}");
        }
        if !repaired.is_empty() {
            *service.repaired.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(repaired.join("; "));
        }
        if let Err(e) = service.load_user_state().await {
            tracing::error!("cannot load your allowlist and added lists: {e}");
        }
        tracing::info!(names = service.lists.len(), lists = service.lists.status().len(), "lists loaded");

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
                    *service.runtime_file.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(runtime);
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
        let enabled = match protect {
            true => service.enable().await,
            false => Ok(Change { changed: false, message: "protection left off, as you left it".into() }),
        };
        service.tasks.spawn(service.lists.clone().run_updater(service.background.clone()));
        watch_the_end(&service);
        Ok(Started { service, enabled })
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
            let _ = runtime.block_on(service.disable_with_grace(END_GRACE));
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
            let result = self.disable_with_grace(grace).await;
            self.background.cancel();
            self.tasks.close();
            self.tasks.wait().await;
            result
        };
        let result = match tokio::time::timeout(bound, work).await {
            Ok(r) => r,
            Err(_) => Err(ServiceError::StopTimeout(bound)),
        };
        if let Some(file) = self.runtime_file.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            let _ = std::fs::remove_file(file);
        }
        self.release_instance();
        result
    }

    /// Releases the data dir's lock (and the file naming the holder).
    fn release_instance(&self) {
        self.instance.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    }

    /// Tells a second instance where this one listens now.
    pub(super) fn describe_instance(&self, listen: Option<SocketAddr>) {
        if let Some((lock, holder)) = self.instance.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_mut() {
            holder.listen = listen;
            lock.describe(holder);
        }
    }
}
