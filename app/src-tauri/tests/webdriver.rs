//! End to end through the real window with WebDriver (tauri-driver + WebKitWebDriver): the
//! switch turns protection off and on, a CONNECT through the app's proxy works, a blocked
//! name gets 403 and then shows in the recent list. A tiny WebDriver client over HTTP (the
//! protocol is JSON), so no browser-automation dependency.
//!
//! Needs tauri-driver (`cargo install tauri-driver --locked`), WebKitWebDriver (Debian's
//! webkit2gtk-driver), xvfb-run and dbus-run-session; skipped without them unless
//! GUARDNEST_REQUIRE_DESKTOP_TESTS=1.

mod support;

use guardnest_testkit::{passed, Outcome};

guardnest_testkit::main!(
    the_switch_drives_the_proxy_end_to_end,
    closed_to_the_tray_the_page_and_its_processes_go_and_open_brings_the_current_window,
);

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn tauri_driver() -> String {
    if let Some(p) = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("tauri-driver"))
        .find(|p| p.is_file())
    {
        return p.display().to_string();
    }
    dirs::home_dir().map(|h| h.join(".cargo/bin/tauri-driver").display().to_string()).unwrap_or_default()
}

struct WebDriver {
    base: String,
    session: String,
    client: http::Client,
}

/// Just enough of a blocking HTTP client for WebDriver, on a private runtime.
mod http {
    pub use shim::Client;

    pub mod shim {
        pub struct Client {
            rt: tokio::runtime::Runtime,
            http: reqwest::Client,
        }

        impl Client {
            pub fn new() -> Client {
                Client {
                    rt: tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(),
                    http: reqwest::Client::builder()
                        .no_proxy()
                        .timeout(std::time::Duration::from_secs(30))
                        .build()
                        .unwrap(),
                }
            }

            pub fn send(
                &self,
                method: &str,
                url: &str,
                body: Option<serde_json::Value>,
            ) -> Result<serde_json::Value, String> {
                self.rt.block_on(async {
                    let method: reqwest::Method = method.parse().unwrap();
                    let mut req = self.http.request(method, url);
                    if let Some(b) = body {
                        req = req.header("content-type", "application/json").body(b.to_string());
                    }
                    let resp = req.send().await.map_err(|e| e.to_string())?;
                    let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
                    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
                })
            }
        }
    }
}

impl WebDriver {
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let v = self.client.send(method, &url, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        if v["value"].get("error").is_some() {
            panic!("{method} {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        v.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).unwrap().to_string()
    }

    fn text(&self, css: &str) -> String {
        let id = self.find(css);
        self.cmd("GET", &format!("/element/{id}/text"), None).as_str().unwrap_or("").to_string()
    }

    fn click(&self, css: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// Calls an app command from the page, as a script in it would: `allowed`, or
    /// `refused: ...` with Tauri's reason.
    fn invoke_from_page(&self, command: &str) -> String {
        let script = format!(
            "const done = arguments[arguments.length - 1]; \
             window.__TAURI__.core.invoke('{command}').then(() => done('allowed'), (e) => done('refused: ' + e));"
        );
        let v = self.cmd("POST", "/execute/async", Some(json!({"script": script, "args": []})));
        v.as_str().unwrap_or_default().to_string()
    }

    /// Waits until `css`'s text satisfies `ok`.
    fn wait_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let t = self.text(css);
            if ok(&t) {
                return t;
            }
            assert!(Instant::now() < deadline, "{css} never matched; last text: {t:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Why the WebDriver tests cannot run here, if they cannot.
fn missing_tools() -> Option<Outcome> {
    if let Some(skipped) = guardnest_testkit::needs_tools(
        &["WebKitWebDriver", "xvfb-run", "dbus-run-session"],
        "apt-get install webkit2gtk-driver xvfb dbus",
    ) {
        return Some(skipped);
    }
    if !std::path::Path::new(&tauri_driver()).is_file() {
        return Some(guardnest_testkit::skip(
            "needs tauri-driver (cargo install tauri-driver --locked --version 2.1.0)",
        ));
    }
    None
}

/// tauri-driver in a session of its own (Xvfb, a session bus, the throwaway HOME), and a
/// WebDriver session on the app it starts.
fn session(home: &support::DesktopHome) -> (std::process::Child, WebDriver) {
    let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (port, native_port) = (free_port(), free_port());
    // Its own native port: a WebKitWebDriver left from another run must never be reused
    // (it would launch the app with that run's environment).
    let mut driver = home
        .command("dbus-run-session")
        .args(["--", "xvfb-run", "-a", "-s", "-screen 0 1024x768x24"])
        .arg(tauri_driver())
        .args(["--port", &port.to_string(), "--native-port", &native_port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = http::Client::new();
    let caps = json!({"capabilities": {"alwaysMatch": {
        "browserName": "wry",
        "tauri:options": {"application": env!("CARGO_BIN_EXE_guardnest-app")}
    }}});
    let deadline = Instant::now() + Duration::from_secs(30);
    let session = loop {
        match client.send("POST", &format!("{base}/session"), Some(caps.clone())) {
            Ok(v) if v["value"]["sessionId"].is_string() => {
                break v["value"]["sessionId"].as_str().unwrap().to_string()
            }
            other => {
                if Instant::now() > deadline {
                    support::kill_group(&mut driver);
                    panic!("no WebDriver session: {other:?}");
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    };
    (driver, WebDriver { base, session, client })
}

fn the_switch_drives_the_proxy_end_to_end() -> Outcome {
    if let Some(skipped) = missing_tools() {
        return skipped;
    }
    let home = support::DesktopHome::new();
    let (mut driver, wd) = session(&home);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wd.wait_text("#state-title", |t| t == "You are protected");
        // Least privilege: the page may call what it uses, nothing else the app registers.
        assert_eq!(wd.invoke_from_page("get_view"), "allowed");
        for command in ["restart_proxy", "get_proxy_status", "get_stats", "get_recent_blocks"] {
            let answer = wd.invoke_from_page(command);
            assert!(answer.starts_with("refused: ") && answer.contains("not allowed"), "{command}: {answer}");
        }
        let listen: SocketAddr = wd.wait_text("#s-listen", |t| t.contains(':')).parse().unwrap();
        // A tunnel through the app's proxy works; a blocked name gets 403 and shows up.
        let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(support::connect_status(listen, &upstream.local_addr().unwrap().to_string()), Some(200));
        let code = support::connect_status(listen, "www.evil.test:443");
        if code != Some(403) {
            panic!(
                "not blocked ({code:?}); names: {:?}; lists: {:?}; detail: {:?}",
                wd.text("#s-names"),
                wd.text("#lists"),
                wd.text("#state-detail")
            );
        }
        wd.wait_text("#recent", |t| t.contains("www.evil.test"));
        // The switch off: the proxy stops.
        wd.click(".switch .slider");
        wd.wait_text("#state-title", |t| t == "Protection is off");
        assert_eq!(support::connect_status(listen, "www.evil.test:443"), None, "still listening after switching off");
        // And on again.
        wd.click(".switch .slider");
        wd.wait_text("#state-title", |t| t == "You are protected");

        // The CLI finds the running app through its control API, and the window follows it.
        let data = home.data_dir();
        let cli = |args: &[&str]| {
            let out = std::process::Command::new(support::guardnest_cli())
                .args(args)
                .arg("--data-dir")
                .arg(&data)
                .env_remove("RUST_LOG")
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
            )
        };
        let (code, out) = cli(&["status"]);
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains(&format!("running on {listen}")) && out.contains("\nprotected: 1 name blocked"), "{out}");
        let (code, out) = cli(&["disable"]);
        assert_eq!(code, Some(0), "{out}");
        assert!(out.starts_with("disabled"), "{out}");
        wd.wait_text("#state-title", |t| t == "Protection is off");
        assert_eq!(
            support::connect_status(listen, "www.evil.test:443"),
            None,
            "the CLI's disable did not stop the app's proxy"
        );
        let (code, out) = cli(&["enable"]);
        assert_eq!(code, Some(0), "{out}");
        wd.wait_text("#state-title", |t| t == "You are protected");
        let (code, out) = cli(&["check", "www.evil.test"]);
        assert_eq!((code, out.trim()), (Some(5), "blocked: www.evil.test by list \"block.hosts\" (rule evil.test)"));
    }));
    let _ = wd.client.send("DELETE", &format!("{}/session/{}", wd.base, wd.session), None);
    // The whole group: dbus-run-session, xvfb-run, Xvfb, tauri-driver, WebKitWebDriver, the app.
    support::kill_group(&mut driver);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    passed()
}

/// Closed to the tray, the window's page and WebKit's web process are gone (nothing runs
/// for nobody to see); blocks made meanwhile are in the window when Open brings it back.
/// (The network process is kept under WebDriver, whose session lives in it: tests/window.rs
/// checks that it goes too.)
fn closed_to_the_tray_the_page_and_its_processes_go_and_open_brings_the_current_window() -> Outcome {
    if let Some(skipped) = missing_tools() {
        return skipped;
    }
    if let Some(skipped) = guardnest_testkit::needs_tools(&["python3"], "apt-get install python3") {
        return skipped;
    }
    let home = support::DesktopHome::new();
    let (mut driver, wd) = session(&home);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wd.wait_text("#state-title", |t| t == "You are protected");
        // Least privilege: the page may call what it uses, nothing else the app registers.
        assert_eq!(wd.invoke_from_page("get_view"), "allowed");
        for command in ["restart_proxy", "get_proxy_status", "get_stats", "get_recent_blocks"] {
            let answer = wd.invoke_from_page(command);
            assert!(answer.starts_with("refused: ") && answer.contains("not allowed"), "{command}: {answer}");
        }
        let listen: SocketAddr = wd.wait_text("#s-listen", |t| t.contains(':')).parse().unwrap();
        let app = support::AppProcess::of(&home);
        assert!(app.web_processes() > 0, "no WebKit web process while the window is shown");

        // Closed as a window manager closes it: the app stays, in the tray.
        app.xwindow(&["close", "GuardNest"]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while app.web_processes() > 0 {
            assert!(Instant::now() < deadline, "WebKit web processes still run with the window closed");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(app.alive(), "closing the window ended the app");
        // Blocks while nobody looks: counted, shown later.
        for _ in 0..3 {
            assert_eq!(support::connect_status(listen, "www.evil.test:443"), Some(403));
        }

        // Open (the tray's Open, or starting the app again: the running one shows its window).
        let opened = Instant::now();
        app.start_again();
        let handle = loop {
            let handles = wd.cmd("GET", "/window/handles", None);
            if let Some(h) = handles.as_array().and_then(|a| a.first()).and_then(Value::as_str) {
                break h.to_string();
            }
            assert!(opened.elapsed() < Duration::from_secs(20), "no window after Open");
            std::thread::sleep(Duration::from_millis(100));
        };
        wd.cmd("POST", "/window", Some(json!({"handle": handle})));
        let recent = wd.wait_text("#recent", |t| t.contains("www.evil.test"));
        assert!(recent.contains("3 times"), "{recent}");
        wd.wait_text("#c-blocked-today", |t| t == "3");
        eprintln!("window back with the current counters {:?} after Open", opened.elapsed());
        assert!(app.web_processes() > 0);
    }));
    let _ = wd.client.send("DELETE", &format!("{}/session/{}", wd.base, wd.session), None);
    support::kill_group(&mut driver);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    passed()
}
