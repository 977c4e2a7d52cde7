//! The window: opened on demand and destroyed when closed, so that while GuardNest lives in
//! the tray no page, timer or web process runs for nobody to see. Reopening builds it again
//! from the configuration; the page then asks for the whole current view. The first close
//! ever is held back: the page first says that GuardNest keeps running in the tray and
//! holds the system proxy, and offers Quit.

use tauri::{AppHandle, Manager, Runtime, WebviewWindowBuilder};

use crate::state::AppState;

/// The label of the one window.
pub const MAIN: &str = "main";

/// Shows the window, creating it if it was closed.
pub fn open<R: Runtime>(app: &AppHandle<R>) {
    match app.get_webview_window(MAIN) {
        Some(w) => {
            let _ = w.show();
            let _ = w.unminimize();
            let _ = w.set_focus();
        }
        None => {
            let Some(config) = app.config().app.windows.iter().find(|w| w.label == MAIN).cloned() else { return };
            match WebviewWindowBuilder::from_config(app, &config).and_then(WebviewWindowBuilder::build) {
                Ok(w) => {
                    if let Some(state) = app.try_state::<AppState>() {
                        state.window_open.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    let _ = w.set_focus();
                }
                Err(e) => tracing::error!("cannot open the window: {e}"),
            }
        }
    }
    if let Some(state) = app.try_state::<AppState>() {
        state.wake.notify_one();
    }
}

/// The event the page shows its one-time notice on (GuardNest stays in the tray).
pub const CLOSING_EVENT: &str = "guardnest://closing";

/// The window manager asks to close the window: the first time ever, the page says what
/// closing means instead (its "Keep running in the tray" closes it, see `close_to_tray`).
pub fn close_requested<R: Runtime>(window: &tauri::Window<R>, api: &tauri::CloseRequestApi) {
    let Some(state) = window.app_handle().try_state::<AppState>() else { return };
    if state.should_tell_about_tray() && state.service().is_ok() {
        api.prevent_close();
        let _ = tauri::Emitter::emit_to(window.app_handle(), MAIN, CLOSING_EVENT, ());
    }
}

/// The window was destroyed (closed to the tray): the update loop stops ticking, and the
/// app gives back what only the window needed.
pub fn closed<R: Runtime>(app: &AppHandle<R>) {
    if let Some(state) = app.try_state::<AppState>() {
        state.window_open.store(false, std::sync::atomic::Ordering::Relaxed);
        let stop = state.stop.clone();
        tauri::async_runtime::spawn(state.tasks.track_future(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = crate::rest::window_closed() => {}
            }
        }));
    }
}
