//! The WebDriver side of the window tests: tauri-driver in a desktop session of its own (Xvfb,
//! a private session bus, a tray host or none), a tiny WebDriver client over HTTP (the
//! protocol is JSON, so no browser-automation dependency), and the helpers every test uses.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use guardnest_testkit::{passed, Outcome};
use serde_json::{json, Value};

pub fn tauri_driver() -> String {
    if let Some(p) = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("tauri-driver"))
        .find(|p| p.is_file())
    {
        return p.display().to_string();
    }
    dirs::home_dir().map(|h| h.join(".cargo/bin/tauri-driver").display().to_string()).unwrap_or_default()
}

pub struct WebDriver {
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
    /// Ends the WebDriver session (the app with it).
    pub fn end(&self) {
        let _ = self.client.send("DELETE", &format!("{}/session/{}", self.base, self.session), None);
    }

    pub fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let v = self.client.send(method, &url, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        if v["value"].get("error").is_some() {
            panic!("{method} {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    pub fn find(&self, css: &str) -> String {
        let v = self.cmd("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        v.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).unwrap().to_string()
    }

    /// The element's text, or None when it is not there (now).
    pub fn try_text(&self, css: &str) -> Option<String> {
        let url = format!("{}/session/{}/element", self.base, self.session);
        let v = self.client.send("POST", &url, Some(json!({"using": "css selector", "value": css}))).ok()?;
        let id = v["value"].as_object()?.values().next()?.as_str()?.to_string();
        let url = format!("{}/session/{}/element/{id}/text", self.base, self.session);
        let v = self.client.send("GET", &url, None).ok()?;
        v["value"].as_str().map(str::to_string)
    }

    pub fn text(&self, css: &str) -> String {
        let id = self.find(css);
        self.cmd("GET", &format!("/element/{id}/text"), None).as_str().unwrap_or("").to_string()
    }

    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// Types `text` into `css` (after emptying it). Non-ASCII text is set as a paste would
    /// set it: WebKitWebDriver's key events for it can bring the driver down.
    pub fn type_into(&self, css: &str, text: &str) {
        if !text.is_ascii() {
            let script = "const e = document.querySelector(arguments[0]); e.value = arguments[1]; \
                          e.dispatchEvent(new Event('input'));";
            self.cmd("POST", "/execute/sync", Some(json!({"script": script, "args": [css, text]})));
            return;
        }
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/clear"), Some(json!({})));
        self.cmd("POST", &format!("/element/{id}/value"), Some(json!({"text": text})));
    }

    /// Presses keys in `css` (WebDriver's key codes: "\u{E003}" is Backspace).
    pub fn keys(&self, css: &str, keys: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/value"), Some(json!({"text": keys})));
    }

    /// Runs `script` in the page; its value.
    pub fn script(&self, script: &str) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({"script": script, "args": []})))
    }

    /// Waits until `ok` holds (polling the page every 50 ms), at most `limit`.
    pub fn wait_for(&self, what: &str, limit: Duration, ok: impl Fn() -> bool) {
        let deadline = Instant::now() + limit;
        while !ok() {
            assert!(Instant::now() < deadline, "{what} did not happen within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Resizes the window so that the page is `w` x `h`.
    pub fn resize(&self, w: u32, h: u32) {
        self.cmd("POST", "/window/rect", Some(json!({"width": w, "height": h})));
        self.wait_for(&format!("a {w}x{h} page"), Duration::from_secs(10), || {
            self.script("return [innerWidth, innerHeight]") == json!([w, h])
        });
    }

    /// The element's box in the page: [left, top, width, height].
    pub fn rect(&self, css: &str) -> Vec<f64> {
        let r = self.script(&format!(
            "const r = document.querySelector({css:?}).getBoundingClientRect(); \
             return [r.left + scrollX, r.top + scrollY, r.width, r.height];"
        ));
        r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
    }

    /// Calls an app command from the page, as a script in it would: `allowed`, or
    /// `refused: ...` with Tauri's reason.
    pub fn invoke_from_page(&self, command: &str) -> String {
        let script = format!(
            "const done = arguments[arguments.length - 1]; \
             window.__TAURI__.core.invoke('{command}').then(() => done('allowed'), (e) => done('refused: ' + e));"
        );
        let v = self.cmd("POST", "/execute/async", Some(json!({"script": script, "args": []})));
        v.as_str().unwrap_or_default().to_string()
    }

    /// Waits until `css`'s text satisfies `ok`.
    pub fn wait_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // An element the page is redrawing may be gone between finding and reading it.
            let t = self.try_text(css).unwrap_or_default();
            if ok(&t) {
                return t;
            }
            assert!(Instant::now() < deadline, "{css} never matched; last text: {t:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Why the WebDriver tests cannot run here, if they cannot.
pub fn missing_tools() -> Option<Outcome> {
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
pub fn session(home: &crate::support::DesktopHome) -> (std::process::Child, WebDriver) {
    session_on(home, true)
}

/// As [`session`], on a desktop that shows a tray, or not (stock GNOME).
pub fn session_on(home: &crate::support::DesktopHome, tray: bool) -> (std::process::Child, WebDriver) {
    let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (port, native_port) = (free_port(), free_port());
    // Its own native port: a WebKitWebDriver left from another run must never be reused
    // (it would launch the app with that run's environment).
    let mut driver = home
        .desktop(tray)
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
                    crate::support::kill_group(&mut driver);
                    panic!("no WebDriver session: {other:?}");
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    };
    (driver, WebDriver { base, session, client })
}

pub fn xwindow_py() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/tools/xwindow.py")
}

/// Runs `test` against the real window of an app in `home`, then ends everything started.
pub fn with_window(home: &crate::support::DesktopHome, test: impl FnOnce(&WebDriver)) -> Outcome {
    if let Some(skipped) = missing_tools() {
        return skipped;
    }
    let (mut driver, wd) = session(home);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(&wd)));
    wd.end();
    crate::support::kill_group(&mut driver);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    passed()
}

pub fn listen_of(wd: &WebDriver) -> SocketAddr {
    wd.click(".status-more summary");
    wd.wait_text("#s-listen", |t| t.contains(':')).parse().unwrap()
}

/// `guardnest ARGS --data-dir DATA`: exit code and output.
pub fn cli(home: &crate::support::DesktopHome, args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(crate::support::guardnest_cli())
        .args(args)
        .arg("--data-dir")
        .arg(home.data_dir())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}
