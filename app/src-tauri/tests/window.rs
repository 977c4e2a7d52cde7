//! A real window: the built app under Xvfb, in a throwaway HOME with a local list. It must
//! render (a screenshot, saved as a test artifact, with real content in it) and protect (a
//! blocked name through its listener gets 403), sets the system proxy (GNOME keys in the
//! throwaway HOME) and restores it when ended with SIGTERM, as at log-off. Needs xvfb-run,
//! dbus-run-session, gsettings and
//! ImageMagick's `import`; skipped without them unless GUARDNEST_REQUIRE_DESKTOP_TESTS=1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn have(tool: &str) -> bool {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).any(|d| d.join(tool).is_file())
}

fn connect_status(proxy: SocketAddr, target: &str) -> u16 {
    let mut s = TcpStream::connect_timeout(&proxy, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    String::from_utf8_lossy(&head[9..12]).parse().unwrap()
}

/// GNOME's proxy mode in the throwaway HOME (read through a session bus of its own).
fn proxy_mode(home: &std::path::Path) -> String {
    let out = Command::new("dbus-run-session")
        .args(["--", "gsettings", "get", "org.gnome.system.proxy", "mode"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_RUNTIME_DIR", home.join("run"))
        .env("GSETTINGS_BACKEND", "dconf")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_window_renders_and_protects() {
    let missing: Vec<&str> =
        ["xvfb-run", "dbus-run-session", "import", "gsettings"].into_iter().filter(|t| !have(t)).collect();
    if !missing.is_empty() {
        assert!(std::env::var_os("GUARDNEST_REQUIRE_DESKTOP_TESTS").is_none(), "required tools missing: {missing:?}");
        eprintln!("SKIPPED: missing {missing:?} (apt-get install xvfb xauth imagemagick dbus)");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let data = h.join("data/guardnest");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(h.join("run")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(h.join("run"), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let list = h.join("block.hosts");
    std::fs::write(&list, "0.0.0.0 evil.test\n0.0.0.0 tracker.test\n").unwrap();
    std::fs::write(
        data.join("config.toml"),
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\n[blocklist]\nsources = [{:?}]\ndefault_lists = false\n",
            list.display().to_string()
        ),
    )
    .unwrap();
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
    let mut child = Command::new("dbus-run-session");
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut child, 0);
    let mut child = child
        .args(["--", "xvfb-run", "-a", "-s", "-screen 0 1024x768x24", "sh", "-c", &script])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", h)
        .env("XDG_DATA_HOME", h.join("data"))
        .env("XDG_CONFIG_HOME", h.join("config"))
        .env("XDG_RUNTIME_DIR", h.join("run"))
        .env("GSETTINGS_BACKEND", "dconf")
        .env("NO_AT_BRIDGE", "1")
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
    assert_eq!(connect_status(listen, "www.evil.test:443"), 403, "the app's proxy must block");
    std::thread::sleep(Duration::from_secs(2)); // the block shows up in the next tick
    assert_eq!(proxy_mode(h), "'manual'", "the app did not set the system proxy");
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
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
    let _ = child.wait();
    assert!(shot.exists(), "no screenshot taken");
    assert_eq!(proxy_mode(h), "'none'", "system proxy not restored on SIGTERM");
    assert!(!data.join("system-proxy.json").exists(), "transaction left behind");
    // Rendered, not blank: a real UI has many colours (text antialiasing, the switch).
    let colours = Command::new("convert").arg(&shot).args(["-format", "%k", "info:"]).output().unwrap();
    let colours: u32 = String::from_utf8_lossy(&colours.stdout).trim().parse().unwrap_or(0);
    assert!(colours > 50, "the window looks blank ({colours} colours): {}", shot.display());
    eprintln!("screenshot: {} ({colours} colours)", shot.display());
}
