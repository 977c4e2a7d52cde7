//! The tray: the app's only presence while its window is closed, and a view of the engine
//! like the window. Its icon is drawn per state (blocking, paused, off, not protected), its
//! first line says the state in words, "Protection on" is ticked only while GuardNest
//! actually blocks (running with no list loaded it reads "On, but blocking nothing yet" and
//! opens the window), and its items work without the window. The update loop reflects every
//! change into it ([`reflect`]), whoever made the change.

use parking_lot::Mutex;
use std::time::Duration;

use guardnest_core::service::{Protection, PAUSE_DEFAULT_MINUTES};
use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Emitter, Manager, Runtime, Wry};

use crate::events::View;
use crate::state::AppState;

/// The tray icon's id.
const TRAY: &str = "guardnest";

/// The product's name: the tray item's title and tooltip.
pub const TITLE: &str = "GuardNest";

/// The icons, one per [`Look`], drawn by `icons/tray/draw.sh` (64x64 RGBA PNGs).
const ICON_ON: &[u8] = include_bytes!("../icons/tray/on.png");
const ICON_PAUSED: &[u8] = include_bytes!("../icons/tray/paused.png");
const ICON_OFF: &[u8] = include_bytes!("../icons/tray/off.png");
const ICON_UNPROTECTED: &[u8] = include_bytes!("../icons/tray/unprotected.png");

/// Which icon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// Blocking.
    On,
    /// Paused; back on by itself.
    Paused,
    /// Protection off, or the engine could not start.
    Off,
    /// Running, but nothing (or not everything) is blocked: a list is missing.
    Unprotected,
}

impl Look {
    fn png(self) -> &'static [u8] {
        match self {
            Look::On => ICON_ON,
            Look::Paused => ICON_PAUSED,
            Look::Off => ICON_OFF,
            Look::Unprotected => ICON_UNPROTECTED,
        }
    }
}

/// What the tray shows of the view; it is updated only when this changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    look: Look,
    /// The first line of the menu: the state in words.
    line: String,
    /// GuardNest blocks now: "Protection on" is ticked.
    blocking: bool,
    /// There is an engine to switch (not while another GuardNest holds the data dir).
    engine: bool,
    /// Paused: the pause item resumes.
    paused: bool,
    /// Blocking or paused: the pause item does something.
    pausable: bool,
    /// Whether the app starts at login.
    login: bool,
    /// Running with no list loaded: the switch opens the window, which says why.
    unprotected: bool,
}

/// The switch's words: "Protection on", ticked only while blocking. Running with no list
/// loaded it is neither on nor off as a person means it: it says so, and opens the window.
const TOGGLE: &str = "Protection on";
const TOGGLE_NOT_BLOCKING: &str = "On, but blocking nothing yet: see why";

impl Shown {
    fn toggle_text(&self) -> &'static str {
        if self.unprotected {
            TOGGLE_NOT_BLOCKING
        } else {
            TOGGLE
        }
    }
}

impl Shown {
    /// The tray's part of a view.
    pub fn of(view: &View) -> Shown {
        let login = view.start_at_login;
        let Some(status) = &view.status else {
            // As the window says: once the other GuardNest has stopped, this one can start.
            let gone = view.refused.as_ref().is_some_and(|r| r.holder_gone);
            return Shown {
                look: Look::Off,
                line: if gone {
                    "The other GuardNest has stopped: open GuardNest to start"
                } else {
                    "Another GuardNest is running"
                }
                .into(),
                blocking: false,
                engine: false,
                paused: false,
                pausable: false,
                login,
                unprotected: false,
            };
        };
        let (look, line) = match &status.protection {
            Protection::Protected { missing, .. } if missing.is_empty() => (Look::On, "Protected".to_string()),
            Protection::Protected { missing, .. } if missing.len() == 1 => {
                (Look::Unprotected, "Partly protected: a list is missing".to_string())
            }
            Protection::Protected { missing, .. } => {
                (Look::Unprotected, format!("Partly protected: {} lists are missing", missing.len()))
            }
            Protection::Unprotected { .. } => (Look::Unprotected, "Not protected: no list loaded".to_string()),
            Protection::Paused { until, .. } => (Look::Paused, paused_line(*until)),
            Protection::Off { .. } => (Look::Off, "Protection is off".to_string()),
        };
        let blocking = matches!(status.protection, Protection::Protected { .. });
        let paused = matches!(status.protection, Protection::Paused { .. });
        Shown {
            look,
            line,
            blocking,
            engine: true,
            paused,
            pausable: blocking || paused,
            login,
            unprotected: matches!(status.protection, Protection::Unprotected { .. }),
        }
    }
}

/// "Paused until 12:35" (the local time where the OS says it; else without the time).
fn paused_line(until: u64) -> String {
    match local_clock(until) {
        Some(hm) => format!("Paused until {hm}"),
        None => "Paused: back on by itself".to_string(),
    }
}

/// A moment as the local clock time, as the system's locale writes it: "15:09", or
/// "3:09 PM" where the clock is 12-hour (the window writes it the same way).
#[cfg(target_os = "linux")]
fn local_clock(epoch: u64) -> Option<String> {
    let t = libc::time_t::try_from(epoch).ok()?;
    // SAFETY: an all-zero `tm` is a valid value of this plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r writes into the `tm` we own; both pointers are valid for the call.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return None;
    }
    Some(match clock_12h() == Some(true) {
        true => {
            let hour = match tm.tm_hour % 12 {
                0 => 12,
                h => h,
            };
            format!("{hour}:{:02} {}", tm.tm_min, if tm.tm_hour < 12 { "AM" } else { "PM" })
        }
        false => format!("{:02}:{:02}", tm.tm_hour, tm.tm_min),
    })
}

#[cfg(not(target_os = "linux"))]
fn local_clock(_: u64) -> Option<String> {
    None
}

/// Whether the system's locale writes the time on a 12-hour clock (its time format has an
/// AM/PM: `%r`, `%p` or `%I`). GTK has set the locale from the environment by then.
#[cfg(target_os = "linux")]
pub fn clock_12h() -> Option<bool> {
    // SAFETY: nl_langinfo returns a pointer to a NUL-terminated string owned by the C
    // library, valid until the next setlocale; it is copied at once.
    let format = unsafe {
        let p = libc::nl_langinfo(libc::T_FMT);
        if p.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    };
    Some(["%r", "%p", "%I", "%l"].iter().any(|f| format.contains(f)))
}

/// Windows and macOS: the window's own locale decides (the tray shows no time there).
#[cfg(not(target_os = "linux"))]
pub fn clock_12h() -> Option<bool> {
    None
}

/// The menu items whose state follows the engine, and what they show now.
struct Items<R: Runtime> {
    status: MenuItem<R>,
    toggle: CheckMenuItem<R>,
    pause: MenuItem<R>,
    login: CheckMenuItem<R>,
    shown: Mutex<Option<Shown>>,
}

/// Builds the tray icon and its menu (they show the state at once; the update loop keeps
/// them current).
pub fn build(app: &tauri::App<Wry>) -> tauri::Result<()> {
    // The StatusNotifierItem's Title is the application's name on Linux (else the program's).
    #[cfg(target_os = "linux")]
    glib::set_application_name(TITLE);
    let status = MenuItem::with_id(app, "status", "GuardNest", false, None::<&str>)?;
    let toggle = CheckMenuItem::with_id(app, "toggle", TOGGLE, false, false, None::<&str>)?;
    let pause = MenuItem::with_id(app, "pause", pause_text(), false, None::<&str>)?;
    let login_on = crate::login::is_on().unwrap_or(false);
    let login = CheckMenuItem::with_id(app, "login", "Start at login", true, login_on, None::<&str>)?;
    let open = MenuItem::with_id(app, "open", "Open GuardNest", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let separator = PredefinedMenuItem::separator(app)?;
    let separator2 = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(app, &[&status, &separator, &toggle, &pause, &login, &separator2, &open, &quit])?;
    TrayIconBuilder::with_id(TRAY)
        .menu(&menu)
        .tooltip(TITLE)
        .icon(Image::from_bytes(Look::Off.png())?)
        .on_menu_event(|app, event| on_menu(app, event.id.as_ref()))
        .build(app)?;
    app.manage(Items { status, toggle, pause, login, shown: Mutex::new(None) });
    Ok(())
}

fn pause_text() -> String {
    format!("Pause for {PAUSE_DEFAULT_MINUTES} minutes")
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
            let shown = app.try_state::<Items<Wry>>().and_then(|i| i.shown.lock().clone());
            // Running but blocking nothing: switching cannot fix that; the window says why.
            if id == "toggle" && shown.as_ref().is_some_and(|s| s.unprotected) {
                crate::window::open(app);
            }
            let Ok(service) = state.service() else {
                refresh(app);
                return;
            };
            let (app, id) = (app.clone(), id.to_string());
            tauri::async_runtime::spawn(async move {
                let (blocking, paused, unprotected) =
                    shown.map_or((false, false, false), |s| (s.blocking, s.paused, s.unprotected));
                let result = match (id.as_str(), blocking, paused, unprotected) {
                    ("toggle", _, _, true) => Ok(None),
                    // On means blocking: from off, and from a pause.
                    ("toggle", true, _, _) => service.disable().await.map(Some),
                    ("toggle", false, _, _) => service.enable().await.map(Some),
                    (_, _, true, _) => Ok(Some(service.resume().await)),
                    _ => service.pause(PAUSE_DEFAULT_MINUTES).await.map(Some),
                };
                if let Err(e) = result {
                    let _ = app.emit("guardnest://error", e.report());
                }
                // GTK ticks a check item itself when clicked: show the truth again.
                refresh(&app);
            });
        }
        _ => {}
    }
}

/// Shows the state now, whatever the menu shows (after a click).
pub fn refresh<R: Runtime>(app: &AppHandle<R>) {
    if let Some(items) = app.try_state::<Items<Wry>>() {
        *items.shown.lock() = None;
    }
    if let Some(state) = app.try_state::<AppState>() {
        state.wake.notify_one();
    }
}

/// Shows `shown`: the icon, the first line, the check mark (only while blocking), pause or
/// resume (only while blocking or paused), start at login.
pub fn reflect<R: Runtime>(app: &AppHandle<R>, shown: &Shown) {
    let Some(items) = app.try_state::<Items<Wry>>() else { return };
    let _ = items.status.set_text(&shown.line);
    let _ = items.toggle.set_text(shown.toggle_text());
    let _ = items.toggle.set_checked(shown.blocking);
    let _ = items.toggle.set_enabled(shown.engine);
    let _ = items.pause.set_enabled(shown.pausable);
    let _ = items.pause.set_text(if shown.paused { "Resume protection".to_string() } else { pause_text() });
    let _ = items.login.set_checked(shown.login);
    if let Some(tray) = app.tray_by_id(TRAY) {
        match Image::from_bytes(shown.look.png()) {
            Ok(icon) => {
                let _ = tray.set_icon(Some(icon));
            }
            Err(e) => tracing::warn!("cannot draw the tray icon: {e}"),
        }
        let _ = tray.set_tooltip(Some(format!("{TITLE}: {}", shown.line)));
    }
    *items.shown.lock() = Some(shown.clone());
}

/// Shows whether the app starts at login (and tells the window).
pub fn reflect_login<R: Runtime>(app: &AppHandle<R>, on: bool) {
    if let Some(items) = app.try_state::<Items<Wry>>() {
        let _ = items.login.set_checked(on);
    }
    if let Some(state) = app.try_state::<AppState>() {
        state.wake.notify_one();
    }
}

/// Whether the desktop shows tray icons at all. Stock GNOME does not (without the
/// AppIndicator extension): there the icon is never seen, so closing the window must not
/// leave GuardNest running unseen (see `window::close_requested`). A tray host is a
/// StatusNotifierWatcher on the session bus with a host registered (KDE, GNOME's extension,
/// XFCE, Cinnamon, MATE and LXQt all run one). Windows and macOS always have one.
#[cfg(target_os = "linux")]
pub fn desktop_shows_it() -> bool {
    use glib::ToVariant;
    const WATCHER: &str = "org.kde.StatusNotifierWatcher";
    let Ok(bus) = gio::bus_get_sync(gio::BusType::Session, gio::Cancellable::NONE) else { return false };
    let call = |service: &str, path: &str, interface: &str, method: &str, args: glib::Variant| {
        bus.call_sync(
            Some(service),
            path,
            interface,
            method,
            Some(&args),
            None,
            gio::DBusCallFlags::NONE,
            1000,
            gio::Cancellable::NONE,
        )
    };
    let owned = call(
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "NameHasOwner",
        (WATCHER,).to_variant(),
    )
    .ok()
    .and_then(|reply| reply.get::<(bool,)>())
    .is_some_and(|(owned,)| owned);
    if !owned {
        return false;
    }
    // A watcher with no host (a panel that is not running) shows nothing either; a watcher
    // that does not say is taken at its word.
    call(
        WATCHER,
        "/StatusNotifierWatcher",
        "org.freedesktop.DBus.Properties",
        "Get",
        (WATCHER, "IsStatusNotifierHostRegistered").to_variant(),
    )
    .ok()
    .and_then(|reply| reply.child_value(0).as_variant())
    .and_then(|v| v.get::<bool>())
    .unwrap_or(true)
}

#[cfg(not(target_os = "linux"))]
pub fn desktop_shows_it() -> bool {
    true
}

/// How long Quit, log-off and shutdown give open connections before the app exits.
pub const QUIT_GRACE: Duration = Duration::from_secs(3);
