//! Starting at login: off by default, switched in the window, in the tray, and by the Windows
//! installer (`guardnest-app start-at-login on|off`, with no window). All three go through
//! [`set_entry`], one mechanism: the OS's own autostart entry named "GuardNest" (Windows: the
//! `Run` value; Linux: the XDG autostart file; macOS: a LaunchAgent), made by the
//! `auto-launch` crate that Tauri's autostart plugin wraps. When on, the app starts hidden in
//! the tray; its start repairs a system proxy a crash left first, then resumes protection as
//! the user left it.

use std::path::Path;

use auto_launch::{AutoLaunch, AutoLaunchBuilder, WindowsEnableMode};
use guardnest_core::service::user::UserSettings;
use guardnest_core::service::{Change, ErrorKind};
use tauri::{AppHandle, Manager, Runtime};

use crate::state::{AppState, UiError};

/// The argument the login entry starts the app with: no window, only the tray.
pub const HIDDEN: &str = "--hidden";

/// The entry's name (the `Run` value, the autostart file, the LaunchAgent).
const NAME: &str = "GuardNest";

fn failed(e: impl std::fmt::Display) -> UiError {
    UiError::new(ErrorKind::Save, format!("cannot change starting at login: {e}"))
}

/// The entry for this program: `guardnest-app --hidden`.
fn entry() -> Result<AutoLaunch, UiError> {
    let exe = std::env::current_exe().map_err(failed)?;
    let exe = exe.canonicalize().unwrap_or(exe).display().to_string();
    // Windows runs the `Run` value as a command line: a path with spaces ("C:\Users\Jane
    // Doe\...") must be quoted, or another program could be run instead.
    let exe = if cfg!(windows) { format!("\"{}\"", exe.trim_start_matches(r"\\?\")) } else { exe };
    AutoLaunchBuilder::new()
        .set_app_name(NAME)
        .set_app_path(&exe)
        .set_args(&[HIDDEN])
        // This user's `Run` key only. The crate's default tries the machine's (HKLM) first and
        // succeeds wherever the app runs with administrator rights (an elevated start, Wine):
        // every user of the machine would then start this user's per-user install, and its
        // uninstaller, which removes HKCU's value, would leave that entry behind.
        .set_windows_enable_mode(WindowsEnableMode::CurrentUser)
        .build()
        .map_err(failed)
}

/// Whether the entry is there.
pub fn is_on() -> Result<bool, UiError> {
    entry()?.is_enabled().map_err(failed)
}

/// Writes or removes the entry, and keeps the choice in the user's settings in `data_dir`.
pub fn set_entry(data_dir: &Path, on: bool) -> Result<Change, UiError> {
    let was = is_on()?;
    let entry = entry()?;
    match on {
        true => entry.enable(),
        false => entry.disable(),
    }
    .map_err(failed)?;
    UserSettings::update(data_dir, |s| s.start_at_login = on).map_err(|e| e.report())?;
    let message = match on {
        true => "GuardNest starts at login, in the tray",
        false => "GuardNest no longer starts at login",
    };
    Ok(Change { changed: was != on, message: message.into() })
}

/// [`set_entry`] from the window or the tray, which then shows the new state.
pub fn set<R: Runtime>(app: &AppHandle<R>, on: bool) -> Result<Change, UiError> {
    let data_dir = match app.try_state::<AppState>() {
        Some(state) => state.data_dir.clone(),
        None => crate::state::default_data_dir(),
    };
    let change = set_entry(&data_dir, on)?;
    crate::tray::reflect_login(app, on);
    Ok(change)
}

/// `guardnest-app start-at-login on|off [--data-dir DIR]`: the installer's "start at login"
/// (no window, no engine). `None` when the app was started for anything else.
pub fn from_args(args: &[String]) -> Option<i32> {
    if args.first().map(String::as_str) != Some("start-at-login") {
        return None;
    }
    let on = match args.get(1).map(String::as_str) {
        Some("on") => true,
        Some("off") => false,
        _ => {
            eprintln!("usage: guardnest-app start-at-login on|off [--data-dir DIR]");
            return Some(2);
        }
    };
    let data_dir = args
        .windows(2)
        .find(|w| w[0] == "--data-dir")
        .map(|w| std::path::PathBuf::from(&w[1]))
        .unwrap_or_else(crate::state::default_data_dir);
    Some(match set_entry(&data_dir, on) {
        Ok(change) => {
            println!("{}", change.message);
            0
        }
        Err(e) => {
            eprintln!("guardnest-app: {}", e.message);
            1
        }
    })
}
