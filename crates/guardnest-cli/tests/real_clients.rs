//! Real clients through the real `guardnest` binary, everything on loopback:
//!
//! * headless Chromium (driven by chromedriver over WebDriver's HTTP and JSON) loads a page
//!   over HTTPS (a self-signed certificate made here) whose parts come over HTTPS and plain
//!   HTTP, one from a listed name, and two WebSockets (wss and ws, which Chromium sends
//!   through a proxy as CONNECT tunnels); the page and its allowed parts load, the listed
//!   one fails, and the control API's `/v1/stats` counted the block;
//! * a page of another site that includes the control API's PAC file as a script gets it
//!   refused (fetch metadata), while a direct fetch, as the OS makes, still gets it;
//! * a plain-HTTP WebSocket (`GET http://…/ws` with `Upgrade`, which browsers never send
//!   to a proxy) from a raw client;
//! * curl, wget and Python's `requests`, each over HTTP and HTTPS: a 100 MB upload and a
//!   100 MB streamed (chunked) download, sizes and CRC-32 checked at the far end.
//!
//! Chromium, chromedriver, curl, wget and python3-requests may be missing: those tests are
//! reported as skipped with the package to install (a failure in CI). Every wait is bounded
//! and every process started here is ended, on failure too.

#[path = "real_clients/origin.rs"]
mod origin;
mod support;
#[path = "real_clients/websocket.rs"]
mod websocket;

use parking_lot::Mutex;
use std::convert::Infallible;
use std::io::Read as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use guardnest_testkit::{needs_tools, passed, platform_limit, skip, Outcome};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use origin::*;
use serde_json::{json, Value};
use support::{Running, BIN, WAIT};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use websocket::*;

guardnest_testkit::main!(
    chromium_loads_a_page_through_guardnest,
    a_web_page_cannot_read_the_pac_file,
    a_plain_http_websocket_through_guardnest,
    curl_wget_and_requests_move_100_mb_each_way
);

/// The name on the block list; it never resolves (GuardNest refuses it before dialing).
const LISTED: &str = "listed.test";
/// Bytes of each upload and download.
const SIZE: usize = 100 * 1000 * 1000;
/// Why the browser and client-program tests are not run by the Windows suite.
const LINUX_CLIENTS: &str = "the browsers and client programs are the Linux host's; the Linux run covers this path";
/// Longest a client program may run.
const CLIENT_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// GuardNest and the origins
// ---------------------------------------------------------------------------------------

/// A running `guardnest run` with a block list naming [`LISTED`] and its control API.
struct Guardnest {
    run: Running,
    control: SocketAddr,
    token: String,
    _dir: tempfile::TempDir,
}

impl Guardnest {
    fn start() -> Guardnest {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("block.hosts");
        std::fs::write(&list, format!("0.0.0.0 {LISTED}\n")).unwrap();
        let config = dir.path().join("guardnest.toml");
        std::fs::write(
            &config,
            format!(
                "[proxy]\nlisten = \"127.0.0.1:0\"\n[blocklist]\nsources = [{:?}]\ndefault_lists = false\n",
                list.display().to_string()
            ),
        )
        .unwrap();
        let data = dir.path().join("data");
        let mut cmd = Command::new(BIN);
        cmd.arg("run").arg("--config").arg(&config).arg("--data-dir").arg(&data);
        cmd.args(["--control", "127.0.0.1:0"]).env("RUST_LOG", "info");
        let mut run = Running::start(&mut cmd);
        run.wait_for("control API on");
        let info: Value = serde_json::from_str(&std::fs::read_to_string(data.join("control.json")).unwrap()).unwrap();
        let control = info["addr"].as_str().unwrap().parse().unwrap();
        let token = info["token"].as_str().unwrap().to_string();
        Guardnest { run, control, token, _dir: dir }
    }

    fn proxy_url(&self) -> String {
        format!("http://{}", self.run.addr)
    }

    /// `/v1/stats` of the control API.
    async fn stats(&self) -> Value {
        let url = format!("http://{}/v1/stats", self.control);
        let client = http_client();
        let resp = client.get(url).bearer_auth(&self.token).send().await.expect("control API");
        assert_eq!(resp.status(), 200);
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
    }
}

/// A reqwest client that never goes through a proxy (for chromedriver and the control API).
fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn stat(stats: &Value, name: &str) -> u64 {
    stats[name].as_u64().unwrap_or_else(|| panic!("no {name} in {stats}"))
}

/// The counters this file looks at, in one line.
fn counters(stats: &Value) -> String {
    ["blocked_total", "tunnels_total", "requests_total", "dial_failures", "bytes_up", "bytes_down"]
        .map(|k| format!("{k} {}", stat(stats, k)))
        .join(", ")
}

// ---------------------------------------------------------------------------------------
// Chromium
// ---------------------------------------------------------------------------------------

/// A child process in its own process group, killed with its whole group when dropped (a
/// browser's processes with the chromedriver that started them), then any process left
/// whose command line names `marker` (a profile directory made for this test only).
struct Group {
    child: Child,
    #[cfg_attr(not(unix), allow(dead_code))]
    marker: Option<PathBuf>,
}

impl Drop for Group {
    #[cfg(unix)]
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) with a process group id this test created.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.child.wait();
        let Some(marker) = &self.marker else { return };
        let marker = marker.to_string_lossy().into_owned();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&marker) {
                // SAFETY: kill(2) on a process whose command line names this test's profile.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }

    /// Never reached: the browser test is a platform limit on Windows.
    #[cfg(not(unix))]
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where `program` is on PATH.
fn on_path(program: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|d| d.join(program)).find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A WebDriver session on chromedriver, deleted when dropped (best effort; the process
/// group is killed after).
struct WebDriver {
    base: String,
    session: Option<String>,
    client: reqwest::Client,
}

impl WebDriver {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let mut req = self.client.request(method, url);
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body.to_string());
        }
        let resp = req.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| format!("{path}: {e}"))?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{path}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{path}: {status}: {}", v["value"]));
        }
        Ok(v["value"].clone())
    }

    async fn session_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let id = self.session.as_deref().ok_or("no session")?;
        self.call(method, &format!("/session/{id}{path}"), body).await
    }

    async fn script(&self, script: &str) -> Result<Value, String> {
        self.session_call(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": script, "args": [] }))).await
    }
}

/// Loads `url` in headless Chromium (driven by chromedriver) with `extra` arguments, and
/// waits (bounded) until the page's `window.results` has every one of `keys`: the results,
/// the title and the final location.
fn browse(url: &str, extra: &[String], keys: &[&str]) -> Result<(Value, Value, Value), String> {
    let chromium = on_path("chromium").ok_or("chromium is not on PATH")?;
    let rt = runtime();
    let profile = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = profile.path().join("chromedriver.log");
    let mut cmd = Command::new("chromedriver");
    cmd.arg(format!("--port={port}")).arg(format!("--log-path={}", log.display()));
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let _driver = Group { child: cmd.spawn().expect("chromedriver"), marker: Some(profile.path().to_path_buf()) };
    let mut wd = WebDriver { base: format!("http://127.0.0.1:{port}"), session: None, client: http_client() };

    let outcome = rt.block_on(async {
        let deadline = Instant::now() + WAIT;
        while wd.call(reqwest::Method::GET, "/status", None).await.map_or(true, |v| v["ready"] != true) {
            if Instant::now() > deadline {
                return Err("chromedriver did not become ready".to_string());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--ignore-certificate-errors",
        ]
        .map(String::from)
        .to_vec();
        args.push(format!("--user-data-dir={}", profile.path().join("profile").display()));
        args.extend(extra.iter().cloned());
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "timeouts": { "pageLoad": 20000, "script": 10000 },
            "goog:chromeOptions": { "binary": chromium.display().to_string(), "args": args },
        }}});
        let session = wd.call(reqwest::Method::POST, "/session", Some(caps)).await?;
        wd.session = Some(session["sessionId"].as_str().ok_or("no session id")?.to_string());
        wd.session_call(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await?;
        // The page's parts report in window.results; wait until all have (bounded).
        let deadline = Instant::now() + Duration::from_secs(20);
        let results = loop {
            let v = wd.script("return window.results ? JSON.stringify(window.results) : null").await?;
            let results: Value = v.as_str().map(|s| serde_json::from_str(s).unwrap_or_default()).unwrap_or_default();
            if keys.iter().all(|k| results.get(k).is_some()) || Instant::now() > deadline {
                break results;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let title = wd.script("return document.title").await?;
        let href = wd.script("return location.href").await?;
        let _ = wd.session_call(reqwest::Method::DELETE, "", None).await;
        wd.session = None;
        Ok((results, title, href))
    });
    outcome.map_err(|e| {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: String =
            log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        format!("{e}\nchromedriver log, last lines:\n{tail}")
    })
}

fn chromium_loads_a_page_through_guardnest() -> Outcome {
    if cfg!(windows) {
        return platform_limit(LINUX_CLIENTS);
    }
    if let Some(skipped) = needs_tools(&["chromium", "chromedriver"], "apt-get install chromium chromium-driver") {
        return skipped;
    }
    let started = Instant::now();
    let rt = runtime();
    let site = rt.block_on(origins(Bytes::new()));
    let guardnest = Guardnest::start();
    let before = rt.block_on(guardnest.stats());
    let url = format!("https://localhost:{}/", site.tls.port());
    let extra = [
        format!("--proxy-server={}", guardnest.proxy_url()),
        // Chromium never proxies loopback unless told to.
        "--proxy-bypass-list=<-loopback>".to_string(),
    ];
    let keys = ["https_js", "http_js", "http_img", "listed", "wss", "ws"];
    let (results, title, href) = browse(&url, &extra, &keys)?;
    let after = rt.block_on(guardnest.stats());
    // Chromium's own background requests (update and account services) fail to resolve
    // here: they are the dial failures.
    eprintln!(
        "chromium: {href} {title}: {results} in {:?}; before: {}; after: {}",
        started.elapsed(),
        counters(&before),
        counters(&after)
    );

    assert_eq!(title, "GuardNest real clients");
    assert_eq!(href, url);
    assert_eq!(results["https_js"], "https:", "the page's own script over HTTPS: {results}");
    assert_eq!(results["http_js"], "loaded", "a script over plain HTTP: {results}");
    assert_eq!(results["http_img"], "loaded", "an image over plain HTTP: {results}");
    assert_eq!(results["listed"], "failed", "the listed name's script: {results}");
    assert_eq!(results["wss"], "wss ping", "the wss WebSocket echo: {results}");
    assert_eq!(results["ws"], "ws ping", "the ws WebSocket echo: {results}");
    for part in ["https /", "https /app.js", "http /plain.js", "http /img.svg", "https /ws", "http /ws"] {
        assert!(site.saw(part), "the origins never saw {part}: {:?}", site.seen.lock());
    }
    // The block was GuardNest's: counted, and the page, its parts and both WebSockets went
    // through it (tunnels for HTTPS and the WebSockets, requests for plain HTTP).
    assert!(stat(&after, "blocked_total") > stat(&before, "blocked_total"), "block not counted: {after}");
    assert!(stat(&after, "tunnels_total") >= stat(&before, "tunnels_total") + 3, "{after}");
    assert!(stat(&after, "requests_total") >= stat(&before, "requests_total") + 2, "{after}");
    passed()
}

/// A web page of another site includes GuardNest's PAC file as a script (a `no-cors` GET:
/// no `Origin` header) to learn GuardNest's port and whether protection is on. Chromium's
/// own fetch metadata (`Sec-Fetch-Site: cross-site`) gets it refused, and `nosniff` keeps a
/// PAC answer from ever running as a script; the OS and browsers fetching it themselves
/// still get it.
fn a_web_page_cannot_read_the_pac_file() -> Outcome {
    if cfg!(windows) {
        return platform_limit(LINUX_CLIENTS);
    }
    if let Some(skipped) = needs_tools(&["chromium", "chromedriver"], "apt-get install chromium chromium-driver") {
        return skipped;
    }
    let rt = runtime();
    let guardnest = Guardnest::start();
    let control = guardnest.control;
    let site = rt.block_on(origins(Bytes::new()));
    *site.probe.lock() = Some(format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>another site</title>
<script>window.results = {{}};</script>
<script src="http://{control}/proxy.pac" onload="results.pac = typeof FindProxyForURL" onerror="results.pac = 'refused'"></script>
<script src="http://{control}/metrics" onload="results.metrics = 'ran'" onerror="results.metrics = 'refused'"></script>
</head><body></body></html>"#
    ));
    // Straight to the page (no proxy): another site on this machine, as any web page is.
    let url = format!("http://localhost:{}/probe", site.plain.port());
    let (results, _, _) = browse(&url, &[], &["pac", "metrics"])?;
    eprintln!("a page of another site including the PAC file and /metrics: {results}");
    assert_eq!(results["pac"], "refused", "a web page ran GuardNest's PAC file: {results}");
    assert_eq!(results["metrics"], "refused", "{results}");
    assert!(site.saw("http /probe"));
    // The OS (and a browser's own proxy resolver) fetching it directly still gets it.
    let pac = rt.block_on(async {
        let resp = http_client().get(format!("http://{control}/proxy.pac")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        resp.text().await.unwrap()
    });
    assert!(pac.contains("FindProxyForURL"), "{pac}");
    // Chromium's own proxy resolver fetches it too, and uses it: a page through it is
    // GuardNest's (the listed name's script is refused).
    let url = format!("https://localhost:{}/", site.tls.port());
    let extra = [format!("--proxy-pac-url=http://{control}/proxy.pac"), "--proxy-bypass-list=<-loopback>".into()];
    let (results, _, _) = browse(&url, &extra, &["https_js", "listed"])?;
    assert_eq!(results["https_js"], "https:", "{results}");
    assert_eq!(results["listed"], "failed", "the PAC file was not used: {results}");
    assert!(site.saw("https /"), "the page did not load through the PAC file's proxy");
    passed()
}

// ---------------------------------------------------------------------------------------
// A plain-HTTP WebSocket from a raw client
// ---------------------------------------------------------------------------------------

fn a_plain_http_websocket_through_guardnest() -> Outcome {
    let rt = runtime();
    let site = rt.block_on(origins(Bytes::new()));
    let guardnest = Guardnest::start();
    rt.block_on(async {
        let before = guardnest.stats().await;
        let mut s = tokio::net::TcpStream::connect(guardnest.run.addr).await.unwrap();
        let origin = site.plain;
        // The key and answer of RFC 6455's example.
        let head = format!(
            "GET http://{origin}/ws HTTP/1.1\r\nHost: {origin}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        while !answer.ends_with(b"\r\n\r\n") {
            let n = tokio::time::timeout(WAIT, s.read(&mut byte)).await.expect("101 in time").unwrap();
            assert_eq!(n, 1, "closed in the head: {}", String::from_utf8_lossy(&answer));
            answer.push(byte[0]);
            assert!(answer.len() < 8192);
        }
        let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        assert!(answer.starts_with("http/1.1 101"), "{answer}");
        assert!(answer.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{answer}");
        for message in ["hello through guardnest", "and once more"] {
            s.write_all(&frame(1, message.as_bytes(), Some([1, 2, 3, 4]))).await.unwrap();
            let (opcode, payload) =
                tokio::time::timeout(WAIT, read_frame(&mut s)).await.expect("echo in time").unwrap();
            assert_eq!((opcode, payload.as_slice()), (1, message.as_bytes()));
        }
        s.write_all(&frame(8, &[0x03, 0xe8], Some([5, 6, 7, 8]))).await.unwrap();
        let (opcode, _) = tokio::time::timeout(WAIT, read_frame(&mut s)).await.expect("close in time").unwrap();
        assert_eq!(opcode, 8);
        assert!(site.saw("http /ws"));
        let after = guardnest.stats().await;
        assert!(stat(&after, "requests_total") > stat(&before, "requests_total"), "{after}");
    });
    passed()
}

// ---------------------------------------------------------------------------------------
// curl, wget, requests
// ---------------------------------------------------------------------------------------

/// A client program with no proxy settings from this environment (each call names its own).
fn client(program: &str) -> Command {
    let mut cmd = Command::new(program);
    for var in
        ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy", "no_proxy", "NO_PROXY"]
    {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs a client program for at most [`CLIENT_LIMIT`]; its stdout, or why it failed.
fn run_client(cmd: &mut Command) -> Result<String, String> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + CLIENT_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    match status {
        Some(s) if s.success() => Ok(out),
        Some(s) => Err(format!("{what}: {s}\n{err}")),
        None => Err(format!("{what}: still running after {CLIENT_LIMIT:?}\n{err}")),
    }
}

const REQUESTS: &str = r#"
import sys, zlib, requests, urllib3
urllib3.disable_warnings()
mode, url, proxy = sys.argv[1:4]
s = requests.Session()
s.trust_env = False
proxies = {"http": proxy, "https": proxy}
if mode == "up":
    with open(sys.argv[4], "rb") as f:
        r = s.post(url, data=f, proxies=proxies, verify=False, timeout=60)
    r.raise_for_status()
    print(r.text.strip())
else:
    r = s.get(url, proxies=proxies, verify=False, stream=True, timeout=60)
    r.raise_for_status()
    n, crc = 0, 0
    for chunk in r.iter_content(1 << 20):
        n += len(chunk)
        crc = zlib.crc32(chunk, crc)
    print(n, crc)
"#;

fn file_fingerprint(path: &Path) -> String {
    fingerprint(&std::fs::read(path).unwrap())
}

fn curl_wget_and_requests_move_100_mb_each_way() -> Outcome {
    if cfg!(windows) {
        return platform_limit(LINUX_CLIENTS);
    }
    if let Some(skipped) = needs_tools(&["curl", "wget", "python3"], "apt-get install curl wget python3-requests") {
        return skipped;
    }
    if !Command::new("python3").args(["-c", "import requests"]).status().is_ok_and(|s| s.success()) {
        return skip("needs python3's requests (apt-get install python3-requests)");
    }
    let started = Instant::now();
    let rt = runtime();
    let data = test_data(SIZE);
    let expected = fingerprint(&data);
    let site = rt.block_on(origins(data.clone()));
    let guardnest = Guardnest::start();
    let dir = tempfile::tempdir().unwrap();
    let upload = dir.path().join("upload.bin");
    std::fs::write(&upload, &data).unwrap();
    let got = dir.path().join("download.bin");
    let proxy = guardnest.proxy_url();
    let before = rt.block_on(guardnest.stats());

    // Each transfer must have gone through GuardNest: its counters moved by the size
    // (a tunnel counts when it ends, so wait for the connections to close first).
    let mut last = before.clone();
    let mut through = |what: &str, up: bool| {
        let deadline = Instant::now() + WAIT;
        let now = loop {
            let now = rt.block_on(guardnest.stats());
            if stat(&now, "connections_active") == 0 || Instant::now() > deadline {
                break now;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let moved = |k: &str| stat(&now, k) - stat(&last, k);
        let (d_up, d_down) = (moved("bytes_up"), moved("bytes_down"));
        last = now;
        let counted = if up { d_up } else { d_down };
        assert!(counted >= SIZE as u64, "{what}: GuardNest counted {d_up} bytes up, {d_down} down");
    };
    let mut report = Vec::new();
    for (scheme, origin) in [("http", site.plain), ("https", site.tls)] {
        let host = if scheme == "https" { format!("localhost:{}", origin.port()) } else { origin.to_string() };
        let (up, down, page) =
            (format!("{scheme}://{host}/upload"), format!("{scheme}://{host}/download"), format!("{scheme}://{host}/"));
        let t = Instant::now();

        // curl: the page, a streamed PUT of the file (with Expect: 100-continue), a download.
        let curl = |args: &[&str]| {
            run_client(client("curl").args(["-sS", "--fail", "-k", "--proxy", &proxy, "--max-time", "60"]).args(args))
        };
        let html = curl(&[&page])?;
        assert!(html.contains("<title>GuardNest real clients</title>"), "curl {scheme}: {html}");
        assert_eq!(curl(&["-T", upload.to_str().unwrap(), &up])?.trim(), expected, "curl {scheme} upload");
        through(&format!("curl {scheme} upload"), true);
        curl(&["-o", got.to_str().unwrap(), &down])?;
        assert_eq!(file_fingerprint(&got), expected, "curl {scheme} download");
        through(&format!("curl {scheme} download"), false);
        let _ = std::fs::remove_file(&got);

        // wget: a POST of the file, a download.
        let wget = |args: &[&str]| {
            run_client(
                client("wget")
                    .args(["-q", "--no-check-certificate", "--tries=1", "--timeout=60", "-e", "use_proxy=yes"])
                    .env("http_proxy", &proxy)
                    .env("https_proxy", &proxy)
                    .args(args),
            )
        };
        let post = format!("--post-file={}", upload.display());
        assert_eq!(wget(&["-O", "-", &post, &up])?.trim(), expected, "wget {scheme} upload");
        through(&format!("wget {scheme} upload"), true);
        wget(&["-O", got.to_str().unwrap(), &down])?;
        assert_eq!(file_fingerprint(&got), expected, "wget {scheme} download");
        through(&format!("wget {scheme} download"), false);
        let _ = std::fs::remove_file(&got);

        // requests: a streamed POST of the file object, a streamed download.
        let py = |args: &[&str]| run_client(client("python3").args(["-c", REQUESTS]).args(args));
        assert_eq!(py(&["up", &up, &proxy, upload.to_str().unwrap()])?.trim(), expected, "requests {scheme} upload");
        through(&format!("requests {scheme} upload"), true);
        assert_eq!(py(&["down", &down, &proxy])?.trim(), expected, "requests {scheme} download");
        through(&format!("requests {scheme} download"), false);
        report.push(format!("{scheme} {:?}", t.elapsed()));
    }
    let after = rt.block_on(guardnest.stats());
    eprintln!(
        "curl, wget, requests: 100 MB up and down each, over {}; total {:?}; before: {}; after: {}",
        report.join(", "),
        started.elapsed(),
        counters(&before),
        counters(&after)
    );
    for part in ["http /upload", "https /upload", "http /download", "https /download"] {
        assert!(site.saw(part), "the origins never saw {part}");
    }
    passed()
}
