//! What the window is told, and when: one event type ([`View`]), sent when something it
//! shows has changed — the switch, a block, a list, a pause (the engine's change signal), or
//! a counter (looked at once a second, only while the window is shown). Nothing is sent,
//! and nothing wakes on a timer, while the window is hidden or closed to the tray.

use std::sync::Arc;
use std::time::Duration;

use guardnest_core::service::{ServiceStats, Status};
use guardnest_core::ProxyService;
use serde::Serialize;
use serde_json::Value;
use tauri::{AppHandle, Emitter, Manager, Runtime};

use crate::state::AppState;

/// The event the window listens to.
pub const VIEW_EVENT: &str = "guardnest://view";

/// While the window is shown, counters (bytes, connections) are looked at this often; an
/// event goes out only if one changed.
const COUNTERS_EVERY: Duration = Duration::from_secs(1);

/// Everything the window shows.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    /// The engine's state.
    pub status: Status,
    /// Counters and blocks.
    pub stats: ServiceStats,
}

impl View {
    /// The view now.
    pub async fn of(service: &ProxyService) -> View {
        View { status: service.status().await, stats: service.stats() }
    }

    /// The view without what changes every second by itself (uptime and countdowns, which
    /// the page shows as clock times): comparing these tells whether anything changed.
    fn settled(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        v["status"]["uptime_secs"] = Value::Null;
        v["status"]["paused_secs"] = Value::Null;
        if let Value::Object(p) = &mut v["status"]["protection"] {
            p.remove("secs");
        }
        if let Value::Array(lists) = &mut v["status"]["lists"] {
            for l in lists {
                l["next_check_secs"] = Value::Null;
            }
        }
        v
    }
}

/// Starts the loop that keeps the window and the tray current; it ends when the app quits.
pub fn spawn_updates<R: Runtime>(app: &AppHandle<R>) {
    let state = app.state::<AppState>();
    let Ok(service) = state.service().cloned() else { return };
    let (stop, wake, open) = (state.stop.clone(), state.wake.clone(), state.window_open.clone());
    let handle = app.clone();
    // On Tauri's runtime (setup runs outside it), tracked so that quitting waits for it.
    tauri::async_runtime::spawn(state.tasks.track_future(updates(handle, service, stop, wake, open)));
}

async fn updates<R: Runtime>(
    app: AppHandle<R>,
    service: Arc<ProxyService>,
    stop: tokio_util::sync::CancellationToken,
    wake: Arc<tokio::sync::Notify>,
    open: Arc<std::sync::atomic::AtomicBool>,
) {
    let shown = || open.load(std::sync::atomic::Ordering::Relaxed);
    let mut changes = service.changes();
    let mut sent: Option<Value> = None;
    let mut tray: Option<crate::tray::Shown> = None;
    let mut counters = None;
    loop {
        let ticking = shown();
        let ticked = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            changed = changes.changed() => if changed.is_err() { break } else { false },
            () = wake.notified() => { sent = None; false }
            () = tokio::time::sleep(COUNTERS_EVERY), if ticking => true,
        };
        // A tick with the same counters (no connection, no byte) costs a copy of a few
        // atomics; the view is built only when something may have changed.
        let now = service.counters();
        if ticked && counters == Some(now) {
            continue;
        }
        counters = Some(now);
        let view = View::of(&service).await;
        let now = crate::tray::Shown::of(&view.status);
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
}
