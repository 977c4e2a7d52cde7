//! What the window and the tray are told, and when: one event type ([`View`]), sent when
//! something shown has changed — anything the engine announces (the switch, the pause and
//! its end, a block, a list, the allowlist: whoever changed it), the engine coming after a
//! retry, start at login, or a counter (looked at once a second, only while the window is
//! shown). The tray follows the same loop, so the two never disagree. Nothing wakes on a
//! timer while the window is closed to the tray.

use std::sync::Arc;
use std::time::Duration;

use guardnest_core::service::instance::is_held;
use guardnest_core::service::{ServiceStats, Status};
use guardnest_core::ProxyService;
use serde::Serialize;
use serde_json::Value;
use tauri::{AppHandle, Emitter, Manager, Runtime};

use crate::state::{AppState, UiError};

/// The event the window listens to.
pub const VIEW_EVENT: &str = "guardnest://view";

/// While the window is shown, counters (bytes, connections) are looked at this often (and,
/// while another GuardNest holds the data dir, whether it still does); an event goes out
/// only if something changed.
const COUNTERS_EVERY: Duration = Duration::from_secs(1);

/// Everything the window shows.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    /// The engine's state (none when it could not start).
    pub status: Option<Status>,
    /// Counters and blocks (none when the engine could not start).
    pub stats: Option<ServiceStats>,
    /// Why the engine could not start, when it could not.
    pub refused: Option<Refused>,
    /// Whether the app starts at login.
    pub start_at_login: bool,
    /// The system's clock is 12-hour ("3:09 PM") or 24-hour ("15:09"): the window shows
    /// times as the tray does (none: the window's locale decides, where the tray shows no time).
    pub clock_12h: Option<bool>,
}

/// The engine could not start.
#[derive(Debug, Clone, Serialize)]
pub struct Refused {
    /// Why (for `already_running`, who holds the data dir).
    pub error: UiError,
    /// The GuardNest that held the data dir has stopped: a retry would start.
    pub holder_gone: bool,
}

impl View {
    /// The view now.
    pub async fn of(state: &AppState) -> View {
        let start_at_login = crate::login::is_on().unwrap_or(false);
        let clock_12h = crate::tray::clock_12h();
        match state.service() {
            Ok(service) => View::running(&service, start_at_login, clock_12h).await,
            Err(error) => {
                let holder_gone =
                    error.kind == guardnest_core::service::ErrorKind::AlreadyRunning && !is_held(&state.data_dir);
                View {
                    status: None,
                    stats: None,
                    refused: Some(Refused { error, holder_gone }),
                    start_at_login,
                    clock_12h,
                }
            }
        }
    }

    async fn running(service: &ProxyService, start_at_login: bool, clock_12h: Option<bool>) -> View {
        View {
            status: Some(service.status().await),
            stats: Some(service.stats()),
            refused: None,
            start_at_login,
            clock_12h,
        }
    }

    /// The view without what changes every second by itself (uptime and countdowns, which
    /// the page shows as clock times): comparing these tells whether anything changed.
    fn settled(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(st) = &mut v["status"] {
            st.remove("uptime_secs");
            st.remove("paused_secs");
            st.remove("health_checks");
            if let Value::Object(p) = &mut st["protection"] {
                p.remove("secs");
            }
            if let Value::Array(lists) = &mut st["lists"] {
                for l in lists {
                    l["next_check_secs"] = Value::Null;
                }
            }
        }
        v
    }
}

/// Starts the loop that keeps the window and the tray current; it ends when the app quits.
pub fn spawn_updates<R: Runtime>(app: &AppHandle<R>) {
    let state = app.state::<AppState>();
    let handle = app.clone();
    // On Tauri's runtime (setup runs outside it), tracked so that quitting waits for it.
    tauri::async_runtime::spawn(state.tasks.track_future(updates(handle)));
}

async fn updates<R: Runtime>(app: AppHandle<R>) {
    let state = app.state::<AppState>();
    let (stop, wake, open) = (state.stop.clone(), state.wake.clone(), state.window_open.clone());
    let shown = || open.load(std::sync::atomic::Ordering::Relaxed);
    let mut engines = state.engine_changes();
    let mut sent: Option<Value> = None;
    let mut tray: Option<crate::tray::Shown> = None;
    let mut counters = None;
    loop {
        let service: Option<Arc<ProxyService>> = engines.borrow_and_update().as_ref().ok().cloned();
        // Changes of this engine (none while there is none: a retry brings one).
        let mut changes = service.as_ref().map(|s| s.changes());
        // A new engine (or none): shown at once.
        let mut first = true;
        loop {
            let ticking = shown();
            let ticked = if std::mem::take(&mut first) {
                false
            } else {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => return,
                    changed = engines.changed() => if changed.is_err() { return } else { break },
                    changed = async { match changes.as_mut() {
                        Some(c) => c.changed().await,
                        None => std::future::pending().await,
                    } } => if changed.is_err() { return } else { false },
                    () = wake.notified() => { sent = None; tray = None; false }
                    () = tokio::time::sleep(COUNTERS_EVERY), if ticking => true,
                }
            };
            // A tick with the same counters (no connection, no byte, no program counted: a
            // connection is named seconds after it was made) costs a copy of a few atomics;
            // the view is built only when something may have changed.
            let now = service.as_ref().map(|s| (s.counters(), s.programs_counted()));
            if ticked && service.is_some() && counters == now {
                continue;
            }
            counters = now;
            let view = View::of(&state).await;
            let now = crate::tray::Shown::of(&view);
            if tray.as_ref() != Some(&now) {
                crate::tray::reflect(&app, &now);
                tray = Some(now);
            }
            if !shown() {
                sent = None; // a window opened later asks for the whole view when it loads
                continue;
            }
            let settled = view.settled();
            if sent.as_ref() != Some(&settled) {
                let _ = app.emit(VIEW_EVENT, &view);
                sent = Some(settled);
            }
        }
        // The engine came (or went): everything is new.
        sent = None;
        tray = None;
    }
}
