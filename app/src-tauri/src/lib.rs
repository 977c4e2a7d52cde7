//! The GuardNest desktop app: the design's four commands (enable_system_proxy,
//! disable_system_proxy, get_proxy_status, restart_proxy) and the rest the window needs,
//! each a one-line call into the engine's `ProxyService`, plus the window and the tray.
//! The app holds no logic of its own; errors reach the UI as `{kind, message}`.

#![warn(missing_docs)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use guardnest_core::blocklist::Verdict;
use guardnest_core::config::Config;
use guardnest_core::respond::error_chain;
use guardnest_core::service::{Change, ServiceError, ServiceStats, Status};
use guardnest_core::{Blocklists, ProxyService};
use serde::Serialize;
use tauri::{Emitter, Manager, Runtime, State};

/// An error as the UI shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UiError {
    /// Machine-readable kind (`start`, `system_proxy`, `input`, …).
    pub kind: String,
    /// One line for the user.
    pub message: String,
}

impl From<ServiceError> for UiError {
    fn from(e: ServiceError) -> Self {
        UiError { kind: e.kind().into(), message: error_chain(&e) }
    }
}

/// What `check_domain` answers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CheckResult {
    /// The name as checked (normalised).
    pub name: String,
    /// Blocked now.
    pub blocked: bool,
    /// Exempt by an allow rule.
    pub exempt: bool,
    /// The list whose rule decided, if any.
    pub list: Option<String>,
    /// The rule, if any.
    pub rule: Option<String>,
}

/// The app's state: the engine's service.
pub struct AppState {
    /// The service every command calls.
    pub service: Arc<ProxyService>,
    /// Where GuardNest keeps its files.
    pub data_dir: PathBuf,
}

/// Builds the service the app drives: the user's config file from the data dir if there
/// is one, with the system proxy switched together with protection.
pub fn build_state(data_dir: &Path, config: Option<Config>) -> Result<AppState, String> {
    std::fs::create_dir_all(data_dir).map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    let mut config = match config {
        Some(c) => c,
        None => {
            let file = data_dir.join("config.toml");
            if file.exists() {
                Config::from_file(&file).map_err(|e| error_chain(&e))?
            } else {
                Config::default()
            }
        }
    };
    // The app is the "one switch" for proxy and system proxy together.
    config.system_proxy.enabled = true;
    // The app embeds the engine; the CLI's control API would only compete for the port.
    config.control.listen = "none".into();
    let lists = Blocklists::load(&config.blocklist, Some(data_dir)).map_err(|e| error_chain(&e))?;
    let system = ProxyService::system_proxy_for(&config, data_dir).unwrap_or_else(|e| {
        tracing::error!("system proxy backend unavailable: {e}");
        guardnest_core::sysproxy::SystemProxy::new(None, data_dir)
    });
    let service = ProxyService::new(config, lists, system).with_data_dir(data_dir);
    Ok(AppState { service: Arc::new(service), data_dir: data_dir.to_path_buf() })
}

/// Turns protection on: the proxy, and the system proxy with it.
#[tauri::command]
async fn enable_system_proxy(state: State<'_, AppState>) -> Result<Change, UiError> {
    state.service.enable().await.map_err(UiError::from)
}

/// Turns protection off, restoring the user's own proxy settings.
#[tauri::command]
async fn disable_system_proxy(state: State<'_, AppState>) -> Result<Change, UiError> {
    state.service.disable().await.map_err(UiError::from)
}

/// What is true now: listener, health, system proxy, lists, pause.
#[tauri::command]
async fn get_proxy_status(state: State<'_, AppState>) -> Result<Status, UiError> {
    Ok(state.service.status().await)
}

/// Restarts the listener (race-free) and re-applies the system proxy.
#[tauri::command]
async fn restart_proxy(state: State<'_, AppState>) -> Result<Change, UiError> {
    state.service.restart().await.map_err(UiError::from)
}

/// Counters, blocks by list, top names, per-minute blocks.
#[tauri::command]
fn get_stats(state: State<'_, AppState>) -> ServiceStats {
    state.service.stats()
}

/// The latest blocked requests, newest last.
#[tauri::command]
fn get_recent_blocks(state: State<'_, AppState>) -> Vec<guardnest_core::events::BlockEvent> {
    state.service.stats().recent_blocked
}

/// Is this name blocked, and by what?
#[tauri::command]
fn check_domain(state: State<'_, AppState>, name: String) -> Result<CheckResult, UiError> {
    let verdict = state.service.check_domain(&name).map_err(UiError::from)?;
    let name = guardnest_core::domain::Host::parse(name.trim()).map(|h| h.to_string()).unwrap_or(name);
    Ok(match verdict {
        Verdict::Blocked(m) => CheckResult {
            name,
            blocked: true,
            exempt: false,
            list: Some(m.list.to_string()),
            rule: Some(m.rule.into()),
        },
        Verdict::Exempt(m) => CheckResult {
            name,
            blocked: false,
            exempt: true,
            list: Some(m.list.to_string()),
            rule: Some(m.rule.into()),
        },
        Verdict::Allowed => CheckResult { name, blocked: false, exempt: false, list: None, rule: None },
    })
}

/// Never blocks this name again (kept in the user's allowlist).
#[tauri::command]
async fn allow_domain(state: State<'_, AppState>, name: String) -> Result<Change, UiError> {
    state.service.allow_domain(&name).await.map_err(UiError::from)
}

/// Blocking off for `minutes`, back on by itself.
#[tauri::command]
fn pause_protection(state: State<'_, AppState>, minutes: u64) -> Result<Change, UiError> {
    state.service.pause(minutes).map_err(UiError::from)
}

/// Ends a pause now.
#[tauri::command]
fn resume_protection(state: State<'_, AppState>) -> Change {
    state.service.resume()
}

/// Checks every list now.
#[tauri::command]
async fn update_lists(state: State<'_, AppState>) -> Result<guardnest_core::blocklist::UpdateReport, UiError> {
    Ok(state.service.update_lists().await)
}

/// Adds a block list by URL (or absolute path).
#[tauri::command]
async fn add_list(state: State<'_, AppState>, location: String) -> Result<Change, UiError> {
    state.service.add_list(&location).await.map_err(UiError::from)
}

/// Removes a list the user added.
#[tauri::command]
async fn remove_list(state: State<'_, AppState>, location: String) -> Result<Change, UiError> {
    state.service.remove_list(&location).await.map_err(UiError::from)
}

/// When another program holds the port: listen on `port` instead and turn protection on.
#[tauri::command]
async fn use_port(state: State<'_, AppState>, port: u16) -> Result<Change, UiError> {
    if port == 0 {
        return Err(UiError { kind: "input".into(), message: "choose a port from 1 to 65535".into() });
    }
    state.service.set_listen(SocketAddr::from(([127, 0, 0, 1], port)));
    state.service.enable().await.map_err(UiError::from)
}

/// Every command the window may call.
pub fn handlers<R: Runtime>() -> impl Fn(tauri::ipc::Invoke<R>) -> bool + Send + Sync + 'static {
    tauri::generate_handler![
        enable_system_proxy,
        disable_system_proxy,
        get_proxy_status,
        restart_proxy,
        get_stats,
        get_recent_blocks,
        check_domain,
        allow_domain,
        pause_protection,
        resume_protection,
        update_lists,
        add_list,
        remove_list,
        use_port,
    ]
}

/// What the window receives once a second (an event, not polling from the page).
#[derive(Serialize, Clone)]
struct Tick {
    status: Status,
    stats: ServiceStats,
}

fn show_main<R: Runtime>(app: &tauri::AppHandle<R>) {
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
    }
}

/// Restores the system proxy and stops, bounded in time: Quit, log-off, shutdown.
fn stop_blocking(service: &Arc<ProxyService>) {
    let service = service.clone();
    let _ =
        tauri::async_runtime::block_on(
            async move { tokio::time::timeout(Duration::from_secs(8), service.disable()).await },
        );
}

fn tray<R: Runtime>(app: &tauri::App<R>) -> tauri::Result<()> {
    use tauri::menu::{CheckMenuItem, Menu, MenuItem, PredefinedMenuItem};
    use tauri::tray::TrayIconBuilder;
    let toggle = CheckMenuItem::with_id(app, "toggle", "Protection on", true, true, None::<&str>)?;
    let pause = MenuItem::with_id(app, "pause", "Pause 15 minutes", true, None::<&str>)?;
    let open = MenuItem::with_id(app, "open", "Open GuardNest", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let menu = Menu::with_items(app, &[&toggle, &pause, &PredefinedMenuItem::separator(app)?, &open, &quit])?;
    let mut builder = TrayIconBuilder::with_id("guardnest").menu(&menu).tooltip("GuardNest");
    if let Some(icon) = app.default_window_icon() {
        builder = builder.icon(icon.clone());
    }
    builder
        .on_menu_event(move |app, event| {
            let service = app.state::<AppState>().service.clone();
            match event.id.as_ref() {
                "toggle" => {
                    let app = app.clone();
                    tauri::async_runtime::spawn(async move {
                        let on = service.status().await.running;
                        let result = if on { service.disable().await } else { service.enable().await };
                        if let Err(e) = result {
                            let _ = app.emit("guardnest://error", UiError::from(e));
                        }
                    });
                }
                "pause" => {
                    let _ = service.pause(15);
                }
                "open" => show_main(app),
                "quit" => {
                    stop_blocking(&service);
                    app.exit(0);
                }
                _ => {}
            }
        })
        .build(app)?;
    // Keep the check mark true to the state.
    let handle = app.handle().clone();
    tauri::async_runtime::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let running = handle.state::<AppState>().service.status().await.running;
            let _ = toggle.set_checked(running);
        }
    });
    Ok(())
}

/// Log-off and shutdown end a desktop session with SIGTERM (and a terminal with SIGINT or
/// SIGHUP): restore the system proxy first, then exit.
#[cfg(unix)]
fn exit_on_signals<R: Runtime>(app: &tauri::AppHandle<R>) {
    use tokio::signal::unix::{signal, SignalKind};
    let handle = app.clone();
    tauri::async_runtime::spawn(async move {
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) =
            (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()))
        else {
            tracing::error!("cannot watch termination signals");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = hup.recv() => {}
        }
        let service = handle.state::<AppState>().service.clone();
        let _ = tokio::time::timeout(Duration::from_secs(8), service.disable()).await;
        handle.exit(0);
    });
}

/// Starts protection (after repairing a crashed session) and the per-second updates.
fn start_engine<R: Runtime>(app: &tauri::AppHandle<R>) {
    let service = app.state::<AppState>().service.clone();
    let handle = app.clone();
    tauri::async_runtime::spawn(async move {
        match service.repair().await {
            Ok(Some(m)) => tracing::warn!("{m}"),
            Ok(None) => {}
            Err(e) => tracing::error!("cannot repair a crashed session: {e}"),
        }
        if let Err(e) = service.load_user_state().await {
            tracing::error!("cannot load your allowlist and lists: {e}");
        }
        if let Err(e) = service.enable().await {
            // The window says so clearly (another GuardNest on the port: offer another).
            let _ = handle.emit("guardnest://error", UiError::from(e));
        }
        let lists = service.lists().clone();
        // The list updater runs for the app's whole life.
        tauri::async_runtime::spawn(lists.run_updater(tokio_util::sync::CancellationToken::new()));
        loop {
            let tick = Tick { status: service.status().await, stats: service.stats() };
            let _ = handle.emit("guardnest://tick", tick);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// Runs the app.
pub fn run() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let data_dir = guardnest_core::sysproxy::fsutil::data_dir();
    let app = tauri::Builder::default()
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| show_main(app)))
        .setup(move |app| {
            let state = build_state(&data_dir, None)?;
            app.manage(state);
            tray(app)?;
            #[cfg(unix)]
            exit_on_signals(app.handle());
            start_engine(app.handle());
            Ok(())
        })
        .on_window_event(|window, event| {
            // Closing the window keeps GuardNest running in the tray.
            if let tauri::WindowEvent::CloseRequested { api, .. } = event {
                api.prevent_close();
                let _ = window.hide();
            }
        })
        .invoke_handler(handlers())
        .build(tauri::generate_context!());
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            eprintln!("guardnest-app: cannot start: {e}");
            std::process::exit(1);
        }
    };
    app.run(|app, event| {
        // Quit, log-off and shutdown all end here: restore the system proxy first.
        if let tauri::RunEvent::Exit = event {
            if let Some(state) = app.try_state::<AppState>() {
                stop_blocking(&state.service);
            }
        }
    });
}
