//! A real window: the built app under Xvfb, in a throwaway HOME with a local list. It must
//! render (a screenshot, saved as a test artifact, with real content in it) and protect (a
//! blocked name through its listener gets 403), sets the system proxy (GNOME keys in the
//! throwaway HOME) and restores it when ended with SIGTERM, as at log-off. Needs xvfb-run,
//! dbus-run-session, gsettings and
//! ImageMagick's `import`; skipped without them unless GUARDNEST_REQUIRE_DESKTOP_TESTS=1.
//! And closed to the tray, no WebKit process is left (web or network), and Open brings them
//! and the window back.

mod support;

use guardnest_testkit::{passed, Outcome};

guardnest_testkit::main!(the_window_renders_and_protects, closed_to_the_tray_no_webkit_process_is_left);

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn the_window_renders_and_protects() -> Outcome {
    if let Some(skipped) = guardnest_testkit::needs_tools(
        &["xvfb-run", "dbus-run-session", "import", "gsettings"],
        "apt-get install xvfb xauth imagemagick dbus libglib2.0-bin dconf-gsettings-backend",
    ) {
        return skipped;
    }
    let home = support::DesktopHome::new();
    let h = home.path();
    let data = home.data_dir();
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("app-window.png");
    let _ = std::fs::remove_file(&shot);

    let app = env!("CARGO_BIN_EXE_guardnest-app");
    // Inside the X session: start the app, wait for the test's go, take the screenshot.
    let go = h.join("go");
    let done = h.join("done");
    let script = format!(
        "{app} & i=0; while [ ! -e {go} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; import -window root {shot}; touch {done}; kill -TERM $!; wait $!",
        go = go.display(),
        shot = shot.display(),
        done = done.display()
    );
    let mut child = home
        .desktop(true)
        .args(["sh", "-c", &script])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut listen: Option<SocketAddr> = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while listen.is_none() && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) {
            if let Some(addr) = line.rsplit("listening on ").next().filter(|_| line.contains("listening on ")) {
                listen = addr.trim().parse().ok();
            }
        }
    }
    let listen = listen.expect("the app never started listening");
    std::thread::sleep(Duration::from_secs(3)); // let the page render and receive a tick
    assert_eq!(support::connect_status(listen, "www.evil.test:443"), Some(403), "the app's proxy must block");
    std::thread::sleep(Duration::from_secs(2)); // the block shows up in the next tick
    assert_eq!(home.proxy_mode(), "'manual'", "the app did not set the system proxy");
    std::fs::write(&go, b"").unwrap();
    for _ in 0..300 {
        if done.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The script ends the app with SIGTERM, as a log-off does: it must restore the system
    // proxy before it exits.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    support::kill_group(&mut child);
    assert!(shot.exists(), "no screenshot taken");
    assert_eq!(home.proxy_mode(), "'none'", "system proxy not restored on SIGTERM");
    assert!(!data.join("system-proxy.json").exists(), "transaction left behind");
    // Rendered, not blank: a real UI has many colours (text antialiasing, the switch).
    let colours = Command::new("convert").arg(&shot).args(["-format", "%k", "info:"]).output().unwrap();
    let colours: u32 = String::from_utf8_lossy(&colours.stdout).trim().parse().unwrap_or(0);
    assert!(colours > 50, "the window looks blank ({colours} colours): {}", shot.display());
    eprintln!("screenshot: {} ({colours} colours)", shot.display());
    passed()
}

/// Closed as a window manager closes it, the app stays in the tray with no WebKit process
/// under it (the web process ends with the view, the network process is ended by the app);
/// Open (starting the app again) brings the window and both processes back.
fn closed_to_the_tray_no_webkit_process_is_left() -> Outcome {
    if let Some(skipped) = guardnest_testkit::needs_tools(
        &["xvfb-run", "dbus-run-session", "python3"],
        "apt-get install xvfb xauth dbus python3",
    ) {
        return skipped;
    }
    // Told once already: the close closes at once (the notice is the WebDriver test's).
    let home = support::DesktopHome::new().told_about_tray();
    let app = env!("CARGO_BIN_EXE_guardnest-app");
    let mut child = home.desktop(true).arg(app).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let app = support::AppProcess::of(&home);
        app.xwindow(&["wait", "GuardNest", "60"]);
        let until = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while !done() {
                assert!(std::time::Instant::now() < deadline, "{what}");
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        until("no WebKit processes while the window is shown", &|| {
            app.web_processes() > 0 && app.network_processes() > 0
        });

        app.xwindow(&["close", "GuardNest"]);
        until("WebKit processes still run with the window closed", &|| {
            app.web_processes() == 0 && app.network_processes() == 0
        });
        assert!(app.alive(), "closing the window ended the app");

        app.start_again();
        app.xwindow(&["wait", "GuardNest", "30"]);
        until("Open did not bring WebKit back", &|| app.web_processes() > 0 && app.network_processes() > 0);
    }));
    support::kill_group(&mut child);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    passed()
}
