//! Starting at login (the Tauri autostart plugin): off by default, switched in the window and
//! in the tray. When on, the app starts hidden in the tray; its start repairs a system proxy
//! a crash left first, then resumes protection as the user left it.

use guardnest_core::service::user::UserSettings;
use guardnest_core::service::{Change, ErrorKind};
use tauri::{AppHandle, Manager, Runtime};
use tauri_plugin_autostart::ManagerExt as _;

use crate::state::{AppState, UiError};

/// The argument the login entry starts the app with: no window, only the tray.
pub const HIDDEN: &str = "--hidden";

/// The plugin, set up to start the app hidden.
pub fn plugin<R: Runtime>() -> tauri::plugin::TauriPlugin<R> {
    tauri_plugin_autostart::Builder::new().app_name("GuardNest").arg(HIDDEN).build()
}

fn failed(e: impl std::fmt::Display) -> UiError {
    UiError { kind: ErrorKind::Save, message: format!("cannot change starting at login: {e}") }
}

/// Whether the entry is there.
pub fn is_on<R: Runtime>(app: &AppHandle<R>) -> Result<bool, UiError> {
    app.autolaunch().is_enabled().map_err(failed)
}

/// Writes or removes the entry, and keeps the choice in the user's settings.
pub fn set<R: Runtime>(app: &AppHandle<R>, on: bool) -> Result<Change, UiError> {
    let was = is_on(app)?;
    match on {
        true => app.autolaunch().enable(),
        false => app.autolaunch().disable(),
    }
    .map_err(failed)?;
    if let Some(state) = app.try_state::<AppState>() {
        let mut settings = UserSettings::load(&state.data_dir);
        settings.start_at_login = on;
        settings.save(&state.data_dir).map_err(|e| e.report())?;
    }
    crate::tray::reflect_login(app, on);
    let message = match on {
        true => "GuardNest starts at login, in the tray",
        false => "GuardNest no longer starts at login",
    };
    Ok(Change { changed: was != on, message: message.into() })
}
