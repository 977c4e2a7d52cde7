//! The system proxy on real Linux desktops, in throwaway HOME and XDG dirs: GNOME's
//! gsettings (dconf backend, inside `dbus-run-session`) and KDE's kioslaverc (kwriteconfig5,
//! plus GNOME's keys). A distinctive manual setup is made first; after disable, and after a
//! `kill -9` and the next start, it must be back exactly. Never touches the real desktop.
//!
//! Needs gsettings, dconf and dbus (and kwriteconfig5 for KDE). Without them these tests
//! are reported as skipped with what to install (a failure in CI).

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use guardnest_testkit::{needs_tools, passed, Outcome};
use support::{Running, BIN};

guardnest_testkit::main!(
    gnome_settings_come_back_exactly,
    kde_settings_come_back_exactly,
    repair_puts_settings_back_without_a_running_instance,
    the_login_repair_puts_settings_back_when_guardnest_never_returns,
    a_snapshot_whose_pid_now_runs_another_program_is_repaired,
    stop_puts_settings_back_and_start_again_restarts,
);

const GNOME_KEYS: &[(&str, &str)] = &[
    ("org.gnome.system.proxy", "mode"),
    ("org.gnome.system.proxy", "ignore-hosts"),
    ("org.gnome.system.proxy", "autoconfig-url"),
    ("org.gnome.system.proxy.http", "host"),
    ("org.gnome.system.proxy.http", "port"),
    ("org.gnome.system.proxy.https", "host"),
    ("org.gnome.system.proxy.https", "port"),
];
const KDE_KEYS: &[&str] = &["ProxyType", "httpProxy", "httpsProxy", "NoProxyFor", "Proxy Config Script"];

/// The packages that bring every tool these tests use.
const INSTALL: &str = "apt-get install libglib2.0-bin dconf-cli dconf-gsettings-backend dconf-service \
                       gsettings-desktop-schemas dbus libkf5config-bin";

/// A throwaway desktop session environment.
struct Desktop {
    home: tempfile::TempDir,
    data: tempfile::TempDir,
    desktop: &'static str,
}

impl Desktop {
    fn new(desktop: &'static str) -> Desktop {
        let d = Desktop { home: tempfile::tempdir().unwrap(), data: tempfile::tempdir().unwrap(), desktop };
        let run = d.home.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        d
    }

    fn command(&self, program: &str) -> Command {
        let h = self.home.path();
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", h)
            .env("XDG_CONFIG_HOME", h.join("config"))
            .env("XDG_DATA_HOME", h.join("data"))
            .env("XDG_CACHE_HOME", h.join("cache"))
            .env("XDG_RUNTIME_DIR", h.join("run"))
            .env("XDG_CURRENT_DESKTOP", self.desktop)
            .env("GSETTINGS_BACKEND", "dconf")
            .env("NO_AT_BRIDGE", "1");
        c
    }

    /// Runs a command inside its own session bus; returns stdout.
    fn in_session(&self, args: &[&str]) -> String {
        let out = self.command("dbus-run-session").arg("--").args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn gsettings_set(&self, schema: &str, key: &str, value: &str) {
        self.in_session(&["gsettings", "set", schema, key, value]);
    }

    fn kde_set(&self, key: &str, value: &str) {
        let out = self
            .command("kwriteconfig5")
            .args(["--file", "kioslaverc", "--group", "Proxy Settings", "--key", key, value])
            .output()
            .unwrap();
        assert!(out.status.success());
    }

    /// Every proxy setting of this desktop, as the tools print them.
    fn snapshot(&self) -> BTreeMap<String, String> {
        let script: Vec<String> = GNOME_KEYS.iter().map(|(s, k)| format!("gsettings get {s} {k}")).collect();
        let gnome = self.in_session(&["sh", "-c", &script.join("; ")]);
        let mut out: BTreeMap<String, String> =
            GNOME_KEYS.iter().zip(gnome.lines()).map(|((s, k), v)| (format!("{s} {k}"), v.to_string())).collect();
        if self.desktop == "KDE" {
            for k in KDE_KEYS {
                let v = self
                    .command("kreadconfig5")
                    .args(["--file", "kioslaverc", "--group", "Proxy Settings", "--key", k])
                    .output()
                    .unwrap();
                out.insert(format!("kde {k}"), String::from_utf8_lossy(&v.stdout).trim().to_string());
            }
        }
        out
    }

    /// `guardnest run` inside a session bus.
    fn guardnest(&self, extra: &[&str]) -> Running {
        let mut c = self.command("dbus-run-session");
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        c.arg("--")
            .arg(BIN)
            .args(["run", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--no-default-lists", "--data-dir"])
            .arg(self.data.path())
            .args(extra);
        let mut running = Running::start(&mut c);
        running.group = true;
        running
    }

    /// PID of the guardnest process itself (not of dbus-run-session).
    fn guardnest_pid(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = std::fs::read_to_string(self.data.path().join("control.json")) {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                return v["pid"].to_string();
            }
            assert!(Instant::now() < deadline, "no control.json");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Desktop {
    /// `guardnest repair` inside a session bus; success and what it printed.
    fn repair(&self, extra: &[&str]) -> (bool, String) {
        let out = self
            .command("dbus-run-session")
            .arg("--")
            .arg(BIN)
            .arg("repair")
            .arg("--data-dir")
            .arg(self.data.path())
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }
}

/// GNOME and KDE settings (and XDG autostart) exist on Linux desktops only; Windows has its
/// own backend and RunOnce login repair, tested end to end under Wine in tests/windows.rs.
fn not_a_linux_desktop() -> Outcome {
    guardnest_testkit::platform_limit(
        "GNOME and KDE proxy settings exist on Linux desktops only (Windows: tests/windows.rs)",
    )
}

fn kill(sig: &str, pid: &str) {
    assert!(Command::new("kill").args([sig, pid]).status().unwrap().success());
}

fn enable_disable_and_crash(d: &Desktop, check_applied: impl Fn(&BTreeMap<String, String>, u16)) {
    let before = d.snapshot();

    // Enable, then a clean stop: back exactly.
    let mut run = d.guardnest(&["--system-proxy"]);
    run.wait_for("system proxy set");
    check_applied(&d.snapshot(), run.addr.port());
    kill("-TERM", &d.guardnest_pid());
    assert_eq!(run.wait_exit().code(), Some(0));
    assert_eq!(d.snapshot(), before, "settings not restored after a clean stop");

    // Enable, then kill -9: the settings still point at the dead proxy...
    let mut run = d.guardnest(&["--system-proxy"]);
    run.wait_for("system proxy set");
    let port = run.addr.port();
    kill("-KILL", &d.guardnest_pid());
    let _ = run.wait_exit();
    check_applied(&d.snapshot(), port);
    // ...until the next start repairs them, before anything else.
    let mut run = d.guardnest(&[]);
    run.wait_for("repaired a crashed session");
    assert_eq!(d.snapshot(), before, "settings not restored after a crash");
    kill("-TERM", &d.guardnest_pid());
    assert_eq!(run.wait_exit().code(), Some(0));
    assert_eq!(d.snapshot(), before);
}

fn gnome_settings_come_back_exactly() -> Outcome {
    if cfg!(windows) {
        return not_a_linux_desktop();
    }
    if let Some(skipped) = needs_tools(&["gsettings", "dbus-run-session"], INSTALL) {
        return skipped;
    }
    let d = Desktop::new("GNOME");
    d.gsettings_set("org.gnome.system.proxy.http", "host", "corp-proxy.example");
    d.gsettings_set("org.gnome.system.proxy.http", "port", "8888");
    d.gsettings_set("org.gnome.system.proxy.https", "host", "corp-proxy.example");
    d.gsettings_set("org.gnome.system.proxy.https", "port", "8443");
    d.gsettings_set("org.gnome.system.proxy", "ignore-hosts", "['corp.local', '10.0.0.0/8']");
    d.gsettings_set("org.gnome.system.proxy", "mode", "'manual'");
    enable_disable_and_crash(&d, |s, port| {
        assert_eq!(s["org.gnome.system.proxy mode"], "'manual'");
        assert_eq!(s["org.gnome.system.proxy.http host"], "'127.0.0.1'");
        assert_eq!(s["org.gnome.system.proxy.https port"], port.to_string());
        assert_eq!(s["org.gnome.system.proxy ignore-hosts"], "['localhost', '127.0.0.0/8', '::1']");
    });
    passed()
}

fn kde_settings_come_back_exactly() -> Outcome {
    if cfg!(windows) {
        return not_a_linux_desktop();
    }
    if let Some(skipped) = needs_tools(&["gsettings", "dbus-run-session", "kwriteconfig5", "kreadconfig5"], INSTALL) {
        return skipped;
    }
    let d = Desktop::new("KDE");
    d.kde_set("ProxyType", "2");
    d.kde_set("Proxy Config Script", "http://corp.example/proxy.pac");
    d.kde_set("NoProxyFor", "corp.local");
    d.gsettings_set("org.gnome.system.proxy", "autoconfig-url", "'http://corp.example/proxy.pac'");
    d.gsettings_set("org.gnome.system.proxy", "mode", "'auto'");
    enable_disable_and_crash(&d, |s, port| {
        assert_eq!(s["kde ProxyType"], "1");
        assert_eq!(s["kde httpsProxy"], format!("http://127.0.0.1 {port}"));
        assert_eq!(s["kde NoProxyFor"], "localhost,127.0.0.0/8,::1");
        // Firefox reads GNOME's keys even on KDE.
        assert_eq!(s["org.gnome.system.proxy mode"], "'manual'");
    });
    passed()
}

/// "My internet stopped working": `guardnest repair`, with no GuardNest running, puts the
/// user's own settings back from the snapshot, or turns off a proxy left pointing at a dead
/// GuardNest when the snapshot is gone, and leaves a live proxy and a running GuardNest alone.
fn repair_puts_settings_back_without_a_running_instance() -> Outcome {
    if cfg!(windows) {
        return not_a_linux_desktop();
    }
    if let Some(skipped) = needs_tools(&["gsettings", "dbus-run-session"], INSTALL) {
        return skipped;
    }
    let d = Desktop::new("GNOME");
    d.gsettings_set("org.gnome.system.proxy", "autoconfig-url", "'http://corp.example/proxy.pac'");
    d.gsettings_set("org.gnome.system.proxy", "mode", "'auto'");
    let before = d.snapshot();

    // 1. Killed with the system proxy set: the snapshot is restored exactly.
    let mut run = d.guardnest(&["--system-proxy"]);
    run.wait_for("system proxy set");
    kill("-KILL", &d.guardnest_pid());
    let _ = run.wait_exit();
    assert_ne!(d.snapshot(), before);
    let (ok, out) = d.repair(&[]);
    assert!(ok && out.contains("restored your gnome proxy settings"), "{out}");
    assert_eq!(d.snapshot(), before);
    assert!(!d.data.path().join("control.json").exists(), "stale runtime file left");
    let (ok, out) = d.repair(&[]);
    assert!(ok && out.contains("nothing to repair"), "{out}");

    // 2. Killed, and the snapshot lost too: the proxy pointing at nothing is turned off.
    let mut run = d.guardnest(&["--system-proxy"]);
    run.wait_for("system proxy set");
    let port = run.addr.port().to_string();
    kill("-KILL", &d.guardnest_pid());
    let _ = run.wait_exit();
    std::fs::remove_file(d.data.path().join("system-proxy.json")).unwrap();
    let listen = format!("127.0.0.1:{port}");
    let (ok, out) = d.repair(&["--listen", &listen]);
    assert!(ok && out.contains("turned the gnome system proxy off"), "{out}");
    assert_eq!(d.snapshot()["org.gnome.system.proxy mode"], "'none'");

    // 3. The same settings with something alive there (the user's own local proxy): untouched.
    let own = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let own_port = own.local_addr().unwrap().port().to_string();
    d.gsettings_set("org.gnome.system.proxy.http", "host", "'127.0.0.1'");
    d.gsettings_set("org.gnome.system.proxy.http", "port", &own_port);
    d.gsettings_set("org.gnome.system.proxy.https", "host", "'127.0.0.1'");
    d.gsettings_set("org.gnome.system.proxy.https", "port", &own_port);
    d.gsettings_set("org.gnome.system.proxy", "mode", "'manual'");
    let (ok, out) = d.repair(&["--listen", &format!("127.0.0.1:{own_port}")]);
    assert!(ok && out.contains("nothing to repair"), "{out}");
    assert_eq!(d.snapshot()["org.gnome.system.proxy mode"], "'manual'");

    // 4. A running GuardNest holds the settings: repair refuses and changes nothing.
    let mut run = d.guardnest(&["--system-proxy"]);
    run.wait_for("system proxy set");
    let applied = d.snapshot();
    let (ok, out) = d.repair(&[]);
    assert!(!ok && out.contains("is running and holds the system proxy"), "{out}");
    assert_eq!(d.snapshot(), applied);
    kill("-TERM", &d.guardnest_pid());
    assert_eq!(run.wait_exit().code(), Some(0));
    passed()
}

/// The entry registered to run once at the next login, while GuardNest holds the system
/// proxy: written with the real binary, gone after a clean disable or stop; after a `kill -9`
/// a login (a new session running its Exec line) puts the user's settings back exactly and
/// removes it, and the next GuardNest says what was repaired and when.
fn the_login_repair_puts_settings_back_when_guardnest_never_returns() -> Outcome {
    if cfg!(windows) {
        return not_a_linux_desktop();
    }
    if let Some(skipped) = needs_tools(&["gsettings", "dbus-run-session"], INSTALL) {
        return skipped;
    }
    let d = Desktop::new("GNOME");
    d.gsettings_set("org.gnome.system.proxy.http", "host", "corp-proxy.example");
    d.gsettings_set("org.gnome.system.proxy.http", "port", "8123");
    d.gsettings_set("org.gnome.system.proxy", "ignore-hosts", "['corp.example', 'localhost']");
    d.gsettings_set("org.gnome.system.proxy", "mode", "'manual'");
    let before = d.snapshot();
    let entry = d.home.path().join("config/autostart/org.guardnest.repair.desktop");
    let client = |args: &[&str]| {
        let out = d.command(BIN).args(args).arg("--data-dir").arg(d.data.path()).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };

    // While the system proxy is set the entry exists and names this very binary; a clean
    // disable and a clean stop remove it.
    let mut run = d.guardnest(&["--system-proxy"]);
    run.wait_for("system proxy set");
    let text = std::fs::read_to_string(&entry).expect("no login repair entry while the system proxy is set");
    let exec = text.lines().find_map(|l| l.strip_prefix("Exec=")).unwrap();
    let argv = guardnest_core::sysproxy::login::parse_desktop_exec(exec).expect("an Exec line GLib would refuse");
    let data = d.data.path().display().to_string();
    assert_eq!(argv[0], std::fs::canonicalize(BIN).unwrap().display().to_string(), "{exec}");
    assert_eq!(argv[1..], ["repair", "--data-dir", data.as_str(), "--at-login"], "{exec}");
    client(&["disable"]);
    assert!(!entry.exists(), "entry left after a clean disable");
    assert_eq!(d.snapshot(), before);
    client(&["enable"]);
    assert!(entry.exists());
    kill("-TERM", &d.guardnest_pid());
    assert_eq!(run.wait_exit().code(), Some(0));
    assert!(!entry.exists(), "entry left after a clean stop");
    assert_eq!(d.snapshot(), before);

    // Killed with the system proxy set, and GuardNest is never started again...
    let mut run = d.guardnest(&["--system-proxy"]);
    run.wait_for("system proxy set");
    kill("-KILL", &d.guardnest_pid());
    let _ = run.wait_exit();
    assert_ne!(d.snapshot(), before);
    assert!(entry.exists());
    // ...the next login runs the entry, in a session of its own.
    let out = d.command("dbus-run-session").arg("--").args(&argv).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("restored your gnome proxy settings"), "{said}");
    assert_eq!(d.snapshot(), before, "the login did not put the settings back exactly");
    assert!(!entry.exists(), "the repair did not remove its entry");

    // The next GuardNest says what the login repaired, and when.
    let mut run = d.guardnest(&[]);
    let line = run.wait_for("at login (");
    assert!(line.contains("GuardNest restored your gnome proxy settings"), "{line}");
    let status = d.command(BIN).args(["status", "--data-dir"]).arg(d.data.path()).output().unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("at start: at login ("), "{status}");
    kill("-TERM", &d.guardnest_pid());
    assert_eq!(run.wait_exit().code(), Some(0));
    passed()
}

/// PIDs are reused (Wine gives a restarted GuardNest the PID of the one a killed session
/// took with it; Windows reuses them quickly; every OS starts again at boot). A GuardNest
/// killed with the system proxy set, whose recorded PID now belongs to another live
/// program: `guardnest repair` and the next start still put the settings back.
fn a_snapshot_whose_pid_now_runs_another_program_is_repaired() -> Outcome {
    if cfg!(windows) {
        return not_a_linux_desktop();
    }
    if let Some(skipped) = needs_tools(&["gsettings", "dbus-run-session"], INSTALL) {
        return skipped;
    }
    // Started well before any GuardNest (a PID's start time counts in clock ticks: two
    // processes started within one tick cannot be told apart, and a reused PID never is).
    let mut unrelated = Command::new("sleep").arg("300").spawn().unwrap();
    let d = Desktop::new("GNOME");
    d.gsettings_set("org.gnome.system.proxy", "autoconfig-url", "'http://corp.example/proxy.pac'");
    d.gsettings_set("org.gnome.system.proxy", "mode", "'auto'");
    let before = d.snapshot();
    let snapshot_file = d.data.path().join("system-proxy.json");
    // The dead GuardNest's snapshot now names the unrelated program's PID (its own start
    // time stays: it is what the file recorded).
    let reuse = || {
        let mut t: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&snapshot_file).unwrap()).unwrap();
        assert!(t["started"].is_u64(), "the snapshot records its owner's start time: {t}");
        t["pid"] = unrelated.id().into();
        std::fs::write(&snapshot_file, serde_json::to_vec(&t).unwrap()).unwrap();
    };
    for how in ["repair", "the next start"] {
        let mut run = d.guardnest(&["--system-proxy"]);
        run.wait_for("system proxy set");
        kill("-KILL", &d.guardnest_pid());
        let _ = run.wait_exit();
        reuse();
        assert_ne!(d.snapshot(), before);
        match how {
            "repair" => {
                let (ok, out) = d.repair(&[]);
                assert!(ok && out.contains("restored your gnome proxy settings"), "{how}: {out}");
            }
            _ => {
                let mut run = d.guardnest(&[]);
                run.wait_for("repaired a crashed session");
                kill("-TERM", &d.guardnest_pid());
                assert_eq!(run.wait_exit().code(), Some(0));
            }
        }
        assert_eq!(d.snapshot(), before, "{how}: the settings of a GuardNest whose PID was reused stayed");
    }
    let _ = unrelated.kill();
    let _ = unrelated.wait();
    passed()
}

/// `guardnest stop` (upgrades and the uninstaller use it): the running GuardNest stops as
/// on Ctrl-C, the settings are back before `stop` returns, and `start-again` starts it
/// the same way; with the GuardNest killed instead, `stop` repairs what it left.
fn stop_puts_settings_back_and_start_again_restarts() -> Outcome {
    if cfg!(windows) {
        return not_a_linux_desktop();
    }
    if let Some(skipped) = needs_tools(&["gsettings", "dbus-run-session"], INSTALL) {
        return skipped;
    }
    let d = Desktop::new("GNOME");
    d.gsettings_set("org.gnome.system.proxy.http", "host", "corp-proxy.example");
    d.gsettings_set("org.gnome.system.proxy.http", "port", "8123");
    d.gsettings_set("org.gnome.system.proxy", "mode", "'manual'");
    let before = d.snapshot();
    let saved = d.home.path().join("running.json");
    let cli = |args: &[&str]| {
        let out = d
            .command("dbus-run-session")
            .arg("--")
            .arg(BIN)
            .args(args)
            .arg("--data-dir")
            .arg(d.data.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };

    let mut run = d.guardnest(&["--system-proxy"]);
    run.wait_for("system proxy set");
    let pid = d.guardnest_pid();
    let (code, out) = cli(&["stop", "--save-running", saved.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("stopping GuardNest (PID {pid})")), "{out}");
    assert_eq!(d.snapshot(), before, "stop returned before the settings were back");
    assert!(!d.data.path().join("control.json").exists());
    assert_eq!(run.wait_exit().code(), Some(0), "stopped as on Ctrl-C");
    let recorded: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    let command: Vec<String> = serde_json::from_value(recorded[0]["command"].clone()).unwrap();
    assert_eq!(command[0], std::fs::canonicalize(BIN).unwrap().display().to_string(), "{recorded}");
    assert!(command.contains(&"--system-proxy".to_string()), "{recorded}");

    // Started again the same way, in the background, in a desktop session that outlives
    // the command (as the user's own does): a session bus of its own.
    let mut bus = d
        .command("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut address = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(bus.stdout.take().unwrap()), &mut address).unwrap();
    let on_bus = |args: &[&str]| {
        let out = d
            .command(BIN)
            .env("DBUS_SESSION_BUS_ADDRESS", address.trim())
            .args(args)
            .arg("--data-dir")
            .arg(d.data.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let (code, out) = on_bus(&["start-again", saved.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("started again: "), "{out}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !d.data.path().join("control.json").exists() {
        assert!(Instant::now() < deadline, "the GuardNest started again never wrote control.json");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, out) = on_bus(&["status"]);
    assert_eq!(code, Some(0), "{out}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.snapshot() == before {
        assert!(Instant::now() < deadline, "the GuardNest started again did not set the system proxy");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, out) = on_bus(&["stop"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("stopping GuardNest"), "{out}");
    assert_eq!(d.snapshot(), before);
    let _ = bus.kill();
    let _ = bus.wait();

    // Killed with the system proxy set: stop finds nothing running and repairs.
    let mut run = d.guardnest(&["--system-proxy"]);
    run.wait_for("system proxy set");
    kill("-KILL", &d.guardnest_pid());
    let _ = run.wait_exit();
    let (code, out) = cli(&["stop"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("no GuardNest was running") && out.contains("restored your gnome proxy settings"), "{out}");
    assert_eq!(d.snapshot(), before);
    passed()
}
