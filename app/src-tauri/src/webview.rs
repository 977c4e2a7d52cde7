//! The window's web engine, and saying so when it is missing. On Windows the window needs
//! the Microsoft Edge WebView2 Runtime (on Linux WebKitGTK comes with the package); without
//! it the app would exit with nothing on screen, so it shows one sentence in a message box
//! instead, the same the installer shows.

/// What to install when WebView2 is missing (the installer says the same).
pub const WEBVIEW2_MISSING: &str = "GuardNest's window needs the Microsoft Edge WebView2 Runtime: install \"WebView2 Runtime\" from Microsoft (Evergreen Standalone Installer), then start GuardNest again.";

/// Why no window can be made here, when the web engine is missing (Windows only).
pub fn missing() -> Option<String> {
    if !cfg!(windows) {
        return None;
    }
    match tauri::webview_version() {
        Ok(_) => None,
        Err(e) => {
            tracing::error!(error = %e, "no WebView2 runtime");
            Some(WEBVIEW2_MISSING.to_string())
        }
    }
}

/// Tells the user why the app cannot start: on standard error, and on Windows (where a
/// GUI program has none) in a message box.
pub fn tell(why: &str) {
    eprintln!("guardnest-app: {why}");
    #[cfg(windows)]
    {
        use windows_sys::Win32::UI::WindowsAndMessaging::{MessageBoxW, MB_ICONERROR, MB_OK};
        let text: Vec<u16> = why.encode_utf16().chain(std::iter::once(0)).collect();
        let title: Vec<u16> = "GuardNest".encode_utf16().chain(std::iter::once(0)).collect();
        // SAFETY: two NUL-terminated UTF-16 strings that outlive the call; no owner window.
        unsafe { MessageBoxW(std::ptr::null_mut(), text.as_ptr(), title.as_ptr(), MB_OK | MB_ICONERROR) };
    }
}
