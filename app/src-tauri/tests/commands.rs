//! Every command through Tauri's mock runtime, including the error cases, against the real
//! engine on loopback (no display needed).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use guardnest_core::config::{BlocklistConfig, Config, SourceSpec};
use serde_json::{json, Value};
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{get_ipc_response, mock_builder, mock_context, noop_assets, INVOKE_KEY};
use tauri::webview::InvokeRequest;
use tauri::Manager as _;

struct App {
    _app: tauri::App<tauri::test::MockRuntime>,
    webview: tauri::WebviewWindow<tauri::test::MockRuntime>,
    dir: tempfile::TempDir,
}

/// A config blocking `evil.test` from a local list, on free loopback ports, with no system
/// proxy backend.
fn config(dir: &std::path::Path) -> Config {
    let list = dir.join("block.hosts");
    std::fs::write(&list, "0.0.0.0 evil.test\n").unwrap();
    let mut config = Config::default();
    config.proxy.listen = "127.0.0.1:0".parse().unwrap();
    config.proxy.shutdown_timeout = Duration::from_millis(300);
    config.control.listen = "127.0.0.1:0".into();
    config.system_proxy.backend = guardnest_core::sysproxy::BackendKind::None;
    config.blocklist = BlocklistConfig {
        sources: vec![SourceSpec::Location(list.display().to_string())],
        default_lists: false,
        ..BlocklistConfig::default()
    };
    config
}

fn app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    app_with(dir, config)
}

fn app_with(dir: tempfile::TempDir, config: Config) -> App {
    let options = guardnest_app::Options { config: Some(config) };
    let state = tauri::async_runtime::block_on(guardnest_app::AppState::start(dir.path(), options));
    let app = mock_builder()
        .manage(state)
        .invoke_handler(guardnest_app::handlers())
        .build(mock_context(noop_assets()))
        .unwrap();
    let webview = tauri::WebviewWindowBuilder::new(&app, "main", Default::default()).build().unwrap();
    App { _app: app, webview, dir }
}

impl App {
    fn call(&self, cmd: &str, args: Value) -> Result<Value, Value> {
        let request = InvokeRequest {
            cmd: cmd.into(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            url: if cfg!(windows) { "http://tauri.localhost" } else { "tauri://localhost" }.parse().unwrap(),
            body: InvokeBody::Json(args),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_string(),
        };
        get_ipc_response(&self.webview, request).map(|b| b.deserialize::<Value>().unwrap())
    }

    fn ok(&self, cmd: &str, args: Value) -> Value {
        self.call(cmd, args).unwrap_or_else(|e| panic!("{cmd} failed: {e}"))
    }

    fn err(&self, cmd: &str, args: Value) -> Value {
        self.call(cmd, args).expect_err(&format!("{cmd} should fail"))
    }

    fn listen(&self) -> SocketAddr {
        self.ok("get_proxy_status", json!({}))["listen"].as_str().unwrap().parse().unwrap()
    }
}

fn connect_status(proxy: SocketAddr, target: &str) -> u16 {
    let mut s = TcpStream::connect_timeout(&proxy, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    String::from_utf8_lossy(&head[9..12]).parse().unwrap()
}

#[test]
fn the_four_design_commands() {
    let a = app();
    // The app starts protecting at once, as `guardnest run` does.
    assert_eq!(a.ok("get_proxy_status", json!({}))["running"], true);
    assert_eq!(a.ok("disable_system_proxy", json!({}))["changed"], true);
    assert_eq!(a.ok("get_proxy_status", json!({}))["running"], false);
    let on = a.ok("enable_system_proxy", json!({}));
    assert_eq!(on["changed"], true, "{on}");
    let st = a.ok("get_proxy_status", json!({}));
    assert_eq!(st["running"], true);
    assert_eq!(st["system_proxy"]["wanted"], true, "the app switches the system proxy too");
    assert_eq!(a.ok("enable_system_proxy", json!({}))["changed"], false);
    let before = a.listen();
    let r = a.ok("restart_proxy", json!({}));
    assert!(r["message"].as_str().unwrap().starts_with("restarted"), "{r}");
    assert_eq!(a.listen(), before);
    assert_eq!(a.ok("disable_system_proxy", json!({}))["changed"], true);
    assert_eq!(a.ok("get_proxy_status", json!({}))["running"], false);
    assert_eq!(a.ok("disable_system_proxy", json!({}))["changed"], false);
}

#[test]
fn blocks_show_up_and_can_be_allowed() {
    let a = app();
    a.ok("enable_system_proxy", json!({}));
    let proxy = a.listen();
    assert_eq!(connect_status(proxy, "www.evil.test:443"), 403);
    let recent = a.ok("get_recent_blocks", json!({}));
    assert_eq!(recent[0]["host"], "www.evil.test");
    assert_eq!(recent[0]["list"], "block.hosts");
    let stats = a.ok("get_stats", json!({}));
    assert_eq!(stats["blocked_total"], 1);
    assert_eq!(stats["blocked_today"], 1);
    assert_eq!(stats["blocked_per_minute"].as_array().unwrap().len(), 60);

    let c = a.ok("check_domain", json!({"name": "WWW.evil.test"}));
    assert_eq!(
        (c["blocked"].clone(), c["list"].clone(), c["rule"].clone()),
        (json!(true), json!("block.hosts"), json!("evil.test"))
    );
    let e = a.err("check_domain", json!({"name": "not a name"}));
    assert_eq!(
        (e["kind"].clone(), e["reason"].clone(), e["input"].clone()),
        (json!("input"), json!("not_a_host"), json!("not a name")),
        "{e}"
    );

    a.ok("allow_domain", json!({"name": "www.evil.test"}));
    let c = a.ok("check_domain", json!({"name": "www.evil.test"}));
    assert_eq!((c["blocked"].clone(), c["exempt"].clone()), (json!(false), json!(true)));
    assert_ne!(connect_status(proxy, "www.evil.test:443"), 403);
    assert!(std::fs::read_to_string(a.dir.path().join("allowlist.txt")).unwrap().contains("www.evil.test"));
    assert_eq!(a.err("allow_domain", json!({"name": "%%"}))["kind"], "input");
}

#[test]
fn pause_lists_and_errors() {
    let a = app();
    a.ok("enable_system_proxy", json!({}));
    let proxy = a.listen();
    assert_eq!(a.err("pause_protection", json!({"minutes": 0}))["kind"], "input");
    a.ok("pause_protection", json!({"minutes": 15}));
    // 15 minutes, ending on the next whole minute: between 15 and 16 minutes from now.
    let secs = a.ok("get_proxy_status", json!({}))["paused_secs"].as_u64().unwrap();
    assert!((895..=960).contains(&secs), "{secs}");
    assert_ne!(connect_status(proxy, "evil.test:443"), 403);
    assert_eq!(a.ok("resume_protection", json!({}))["changed"], true);
    assert_eq!(connect_status(proxy, "evil.test:443"), 403);

    let report = a.ok("update_lists", json!({}));
    assert!(report["failed"].as_array().unwrap().is_empty(), "{report}");
    assert_eq!(a.err("add_list", json!({"location": "not/absolute.txt"}))["kind"], "input");
    let extra = a.dir.path().join("extra.txt");
    std::fs::write(&extra, "tracker.test\n").unwrap();
    let added = a.ok("add_list", json!({"location": extra.display().to_string()}));
    assert!(added["message"].as_str().unwrap().ends_with(": 1 name"), "{added}");
    assert_eq!(a.ok("check_domain", json!({"name": "tracker.test"}))["blocked"], true);
    a.ok("remove_list", json!({"location": extra.display().to_string()}));
    assert_eq!(a.ok("check_domain", json!({"name": "tracker.test"}))["blocked"], false);
    assert_eq!(a.err("remove_list", json!({"location": "/nope"}))["kind"], "input");
    // Missing argument: Tauri's own error, still an error.
    assert!(a.call("allow_domain", json!({})).is_err());
}

#[test]
fn a_taken_port_is_reported_and_another_can_be_used() {
    let a = app();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let e = a.err("use_port", json!({"port": port}));
    assert_eq!(e["kind"], "port_in_use", "{e}");
    assert!(e["message"].as_str().unwrap().contains("in use"), "{e}");
    assert_eq!(e["addr"], format!("127.0.0.1:{port}"), "the page words it from the address");
    assert_eq!(a.err("use_port", json!({"port": 0}))["kind"], "input");
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let ok = a.ok("use_port", json!({"port": free}));
    assert!(ok["message"].as_str().unwrap().contains(&format!(":{free}")), "{ok}");
    assert_eq!(a.listen().port(), free);
    // The port chosen is kept for the next start.
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(a.dir.path().join("settings.json")).unwrap()).unwrap();
    assert_eq!(settings["listen"], format!("127.0.0.1:{free}"));
}

/// Polls `get_proxy_status` until `ok` holds (a list download happens in the background).
fn status_until(a: &App, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let st = a.ok("get_proxy_status", json!({}));
        if ok(&st) {
            return st;
        }
        assert!(std::time::Instant::now() < deadline, "{what} never happened: {st}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn protection_tells_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    c.blocklist.sources = vec![SourceSpec::Location(format!("http://{gone}/list.txt"))];
    let a = app_with(dir, c);
    // Running, but the only block list cannot be downloaded: not "protected".
    let st = status_until(&a, "the offline state", |st| st["protection"]["reason"] == "offline");
    assert_eq!(st["running"], true);
    assert_eq!(st["protection"]["state"], "unprotected");
    let message = st["protection"]["message"].as_str().unwrap();
    assert!(message.contains("cannot reach 127.0.0.1") && message.contains("internet connection"), "{message}");
    let list = &st["lists"][0];
    assert_eq!(list["problem"]["kind"], "offline");
    assert_eq!(list["problem"]["summary"], "cannot reach 127.0.0.1 (no internet connection?)");
    assert!(list["last_error"].as_str().unwrap().len() > list["problem"]["summary"].as_str().unwrap().len());

    // A list with names: protected.
    let mine = a.dir.path().join("mine.txt");
    std::fs::write(&mine, "evil.test\n").unwrap();
    a.ok("add_list", json!({"location": mine.display().to_string()}));
    let st = a.ok("get_proxy_status", json!({}));
    assert_eq!(st["protection"]["state"], "protected", "{st}");
    // Paused, then back.
    a.ok("pause_protection", json!({"minutes": 15}));
    let st = a.ok("get_proxy_status", json!({}));
    assert_eq!(st["protection"]["state"], "paused");
    let secs = st["protection"]["secs"].as_u64().unwrap();
    assert!((895..=960).contains(&secs), "ends on the next whole minute: {secs}");
    a.ok("resume_protection", json!({}));
    assert_eq!(a.ok("get_proxy_status", json!({}))["protection"]["state"], "protected");
    // Off.
    a.ok("disable_system_proxy", json!({}));
    let st = a.ok("get_proxy_status", json!({}));
    assert_eq!((st["protection"]["state"].clone(), st["protection"]["error"].clone()), (json!("off"), Value::Null));
}

#[test]
fn a_taken_port_at_start_is_explained_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = config(dir.path());
    c.proxy.listen = taken.local_addr().unwrap();
    let a = app_with(dir, c);
    // The very first status the window reads says why, with the kind that offers a port.
    let st = a.ok("get_proxy_status", json!({}));
    assert_eq!(st["running"], false);
    assert_eq!(st["protection"]["state"], "off");
    assert_eq!(st["protection"]["error"]["kind"], "port_in_use", "{st}");
    assert_eq!(st["start_error"]["kind"], "port_in_use");
    assert!(st["start_error"]["message"].as_str().unwrap().contains("in use"), "{st}");
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    a.ok("use_port", json!({"port": free}));
    let st = a.ok("get_proxy_status", json!({}));
    assert_eq!((st["running"].clone(), st["start_error"].clone()), (json!(true), Value::Null));
}

#[test]
fn recently_blocked_is_one_row_per_name() {
    let a = app();
    let proxy = a.listen();
    for name in ["www.evil.test", "www.evil.test", "a.evil.test", "www.evil.test"] {
        assert_eq!(connect_status(proxy, &format!("{name}:443")), 403);
    }
    let rows = a.ok("get_stats", json!({}))["recent_names"].clone();
    let rows: Vec<(String, u64)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["host"].as_str().unwrap().to_string(), r["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(rows, [("www.evil.test".to_string(), 3), ("a.evil.test".to_string(), 1)]);
}

#[test]
fn a_second_engine_on_the_data_dir_is_refused_and_says_who_holds_it() {
    let a = app();
    let config = config(a.dir.path());
    let options = guardnest_app::Options { config: Some(config) };
    let second = tauri::async_runtime::block_on(guardnest_app::AppState::start(a.dir.path(), options));
    let e = second.service().err().expect("a second engine on the same data dir");
    assert_eq!(e.kind, guardnest_core::service::ErrorKind::AlreadyRunning);
    assert!(e.message.contains(&format!("the GuardNest app (PID {})", std::process::id())), "{e:?}");
    // Said with fields, for the window to word: who holds it.
    assert_eq!(e.holder.as_ref().map(|h| h.pid), Some(std::process::id()));
    // The first one is untouched.
    assert_eq!(a.ok("get_proxy_status", json!({}))["running"], true);
    assert!(a.dir.path().join("control.json").exists());
}

/// The window of a refused app is told who holds the data dir, notices when it has gone,
/// and its Retry then starts the engine.
#[test]
fn a_refused_app_notices_the_holder_leave_and_retry_starts_it() {
    let first = app();
    let dir = first.dir.path().to_path_buf();
    let options = guardnest_app::Options { config: Some(config(&dir)) };
    let state = tauri::async_runtime::block_on(guardnest_app::AppState::start(&dir, options));
    let second = mock_builder()
        .manage(state)
        .invoke_handler(guardnest_app::handlers())
        .build(mock_context(noop_assets()))
        .unwrap();
    let webview = tauri::WebviewWindowBuilder::new(&second, "main", Default::default()).build().unwrap();
    let b = App { _app: second, webview, dir: tempfile::tempdir().unwrap() };
    let view = b.ok("get_view", json!({}));
    assert_eq!(view["status"], Value::Null);
    assert_eq!(view["refused"]["error"]["kind"], "already_running");
    assert_eq!(view["refused"]["error"]["holder"]["frontend"], "app");
    assert_eq!(view["refused"]["holder_gone"], false);
    assert_eq!(b.err("retry_start", json!({}))["kind"], "already_running");
    // The holder quits: the view says so, and Retry starts the engine here.
    tauri::async_runtime::block_on(first._app.state::<guardnest_app::AppState>().quit(Duration::from_millis(100)));
    assert_eq!(b.ok("get_view", json!({}))["refused"]["holder_gone"], true);
    b.ok("retry_start", json!({}));
    let view = b.ok("get_view", json!({}));
    assert_eq!((view["refused"].clone(), view["status"]["running"].clone()), (Value::Null, json!(true)));
    tauri::async_runtime::block_on(b._app.state::<guardnest_app::AppState>().quit(Duration::from_millis(100)));
}

/// Allow, then undo, through the window's commands; the view lists the user's names.
#[test]
fn allow_then_undo_through_the_commands() {
    let a = app();
    let proxy = a.listen();
    assert_eq!(connect_status(proxy, "www.evil.test:443"), 403);
    a.ok("allow_domain", json!({"name": "www.evil.test"}));
    let view = a.ok("get_view", json!({}));
    assert_eq!(view["status"]["allowed"], json!(["www.evil.test"]));
    assert_eq!(view["stats"]["recent_names"][0]["allowed"], true);
    assert_ne!(connect_status(proxy, "www.evil.test:443"), 403);
    let undone = a.ok("unallow_domain", json!({"name": "www.evil.test"}));
    assert_eq!(undone["changed"], true, "{undone}");
    let view = a.ok("get_view", json!({}));
    assert_eq!(view["status"]["allowed"], json!([]));
    assert_eq!(view["stats"]["recent_names"][0]["allowed"], false);
    assert_eq!(connect_status(proxy, "www.evil.test:443"), 403);
    // A switch On during a pause blocks.
    a.ok("pause_protection", json!({}));
    assert_eq!(a.ok("get_view", json!({}))["status"]["protection"]["state"], "paused");
    a.ok("enable_system_proxy", json!({}));
    assert_eq!(a.ok("get_view", json!({}))["status"]["protection"]["state"], "protected");
    assert_eq!(connect_status(proxy, "www.evil.test:443"), 403);
}

/// The autostart entry is written under `$HOME`: the round trip runs in a child process of
/// this test binary with a throwaway HOME (the test's own environment is never changed).
#[test]
fn the_start_at_login_switch_round_trips() {
    const CHILD: &str = "GUARDNEST_AUTOSTART_CHILD";
    let name = "the_start_at_login_switch_round_trips";
    if std::env::var_os(CHILD).is_none() {
        let home = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env("HOME", home.path())
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && text.contains("1 passed"), "{text}");
        assert!(!home.path().join(".config/autostart/GuardNest.desktop").exists(), "entry left behind");
        return;
    }
    let home = std::path::PathBuf::from(std::env::var_os("HOME").unwrap());
    let entry = home.join(".config/autostart/GuardNest.desktop");
    let dir = tempfile::tempdir().unwrap();
    let options = guardnest_app::Options { config: Some(config(dir.path())) };
    let state = tauri::async_runtime::block_on(guardnest_app::AppState::start(dir.path(), options));
    let app = mock_builder()
        .manage(state)
        .invoke_handler(guardnest_app::handlers())
        .build(mock_context(noop_assets()))
        .unwrap();
    let webview = tauri::WebviewWindowBuilder::new(&app, "main", Default::default()).build().unwrap();
    let a = App { _app: app, webview, dir };
    assert_eq!(a.ok("get_start_at_login", json!({})), json!(false), "off by default");
    assert!(!entry.exists());
    let on = a.ok("set_start_at_login", json!({"on": true}));
    assert_eq!(on["changed"], true, "{on}");
    let text = std::fs::read_to_string(&entry).expect("no autostart entry written");
    let exe = std::env::current_exe().unwrap().canonicalize().unwrap().display().to_string();
    assert!(text.contains(&format!("Exec={exe} --hidden")), "starts hidden, in the tray: {text}");
    assert_eq!(a.ok("get_start_at_login", json!({})), json!(true));
    let settings = || -> Value {
        serde_json::from_str(&std::fs::read_to_string(a.dir.path().join("settings.json")).unwrap()).unwrap()
    };
    assert_eq!(settings()["start_at_login"], true);
    assert_eq!(a.ok("set_start_at_login", json!({"on": false}))["changed"], true);
    assert!(!entry.exists(), "the entry was not removed");
    assert_eq!(settings()["start_at_login"], false);
}

/// The Windows installer's "start at login": `guardnest-app start-at-login on|off`, with no
/// window and no engine, makes the very entry the window's switch makes, and keeps the
/// choice in the same settings.
#[test]
fn the_installer_switches_start_at_login_without_a_window() {
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let app = env!("CARGO_BIN_EXE_guardnest-app");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(app)
            .args(args)
            .arg("--data-dir")
            .arg(data.path())
            .env("HOME", home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let entry = home.path().join(".config/autostart/GuardNest.desktop");
    let (code, out) = run(&["start-at-login", "on"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("GuardNest starts at login"), "{out}");
    let text = std::fs::read_to_string(&entry).expect("no autostart entry written");
    let exe = std::path::Path::new(app).canonicalize().unwrap().display().to_string();
    assert!(text.contains(&format!("Exec={exe} --hidden")), "{text}");
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(data.path().join("settings.json")).unwrap()).unwrap();
    assert_eq!(settings["start_at_login"], true);
    let (code, out) = run(&["start-at-login", "off"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!entry.exists(), "the entry was not removed");
    let (code, out) = run(&["start-at-login", "maybe"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("usage: guardnest-app start-at-login on|off"), "{out}");
}

#[test]
fn protection_resumes_as_the_user_left_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let a = app_with(dir, c.clone());
    a.ok("disable_system_proxy", json!({}));
    let path = a.dir.path().to_path_buf();
    drop(a.webview);
    // The next start (at login, say) leaves protection off, as the user did.
    let options = guardnest_app::Options { config: Some(c) };
    let state = tauri::async_runtime::block_on(async {
        let old = a._app.state::<guardnest_app::AppState>();
        old.quit(Duration::from_millis(100)).await;
        guardnest_app::AppState::start(&path, options).await
    });
    let status = tauri::async_runtime::block_on(state.service().unwrap().status());
    assert!(!status.running, "protection came back on against the user's choice");
    tauri::async_runtime::block_on(state.quit(Duration::from_millis(100)));
}

/// `guardnest-app --help` says what the app is and how to start it, and opens nothing (no
/// display needed); `--version` says the version.
#[test]
fn help_and_version_answer_without_a_window() {
    let app = env!("CARGO_BIN_EXE_guardnest-app");
    let out = std::process::Command::new(app)
        .arg("--help")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.starts_with("GuardNest: keeps the programs that use the system proxy off malicious sites."), "{text}");
    assert!(text.contains("guardnest-app start-at-login on|off"), "{text}");
    let out = std::process::Command::new(app).arg("--version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("guardnest-app {}", env!("CARGO_PKG_VERSION")));
}
