//! Tauri's build step: generates the app's context (config, icons, capabilities) at compile
//! time. The app manifest names every command the app registers, so that none is callable
//! from the window unless a capability grants it (capabilities/default.json grants exactly
//! the ones the page uses): least privilege, in case a script ever got into the page.
fn main() {
    const COMMANDS: &[&str] = &[
        "enable_system_proxy",
        "disable_system_proxy",
        "get_proxy_status",
        "restart_proxy",
        "get_view",
        "get_stats",
        "get_recent_blocks",
        "check_domain",
        "allow_domain",
        "unallow_domain",
        "pause_protection",
        "resume_protection",
        "update_lists",
        "add_list",
        "remove_list",
        "use_port",
        "retry_start",
        "get_start_at_login",
        "set_start_at_login",
        "close_to_tray",
        "quit_app",
    ];
    let attributes = tauri_build::Attributes::new().app_manifest(tauri_build::AppManifest::new().commands(COMMANDS));
    if let Err(e) = tauri_build::try_build(attributes) {
        panic!("tauri build step: {e:#}");
    }
}
