//! The end of the machine or of the session, seen early enough to put the user's own proxy
//! settings back before it happens (a signal alone may come too late, or not at all).
//!
//! - Linux: logind's `PrepareForShutdown` signal on the system bus. A *delay* inhibitor lock
//!   is held while GuardNest runs, so logind waits (up to its `InhibitDelayMaxSec`) until the
//!   restore is done and the lock is released. Without logind (no system bus, a container)
//!   nothing is watched; SIGTERM from the session manager still restores.
//! - Windows: a hidden top-level window that answers `WM_QUERYENDSESSION` and restores on
//!   `WM_ENDSESSION` before returning. Console control handlers do not see log-off or
//!   shutdown in a program that loads user32, which GuardNest does (WinINet). The same
//!   window takes `WM_CLOSE` as "quit as on Ctrl-C": how `guardnest stop --all` and the
//!   uninstaller stop every GuardNest of the user, a console one or the app.
//!
//! `restore` blocks until the settings are back; it is called at most once per end.

use std::sync::Arc;

/// Puts the user's settings back, blocking until done.
pub type Restore = Arc<dyn Fn() + Send + Sync>;

#[cfg(target_os = "linux")]
pub use linux::before_shutdown;

#[cfg(target_os = "linux")]
mod linux {
    use std::future::Future;

    use futures_util::StreamExt as _;

    use super::Restore;

    const LOGIND: &str = "org.freedesktop.login1";
    const PATH: &str = "/org/freedesktop/login1";
    const MANAGER: &str = "org.freedesktop.login1.Manager";

    /// Watches logind on the system bus (or the bus at `address`) until `stop` resolves:
    /// holds a delay inhibitor lock, and when the machine is about to shut down runs
    /// `restore`, then lets the lock go. Returns at once, saying why, where there is no
    /// logind to watch.
    pub async fn before_shutdown(address: Option<String>, restore: Restore, stop: impl Future<Output = ()>) {
        let watched = async {
            let connection = match &address {
                Some(a) => zbus::connection::Builder::address(a.as_str())?.build().await?,
                None => zbus::Connection::system().await?,
            };
            let proxy = zbus::Proxy::new(&connection, LOGIND, PATH, MANAGER).await?;
            let mut signals = proxy.receive_signal("PrepareForShutdown").await?;
            let mut lock = inhibit(&proxy).await?;
            tracing::debug!("watching logind for shutdown (delay inhibitor held)");
            while let Some(message) = signals.next().await {
                let starting: bool = message.body().deserialize()?;
                if starting {
                    tracing::info!("the machine is shutting down: restoring the proxy settings first");
                    let restore = restore.clone();
                    let _ = tokio::task::spawn_blocking(move || restore()).await;
                    drop(lock.take()); // logind may go on now
                } else if lock.is_none() {
                    // The shutdown was cancelled: hold a lock for the next one.
                    lock = inhibit(&proxy).await?;
                }
            }
            Ok::<(), zbus::Error>(())
        };
        tokio::select! {
            result = watched => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "not watching logind for shutdown (SIGTERM still restores)");
                }
            }
            () = stop => {}
        }
    }

    /// A delay inhibitor lock: held as long as the returned descriptor is open.
    async fn inhibit(proxy: &zbus::Proxy<'_>) -> zbus::Result<Option<zbus::zvariant::OwnedFd>> {
        let why = "Putting your own proxy settings back";
        let fd: zbus::zvariant::OwnedFd = proxy.call("Inhibit", &("shutdown", "GuardNest", why, "delay")).await?;
        Ok(Some(fd))
    }
}

#[cfg(windows)]
pub use windows::on_end_session;

#[cfg(windows)]
mod windows {
    use windows_sys::Win32::Foundation::{HWND, LPARAM, LRESULT, WPARAM};
    use windows_sys::Win32::System::LibraryLoader::GetModuleHandleW;
    use windows_sys::Win32::UI::WindowsAndMessaging::{
        CreateWindowExW, DefWindowProcW, DispatchMessageW, GetMessageW, GetWindowLongPtrW, RegisterClassW,
        SetWindowLongPtrW, TranslateMessage, GWLP_USERDATA, MSG, WM_CLOSE, WM_ENDSESSION, WM_QUERYENDSESSION,
        WNDCLASSW, WS_OVERLAPPED,
    };

    use super::Restore;

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().chain(std::iter::once(0)).collect()
    }

    /// What the window does: restore at the end of the session, quit on `WM_CLOSE`.
    struct Hooks {
        restore: Restore,
        quit: Restore,
    }

    unsafe extern "system" fn window_proc(hwnd: HWND, msg: u32, wparam: WPARAM, lparam: LPARAM) -> LRESULT {
        // SAFETY: the user data is the `Hooks` this window was created with, which lives as
        // long as the window (it is never freed); null before it is set.
        let hooks = unsafe { GetWindowLongPtrW(hwnd, GWLP_USERDATA) } as *const Hooks;
        match msg {
            // Yes, the session may end; the restore runs when it does.
            WM_QUERYENDSESSION => 1,
            WM_ENDSESSION => {
                if wparam != 0 && !hooks.is_null() {
                    // SAFETY: see above.
                    unsafe { ((*hooks).restore)() };
                }
                0
            }
            // Another GuardNest (`stop --all`, the uninstaller) asks this one to quit: the
            // front end stops as on Ctrl-C, restoring first. The window stays until then.
            WM_CLOSE => {
                if !hooks.is_null() {
                    // SAFETY: see above.
                    unsafe { ((*hooks).quit)() };
                }
                0
            }
            // SAFETY: the arguments are the ones this window procedure received.
            _ => unsafe { DefWindowProcW(hwnd, msg, wparam, lparam) },
        }
    }

    /// Creates a hidden top-level window on a thread of its own; when the session ends
    /// (log-off, shutdown) it runs `restore` before Windows goes on; `WM_CLOSE` runs `quit`
    /// (which must not block: it asks the front end to stop).
    pub fn on_end_session(restore: Restore, quit: Restore) {
        let spawned = std::thread::Builder::new().name("guardnest-session".into()).spawn(move || {
            let class = wide(crate::windows::os::SESSION_CLASS);
            // SAFETY: the class name and the procedure outlive the window; the window is
            // never shown; the message loop runs on the thread that created it.
            unsafe {
                let instance = GetModuleHandleW(std::ptr::null());
                let wc = WNDCLASSW {
                    lpfnWndProc: Some(window_proc),
                    hInstance: instance,
                    lpszClassName: class.as_ptr(),
                    ..std::mem::zeroed()
                };
                RegisterClassW(&wc);
                let hwnd = CreateWindowExW(
                    0,
                    class.as_ptr(),
                    class.as_ptr(),
                    WS_OVERLAPPED,
                    0,
                    0,
                    0,
                    0,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    instance,
                    std::ptr::null(),
                );
                if hwnd.is_null() {
                    // No window station to make a window in (Wine without a display): the
                    // end of the session is not seen; the next start repairs instead.
                    let error = std::io::Error::last_os_error();
                    tracing::warn!(%error, "cannot watch for the end of the session: no window");
                    return;
                }
                // Lives as long as the window: the window procedure reads it.
                let hooks: *const Hooks = Box::into_raw(Box::new(Hooks { restore, quit }));
                SetWindowLongPtrW(hwnd, GWLP_USERDATA, hooks as isize);
                let mut msg: MSG = std::mem::zeroed();
                while GetMessageW(&mut msg, std::ptr::null_mut(), 0, 0) > 0 {
                    TranslateMessage(&msg);
                    DispatchMessageW(&msg);
                }
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot watch for the end of the session");
        }
    }
    /// The hidden window, as Windows (and Wine's `wineboot --end-session`) talks to it at
    /// log-off: yes to "may the session end?", nothing restored when the end is cancelled
    /// (`wParam` 0), and the settings restored *before* `WM_ENDSESSION` returns.
    #[cfg(test)]
    mod tests {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        use std::time::Duration;

        use windows_sys::Win32::UI::WindowsAndMessaging::{
            FindWindowW, SendMessageW, WM_CLOSE, WM_ENDSESSION, WM_QUERYENDSESSION,
        };

        #[test]
        fn the_end_of_the_session_restores_before_it_returns() {
            let restored = Arc::new(AtomicUsize::new(0));
            let quits = Arc::new(AtomicUsize::new(0));
            let (seen, asked) = (restored.clone(), quits.clone());
            super::on_end_session(
                Arc::new(move || {
                    seen.fetch_add(1, Ordering::SeqCst);
                }),
                Arc::new(move || {
                    asked.fetch_add(1, Ordering::SeqCst);
                }),
            );
            let class = super::wide(crate::windows::os::SESSION_CLASS);
            // The window is made on a thread of its own: wait for it (bounded).
            let mut hwnd = std::ptr::null_mut();
            for _ in 0..200 {
                // SAFETY: a valid, NUL-terminated class name; no window name.
                hwnd = unsafe { FindWindowW(class.as_ptr(), std::ptr::null()) };
                if !hwnd.is_null() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            assert!(!hwnd.is_null(), "the session window was not created (Wine needs an X display: xvfb-run)");
            // SAFETY: messages to a live window of this process; SendMessageW waits for the
            // window procedure to return.
            unsafe {
                assert_eq!(SendMessageW(hwnd, WM_QUERYENDSESSION, 0, 0), 1, "the session may end");
                SendMessageW(hwnd, WM_ENDSESSION, 0, 0);
                assert_eq!(restored.load(Ordering::SeqCst), 0, "a cancelled end restores nothing");
                SendMessageW(hwnd, WM_ENDSESSION, 1, 0);
            }
            assert_eq!(restored.load(Ordering::SeqCst), 1, "restored before WM_ENDSESSION returned");
            assert_eq!(quits.load(Ordering::SeqCst), 0);
            // SAFETY: as above.
            unsafe { SendMessageW(hwnd, WM_CLOSE, 0, 0) };
            assert_eq!(quits.load(Ordering::SeqCst), 1, "WM_CLOSE asks the front end to quit");
            assert_eq!(restored.load(Ordering::SeqCst), 1, "quitting restores through the front end's own stop");
        }
    }
}
