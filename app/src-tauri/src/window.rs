//! The window: opened on demand and destroyed when closed, so that while GuardNest lives in
//! the tray no page, timer or web process runs for nobody to see. Reopening builds it again
//! from the configuration; the page then asks for the whole current view. The first close
//! ever is held back: the page first says that GuardNest keeps running in the tray and
//! holds the system proxy, and offers Quit. A desktop that shows no tray gets a minimised
//! window instead of a closed one.

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

/// Started at login, hidden in the tray: where the desktop shows no tray (after giving its
/// panel time to come up), the window is opened minimised instead, so that GuardNest is never
/// running unseen.
pub fn started_hidden<R: Runtime>(app: &AppHandle<R>) {
    let app = app.clone();
    let spawned = std::thread::Builder::new().name("tray-host".into()).spawn(move || {
        for _ in 0..30 {
            if crate::tray::desktop_shows_it() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        open(&app);
        if let Some(w) = app.get_webview_window(MAIN) {
            let _ = w.minimize();
        }
    });
    if let Err(e) = spawned {
        tracing::error!("cannot watch for a tray: {e}");
    }
}

/// The event the page shows its one-time notice on (GuardNest keeps running); its payload
/// says whether the desktop shows a tray (else closing minimises, see `keep_running`).
pub const CLOSING_EVENT: &str = "guardnest://closing";

/// The window manager asks to close the window. The first time ever, the page says what
/// closing means instead (its "Keep running" button goes on, see `keep_running`). Where the
/// desktop shows no tray icons (stock GNOME), a closed window would leave GuardNest holding
/// the system proxy with nothing on screen: the window is minimised instead, and an app
/// that holds nothing (another GuardNest runs) quits.
pub fn close_requested<R: Runtime>(window: &tauri::Window<R>, api: &tauri::CloseRequestApi) {
    let app = window.app_handle();
    let Some(state) = app.try_state::<AppState>() else { return };
    let tray = crate::tray::desktop_shows_it();
    if state.service().is_err() {
        if !tray {
            crate::quit(app);
        }
        return;
    }
    if state.should_tell_about_closing(tray) {
        api.prevent_close();
        let _ = tauri::Emitter::emit_to(app, MAIN, CLOSING_EVENT, serde_json::json!({ "tray": tray }));
    } else if !tray {
        api.prevent_close();
        let _ = window.minimize();
    }
}

/// Closes the window to the tray, or minimises it where the desktop shows no tray; the
/// notice said for that case is not said again (the other one still is, if it comes).
pub fn keep_running<R: Runtime>(app: &AppHandle<R>) -> Result<(), crate::UiError> {
    let tray = crate::tray::desktop_shows_it();
    if let Some(state) = app.try_state::<AppState>() {
        state.told_about_closing(tray)?;
    }
    let Some(w) = app.get_webview_window(MAIN) else { return Ok(()) };
    if tray {
        let _ = w.destroy();
    } else {
        let _ = w.minimize();
    }
    Ok(())
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
