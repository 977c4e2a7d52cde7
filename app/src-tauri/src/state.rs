//! The app's state: the engine's service, started by the core's one lifecycle, and the
//! background work the app adds to it (the window's updates), stopped together on quit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use guardnest_core::config::Config;
use guardnest_core::service::user::UserSettings;
use guardnest_core::service::{ErrorKind, ErrorReport, Frontend};
use guardnest_core::sysproxy::SystemProxy;
use guardnest_core::ProxyService;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// An error as the window shows it: a kind from a closed set, and one line.
pub type UiError = ErrorReport;

/// The app's state.
pub struct AppState {
    /// The running engine, or why it could not start (another GuardNest holds the data
    /// dir, a list file cannot be read): the window then says so and offers nothing else.
    engine: Result<Arc<ProxyService>, UiError>,
    /// Where GuardNest keeps its files.
    pub data_dir: PathBuf,
    /// The app's own background tasks, cancelled and awaited on quit.
    pub(crate) stop: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// Wakes the window's update loop (the window was opened).
    pub(crate) wake: Arc<tokio::sync::Notify>,
    /// Whether the window exists (it is destroyed when closed), kept by `window` so that
    /// the update loop need not ask the UI thread.
    pub(crate) window_open: Arc<std::sync::atomic::AtomicBool>,
}

/// What the app was started with besides the data dir (tests give their own).
#[derive(Default)]
pub struct Options {
    /// The configuration (default: `DATA_DIR/config.toml`, or the built-in defaults).
    pub config: Option<Config>,
    /// The system-proxy step instead of the configured backend's.
    pub system: Option<SystemProxy>,
}

impl AppState {
    /// Starts the engine the app drives: the config file in the data dir if there is one,
    /// the system proxy switched together with protection, on the port the user chose.
    pub async fn start(data_dir: &Path, options: Options) -> AppState {
        let engine = Self::engine(data_dir, options).await;
        if let Err(e) = &engine {
            tracing::error!("{}", e.message);
        }
        AppState {
            engine,
            data_dir: data_dir.to_path_buf(),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            wake: Arc::default(),
            window_open: Arc::default(),
        }
    }

    async fn engine(data_dir: &Path, options: Options) -> Result<Arc<ProxyService>, UiError> {
        let mut config = match options.config {
            Some(c) => c,
            None => {
                let file = data_dir.join("config.toml");
                match file.exists() {
                    true => Config::from_file(&file)
                        .map_err(|e| UiError { kind: ErrorKind::Start, message: guardnest_core::error_chain(&e) })?,
                    false => Config::default(),
                }
            }
        };
        // The app is the "one switch" for proxy and system proxy together.
        config.system_proxy.enabled = true;
        let settings = UserSettings::load(data_dir);
        // Protection comes back as the user left it (on, unless they turned it off).
        let mut builder = ProxyService::builder(config, data_dir)
            .frontend(Frontend::App)
            .control_any_port_if_taken(true)
            .protect(!settings.protection_off);
        if let Some(listen) = settings.listen {
            builder = builder.listen(listen);
        }
        if let Some(system) = options.system {
            builder = builder.system_proxy(system);
        }
        let started = builder.start_up().await.map_err(|e| e.report())?;
        match &started.enabled {
            Ok(change) => tracing::info!("{}", change.message),
            // The window shows it (a taken port comes with the offer of another).
            Err(e) => tracing::error!("{}", guardnest_core::error_chain(e)),
        }
        Ok(started.service)
    }

    /// The engine, or why there is none.
    pub fn service(&self) -> Result<&Arc<ProxyService>, UiError> {
        self.engine.as_ref().map_err(Clone::clone)
    }

    /// Listens on `port` from now on (kept for the next start) and turns protection on.
    pub async fn use_port(&self, port: u16) -> Result<guardnest_core::service::Change, UiError> {
        let service = self.service()?;
        let change = service.listen_on_port(port).await.map_err(|e| e.report())?;
        if let Some(listen) = service.status().await.listen {
            remember_port(&self.data_dir, listen)?;
        }
        Ok(change)
    }

    /// Stops everything, bounded in time: the app's tasks, then the engine (the system
    /// proxy restored first, connections drained for `grace`). Only the first call does
    /// anything.
    pub async fn quit(&self, grace: Duration) {
        if self.stop.is_cancelled() {
            return;
        }
        self.stop.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tasks.wait()).await;
        if let Ok(service) = &self.engine {
            match service.shut_down(grace).await {
                Ok(change) => tracing::info!("{}", change.message),
                Err(e) => tracing::error!("{}", guardnest_core::error_chain(&e)),
            }
        }
    }
}

/// Keeps what the user switched: protection on or off (for the next start).
pub fn remember_protection(data_dir: &Path, on: bool) -> Result<(), UiError> {
    let mut settings = UserSettings::load(data_dir);
    if settings.protection_off != on {
        return Ok(());
    }
    settings.protection_off = !on;
    settings.save(data_dir).map_err(|e| e.report())
}

fn remember_port(data_dir: &Path, listen: SocketAddr) -> Result<(), UiError> {
    let mut settings = UserSettings::load(data_dir);
    settings.listen = Some(listen);
    settings.save(data_dir).map_err(|e| e.report())
}

/// The data dir the app uses, the CLI's too: `~/.local/share/guardnest` on Linux,
/// `%LOCALAPPDATA%\guardnest` on Windows (see `fsutil::data_dir`).
pub fn default_data_dir() -> PathBuf {
    guardnest_core::sysproxy::fsutil::data_dir()
}
