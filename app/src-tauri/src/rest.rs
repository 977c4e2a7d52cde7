//! The app at rest, in the tray: what it gives back when the window closes, and how it
//! keeps the window's machinery from loading until a window is wanted.
//!
//! Destroying the window ends its web process, but WebKitGTK keeps the network process of
//! the web context for the life of the app (Tauri keeps the context on Linux for the same
//! reason), and glibc keeps the freed heap. Both are handed back here; the next window
//! starts a new network process on its own.

/// Before GTK and WebKit start (first thing in `run`, while the process has one thread):
///
/// - no OpenGL for the app's own windows unless the user asks for it (`GDK_GL` set): the
///   window is a small status page that draws fine without it, and GTK would otherwise load
///   the whole GL driver (with its shader compiler) at start, even for a session that stays
///   in the tray;
/// - no WebKit memory-pressure monitor thread (`WEBKIT_DISABLE_MEMORY_PRESSURE_MONITOR`
///   unless set): it wakes several times a second for the life of the app, window or not,
///   to watch for pressure that one small page never causes.
pub fn before_gtk() {
    #[cfg(target_os = "linux")]
    for (name, value) in [("GDK_GL", "disable"), ("WEBKIT_DISABLE_MEMORY_PRESSURE_MONITOR", "1")] {
        if std::env::var_os(name).is_none() {
            std::env::set_var(name, value);
        }
    }
}

/// After the window is destroyed: once its web process has gone, ends the web context's
/// network process, returns free heap to the OS and hands back the pages of the libraries
/// only the window runs. Bounded: gives up waiting after [`WAIT_FOR_EXIT`].
pub async fn window_closed() {
    #[cfg(target_os = "linux")]
    linux::window_closed().await;
}

/// How long to wait for WebKit's processes to exit after the window closed.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const WAIT_FOR_EXIT: std::time::Duration = std::time::Duration::from_secs(5);

#[cfg(target_os = "linux")]
mod linux {
    /// The names WebKitGTK's helper processes have in `/proc/PID/comm` (15 bytes).
    const NETWORK_PROCESS: &str = "WebKitNetworkPr";

    /// The names WebKitGTK's web processes have in `/proc/PID/comm` (15 bytes).
    const WEB_PROCESS: &str = "WebKitWebProces";

    pub async fn window_closed() {
        // The web process exits on its own once the view is gone; its library pages are
        // shared with ours until then (and could not be handed back).
        let deadline = tokio::time::Instant::now() + super::WAIT_FOR_EXIT;
        while !webkit_children(WEB_PROCESS).is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // Under WebDriver the automation session lives in the web context and WebKit ends
        // it when the network process goes: keep it for the tests that drive the window.
        let automated = std::env::var("TAURI_WEBVIEW_AUTOMATION").as_deref() == Ok("true");
        for pid in webkit_children(NETWORK_PROCESS).into_iter().filter(|_| !automated) {
            // SAFETY: kill(2) on our own child process, whose pid we just read; it cannot
            // have been reused while it is our unreaped child.
            let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
            tracing::debug!(pid, rc, "ended WebKit's network process (no window left)");
        }
        while !webkit_children(NETWORK_PROCESS).is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // SAFETY: malloc_trim only returns free memory to the OS; it touches no live data.
        unsafe { libc::malloc_trim(0) };
        page_out_window_code();
    }

    /// Our child processes called `comm` (still running: a zombie's pages are gone).
    fn webkit_children(comm: &str) -> Vec<i32> {
        children(std::process::id())
            .into_iter()
            .filter(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let name = stat.split_once('(').and_then(|(_, rest)| rest.rsplit_once(')'));
                name.is_some_and(|(name, rest)| name == comm && !rest.trim_start().starts_with('Z'))
            })
            .collect()
    }

    /// Libraries only the window runs: WebKit, its JavaScript engine and speech and media
    /// libraries, and the GL driver WebKit loaded for it (with its compiler).
    const WINDOW_ONLY: &[&str] = &["webkit2gtk", "javascriptcoregtk", "libLLVM", "/dri/", "libflite", "libgst"];

    /// Hands the resident pages of the window-only libraries' read-only mappings (code and
    /// constants, backed by their files) back to the kernel. Nothing is lost: a page needed
    /// again, when the window reopens, is read back in from the file (usually still cached).
    fn page_out_window_code() {
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { return };
        let mut bytes = 0usize;
        for line in maps.lines() {
            let mut fields = line.split_whitespace();
            let (Some(range), Some(perms)) = (fields.next(), fields.next()) else { continue };
            let path = fields.nth(3).unwrap_or("");
            if perms.contains('w') || !WINDOW_ONLY.iter().any(|lib| path.contains(lib)) {
                continue;
            }
            let Some((start, end)) = range.split_once('-') else { continue };
            let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) else {
                continue;
            };
            // SAFETY: MADV_PAGEOUT on a read-only, file-backed mapping of our own process
            // only drops resident pages, which fault back in unchanged from the file.
            if unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT) } == 0 {
                bytes += end - start;
            }
        }
        tracing::debug!(mapped_bytes = bytes, "window-only library pages handed back");
    }

    /// The direct children of `parent`, from `/proc/PID/task/*/children`.
    fn children(parent: u32) -> Vec<i32> {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else { return Vec::new() };
        tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
            .flat_map(|list| list.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<i32>>())
            .collect()
    }
}
