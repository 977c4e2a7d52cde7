//! The tray: the app's only presence while its window is closed. Its menu (protection on
//! or off, pause or resume, open, quit) works without the window, and shows the state the
//! update loop reflects into it.

use std::time::Duration;

use guardnest_core::service::{Protection, Status};
use tauri::menu::{CheckMenuItem, Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Emitter, Manager, Runtime, Wry};

use crate::state::AppState;

/// The menu items whose state follows the engine.
struct Items<R: Runtime> {
    toggle: CheckMenuItem<R>,
    pause: MenuItem<R>,
    login: CheckMenuItem<R>,
}

/// What the tray shows of the state; it is updated only when this changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    running: bool,
    paused: bool,
}

impl Shown {
    /// The tray's part of a status.
    pub fn of(status: &Status) -> Shown {
        Shown { running: status.running, paused: matches!(status.protection, Protection::Paused { .. }) }
    }
}

/// Builds the tray icon and its menu.
pub fn build(app: &tauri::App<Wry>) -> tauri::Result<()> {
    let toggle = CheckMenuItem::with_id(app, "toggle", "Protection on", true, false, None::<&str>)?;
    let pause = MenuItem::with_id(app, "pause", "Pause 15 minutes", false, None::<&str>)?;
    let login_on = crate::login::is_on().unwrap_or(false);
    let login = CheckMenuItem::with_id(app, "login", "Start at login", true, login_on, None::<&str>)?;
    let open = MenuItem::with_id(app, "open", "Open GuardNest", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let separator = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(app, &[&toggle, &pause, &login, &separator, &open, &quit])?;
    let mut builder = TrayIconBuilder::with_id("guardnest").menu(&menu).tooltip("GuardNest");
    if let Some(icon) = app.default_window_icon() {
        builder = builder.icon(icon.clone());
    }
    builder.on_menu_event(|app, event| on_menu(app, event.id.as_ref())).build(app)?;
    app.manage(Items { toggle, pause, login });
    Ok(())
}

fn on_menu<R: Runtime>(app: &AppHandle<R>, id: &str) {
    let state = app.state::<AppState>();
    match id {
        "open" => crate::window::open(app),
        "quit" => crate::quit(app),
        "login" => {
            let on = !crate::login::is_on().unwrap_or(false);
            if let Err(e) = crate::login::set(app, on) {
                let _ = app.emit("guardnest://error", e);
            }
        }
        "toggle" | "pause" => {
            let Ok(service) = state.service().cloned() else { return };
            let (app, id) = (app.clone(), id.to_string());
            tauri::async_runtime::spawn(async move {
                let status = service.status().await;
                let paused = matches!(status.protection, Protection::Paused { .. });
                let result = match (id.as_str(), status.running, paused) {
                    ("toggle", true, _) => service.disable().await,
                    ("toggle", false, _) => service.enable().await,
                    (_, _, true) => Ok(service.resume()),
                    _ => service.pause(15),
                };
                if id == "toggle" && result.is_ok() {
                    if let Some(state) = app.try_state::<AppState>() {
                        let _ = crate::state::remember_protection(&state.data_dir, !status.running);
                    }
                }
                if let Err(e) = result {
                    let _ = app.emit("guardnest://error", e.report());
                }
            });
        }
        _ => {}
    }
}

/// Shows `shown` in the menu: the check mark, and pause or resume (only while on).
pub fn reflect<R: Runtime>(app: &AppHandle<R>, shown: &Shown) {
    let Some(items) = app.try_state::<Items<Wry>>() else { return };
    let _ = items.toggle.set_checked(shown.running);
    let _ = items.pause.set_enabled(shown.running);
    let _ = items.pause.set_text(if shown.paused { "Resume protection" } else { "Pause 15 minutes" });
}

/// Shows whether the app starts at login.
pub fn reflect_login<R: Runtime>(app: &AppHandle<R>, on: bool) {
    if let Some(items) = app.try_state::<Items<Wry>>() {
        let _ = items.login.set_checked(on);
    }
}

/// How long Quit, log-off and shutdown give open connections before the app exits.
pub const QUIT_GRACE: Duration = Duration::from_secs(3);
