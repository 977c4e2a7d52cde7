//! What the window may call: the original design's four commands (enable_system_proxy,
//! disable_system_proxy, get_proxy_status, restart_proxy) and the rest the window needs,
//! each a one-line call into the engine's `ProxyService`, which keeps and announces every
//! change itself. Errors reach the page as a structured `UiError` (`kind` from a closed
//! set, and the fields the page words plainly), never as text to match.

// Tauri hands a command its arguments by value (State, AppHandle, String), as its macro
// requires, whether or not the command consumes them.
#![allow(clippy::needless_pass_by_value)]

use guardnest_core::blocklist::UpdateReport;
use guardnest_core::events::BlockEvent;
use guardnest_core::service::{Change, CheckAnswer, ServiceStats, Status, PAUSE_DEFAULT_MINUTES};
use tauri::{Runtime, State};

use crate::events::View;
use crate::state::{AppState, UiError};

type Reply<T> = Result<T, UiError>;

fn report(e: guardnest_core::service::ServiceError) -> UiError {
    e.report()
}

/// Turns protection on: the proxy, and the system proxy with it; a pause ends (on always
/// means blocking).
#[tauri::command]
async fn enable_system_proxy(state: State<'_, AppState>) -> Reply<Change> {
    state.service()?.enable().await.map_err(report)
}

/// Turns protection off, restoring the user's own proxy settings.
#[tauri::command]
async fn disable_system_proxy(state: State<'_, AppState>) -> Reply<Change> {
    state.service()?.disable().await.map_err(report)
}

/// What is true now: listener, health, protection, system proxy, lists, pause.
#[tauri::command]
async fn get_proxy_status(state: State<'_, AppState>) -> Reply<Status> {
    Ok(state.service()?.status().await)
}

/// Restarts the listener (race-free) and re-applies the system proxy.
#[tauri::command]
async fn restart_proxy(state: State<'_, AppState>) -> Reply<Change> {
    state.service()?.restart().await.map_err(report)
}

/// Everything the window shows, at once (its first paint, and after it reopens); when the
/// engine could not start, why.
#[tauri::command]
async fn get_view(state: State<'_, AppState>) -> Reply<View> {
    Ok(View::of(&state).await)
}

/// Counters, blocks by list, top names, per-minute blocks.
#[tauri::command]
fn get_stats(state: State<'_, AppState>) -> Reply<ServiceStats> {
    Ok(state.service()?.stats())
}

/// The latest blocked requests, newest last.
#[tauri::command]
fn get_recent_blocks(state: State<'_, AppState>) -> Reply<Vec<BlockEvent>> {
    Ok(state.service()?.stats().recent_blocked)
}

/// Is this name (or the host of this URL) blocked, and by what?
#[tauri::command]
fn check_domain(state: State<'_, AppState>, name: String) -> Reply<CheckAnswer> {
    state.service()?.check(&name).map_err(report)
}

/// Never blocks this name again (kept in the user's allowlist).
#[tauri::command]
async fn allow_domain(state: State<'_, AppState>, name: String) -> Reply<Change> {
    state.service()?.allow_domain(&name).await.map_err(report)
}

/// Undoes an Allow: the name leaves the user's allowlist.
#[tauri::command]
async fn unallow_domain(state: State<'_, AppState>, name: String) -> Reply<Change> {
    state.service()?.unallow_domain(&name).await.map_err(report)
}

/// Blocking off for `minutes` (default: the engine's one pause length), back on by itself.
#[tauri::command]
async fn pause_protection(state: State<'_, AppState>, minutes: Option<u64>) -> Reply<Change> {
    state.service()?.pause(minutes.unwrap_or(PAUSE_DEFAULT_MINUTES)).await.map_err(report)
}

/// Ends a pause now.
#[tauri::command]
async fn resume_protection(state: State<'_, AppState>) -> Reply<Change> {
    Ok(state.service()?.resume().await)
}

/// Checks every list now.
#[tauri::command]
async fn update_lists(state: State<'_, AppState>) -> Reply<UpdateReport> {
    Ok(state.service()?.update_lists().await)
}

/// Adds a block list by URL or file path (refused, with why, if it cannot be used).
#[tauri::command]
async fn add_list(state: State<'_, AppState>, location: String) -> Reply<Change> {
    state.service()?.add_list(&location).await.map_err(report)
}

/// Removes a list the user added.
#[tauri::command]
async fn remove_list(state: State<'_, AppState>, location: String) -> Reply<Change> {
    state.service()?.remove_list(&location).await.map_err(report)
}

/// When another program holds the port: listen on `port` instead (kept for the next
/// start) and turn protection on.
#[tauri::command]
async fn use_port(state: State<'_, AppState>, port: u16) -> Reply<Change> {
    state.service()?.listen_on_port(port).await.map_err(report)
}

/// Starts the engine again, when another GuardNest held the data dir and has stopped.
#[tauri::command]
async fn retry_start(state: State<'_, AppState>) -> Reply<()> {
    state.retry().await
}

/// Whether the app starts (hidden, in the tray) when the user logs in.
#[tauri::command]
fn get_start_at_login() -> Reply<bool> {
    crate::login::is_on()
}

/// Starts the app at login, or not (the OS's autostart entry, written or removed).
#[tauri::command]
fn set_start_at_login<R: Runtime>(app: tauri::AppHandle<R>, on: bool) -> Reply<Change> {
    crate::login::set(&app, on)
}

/// The user read what closing means: the window closes to the tray (or, where the desktop
/// shows no tray, is minimised), and closing it says nothing more of that case.
#[tauri::command]
fn close_to_tray<R: Runtime>(app: tauri::AppHandle<R>) -> Reply<()> {
    crate::window::keep_running(&app)
}

/// Quit from the window (its own button, or the first close's notice): as the tray's Quit.
#[tauri::command]
fn quit_app<R: Runtime>(app: tauri::AppHandle<R>) -> Reply<()> {
    crate::quit(&app);
    Ok(())
}

/// Every command the window may call.
pub fn handlers<R: Runtime>() -> impl Fn(tauri::ipc::Invoke<R>) -> bool + Send + Sync + 'static {
    tauri::generate_handler![
        enable_system_proxy,
        disable_system_proxy,
        get_proxy_status,
        restart_proxy,
        get_view,
        get_stats,
        get_recent_blocks,
        check_domain,
        allow_domain,
        unallow_domain,
        pause_protection,
        resume_protection,
        update_lists,
        add_list,
        remove_list,
        use_port,
        retry_start,
        get_start_at_login,
        set_start_at_login,
        close_to_tray,
        quit_app,
    ]
}
