//! Behind a proxy (issue 26), for real: a user whose GNOME settings name a manual proxy
//! (Debian's Squid, started by the test) turns GuardNest on as the system proxy. A headless
//! Chromium started with no proxy flag follows GNOME's settings by itself, so it talks to
//! GuardNest; GuardNest chains through the user's Squid: an allowed site is reached through
//! Squid (its access log shows the request), a listed one gets GuardNest's block page and
//! never reaches Squid. `guardnest status` names the upstream in plain words, the start says
//! the user's proxy stays in use, and the user's settings come back byte for byte.
//!
//! Everything lives in a network namespace the test makes (only `lo`): GNOME's ignore-hosts
//! bypass loopback, so the site has an address of its own there (192.0.2.10/32 on `lo`), and
//! no test traffic leaves it. The desktop is a throwaway HOME with its own session bus
//! (gsettings over dconf). Linux only, as root; without squid, chromium, chromedriver,
//! gsettings or dbus the test is reported skipped with the install line (a failure in CI).

mod support;

use guardnest_testkit::Outcome;

guardnest_testkit::main!(chromium_follows_gnome_to_guardnest_which_chains_through_the_users_squid);

#[cfg(not(target_os = "linux"))]
fn chromium_follows_gnome_to_guardnest_which_chains_through_the_users_squid() -> Outcome {
    guardnest_testkit::platform_limit("GNOME's settings and network namespaces are Linux's (Windows: tests/windows.rs)")
}

#[cfg(target_os = "linux")]
fn chromium_follows_gnome_to_guardnest_which_chains_through_the_users_squid() -> Outcome {
    linux::test()
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::BTreeMap;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use guardnest_testkit::{needs_tools, passed, skip, Outcome};
    use serde_json::{json, Value};

    use super::support::{Running, BIN, WAIT};

    const INSTALL: &str = "apt-get install squid chromium chromium-driver libglib2.0-bin dconf-cli \
                           dconf-gsettings-backend dconf-service gsettings-desktop-schemas dbus iproute2";
    const GNOME_KEYS: &[(&str, &str)] = &[
        ("org.gnome.system.proxy", "mode"),
        ("org.gnome.system.proxy", "ignore-hosts"),
        ("org.gnome.system.proxy", "autoconfig-url"),
        ("org.gnome.system.proxy.http", "host"),
        ("org.gnome.system.proxy.http", "port"),
        ("org.gnome.system.proxy.https", "host"),
        ("org.gnome.system.proxy.https", "port"),
    ];
    /// The site, and the listed one, on `lo` in the test's namespace.
    const SITE: &str = "192.0.2.10";
    const LISTED: &str = "192.0.2.11";

    pub fn test() -> Outcome {
        if let Some(skipped) =
            needs_tools(&["chromium", "chromedriver", "gsettings", "dbus-daemon", "ip", "openssl"], INSTALL)
        {
            return skipped;
        }
        if !Path::new("/usr/sbin/squid").is_file() {
            return skip(format!("needs /usr/sbin/squid ({INSTALL})"));
        }
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // This thread (and what it starts) leaves for a network namespace of its own.
                    // SAFETY: unshare changes only this thread's namespaces (it has no pointers).
                    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                        let why = std::io::Error::last_os_error();
                        return skip(format!("cannot make a network namespace ({why}): run as root"));
                    }
                    in_namespace()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    fn run(program: &str, args: &[&str]) {
        let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(out.status.success(), "{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }

    /// A process killed (with its process group) when dropped.
    struct Kill(Child);

    impl Drop for Kill {
        fn drop(&mut self) {
            let pid = self.0.id() as i32;
            // SAFETY: kill(2) on a process group this test created.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// `program` with only the throwaway desktop's environment (never the real user's HOME).
    fn desktop_command(h: &Path, bus: Option<&str>, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", h)
            .env("XDG_CONFIG_HOME", h.join("config"))
            .env("XDG_DATA_HOME", h.join("data"))
            .env("XDG_CACHE_HOME", h.join("cache"))
            .env("XDG_RUNTIME_DIR", h.join("run"))
            .env("XDG_CURRENT_DESKTOP", "GNOME")
            .env("GSETTINGS_BACKEND", "dconf")
            .env("NO_AT_BRIDGE", "1");
        if let Some(bus) = bus {
            c.env("DBUS_SESSION_BUS_ADDRESS", bus);
        }
        c
    }

    /// The throwaway desktop: HOME, XDG dirs, one session bus for everything started here.
    struct Desktop {
        home: tempfile::TempDir,
        bus: String,
        _daemon: Kill,
    }

    impl Desktop {
        fn new() -> Desktop {
            let home = tempfile::tempdir().unwrap();
            let run_dir = home.path().join("run");
            std::fs::create_dir_all(&run_dir).unwrap();
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
            // The bus starts dconf-service for gsettings' writes: it must get the throwaway
            // HOME too, or it would write the real user's settings.
            let mut daemon = desktop_command(home.path(), None, "dbus-daemon");
            daemon.args(["--session", "--nofork", "--print-address"]).stdout(Stdio::piped()).stderr(Stdio::null());
            std::os::unix::process::CommandExt::process_group(&mut daemon, 0);
            let mut daemon = daemon.spawn().unwrap();
            let mut stdout = daemon.stdout.take().unwrap();
            let mut address = Vec::new();
            let mut byte = [0u8; 1];
            while stdout.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
                address.push(byte[0]);
            }
            let bus = String::from_utf8(address).unwrap();
            assert!(bus.starts_with("unix:"), "no session bus address: {bus:?}");
            Desktop { home, bus, _daemon: Kill(daemon) }
        }

        fn command(&self, program: &str) -> Command {
            desktop_command(self.home.path(), Some(&self.bus), program)
        }

        fn gsettings(&self, args: &[&str]) -> String {
            let out = self.command("gsettings").args(args).output().unwrap();
            assert!(out.status.success(), "gsettings {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        }

        fn snapshot(&self) -> BTreeMap<String, String> {
            GNOME_KEYS.iter().map(|(s, k)| (format!("{s} {k}"), self.gsettings(&["get", s, k]))).collect()
        }
    }

    /// An HTTP site on `addr` answering every request with a small page, on its own thread.
    fn site(addr: &str, title: &'static str) -> SocketAddr {
        let listener = TcpListener::bind(addr).unwrap();
        let bound = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut s in listener.incoming().map_while(Result::ok) {
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(WAIT));
                    let mut buf = [0u8; 8192];
                    let mut seen = Vec::new();
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let body = format!("<!doctype html><title>{title}</title><p id=\"p\">{title}: hello</p>");
                            let answer = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if s.write_all(answer.as_bytes()).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        bound
    }

    /// Squid on 127.0.0.1, the user's own proxy, logging to its directory.
    struct Squid {
        addr: SocketAddr,
        dir: tempfile::TempDir,
        _child: Kill,
    }

    fn squid() -> Squid {
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let d = dir.path().display();
        let conf = format!(
            "http_port 127.0.0.1:{port}\npid_filename {d}/squid.pid\ncache_log {d}/cache.log\n\
             access_log stdio:{d}/access.log squid\ncache deny all\ncoredump_dir {d}\ndns_nameservers 127.0.0.1\n\
             netdb_filename none\nlogfile_rotate 0\nshutdown_lifetime 0 seconds\n\
             acl local_clients src 127.0.0.0/8\nhttp_access allow local_clients\nhttp_access deny all\n"
        );
        std::fs::write(dir.path().join("squid.conf"), conf).unwrap();
        let mut cmd = Command::new("/usr/sbin/squid");
        cmd.args(["-N", "-d", "1", "-f"])
            .arg(dir.path().join("squid.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = Kill(cmd.spawn().unwrap());
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "squid did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Squid { addr, dir, _child: child }
    }

    impl Squid {
        fn log(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
        }

        fn wait_for(&self, part: &str) -> String {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let log = self.log();
                if let Some(line) = log.lines().find(|l| l.contains(part)) {
                    return line.to_string();
                }
                assert!(Instant::now() < deadline, "Squid's access log has no {part:?}:\n{log}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Loads each URL in a headless Chromium started (by chromedriver) with no proxy flag, in
    /// the desktop's session; returns each page's title and text.
    fn chromium(desktop: &Desktop, urls: &[String]) -> Vec<(String, String)> {
        let profile = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cmd = desktop.command("chromedriver");
        cmd.arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let _driver = Kill(cmd.spawn().unwrap());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let call = |method: reqwest::Method, path: String, body: Option<Value>| {
            let client = client.clone();
            let url = format!("{base}{path}");
            async move {
                let mut req = client.request(method, url);
                if let Some(body) = body {
                    req = req.header("content-type", "application/json").body(body.to_string());
                }
                let resp = req.send().await.map_err(|e| e.to_string())?;
                let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
                let v: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
                Ok::<Value, String>(v["value"].clone())
            }
        };
        rt.block_on(async {
            let deadline = Instant::now() + WAIT;
            while call(reqwest::Method::GET, "/status".into(), None).await.map_or(true, |v| v["ready"] != true) {
                assert!(Instant::now() < deadline, "chromedriver did not become ready");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let args = [
                "--headless=new".to_string(),
                "--no-sandbox".into(),
                "--disable-gpu".into(),
                "--disable-dev-shm-usage".into(),
                "--no-first-run".into(),
                "--disable-background-networking".into(),
                "--disable-component-update".into(),
                "--disable-sync".into(),
                format!("--user-data-dir={}", profile.path().join("profile").display()),
            ];
            let caps = json!({ "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "timeouts": { "pageLoad": 20000, "script": 10000 },
                "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args },
            }}});
            let session = call(reqwest::Method::POST, "/session".into(), Some(caps)).await.unwrap();
            let id = session["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {session}")).to_string();
            let mut out = Vec::new();
            for url in urls {
                let _ = call(reqwest::Method::POST, format!("/session/{id}/url"), Some(json!({ "url": url }))).await;
                let script = json!({ "script": "return [document.title, document.body ? document.body.innerText : ''];", "args": [] });
                let v = call(reqwest::Method::POST, format!("/session/{id}/execute/sync"), Some(script)).await.unwrap();
                out.push((v[0].as_str().unwrap_or("").to_string(), v[1].as_str().unwrap_or("").to_string()));
            }
            let _ = call(reqwest::Method::DELETE, format!("/session/{id}"), None).await;
            out
        })
    }

    fn guardnest(desktop: &Desktop, data: &Path, config: &Path) -> Running {
        let mut c = desktop.command(BIN);
        c.args(["run", "--system-proxy", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info");
        Running::start(&mut c)
    }

    fn guardnest_status(desktop: &Desktop, data: &Path) -> String {
        let out = desktop.command(BIN).args(["status", "--data-dir"]).arg(data).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    fn in_namespace() -> Outcome {
        run("ip", &["link", "set", "lo", "up"]);
        run("ip", &["addr", "add", &format!("{SITE}/32"), "dev", "lo"]);
        run("ip", &["addr", "add", &format!("{LISTED}/32"), "dev", "lo"]);
        let allowed = site(&format!("{SITE}:0"), "Allowed site");
        let listed = site(&format!("{LISTED}:0"), "Listed site");
        let squid = squid();
        let desktop = Desktop::new();

        // The user's own settings: Squid for HTTP and HTTPS, loopback bypassed.
        let (sh, sp) = (format!("'{}'", squid.addr.ip()), squid.addr.port().to_string());
        for schema in ["org.gnome.system.proxy.http", "org.gnome.system.proxy.https"] {
            desktop.gsettings(&["set", schema, "host", &sh]);
            desktop.gsettings(&["set", schema, "port", &sp]);
        }
        desktop.gsettings(&["set", "org.gnome.system.proxy", "ignore-hosts", "['localhost', '127.0.0.0/8', '::1']"]);
        desktop.gsettings(&["set", "org.gnome.system.proxy", "mode", "'manual'"]);
        let before = desktop.snapshot();

        let data = tempfile::tempdir().unwrap();
        let list = data.path().join("block.txt");
        std::fs::write(&list, format!("{LISTED}\n")).unwrap();
        let config = data.path().join("guardnest.toml");
        std::fs::write(
            &config,
            format!("[blocklist]\nsources = [{:?}]\ndefault_lists = false\n", list.display().to_string()),
        )
        .unwrap();
        let state = data.path().join("state");
        let mut gn = guardnest(&desktop, &state, &config);
        gn.wait_for("system proxy set (gnome)");
        let kept = gn.wait_for("your own proxy stays in use through GuardNest");
        eprintln!("guardnest said: {kept}");
        assert!(kept.contains(&format!("proxy {} for HTTP and HTTPS", squid.addr)), "{kept}");
        assert!(kept.contains("from your GNOME proxy settings"), "{kept}");
        let applied = desktop.snapshot();
        assert_eq!(applied["org.gnome.system.proxy.http port"], gn.addr.port().to_string());

        let status = guardnest_status(&desktop, &state);
        eprintln!("guardnest status:\n{status}");
        assert!(
            status.contains(&format!("upstream: proxy {} for HTTP and HTTPS, except 3 bypassed hosts", squid.addr)),
            "{status}"
        );

        let urls = [format!("http://{allowed}/page"), format!("http://{listed}/page")];
        let pages = chromium(&desktop, &urls);
        eprintln!("chromium saw: {pages:?}");
        assert_eq!(pages[0].0, "Allowed site", "the allowed site did not load: {pages:?}");
        assert!(pages[0].1.contains("Allowed site: hello"), "{pages:?}");
        assert_eq!(pages[1].0, "Blocked by GuardNest", "no block page for the listed site: {pages:?}");
        let line = squid.wait_for(&format!("GET http://{allowed}/page"));
        eprintln!("Squid's access.log (the user's own proxy): {line}");
        assert!(!squid.log().contains(LISTED), "the listed site reached the parent:\n{}", squid.log());

        gn.signal("-TERM");
        assert_eq!(gn.wait_exit().code(), Some(0));
        assert_eq!(desktop.snapshot(), before, "the user's settings did not come back byte for byte");
        let _: PathBuf = state;
        passed()
    }
}
