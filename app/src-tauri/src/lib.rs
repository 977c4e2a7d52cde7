//! The GuardNest desktop app: the engine in a window and in the tray.
//!
//! - [`state`]: the engine, started by the core's one lifecycle (retried when another
//!   GuardNest held the data dir), and the app's own tasks;
//! - [`commands`]: what the window may call, each a one-line call into the engine;
//! - [`events`]: what the window and the tray are told, whenever the engine announces a
//!   change (whoever made it), and counters only while the window is shown;
//! - `tray`: a view like the window, drawn per state, whose menu works with the window closed;
//! - `login`: starting at login (the OS's autostart entry), hidden in the tray;
//! - `window`: the window, created on demand and destroyed when closed (the first close
//!   says that GuardNest keeps running in the tray);
//! - `rest`: what the app gives back when only the tray is left.
//!
//! The app holds no logic of its own: every decision, and every piece of the user's state,
//! is the engine's.

#![warn(missing_docs)]
// No unwrap on locks, I/O or anything a peer controls; tests may.
#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod commands;
pub mod events;
pub mod login;
mod rest;
pub mod state;
mod tray;
mod webview;
mod window;

use tauri::{AppHandle, Manager, RunEvent, Runtime};

pub use commands::handlers;
pub use state::{AppState, Options, UiError};

/// Runs the app.
pub fn run() {
    rest::before_gtk();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = help_from_args(&args).or_else(repair_from_args).or_else(|| login::from_args(&args)) {
        std::process::exit(code);
    }
    if let Some(why) = webview::missing() {
        webview::tell(&why);
        std::process::exit(1);
    }
    if let Some(why) = no_display() {
        eprintln!("guardnest-app: {why}; `guardnest run` runs GuardNest without a window");
        std::process::exit(1);
    }
    let data_dir = state::default_data_dir();
    let app = build_quietly(|| {
        tauri::Builder::default()
            // A second start of the app shows the first one's window instead.
            .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| window::open(app)))
            .setup(move |app| {
                // After the single-instance check: a second app never touches the engine.
                let state = tauri::async_runtime::block_on(AppState::start(&data_dir, Options::default()));
                app.manage(state);
                tray::build(app)?;
                watch_session_end(app.handle());
                watch_quit_requests(app.handle());
                events::spawn_updates(app.handle());
                // Started at login: the tray only (a minimised window where there is no
                // tray); otherwise the window too.
                if std::env::args().any(|a| a == login::HIDDEN) {
                    window::started_hidden(app.handle());
                } else {
                    window::open(app.handle());
                }
                Ok(())
            })
            .on_window_event(|window, event| {
                if window.label() != window::MAIN {
                    return;
                }
                match event {
                    tauri::WindowEvent::CloseRequested { api, .. } => window::close_requested(window, api),
                    tauri::WindowEvent::Destroyed => window::closed(window.app_handle()),
                    _ => {}
                }
            })
            .invoke_handler(handlers())
            .build(tauri::generate_context!())
    });
    let app = match app {
        Ok(app) => app,
        Err(why) => {
            webview::tell(&format!("GuardNest cannot start: {why}"));
            std::process::exit(1);
        }
    };
    app.run(|app, event| match event {
        // The last window closed: GuardNest stays in the tray.
        RunEvent::ExitRequested { api, code: None, .. } => api.prevent_exit(),
        // Quit, log-off and shutdown all end here: the system proxy is restored first.
        RunEvent::Exit => tauri::async_runtime::block_on(stop(app)),
        _ => {}
    });
}

/// What `guardnest-app --help` says.
const USAGE: &str = "GuardNest: keeps the programs that use the system proxy off malicious sites.
The app runs the GuardNest proxy, sets it as the system proxy while protection is on, and
puts your own proxy settings back when you switch it off or quit.

Usage:
  guardnest-app                            open GuardNest (a second start shows the first one's window)
  guardnest-app --hidden                   start in the tray, as at login
  guardnest-app start-at-login on|off      start at login, or not
  guardnest-app repair [--data-dir DIR]    put the system proxy back if a GuardNest that held it is gone
  guardnest-app --help | --version

Its settings and lists are in the data directory (on Linux ~/.local/share/guardnest); the
`guardnest` command drives the same GuardNest from a terminal (guardnest --help).";

/// `guardnest-app --help` and `--version` (on Windows, where a window program has no
/// terminal, in a message box).
fn help_from_args(args: &[String]) -> Option<i32> {
    let text = match args.first().map(String::as_str)? {
        "-h" | "--help" | "help" => USAGE.to_string(),
        "-V" | "--version" => format!("guardnest-app {}", env!("CARGO_PKG_VERSION")),
        _ => return None,
    };
    println!("{text}");
    #[cfg(windows)]
    webview::tell(&text);
    Some(0)
}

/// `guardnest-app repair --data-dir DIR [--at-login]`: the one-shot repair the OS runs at
/// login while the app holds the system proxy (see `guardnest_core::service::repair`), with
/// no window. `None` when the app was started for anything else.
fn repair_from_args() -> Option<i32> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("repair") {
        return None;
    }
    let data_dir = args
        .windows(2)
        .find(|w| w[0] == "--data-dir")
        .map(|w| std::path::PathBuf::from(&w[1]))
        .unwrap_or_else(state::default_data_dir);
    let at_login = args.iter().any(|a| a == "--at-login");
    let config = match guardnest_core::ProxyService::config_for(&data_dir, None) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("guardnest-app: {}", guardnest_core::error_chain(&e));
            return Some(1);
        }
    };
    use guardnest_core::service::repair::{repair, RepairError};
    Some(match repair(&config, &data_dir, None, at_login) {
        Ok(message) => {
            println!("{message}");
            0
        }
        Err(e @ RepairError::Live { .. }) if at_login => {
            println!("{e}");
            0
        }
        Err(e) => {
            eprintln!("guardnest-app: {}", guardnest_core::error_chain(&e));
            1
        }
    })
}

/// Builds the app; a panic while doing so (GTK without a usable display) becomes one line.
fn build_quietly(
    build: impl FnOnce() -> tauri::Result<tauri::App> + std::panic::UnwindSafe,
) -> Result<tauri::App, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(build);
    std::panic::set_hook(hook);
    match result {
        Ok(Ok(app)) => Ok(app),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_else(|| "the window system failed".into())),
    }
}

/// Why no window can be opened here, if that is clear before trying.
fn no_display() -> Option<&'static str> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let set = |v: &str| std::env::var_os(v).is_some_and(|x| !x.is_empty());
    (!set("DISPLAY") && !set("WAYLAND_DISPLAY"))
        .then_some("no display to open a window on (DISPLAY and WAYLAND_DISPLAY are not set)")
}

/// Stops the engine (Quit, a session's end, and the event loop's exit all come here; only
/// the first does anything).
async fn stop<R: Runtime>(app: &AppHandle<R>) {
    if let Some(state) = app.try_state::<AppState>() {
        state.quit(tray::QUIT_GRACE).await;
    }
}

/// Quit from the tray: stop, then leave the event loop.
fn quit<R: Runtime>(app: &AppHandle<R>) {
    let handle = app.clone();
    tauri::async_runtime::spawn(async move {
        stop(&handle).await;
        handle.exit(0);
    });
}

/// `guardnest stop` (an upgrade, the uninstaller) asks the engine to quit, through the
/// control API or, on Windows, the session window's `WM_CLOSE`: stop as Quit does. (The
/// engine may come later, after a retry.)
fn watch_quit_requests<R: Runtime>(app: &AppHandle<R>) {
    let Some(state) = app.try_state::<AppState>() else { return };
    let (mut engines, stopped) = (state.engine_changes(), state.stop.clone());
    let handle = app.clone();
    tauri::async_runtime::spawn(async move {
        let quit = loop {
            if let Ok(service) = engines.borrow_and_update().as_ref() {
                break service.quit_requested();
            }
            tokio::select! {
                () = stopped.cancelled() => return,
                changed = engines.changed() => if changed.is_err() { return },
            }
        };
        tokio::select! {
            () = stopped.cancelled() => return,
            () = quit.cancelled() => {}
        }
        stop(&handle).await;
        handle.exit(0);
    });
}

/// A desktop session ends the app with SIGTERM at log-off and shutdown (and a terminal
/// with SIGINT or SIGHUP): stop, restoring the system proxy, then exit.
fn watch_session_end<R: Runtime>(app: &AppHandle<R>) {
    #[cfg(unix)]
    {
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
            stop(&handle).await;
            handle.exit(0);
        });
    }
    #[cfg(not(unix))]
    let _ = app;
}
