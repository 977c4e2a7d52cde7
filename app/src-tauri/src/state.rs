//! The app's state: the engine's service, started by the core's one lifecycle (or why it
//! could not start, until a retry succeeds), and the background work the app adds to it
//! (the window's updates), stopped together on quit. What the user switches is kept by the
//! engine itself; the app keeps only its own two settings (start at login, the one-time
//! tray notice).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use guardnest_core::config::Config;
use guardnest_core::service::user::UserSettings;
use guardnest_core::service::{ErrorKind, ErrorReport, Frontend};
use guardnest_core::ProxyService;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// An error as the window shows it: a kind from a closed set, one technical line, and the
/// structured fields the page words plainly.
pub type UiError = ErrorReport;

/// The engine, or why there is none (another GuardNest holds the data dir, a list file
/// cannot be read).
pub type Engine = Result<Arc<ProxyService>, UiError>;

/// The app's state.
pub struct AppState {
    /// The running engine, or why it could not start; a retry may replace an error.
    engine: tokio::sync::watch::Sender<Engine>,
    /// What the app was started with (a retry starts the same way).
    options: Options,
    /// One start (or retry) at a time.
    starting: tokio::sync::Mutex<()>,
    /// Where GuardNest keeps its files.
    pub data_dir: PathBuf,
    /// The app's own background tasks, cancelled and awaited on quit.
    pub(crate) stop: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// Wakes the window's update loop (the window was opened, or something the engine
    /// does not announce changed: start at login).
    pub(crate) wake: Arc<tokio::sync::Notify>,
    /// Whether the window exists (it is destroyed when closed), kept by `window` so that
    /// the update loop need not ask the UI thread.
    pub(crate) window_open: Arc<std::sync::atomic::AtomicBool>,
}

/// What the app was started with besides the data dir (tests give their own).
#[derive(Default, Clone)]
pub struct Options {
    /// The configuration (default: the one every front end finds for the data dir,
    /// `DATA_DIR/config.toml` or the built-in defaults).
    pub config: Option<Config>,
}

impl AppState {
    /// Starts the engine the app drives: as the user left it (protection on or off, the
    /// port they chose), the system proxy switched together with protection.
    pub async fn start(data_dir: &Path, options: Options) -> AppState {
        let engine = Self::engine(data_dir, &options).await;
        if let Err(e) = &engine {
            tracing::error!("{}", e.message);
        }
        AppState {
            engine: tokio::sync::watch::Sender::new(engine),
            options,
            starting: tokio::sync::Mutex::new(()),
            data_dir: data_dir.to_path_buf(),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            wake: Arc::default(),
            window_open: Arc::default(),
        }
    }

    async fn engine(data_dir: &Path, options: &Options) -> Engine {
        let mut config = match &options.config {
            Some(c) => c.clone(),
            None => ProxyService::config_for(data_dir, None)
                .map_err(|e| UiError::new(ErrorKind::Start, guardnest_core::error_chain(&e)))?,
        };
        // The app is the "one switch" for proxy and system proxy together.
        config.system_proxy.enabled = true;
        let started = ProxyService::builder(config, data_dir)
            .frontend(Frontend::App)
            .control_any_port_if_taken(true)
            .as_left(true)
            .start_up()
            .await
            .map_err(|e| e.report())?;
        match &started.enabled {
            Ok(change) => tracing::info!("{}", change.message),
            // The window shows it (a taken port comes with the offer of another).
            Err(e) => tracing::error!("{}", guardnest_core::error_chain(e)),
        }
        Ok(started.service)
    }

    /// The engine, or why there is none.
    pub fn service(&self) -> Result<Arc<ProxyService>, UiError> {
        self.engine.borrow().clone()
    }

    /// A receiver that sees the engine come (after a retry).
    pub(crate) fn engine_changes(&self) -> tokio::sync::watch::Receiver<Engine> {
        self.engine.subscribe()
    }

    /// Tries to start the engine again (the window's Retry, once another GuardNest holding
    /// the data dir has stopped). A no-op when it runs.
    pub async fn retry(&self) -> Result<(), UiError> {
        let _one = self.starting.lock().await;
        if self.service().is_ok() || self.stop.is_cancelled() {
            return Ok(());
        }
        let engine = Self::engine(&self.data_dir, &self.options).await;
        let result = engine.as_ref().map(|_| ()).map_err(Clone::clone);
        drop(self.engine.send_replace(engine));
        self.wake.notify_one();
        result
    }

    /// Whether closing the window should first say what closing means: that GuardNest keeps
    /// running in the tray (`tray`), or, where the desktop shows no tray, that the window is
    /// minimised instead. Each is said once, ever.
    pub fn should_tell_about_closing(&self, tray: bool) -> bool {
        let settings = UserSettings::load(&self.data_dir);
        if tray {
            !settings.told_about_tray
        } else {
            !settings.told_about_minimising
        }
    }

    /// The user has read what closing means (`tray`: in the tray; else minimised).
    pub fn told_about_closing(&self, tray: bool) -> Result<(), UiError> {
        UserSettings::update(&self.data_dir, |s| match tray {
            true => s.told_about_tray = true,
            false => s.told_about_minimising = true,
        })
        .map_err(|e| e.report())
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
        let _one = self.starting.lock().await;
        if let Ok(service) = self.service() {
            match service.shut_down(grace).await {
                Ok(change) => tracing::info!("{}", change.message),
                Err(e) => tracing::error!("{}", guardnest_core::error_chain(&e)),
            }
        }
    }
}

/// The data dir the app uses, the CLI's too: `~/.local/share/guardnest` on Linux,
/// `%LOCALAPPDATA%\guardnest` on Windows (see `fsutil::data_dir`).
pub fn default_data_dir() -> PathBuf {
    guardnest_core::sysproxy::fsutil::data_dir()
}
