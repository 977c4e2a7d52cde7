//! What the Windows tests share: the registry values read and written directly, the
//! guardnest.exe runs, and the end-of-session messages.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
pub use std::process::Command;

pub use guardnest_core::sysproxy::windows::{
    bypass_list, os, reports, server_list, Record, RegValue, Windows, AUTO_CONFIG_URL, INTERNET_SETTINGS, PROXY_ENABLE,
    PROXY_OVERRIDE, PROXY_SERVER,
};
pub use guardnest_core::sysproxy::Target;
pub use guardnest_testkit::{passed, skip, Outcome};
use windows_sys::Win32::Foundation::ERROR_SUCCESS;
use windows_sys::Win32::System::Registry::{
    RegCloseKey, RegCreateKeyExW, RegDeleteValueW, RegQueryValueExW, RegSetValueExW, HKEY, HKEY_CURRENT_USER,
    KEY_ALL_ACCESS, REG_OPTION_NON_VOLATILE,
};

pub use crate::support::{Running, BIN, WAIT};

/// The registry values GuardNest may touch, as the tests compare them.
pub const VALUES: [&str; 5] =
    [PROXY_ENABLE, PROXY_SERVER, PROXY_OVERRIDE, AUTO_CONFIG_URL, r"Connections\DefaultConnectionSettings"];

/// One user's registry at a time: the tests run one after the other.
static REGISTRY: Mutex<()> = Mutex::new(());

/// Runs `test` holding the registry, unless this is a real Windows account nobody said
/// may be changed.
pub fn exclusive(test: impl FnOnce() -> Outcome) -> Outcome {
    if !guardnest_testkit::under_wine() && std::env::var_os("GUARDNEST_WINDOWS_SETTINGS_TESTS").is_none() {
        return skip(
            "would change this Windows user's proxy settings: runs under Wine (.ci/windows.sh), or with \
             GUARDNEST_WINDOWS_SETTINGS_TESTS=1 in a throwaway account",
        );
    }
    let _one = REGISTRY.lock();
    test()
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain([0]).collect()
}

/// Opens (creating) the key holding `name` (`Connections\X` or a bare value name).
fn key_of(name: &str) -> (HKEY, Vec<u16>) {
    let (path, value) = match name.split_once('\\') {
        Some((sub, v)) => (format!(r"{INTERNET_SETTINGS}\{sub}"), v),
        None => (INTERNET_SETTINGS.to_string(), name),
    };
    let mut h: HKEY = std::ptr::null_mut();
    let p = wide(&path);
    // SAFETY: NUL-terminated path, out handle.
    let rc = unsafe {
        RegCreateKeyExW(
            HKEY_CURRENT_USER,
            p.as_ptr(),
            0,
            std::ptr::null(),
            REG_OPTION_NON_VOLATILE,
            KEY_ALL_ACCESS,
            std::ptr::null(),
            &mut h,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, ERROR_SUCCESS, "open {path}");
    (h, wide(value))
}

/// One value as stored (type, bytes), read with RegQueryValueExW.
pub fn get(name: &str) -> Option<RegValue> {
    let (h, v) = key_of(name);
    let mut data = vec![0u8; 4096];
    let (mut kind, mut len) = (0u32, data.len() as u32);
    // SAFETY: `data` holds `len` bytes.
    let rc = unsafe { RegQueryValueExW(h, v.as_ptr(), std::ptr::null(), &mut kind, data.as_mut_ptr(), &mut len) };
    // SAFETY: our key.
    unsafe { RegCloseKey(h) };
    data.truncate(len as usize);
    (rc == ERROR_SUCCESS).then_some(RegValue { kind, data })
}

/// Sets (`Some`) or removes (`None`) one value, as the user's own tools would.
pub fn put(name: &str, value: Option<&RegValue>) {
    let (h, v) = key_of(name);
    // SAFETY: valid key and NUL-terminated name; data outlives the call.
    let rc = unsafe {
        match &value {
            Some(x) => RegSetValueExW(h, v.as_ptr(), 0, x.kind, x.data.as_ptr(), x.data.len() as u32),
            None => match RegDeleteValueW(h, v.as_ptr()) {
                2 => ERROR_SUCCESS, // already absent
                rc => rc,
            },
        }
    };
    // SAFETY: our key.
    unsafe { RegCloseKey(h) };
    assert_eq!(rc, ERROR_SUCCESS, "write {name}");
}

/// Every value GuardNest may touch.
pub type Snapshot = BTreeMap<&'static str, Option<RegValue>>;

pub fn snapshot() -> Snapshot {
    VALUES.iter().map(|n| (*n, get(n))).collect()
}

/// Says `line` on stderr and, with GUARDNEST_REGISTRY_LOG=FILE (.ci/windows.sh), appends
/// it to FILE: the registry values before, during and after, for people to read.
pub fn note(line: &str) {
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("GUARDNEST_REGISTRY_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Prints a snapshot the way `reg query` shows values (and decodes the LAN record).
pub fn show(stage: &str, s: &Snapshot) {
    note(&format!("  registry {stage}:"));
    for (name, v) in s {
        let text = v.as_ref().map_or_else(|| "(absent)".to_string(), RegValue::describe);
        note(&format!("    {name} = {text}"));
        if let Some(r) = v.as_ref().filter(|v| v.kind == 3).and_then(|v| Record::parse(&v.data)) {
            let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            note(&format!(
                "      (record: counter {}, flags {}, proxy {:?}, bypass {:?}, auto-config {:?})",
                r.counter,
                r.flags,
                s(&r.proxy),
                s(&r.bypass),
                s(&r.autoconfig)
            ));
        }
    }
}

/// Sets the user's configuration: every value of `VALUES` as given (absent when `None`).
pub fn set_user(values: &[(&'static str, Option<RegValue>)]) -> Snapshot {
    for name in VALUES {
        let v = values.iter().find(|(n, _)| *n == name).and_then(|(_, v)| v.as_ref());
        put(name, v);
    }
    snapshot()
}

/// A connection record as Windows' Internet Options leaves it (with a tail of the
/// auto-detection state GuardNest must keep).
pub fn record(counter: u32, flags: u32, proxy: &str, bypass: &str, autoconfig: &str) -> RegValue {
    RegValue::binary(
        Record {
            version: 0x46,
            counter,
            flags,
            proxy: proxy.as_bytes().to_vec(),
            bypass: bypass.as_bytes().to_vec(),
            autoconfig: autoconfig.as_bytes().to_vec(),
            tail: vec![1, 0, 0, 0, 0xc0, 0xa8, 0x01, 0x02, 0, 0, 0, 0],
        }
        .to_bytes(),
    )
}

/// Checks that every reader sends traffic to `target`: the registry values, WinINet for
/// the LAN and every RAS entry, and WinHTTP.
pub fn assert_points_at(target: &Target) {
    let s = snapshot();
    show("while GuardNest is the system proxy", &s);
    let lan = s[r"Connections\DefaultConnectionSettings"].as_ref().and_then(|v| Record::parse(&v.data)).unwrap();
    match target {
        Target::Fixed(addr) => {
            assert_eq!(s[PROXY_ENABLE], Some(RegValue::dword(1)));
            assert_eq!(s[PROXY_SERVER], Some(RegValue::sz(&server_list(*addr))));
            assert_eq!(s[PROXY_OVERRIDE], Some(RegValue::sz(&bypass_list())));
            assert_eq!(s[AUTO_CONFIG_URL], None);
            assert_eq!((lan.flags, lan.proxy), (3, server_list(*addr).into_bytes()));
        }
        Target::Pac(url) => {
            assert_eq!(s[PROXY_ENABLE], Some(RegValue::dword(0)));
            assert_eq!(s[AUTO_CONFIG_URL], Some(RegValue::sz(url)));
            assert_eq!((lan.flags, lan.autoconfig), (5, url.clone().into_bytes()));
        }
    }
    let ras = Windows::new().unwrap().ras_entries().to_vec();
    note(&format!("  RAS entries this Windows exposes: {ras:?}"));
    for conn in std::iter::once(None).chain(ras.iter().map(|r| Some(r.as_str()))) {
        let o = os::query(conn).unwrap();
        note(&format!("  WinINet InternetQueryOption({}): {o:?}", conn.unwrap_or("LAN")));
        assert!(reports(target, o.flags, &o.server, &o.autoconfig), "WinINet: {o:?}");
    }
    let ie = os::winhttp_ie_config().unwrap();
    note(&format!("  WinHTTP WinHttpGetIEProxyConfigForCurrentUser: {ie:?}"));
    match target {
        Target::Fixed(addr) => assert_eq!(ie.server, server_list(*addr)),
        Target::Pac(url) => assert_eq!(&ie.autoconfig, url),
    }
}

/// Asserts the registry is back to `before`, byte for byte.
pub fn assert_restored(stage: &str, before: &Snapshot) {
    let now = snapshot();
    show(stage, &now);
    assert_eq!(&now, before, "not restored byte for byte {stage}");
}

/// `guardnest run --system-proxy` with its own data dir (and `extra` flags).
pub fn run(data: &Path, extra: &[&str]) -> Running {
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--no-default-lists", "--data-dir"])
        .arg(data)
        .args(extra)
        .env("RUST_LOG", "info");
    Running::start(&mut cmd)
}

/// A `guardnest` client command against the instance in `data`: exit code and output.
pub fn client(data: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN).args(args).arg("--data-dir").arg(data).env_remove("RUST_LOG").output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// Where the instance in `data` listens now, from `guardnest status --json` (a new
/// enable binds a new port 0).
pub fn listening(data: &Path) -> SocketAddr {
    let (code, out) = client(data, &["status", "--json"]);
    assert_eq!(code, Some(0), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["listen"].as_str().unwrap().parse().unwrap()
}

/// The one-shot repair registered under RunOnce, split as Windows splits a command line
/// (CommandLineToArgvW); `None` when there is none.
pub fn run_once() -> Option<Vec<String>> {
    let line = guardnest_core::sysproxy::login::run_once_value()?;
    Some(guardnest_testkit::split_by_windows(&line))
}

/// Checks the registered repair: this guardnest.exe, `repair --data-dir DATA --at-login`.
pub fn assert_run_once(data: &Path) -> Vec<String> {
    let argv = run_once().expect("no RunOnce repair while GuardNest holds the system proxy");
    note(&format!("  RunOnce {}: {argv:?}", guardnest_core::sysproxy::login::ENTRY));
    assert!(argv[0].to_ascii_lowercase().ends_with("guardnest.exe"), "{argv:?}");
    assert_eq!(argv[1..], ["repair", "--data-dir", &data.display().to_string(), "--at-login"], "{argv:?}");
    argv
}

/// Stops with Ctrl-C and expects exit 0.
pub fn stop(run: Running) {
    run.signal("-INT");
    assert_eq!(run.wait_exit().code(), Some(0), "a clean stop exits 0");
}

/// Kills hard (TerminateProcess: no handler runs) and waits.
pub fn kill(run: Running) {
    run.signal("-KILL");
    let _ = run.wait_exit();
}

/// The control API address from the log.
pub fn control_addr(run: &mut Running) -> SocketAddr {
    let line = run.wait_for("control API on ");
    line.rsplit("control API on ").next().unwrap().trim().parse().unwrap()
}

/// GET `path` from the control API (no token needed for /proxy.pac).
pub fn get_http(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Every path back: `disable`, `enable` then a clean stop, a hard kill then the next
/// `run`, a hard kill then `guardnest repair`. `target` says where the settings point.
pub fn every_path_restores(before: &Snapshot, extra: &[&str], target: impl Fn(&mut Running, SocketAddr) -> Target) {
    let data = tempfile::tempdir().unwrap();
    let data = data.path();
    assert_eq!(run_once(), None, "a RunOnce repair left from before");

    note("-- run --system-proxy, then `guardnest disable`");
    let mut run1 = run(data, extra);
    run1.wait_for("system proxy set (windows)");
    let listen = listening(data);
    assert_eq!(listen, run1.addr);
    assert_points_at(&target(&mut run1, listen));
    assert_run_once(data);
    let (code, out) = client(data, &["disable"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("restored your windows proxy settings"), "{out}");
    assert_restored("after `guardnest disable`", before);
    assert_eq!(run_once(), None, "the RunOnce repair outlived the restore");

    note("-- `guardnest enable`, then a clean stop (Ctrl-C)");
    let (code, out) = client(data, &["enable"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("system proxy set (windows)"), "{out}");
    let listen = listening(data);
    assert_points_at(&target(&mut run1, listen));
    stop(run1);
    assert_restored("after a clean stop", before);
    assert_eq!(run_once(), None, "the RunOnce repair outlived the clean stop");

    note("-- hard kill, then the next `run` repairs");
    let mut run2 = run(data, extra);
    run2.wait_for("system proxy set (windows)");
    let applied = snapshot();
    kill(run2);
    assert_eq!(snapshot(), applied, "a killed GuardNest cannot restore anything");
    show("after the kill", &applied);
    let mut run3 = run(data, &[]);
    let line = run3.wait_for("repaired a crashed session");
    note(&format!("  next run said: {line}"));
    assert_restored("after the next run", before);
    assert_eq!(run_once(), None, "the RunOnce repair outlived the repair at start");
    stop(run3);
    assert_restored("after that run stopped", before);

    note("-- hard kill, then `guardnest repair`");
    let mut run4 = run(data, extra);
    run4.wait_for("system proxy set (windows)");
    kill(run4);
    let (code, out) = client(data, &["repair"]);
    note(&format!("  guardnest repair said: {}", out.trim()));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("restored your windows proxy settings"), "{out}");
    assert_restored("after `guardnest repair`", before);
    assert_eq!(run_once(), None, "the RunOnce repair outlived `guardnest repair`");

    note("-- hard kill, then the next logon runs the RunOnce command line");
    let mut run5 = run(data, extra);
    run5.wait_for("system proxy set (windows)");
    kill(run5);
    let argv = assert_run_once(data);
    let out = Command::new(&argv[0]).args(&argv[1..]).env_remove("RUST_LOG").output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    note(&format!("  the RunOnce command said: {}", said.trim()));
    assert!(out.status.success(), "{said}");
    assert_restored("after the RunOnce repair", before);
    assert_eq!(run_once(), None, "the RunOnce repair did not remove itself");

    note("-- the session ends (log-off, shutdown): WM_QUERYENDSESSION, then WM_ENDSESSION");
    let mut run6 = run(data, extra);
    run6.wait_for("system proxy set (windows)");
    assert_run_once(data);
    end_session(&run6);
    assert_restored("when WM_ENDSESSION returned", before);
    assert_eq!(run_once(), None, "the RunOnce repair outlived the restore at the end of the session");
    // Windows ends the process once every window has answered.
    kill(run6);
    assert_restored("after the process was ended", before);
}

/// Does what Windows does to each top-level window when the session ends: asks
/// (`WM_QUERYENDSESSION`), then tells (`WM_ENDSESSION`, ending), each message answered
/// before the next is sent. The window is guardnest.exe's hidden session window.
pub fn end_session(run: &Running) {
    use windows_sys::Win32::UI::WindowsAndMessaging::{
        FindWindowExW, GetWindowThreadProcessId, SendMessageW, WM_ENDSESSION, WM_QUERYENDSESSION,
    };
    let class: Vec<u16> = "GuardNestSessionEnd".encode_utf16().chain([0]).collect();
    let started = std::time::Instant::now();
    let hwnd = loop {
        let mut found = std::ptr::null_mut();
        let mut after = std::ptr::null_mut();
        // SAFETY: a NUL-terminated class name; windows are only looked at, by handle.
        unsafe {
            loop {
                after = FindWindowExW(std::ptr::null_mut(), after, class.as_ptr(), std::ptr::null());
                if after.is_null() {
                    break;
                }
                let mut pid = 0;
                GetWindowThreadProcessId(after, &mut pid);
                if pid == run.child.id() {
                    found = after;
                    break;
                }
            }
        }
        if !found.is_null() {
            break found;
        }
        assert!(started.elapsed() < WAIT, "guardnest.exe made no session window (Wine needs an X display)");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // SAFETY: messages to a window of a live process; SendMessageW waits for its answer.
    unsafe {
        assert_eq!(SendMessageW(hwnd, WM_QUERYENDSESSION, 0, 0), 1, "GuardNest must let the session end");
        SendMessageW(hwnd, WM_ENDSESSION, 1, 0);
    }
}
